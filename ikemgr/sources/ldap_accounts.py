"""The directory check: which accounts with grants are missing or disabled (ldap3).

Read-only and all-or-nothing like every source: if the directory cannot be asked about
every account, the whole check fails (BackendUnavailable('ldap')) and nothing is
suspended. Account names are grammar-checked before they get here and are still escaped
(RFC 4515) in every filter.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Iterable

from ldap3 import NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from ikemgr.config.schema import Config
from ikemgr.errors import BackendUnavailable, ConfigError, ConfigProblem

BATCH = 200


def _bind_password(cfg: Config) -> str | None:
    path = cfg.ldap.bind_password_file
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip("\r\n")
    except OSError as e:
        raise ConfigError([ConfigProblem("ldap.bind_password_file", None, f"{path}: {e.strerror}")]) from None


def _tls(cfg: Config) -> Tls | None:
    """Certificate checking as configured for the directory (ldap.tls_*), for ldaps:// and StartTLS."""
    if not (cfg.ldap.uri.startswith("ldaps://") or cfg.ldap.start_tls):
        return None
    mode = {"never": ssl.CERT_NONE, "allow": ssl.CERT_OPTIONAL}.get(cfg.ldap.tls_require_cert,
                                                                    ssl.CERT_REQUIRED)
    ca = str(cfg.ldap.tls_ca_file) if cfg.ldap.tls_ca_file else None
    return Tls(validate=mode, ca_certs_file=ca)


def _names(conn: Connection, base: str, attr: str, flt: str) -> set[str]:
    ok = conn.search(base, flt, search_scope=SUBTREE, attributes=[attr], paged_size=1000)
    if not ok and conn.result.get("result") not in (0, 32):  # 32: no such object = nobody
        raise BackendUnavailable("ldap", f"search failed: {conn.result.get('description')} "
                                 f"{conn.result.get('message') or ''}".strip())
    out: set[str] = set()
    for entry in conn.entries:
        for value in entry[attr].values:
            out.add(str(value).lower())  # uid matching is case-insensitive; accounts are lower case
    return out


def account_status(cfg: Config, accounts: Iterable[str], timeout: float) -> dict[str, str]:
    """``{account: "ok" | "missing" | "disabled"}`` for every given account."""
    chk = cfg.sync.account_check
    base = chk.base_dn or cfg.ldap.base_dn
    disabled_filter = chk.disabled_filter or cfg.ldap.disabled_filter
    names = sorted(set(accounts))
    status: dict[str, str] = {}
    seconds = max(1, math.ceil(timeout))  # ldap3 wants whole seconds
    try:
        server = Server(cfg.ldap.uri, get_info=NONE, connect_timeout=seconds, tls=_tls(cfg))
        conn = Connection(server, user=cfg.ldap.bind_dn, password=_bind_password(cfg),
                          receive_timeout=seconds, read_only=True, raise_exceptions=False)
        if cfg.ldap.start_tls and not conn.start_tls():
            raise BackendUnavailable("ldap", f"StartTLS failed: {conn.result.get('description')}")
        if not conn.bind():
            raise BackendUnavailable("ldap", f"bind failed: {conn.result.get('description')}")
        try:
            for i in range(0, len(names), BATCH):
                batch = names[i:i + BATCH]
                anyof = "(|" + "".join(f"({chk.attribute}={escape_filter_chars(n)})" for n in batch) + ")"
                present = _names(conn, base, chk.attribute, anyof)
                disabled = (_names(conn, base, chk.attribute, f"(&{disabled_filter}{anyof})")
                            if disabled_filter else set())
                for n in batch:
                    status[n] = "missing" if n not in present else ("disabled" if n in disabled else "ok")
        finally:
            conn.unbind()
    except (LDAPException, OSError) as e:
        raise BackendUnavailable("ldap", f"{cfg.ldap.uri}: {e}") from None
    return status

"""The directory check: which accounts with grants are missing or disabled (ldap3).

Read-only and all-or-nothing like every source: if the directory cannot be asked about
every account, the whole check fails (BackendUnavailable('ldap')) and nothing is
suspended. Account names are grammar-checked before they get here and are still escaped
(RFC 4515) in every filter.
"""

from __future__ import annotations

from collections.abc import Iterable

from ldap3 import SUBTREE, Connection
from ldap3.utils.conv import escape_filter_chars

from ikemgr.adapters.ldap import connection
from ikemgr.config.schema import Config
from ikemgr.errors import BackendUnavailable

BATCH = 200


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
    """``{account: "ok" | "missing" | "disabled"}`` for every given account.

    Connects like every directory reader (adapters/ldap.py): ldaps:// or StartTLS with the
    configured CA and ``tls_require_cert``; a certificate that fails the check fails the
    whole check before the bind.
    """
    chk = cfg.sync.account_check
    base = chk.base_dn or cfg.ldap.base_dn
    disabled_filter = chk.disabled_filter or cfg.ldap.disabled_filter
    names = sorted(set(accounts))
    status: dict[str, str] = {}
    with connection(cfg.ldap, timeout) as conn:
        for i in range(0, len(names), BATCH):
            batch = names[i:i + BATCH]
            anyof = "(|" + "".join(f"({chk.attribute}={escape_filter_chars(n)})" for n in batch) + ")"
            present = _names(conn, base, chk.attribute, anyof)
            disabled = (_names(conn, base, chk.attribute, f"(&{disabled_filter}{anyof})")
                        if disabled_filter else set())
            for n in batch:
                status[n] = "missing" if n not in present else ("disabled" if n in disabled else "ok")
    return status

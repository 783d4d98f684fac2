"""One way to reach the directory with ldap3, with the TLS settings of the ``ldap:`` section.

The account check (allowlist/directory_check.py) and the group source
(allowlist/sources/ldap_group.py) both connect through ``connection()``, so ``ldaps://``,
StartTLS, ``tls_ca_file`` and ``tls_require_cert`` mean the same for them as for
FreeRADIUS (libldap's TLS_REQCERT):

- ``demand`` / ``hard``: the certificate must chain to ``tls_ca_file`` (or the system CAs
  when none is given) and name the host of ``uri`` (DNS or IP subjectAltName); otherwise
  the connection fails before the bind, so the password is never sent.
- ``allow`` / ``never``: no check at all (libldap's "allow" also carries on with a bad
  certificate). The traffic is encrypted, but anyone on the path can pose as the directory.

Every failure (refused, timeout, TLS, bind) is ``BackendUnavailable`` for ``backend``; a
missing or unreadable bind password file is a config error.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from ldap3 import NONE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException

from ikemgr.config.services import Ldap
from ikemgr.errors import BackendUnavailable, ConfigError, ConfigProblem
from ikemgr.fsio import config_secret

MAX_DETAIL = 300


def bind_password(ldap: Ldap) -> str | None:
    """The bind password: the first line of ``ldap.bind_password_file`` (as rendered for FreeRADIUS)."""
    path = ldap.bind_password_file
    return None if path is None else config_secret(path, "ldap.bind_password_file")


def uses_tls(ldap: Ldap) -> bool:
    return ldap.uri.startswith("ldaps://") or ldap.start_tls


def tls_settings(ldap: Ldap) -> Tls | None:
    """ldap3's Tls for ``ldap.tls_*``; None for a plain ldap:// connection."""
    if not uses_tls(ldap):
        return None
    # Python's CERT_OPTIONAL is CERT_REQUIRED on a client, so "allow" (go on with a bad
    # certificate, as libldap does) can only be CERT_NONE
    verify = ssl.CERT_REQUIRED if ldap.tls_require_cert in ("demand", "hard") else ssl.CERT_NONE
    ca = ldap.tls_ca_file
    if ca is not None and not ca.is_file():
        raise ConfigError([ConfigProblem("ldap.tls_ca_file", None, f"{ca}: no such file")])
    return Tls(validate=verify, ca_certs_file=str(ca) if ca is not None else None)


def describe(err: BaseException) -> str:
    """A one-line reason from an ldap3/ssl/socket error (ldap3 likes to dump whole certificates)."""
    text = str(err.args[0] if len(err.args) == 1 else err).strip("()',\" ")
    if "doesn't match any name" in text:
        return "TLS: the server certificate does not name this host"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
        return f"TLS: the server certificate is not trusted ({reason or 'verify failed'})"
    text = " ".join(text.split())
    return text[:MAX_DETAIL] or type(err).__name__


@contextmanager
def connection(ldap: Ldap, timeout: float, backend: str = "ldap") -> Iterator[Connection]:
    """A bound, read-only ldap3 connection to ``ldap.uri``; unbound on exit.

    ``timeout`` bounds the TCP connect and every answer (ldap3 counts whole seconds).
    """
    seconds = max(1, math.ceil(timeout))
    conn: Connection | None = None
    try:
        server = Server(ldap.uri, get_info=NONE, connect_timeout=seconds, tls=tls_settings(ldap))
        conn = Connection(server, user=ldap.bind_dn, password=bind_password(ldap),
                          receive_timeout=seconds, read_only=True, raise_exceptions=False)
        conn.open()  # connect (and the TLS handshake for ldaps://): errors raise
        if ldap.start_tls and not conn.start_tls():
            raise BackendUnavailable(backend, f"{ldap.uri}: StartTLS failed: "
                                     f"{conn.result.get('description')}")
        if not conn.bind():
            raise BackendUnavailable(backend, f"{ldap.uri}: bind failed: {conn.result.get('description')}")
        yield conn
    except (LDAPException, OSError) as e:
        raise BackendUnavailable(backend, f"{ldap.uri}: {describe(e)}") from None
    finally:
        if conn is not None and not conn.closed:
            try:
                conn.unbind()
            except (LDAPException, OSError):
                pass

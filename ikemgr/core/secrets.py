"""Secrets read by the command layer, checked once before they reach any config file."""

from __future__ import annotations

from dataclasses import dataclass

from ikemgr.errors import UsageError


def check_secret(value: str, what: str) -> str:
    """Printable ASCII without spaces, quotes or backslashes: safe inside a quoted string in
    strongswan.conf and FreeRADIUS syntax alike."""
    if not value:
        raise UsageError(f"{what} is empty")
    if len(value) > 128:
        raise UsageError(f"{what} is longer than 128 characters")
    if any(not (0x21 <= ord(c) <= 0x7E) or c in "'\"\\" for c in value):
        raise UsageError(f"{what} may only use printable ASCII without spaces, quotes or backslashes")
    return value


@dataclass(frozen=True)
class Secrets:
    radius: str
    ldap_bind_password: str | None = None
    #: with remote RADIUS (radius.servers): each server's secret, primary first
    radius_servers: tuple[str, ...] = ()
    #: not a secret, but read the same way from a file the config names (``eap.crl_file``):
    #: OpenSSL's hash of the CRL issuer, the CRL's file name in FreeRADIUS's ca_path
    crl_issuer_hash: str | None = None

    def __post_init__(self) -> None:
        check_secret(self.radius, "RADIUS secret")
        for s in self.radius_servers:
            check_secret(s, "RADIUS secret")
        if self.ldap_bind_password is not None:
            check_secret(self.ldap_bind_password, "LDAP bind password")
        h = self.crl_issuer_hash
        if h is not None and not (len(h) == 8 and all(c in "0123456789abcdef" for c in h)):
            raise UsageError("CRL issuer hash: 8 lower-case hex digits")

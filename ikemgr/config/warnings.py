"""What a config may say but probably should not: warnings, not errors (pure, no I/O).

A warning does not stop ``config check`` or ``render`` (exit 0); it is printed as
``warning: field (line N): message``. Checks that need the file system (secret and
certificate files) live in ``ikemgr.checks.files``; these need only the model.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ikemgr.config.schema import Config

Finding = tuple[str, str]  # (field path, message)


def _loopback_host(uri: str) -> bool:
    host = urlsplit(uri).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def ldap_cleartext(cfg: Config) -> list[Finding]:
    """``ldap://`` without StartTLS while passwords cross it.

    The local FreeRADIUS binds as the user with the password the client sent (EAP-GTC,
    TTLS) and reads NT hashes (password equivalents) for MSCHAPv2; ``bind_dn`` sends its
    own password; the LDAP group source and the account check bind with it. On loopback
    nothing leaves the host.
    """
    ldap = cfg.ldap
    if not ldap.uri.startswith("ldap://") or ldap.start_tls or _loopback_host(ldap.uri):
        return []
    users = []
    if cfg.radius.local:
        users.append("the local FreeRADIUS (user passwords and NT hashes)")
    if ldap.bind_dn is not None:
        users.append("ldap.bind_dn's password")
    if cfg.sync.account_check.enabled or any(s.kind == "ldap_group" for s in cfg.sync.sources):
        users.append("sync")
    if not users:
        return []
    return [("ldap.uri", f"{ldap.uri} carries {', '.join(users)} in clear text: set "
                         "ldap.start_tls: true or use ldaps://")]


def _gateway_addresses(cfg: Config) -> set[IPv4Address | IPv6Address]:
    own = {cfg.gateway.outside.address.ip, cfg.gateway.campus.address.ip}
    own.update(v.snat_address for v in cfg.vlans)
    return own


def radius_address_not_ours(cfg: Config) -> list[Finding]:
    """A local FreeRADIUS told to listen on an address the config does not give the gateway.

    FreeRADIUS cannot bind there (unless the host has that address from elsewhere, hence a
    warning); a RADIUS server run by someone else goes in ``radius.servers``.
    """
    r = cfg.radius
    if not r.local or r.address.is_loopback or r.address in _gateway_addresses(cfg):
        return []
    return [("radius.address", f"{r.address} is not an address of this gateway (loopback, "
                               "gateway.outside/campus or a VLAN's SNAT address): the local FreeRADIUS "
                               "listens there; a remote RADIUS server goes in radius.servers")]


def model_warnings(cfg: Config) -> list[Finding]:
    return [*ldap_cleartext(cfg), *radius_address_not_ours(cfg)]

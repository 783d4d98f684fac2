"""What every profile format is built from, and the escaping rules they share.

A profile is a pure function of ``ProfileInput`` (the gateway ``Config`` plus the user's
validated identity, the CA and, for certificate logins, the user's credential) to a list
of ``ProfileFile`` (relative path, bytes, mode). Nothing here reads or writes files.

Identities are checked against the identity grammar before they get here (the command
does it); the formats still escape or refuse on their own, so a value that slipped past
cannot change the meaning of a file: plist and JSON through their libraries, swanctl
with double-quoted strings, PowerShell with single-quoted strings, keyfiles by refusing
what GKeyFile would interpret.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from ikemgr.config.schema import Config
from ikemgr.render.profiles.proposals import ServerProposals, server_proposals

Auth = Literal["eap", "tls", "cert"]
Tunnel = Literal["full", "split"]
#: namespace of the deterministic UUIDs (same input → same profile UUID → the device
#: replaces the old profile instead of adding a second one)
_NS = uuid.UUID("5b0e7f52-6a39-4c2b-9a51-1f0c6e3b9d10")


class UnsafeValue(ValueError):
    """A value that a format cannot carry safely (control characters, …)."""


@dataclass(frozen=True)
class Credential:
    """The user's certificate login: the PKCS#12 as issued, and its parts in PEM."""

    p12: bytes
    cert_pem: bytes
    key_pem: bytes
    key_type: str  # "RSA", "ECDSA256", "ECDSA384", "ECDSA521" (Apple's names)


@dataclass(frozen=True)
class ProfileInput:
    cfg: Config
    identity: str  # account@NNNNNN or account, already grammar-checked
    auth: Auth
    ca_pem: bytes
    ca_der: bytes
    ca_cn: str
    remote: str  # what the client connects to: gateway.fqdn or the outside address
    tunnel: Tunnel
    credential: Credential | None = None
    password: str | None = None  # swanctl only, from --password-file
    paths: dict[str, str] = field(default_factory=dict)  # install paths (NetworkManager)

    @property
    def fqdn(self) -> str:
        return self.cfg.gateway.fqdn

    @property
    def proposals(self) -> ServerProposals:
        return server_proposals(self.cfg)

    @property
    def organisation(self) -> str:
        return self.cfg.pki.organisation

    @property
    def display_name(self) -> str:
        return f"{self.organisation} VPN"

    @property
    def conn(self) -> str:
        return self.cfg.strongswan.connection

    def remote_ts(self) -> list[IPv4Network | IPv6Network]:
        """Split: the campus prefixes (the paper's 全学内 list); full: everything."""
        if self.tunnel == "split":
            return list(self.cfg.campus_prefixes)
        return [IPv4Network("0.0.0.0/0")]

    def uuid(self, *parts: str) -> str:
        return str(uuid.uuid5(_NS, "\0".join((self.fqdn, self.identity, self.auth, *parts)))).upper()


@dataclass(frozen=True)
class ProfileFile:
    path: str  # relative to --out ("" = --out itself)
    data: bytes
    mode: int = 0o644


def default_tunnel(cfg: Config) -> Tunnel:
    """Full when the server offers 0.0.0.0/0 (the seed's setup), split otherwise."""
    return "full" if any(n.prefixlen == 0 for n in cfg.strongswan.local_ts) else "split"


def no_controls(value: str, what: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise UnsafeValue(f"{what} contains control characters")
    return value

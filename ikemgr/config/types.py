"""Scalar types of the config: addresses, prefixes, names and tokens, each validated once."""

from __future__ import annotations

import ipaddress
import re
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)


def _address(v: object) -> object:
    if isinstance(v, IPv4Address | IPv6Address):
        return v
    try:
        return ipaddress.ip_address(str(v).strip())
    except ValueError:
        raise ValueError(f"{v} is not an IP address") from None


def _network(v: object) -> object:
    if isinstance(v, IPv4Network | IPv6Network):
        return v
    text = str(v).strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        if "host bits set" in str(e):
            raise ValueError(f"{text} has host bits set (did you mean "
                             f"{ipaddress.ip_network(text, strict=False)}?)") from None
        raise ValueError(f"{text} is not a network") from None


def _interface(v: object) -> object:
    if isinstance(v, IPv4Interface | IPv6Interface):
        return v
    text = str(v).strip()
    if "/" not in text:
        raise ValueError(f"{text} needs a prefix length (address/len)")
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(f"{text} is not an address/prefix") from None


_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


def _ifname(v: str) -> str:
    if not _IFNAME_RE.fullmatch(v) or v in (".", ".."):
        raise ValueError(f"{v!r} is not a Linux interface name (1-15 of A-Z a-z 0-9 _ . : @ -)")
    return v


_TABLE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


def _table_name(v: str) -> str:
    if not _TABLE_NAME_RE.fullmatch(v):
        raise ValueError(f"{v!r} is not a routing table name (letter, then letters/digits/_/-)")
    return v


_FQDN_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                      r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _fqdn(v: str) -> str:
    if not _FQDN_RE.fullmatch(v):
        raise ValueError(f"{v!r} is not a host name")
    return v


_TOKEN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _token(v: str) -> str:
    """Names that end up inside rendered config files: no spaces, quotes or braces."""
    if not _TOKEN_RE.fullmatch(v):
        raise ValueError(f"{v!r} must be 1-64 of letters, digits, '_', '.', '-'")
    return v


_PROPOSAL_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def _proposal(v: str) -> str:
    if not _PROPOSAL_RE.fullmatch(v):
        raise ValueError(f"{v!r} is not a strongSwan proposal (e.g. aes256-sha256-modp2048)")
    return v


def _abs_path(v: Path) -> Path:
    if not v.is_absolute():
        raise ValueError(f"{v} must be an absolute path")
    if any(c in str(v) for c in "\n\"'{}"):
        raise ValueError(f"{v!s} contains characters not allowed in a path here")
    return v


def _mss(v: object) -> object:
    if v == "pmtu":
        return v
    if isinstance(v, int) and not isinstance(v, bool) and 536 <= v <= 1460:
        return v
    raise ValueError(f"{v!r} must be 'pmtu' or an MSS between 536 and 1460")


MssClamp = Annotated[int | str, BeforeValidator(_mss)]


IPAddress = Annotated[IPv4Address | IPv6Address, BeforeValidator(_address)]


IPNetwork = Annotated[IPv4Network | IPv6Network, BeforeValidator(_network)]


IPInterface = Annotated[IPv4Interface | IPv6Interface, BeforeValidator(_interface)]


IfName = Annotated[str, AfterValidator(_ifname)]


TableName = Annotated[str, AfterValidator(_table_name)]


Hostname = Annotated[str, AfterValidator(_fqdn)]


Token = Annotated[str, AfterValidator(_token)]


Proposal = Annotated[str, AfterValidator(_proposal)]


AbsPath = Annotated[Path, AfterValidator(_abs_path)]


TableId = Annotated[int, Field(ge=1, le=2**32 - 1)]


Priority = Annotated[int, Field(ge=1, le=32765)]


#: Kernel-reserved routing tables: unspec, default, main, local.
RESERVED_TABLES = frozenset({0, 253, 254, 255})


def _v4_only(value: object, what: str) -> None:
    """IPv6 is modelled but not implemented yet: refuse it with a clear message."""
    if getattr(value, "version", 4) != 4:
        raise ValueError(f"{what}: IPv6 is not supported yet")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_LDAP_ATTR_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")


def _ldap_attr(v: str) -> str:
    if not _LDAP_ATTR_RE.fullmatch(v):
        raise ValueError(f"{v!r} is not an LDAP attribute name")
    return v


def _no_quotes(v: str, what: str) -> str:
    """Values that end up inside a double-quoted FreeRADIUS config string."""
    if any(c in v for c in "\"`\\") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in v):
        raise ValueError(f"{what} must not contain quotes, backslashes or control characters")
    return v


def _dn(v: str) -> str:
    _no_quotes(v, "a DN")
    if "=" not in v or len(v) > 512:
        raise ValueError(f"{v!r} is not a DN (e.g. dc=example,dc=ac,dc=jp)")
    return v


def _ldap_filter(v: str) -> str:
    _no_quotes(v, "an LDAP filter")
    depth = 0
    for c in v:
        depth += (c == "(") - (c == ")")
        if depth < 0:
            break
    if not (v.startswith("(") and v.endswith(")")) or depth != 0 or len(v) > 1024:
        raise ValueError(f"{v!r} is not a parenthesised LDAP filter")
    return v


LdapAttr = Annotated[str, AfterValidator(_ldap_attr)]


Dn = Annotated[str, AfterValidator(_dn)]


LdapFilter = Annotated[str, AfterValidator(_ldap_filter)]

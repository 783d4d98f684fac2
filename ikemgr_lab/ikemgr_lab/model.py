"""The ``lab:`` section of a config: everything around the gateway that the lab simulates.

The gateway itself (interfaces, pool, VLANs, charon, RADIUS) is described by the normal
config; this section only adds the world around it: the Internet segment, a home NAT
router, the campus router and servers, one host per lab VLAN, the directory accounts,
the allow-list and the clients. The topology is derived from both (``topology.plan``),
so the gateway the lab runs is exactly the one the config describes.

A lab document is a product config plus this section (``LabDocument``); the product's
commands read the same file and leave ``lab:`` to the lab (the ``ikemgr.config`` entry
point), so the lab never needs a second copy of the gateway's config.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ikemgr.config.load import load, load_text
from ikemgr.config.schema import Config

_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,11}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9._+=-]{1,64}$")
_ORG_RE = re.compile(r"^[A-Za-z0-9 ._-]{1,64}$")
_STATE_NAME_RE = re.compile(r"^(ikemgr[a-z0-9._-]*|ikt-[a-z0-9._-]+|[a-z0-9._-]*lab[a-z0-9._-]*)$")
_IDENTITY_RE = re.compile(r"^[a-z0-9._-]{1,64}(@[0-9]{1,9})?$")


def _check(regex: re.Pattern[str], what: str):  # type: ignore[no-untyped-def]
    def check(v: str) -> str:
        if not regex.fullmatch(v):
            raise ValueError(f"{v!r} is not a valid {what}")
        return v
    return check


NodeName = Annotated[str, AfterValidator(_check(_NAME_RE, "lab node name (a-z0-9, ≤ 8, letter first)"))]
Secret = Annotated[str, AfterValidator(_check(_SECRET_RE, "lab secret (A-Z a-z 0-9 . _ + = -)"))]
Organisation = Annotated[str, AfterValidator(_check(_ORG_RE, "organisation name"))]
LabIdentity = Annotated[str, AfterValidator(_check(_IDENTITY_RE, "identity (account or account@NNNNNN)"))]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Internet(_Strict):
    """The segment in front of the gateway's outside interface, and a server beyond it."""

    server: IPv4Address = Field(default=IPv4Address("203.0.113.10"),
                                description="an Internet server: sees the gateway's global address")


class Home(_Strict):
    """A home router that masquerades its LAN behind one Internet address (NAT-T)."""

    wan: IPv4Address = IPv4Address("192.0.2.100")
    lan: IPv4Interface = IPv4Interface("192.168.77.1/24")


class Campus(_Strict):
    """Servers behind the campus router (which is the campus segment's gateway)."""

    subnet: IPv4Interface = Field(default=IPv4Interface("10.5.0.1/24"), description="router address on it")
    server: IPv4Address = IPv4Address("10.5.0.10")
    ldap: IPv4Address = IPv4Address("10.5.0.20")

    @model_validator(mode="after")
    def _inside(self) -> Campus:
        for what, a in (("server", self.server), ("ldap", self.ldap)):
            if a not in self.subnet.network or a == self.subnet.ip:
                raise ValueError(f"{what}: {a} must be a host of {self.subnet.network}")
        return self


class LabHost(_Strict):
    """A host on one lab VLAN that logs the source address of every connection."""

    vlan: int
    address: IPv4Address


class Account(_Strict):
    uid: Annotated[str, AfterValidator(_check(re.compile(r"^[a-z0-9._-]{1,64}$"), "account"))]
    password: Secret


class Directory(_Strict):
    """The directory served by slapd in the ``ldap`` namespace (its admin password is random)."""

    base_dn: str = Field(default="dc=lab,dc=test", pattern=r"^dc=[a-z0-9]+(,dc=[a-z0-9]+)*$")
    accounts: list[Account] = Field(default_factory=list)


class Client(_Strict):
    """A Linux IKEv2 client: its own namespace and charon (kernel-libipsec, EAP)."""

    name: NodeName
    identity: LabIdentity
    auth: Literal["eap-mschapv2", "eap-tls"] = "eap-mschapv2"
    password: Secret | None = Field(default=None, description="EAP-MSCHAPv2 password")
    organisation: Organisation | None = Field(
        default=None, description="eap-tls: O= of the client certificate; default: the lab's own")
    site: Literal["home", "internet"] = "home"
    address: IPv4Address
    connect: bool = Field(default=True, description="connect during `lab up` (false: negative tests)")

    @model_validator(mode="after")
    def _auth(self) -> Client:
        if self.auth == "eap-mschapv2" and self.password is None:
            raise ValueError("password: required with auth eap-mschapv2")
        if self.auth == "eap-tls" and self.password is not None:
            raise ValueError("password: not used with auth eap-tls")
        return self


class LabConfig(_Strict):
    """The lab around the gateway. Only documentation/private addresses belong here."""

    prefix: Annotated[str, AfterValidator(_check(_PREFIX_RE, "namespace prefix"))] = "ikl-"
    state_dir: Path = Path("/tmp/ikemgr-lab")
    organisation: Organisation = "Lab University"
    port: Annotated[int, Field(ge=1024, le=65535)] = 7070
    internet: Internet = Internet()
    home: Home = Home()
    campus: Campus = Campus()
    lab_hosts: list[LabHost] = Field(default_factory=list)
    directory: Directory = Directory()
    allow: list[LabIdentity] = Field(default_factory=list, description="the registration DB")
    clients: list[Client] = Field(default_factory=list)
    policy_engine: Literal["watch", "hook"] = Field(
        default="watch", description="what follows the sessions on the gateway: `ikemgr watch` "
        "(daemon on VICI), or `hook` (no watch; charon's updown runs `ikemgr hook`, so the "
        "config must set strongswan.updown)")

    @model_validator(mode="after")
    def _unique(self) -> LabConfig:
        sd = self.state_dir
        if str(sd.parent) not in ("/tmp", "/run") or not _STATE_NAME_RE.fullmatch(sd.name):
            raise ValueError("state_dir: must be /tmp/<name> or /run/<name> with a name containing "
                             "'lab' or starting with 'ikemgr' or 'ikt-' (`lab down` removes it)")
        names = [c.name for c in self.clients]
        for n in names:
            if names.count(n) > 1:
                raise ValueError(f"clients: name {n} appears twice")
        for c in self.clients:
            if c.site == "home" and (c.address not in self.home.lan.network or c.address == self.home.lan.ip):
                raise ValueError(f"clients: {c.name}: {c.address} is not a host of the home LAN "
                                 f"{self.home.lan.network}")
        return self

    def client(self, name: str) -> Client:
        for c in self.clients:
            if c.name == name:
                return c
        raise KeyError(name)


def internet_network(outside: IPv4Interface) -> IPv4Network:
    """The Internet segment is the gateway's outside segment."""
    return outside.network


class LabDocument(Config):
    """A config with its ``lab:`` section: what ``ikemgr lab`` reads."""

    lab: LabConfig = Field(description="the namespace lab around the gateway (ikemgr lab)")


def load_lab(path: Path) -> LabDocument:
    return load(path, model=LabDocument)


def load_lab_text(text: str, source: str = "<string>") -> LabDocument:
    return load_text(text, source, model=LabDocument)

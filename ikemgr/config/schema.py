"""The declarative config: one YAML file describes the whole gateway.

Addresses and prefixes are typed (``ipaddress`` objects, v4 or v6) so that IPv6 pools,
campus prefixes and VLANs can be added later by lifting the "IPv4 only for now" checks,
not by rewriting the model. Derived values (SNAT address = broadcast − 2, table id and
name of a VLAN) are filled in here, once, and never recomputed in templates.
"""

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
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ikemgr.config.clients import CertAuth
from ikemgr.core.identity import DEFAULT_ACCOUNT_PATTERN, DEFAULT_PATTERN
from ikemgr.lab.model import LabConfig

# --------------------------------------------------------------------------- scalar types


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


# --------------------------------------------------------------------------- gateway


class RoutingTable(Strict):
    id: TableId
    name: TableName

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, v: int) -> int:
        if v in RESERVED_TABLES:
            raise ValueError(f"table id {v} is reserved by the kernel (0, 253, 254, 255)")
        return v


class Uplink(Strict):
    """One interface of the gateway with its own address and next hop."""

    interface: IfName
    address: IPInterface = Field(description="the gateway's address with prefix, e.g. 192.0.2.1/24")
    gateway: IPAddress = Field(description="next hop on this segment")

    @model_validator(mode="after")
    def _gateway_on_link(self) -> Uplink:
        _v4_only(self.address, "address")
        if self.gateway not in self.address.network:
            raise ValueError(f"gateway: {self.gateway} is not inside {self.address.network}")
        if self.gateway == self.address.ip:
            raise ValueError(f"gateway: {self.gateway} equals the interface address")
        return self


class Outside(Uplink):
    """KUINS-II side (ens1): IKE is served here; the Internet is SNATed to this address."""


class CampusSide(Uplink):
    """KUINS-III client segment (ens2): the pool lives here; campus traffic leaves here."""

    table: RoutingTable = RoutingTable(id=200, name="gwk3")


class Gateway(Strict):
    fqdn: Hostname
    cert: AbsPath = Path("/etc/swanctl/x509/gateway.crt")
    key: AbsPath = Path("/etc/swanctl/private/gateway.key")
    ca: AbsPath = Path("/etc/swanctl/x509ca/ca.crt")
    outside: Outside
    campus: CampusSide


# --------------------------------------------------------------------------- pool


class Pool(Strict):
    """Virtual IPs handed out to every client: a range inside the campus client segment."""

    name: Token = "ikemgr-pool"
    first: IPAddress
    last: IPAddress
    network: IPNetwork | None = Field(
        None, description="segment the range lives in; default: the campus-side segment. "
        "Base rules and SNAT match this network (as the seed does with -s 10.1.0.0/24)")
    dns: list[IPAddress] = Field(default_factory=list, max_length=2)

    @model_validator(mode="after")
    def _order(self) -> Pool:
        _v4_only(self.first, "first")
        if self.first.version != self.last.version:
            raise ValueError("last: first and last must be of the same address family")
        if int(self.last) < int(self.first):
            raise ValueError(f"last: {self.last} is below first {self.first}")
        return self

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    @property
    def range_text(self) -> str:
        return f"{self.first}-{self.last}"


# --------------------------------------------------------------------------- lab VLANs


class Vlan(Strict):
    """A lab VLAN the gateway is attached to (Kyoto's ens3.N), named by its management number."""

    number: Annotated[int, Field(ge=1, le=999_999_999, description="VLAN management number")]
    interface: IfName
    subnet: IPNetwork
    gateway: IPAddress
    snat: IPAddress | None = Field(None, description="default: broadcast − 2")
    table: TableId | None = Field(None, description="routing table id; default: the number")
    table_name: TableName | None = Field(None, description="default: gw<number>")
    description: str = Field("", max_length=200)

    @field_validator("number", mode="before")
    @classmethod
    def _number_text(cls, v: object) -> object:
        if isinstance(v, str):
            if not (v.isascii() and v.isdigit()) or len(v) > 9 or (len(v) > 1 and v[0] == "0"):
                raise ValueError(f"{v!r} is not a management number (1-9 digits, no leading 0)")
            return int(v)
        if isinstance(v, bool):
            raise ValueError("must be a number")
        return v

    @model_validator(mode="after")
    def _derive_and_check(self) -> Vlan:
        _v4_only(self.subnet, "subnet")
        net = self.subnet
        if net.num_addresses < 8:
            raise ValueError(f"subnet: {net} is too small (needs at least a /29)")
        if self.gateway not in net:
            raise ValueError(f"gateway: {self.gateway} is not inside subnet {net}")
        if self.gateway in (net.network_address, net.broadcast_address):
            raise ValueError(f"gateway: {self.gateway} is the network or broadcast address")
        snat = self.snat if self.snat is not None else net.broadcast_address - 2
        if snat not in net:
            raise ValueError(f"snat: {snat} is not inside subnet {net}")
        if snat in (net.network_address, net.broadcast_address):
            raise ValueError(f"snat: {snat} is the network or broadcast address of {net}")
        if snat == self.gateway:
            raise ValueError(f"snat: {snat} equals the VLAN gateway")
        table = self.table if self.table is not None else self.number
        if table in RESERVED_TABLES:
            raise ValueError(f"table: id {table} is reserved by the kernel (0, 253, 254, 255)")
        name = self.table_name if self.table_name is not None else f"gw{self.number}"
        _table_name(name)
        object.__setattr__(self, "snat", snat)
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "table_name", name)
        return self

    # after validation these are never None; typed accessors for callers
    @property
    def snat_address(self) -> IPv4Address | IPv6Address:
        assert self.snat is not None
        return self.snat

    @property
    def table_id(self) -> int:
        assert self.table is not None
        return self.table

    @property
    def table_label(self) -> str:
        assert self.table_name is not None
        return self.table_name


# --------------------------------------------------------------------------- behaviour


class Routing(Strict):
    base_priority: Priority = Field(30001, description="from <pool> to <campus> lookup <campus table>")
    user_priority: Priority = Field(
        29000, description="per-user rules / per-VLAN fwmark rules (must be below base_priority)")
    charon_table: TableId = 220
    charon_priority: Priority = 30000
    install_routes: bool = Field(
        False, description="charon.install_routes; needed with kernel-libipsec (TUN device)")
    rule_protocol: Annotated[int, Field(ge=1, le=255)] = Field(
        99, description="rtnetlink protocol stamped on every rule/route ikemgr owns")
    rp_filter: Literal[0, 2] = Field(
        2, description="reverse-path filter: 2 = loose (needed: lab VLANs have no route in main), 0 = off")
    rt_tables_file: AbsPath = Field(
        Path("/etc/iproute2/rt_tables.d/ikemgr.conf"),
        description="names for ikemgr's tables, so `ip rule` shows lookup gw123456")

    @model_validator(mode="after")
    def _bands(self) -> Routing:
        if self.user_priority >= self.base_priority:
            raise ValueError("user_priority: must be below base_priority so user rules win")
        if self.charon_table in RESERVED_TABLES:
            raise ValueError(f"charon_table: {self.charon_table} is reserved by the kernel")
        return self


DEFAULT_IKE_PROPOSALS = [
    # first the groups clients send their KE for, so no INVALID_KE round trip (strongSwan/
    # Android: x25519; Apple: ecp256/modp2048; Windows: modp2048/modp1024)
    "aes256-sha256-x25519",
    "aes256gcm16-prfsha256-ecp256",
    "aes256-sha256-ecp256",
    "aes256-sha256-modp2048",
    "aes256-sha1-modp1024",
    "default",
]
DEFAULT_ESP_PROPOSALS = [
    # "-modpnone" at the end makes PFS optional: the groups are accepted when a client offers
    # them, and a client that sends no KE on rekey (Windows, older Apple defaults) is not
    # refused — requiring PFS drops such clients at the first CHILD_SA rekey (docs/operator.md)
    "aes256gcm16-ecp256-modp2048-modpnone",
    "aes256-sha256-ecp256-modp2048-modpnone",
    "aes256-sha1-modp2048-modp1024-modpnone",
    "aes128gcm16-ecp256-modpnone",
    "default",
]


class Strongswan(Strict):
    connection: Token = "ikemgr"
    vici_socket: str = Field("unix:///var/run/charon.vici", pattern=r"^(unix://[^\s\"'{}]+|tcp://[^\s\"'{}]+)$")
    swanctl_dir: AbsPath = Path("/etc/swanctl")
    kernel_ipsec: Literal["netlink", "libipsec"] = Field(
        "netlink", description="libipsec = userspace ESP over TUN (hosts without kernel ESP)")
    proposals: list[Proposal] = Field(default_factory=lambda: list(DEFAULT_IKE_PROPOSALS), min_length=1)
    esp_proposals: list[Proposal] = Field(default_factory=lambda: list(DEFAULT_ESP_PROPOSALS), min_length=1)
    dpd_delay: Annotated[int, Field(ge=0, le=3600)] = 30
    rekey_time: Annotated[int, Field(ge=0)] = Field(14400, description="IKE rekey seconds; 0 = off")
    mobike: bool = True
    fragmentation: bool = True
    encap: bool = Field(False, description="force UDP encapsulation (required by kernel-libipsec)")
    unique: Literal["never", "no", "keep", "replace"] = "never"
    farp: bool = Field(True, description="answer ARP for VIPs on the campus segment (farp plugin)")
    threads: Annotated[int, Field(ge=16, le=256)] = 16
    updown: AbsPath | None = Field(None, description="updown script (hook mode); None = daemon mode")
    local_ts: list[IPNetwork] = Field(
        default_factory=lambda: [ipaddress.ip_network("0.0.0.0/0")], min_length=1,
        description="traffic selectors offered to clients; 0.0.0.0/0 = full tunnel as in the seed")


class Radius(Strict):
    address: IPAddress = ipaddress.ip_address("127.0.0.1")
    auth_port: Annotated[int, Field(ge=1, le=65535)] = 1812
    acct_port: Annotated[int, Field(ge=1, le=65535)] = 1813
    secret_file: AbsPath = Path("/etc/ikemgr/radius.secret")
    accounting: bool = False
    nas_identifier: Token = "ikemgr"
    client_address: IPAddress = Field(
        ipaddress.ip_address("127.0.0.1"),
        description="address the gateway (charon eap-radius) sends from, as seen by FreeRADIUS")
    require_message_authenticator: bool = Field(
        True, description="charon's eap-radius always sends Message-Authenticator; demand it")
    raddb_dir: AbsPath = Field(Path("/etc/freeradius/3.0"),
                               description="where the rendered FreeRADIUS files go")
    timeout: Annotated[float, Field(gt=0, le=60)] = Field(
        3.0, description="seconds `ikemgr radius check` waits for each try")
    retries: Annotated[int, Field(ge=1, le=10)] = 2


class Firewall(Strict):
    backend: Literal["nftables", "iptables"] = "nftables"
    table: Token = Field("ikemgr", description="nftables table / iptables chain prefix owned by ikemgr")
    mss_clamp: MssClamp = Field(
        1360, description="TCP MSS for forwarded SYNs from/to the pool; 'pmtu' = clamp to path MTU")


class Policy(Strict):
    backend: Literal["marks", "rules"] = "marks"
    identity_pattern: str = DEFAULT_PATTERN
    account_pattern: str = DEFAULT_ACCOUNT_PATTERN
    reconcile_interval: Annotated[int, Field(ge=1, le=86400)] = 60
    state_dir: AbsPath = Path("/var/lib/ikemgr")
    lock_file: AbsPath = Path("/run/ikemgr.lock")

    @field_validator("identity_pattern", "account_pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
        if not (v.startswith("^") and v.endswith("$")):
            raise ValueError("must be anchored with ^ and $")
        return v


class Database(Strict):
    url: str = Field("sqlite:////var/lib/ikemgr/ikemgr.db",
                     description="SQLAlchemy URL; postgresql+psycopg://… in production")
    password_file: AbsPath | None = None


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


class Ldap(Strict):
    """The campus directory (FreeRADIUS password checks, optional account checks in sync).

    Passwords are checked by binding as the user (works with any hash the directory keeps).
    EAP-MSCHAPv2 cannot work that way: it needs the NT hash (``nt_hash_attribute``) or the
    cleartext (``cleartext_attribute``) readable by ``bind_dn`` (docs/authentication.md).
    """

    uri: str = Field("ldap://127.0.0.1", pattern=r"^ldaps?://[^\s\"'{}]+$")
    base_dn: Dn = "dc=example,dc=ac,dc=jp"
    bind_dn: Dn | None = None
    bind_password_file: AbsPath | None = None
    user_filter: LdapFilter = "(uid=%{%{Stripped-User-Name}:-%{User-Name}})"
    start_tls: bool = False
    disabled_filter: LdapFilter | None = Field(
        "(shadowExpire=1)", description="accounts matching this are refused (nis schema, the "
        "`usermod -e 1` lock); None = no check")
    nt_hash_attribute: LdapAttr | None = Field(
        "sambaNTPassword", description="hex NT hash for EAP-MSCHAPv2; None = not stored")
    cleartext_attribute: LdapAttr | None = Field(
        None, description="attribute holding the cleartext password (discouraged)")
    tls_ca_file: AbsPath | None = None
    tls_require_cert: Literal["never", "allow", "demand", "hard"] = "demand"

    @model_validator(mode="after")
    def _bind_pair(self) -> Ldap:
        if (self.bind_dn is None) != (self.bind_password_file is None):
            raise ValueError("bind_password_file: bind_dn and bind_password_file go together")
        if self.start_tls and self.uri.startswith("ldaps://"):
            raise ValueError("start_tls: an ldaps:// uri is TLS already; use ldap:// with start_tls")
        return self


# --------------------------------------------------------------------------- EAP

EapMethod = Literal["mschapv2", "gtc", "ttls", "tls", "md5"]
DEFAULT_EAP_METHODS: tuple[EapMethod, ...] = ("mschapv2", "gtc", "ttls")

#: RDN types an allowed-subject rule may name (never CN: that part is the holder's own).
SUBJECT_RDN_TYPES = ("C", "ST", "L", "O", "OU", "DC")
_RDN_VALUE_RE = re.compile(r"^[A-Za-z0-9 .'&()_-]{1,64}$")


def _subject(v: str) -> str:
    """``O=Example University`` or ``C=JP, O=Example University``: typed RDNs, not a regex."""
    out = []
    for p in (p.strip() for p in v.split(",")):
        typ, eq, value = p.partition("=")
        typ, value = typ.strip(), value.strip()
        if not eq or typ not in SUBJECT_RDN_TYPES:
            raise ValueError(f"{p!r}: each part must be TYPE=value with TYPE one of "
                             f"{', '.join(SUBJECT_RDN_TYPES)}")
        if not _RDN_VALUE_RE.fullmatch(value):
            raise ValueError(f"{value!r}: RDN values may use letters, digits, space and . ' & ( ) _ -")
        out.append(f"{typ}={value}")
    return ", ".join(out)


SubjectRule = Annotated[str, AfterValidator(_subject)]


class Eap(Strict):
    """EAP methods FreeRADIUS offers and the EAP-TLS certificate rules."""

    methods: list[EapMethod] = Field(
        default_factory=lambda: list(DEFAULT_EAP_METHODS), min_length=1,
        description="offered methods; native Windows/macOS/iOS/Android clients use mschapv2")
    default_method: EapMethod = "mschapv2"
    server_cert: AbsPath = Path("/etc/freeradius/3.0/certs/ikemgr-server.pem")
    server_key: AbsPath = Path("/etc/freeradius/3.0/certs/ikemgr-server.key")
    ca_file: AbsPath = Field(Path("/etc/freeradius/3.0/certs/ikemgr-ca.pem"),
                             description="CA(s) that issue client certificates (EAP-TLS)")
    tls_allowed_subject: SubjectRule | None = Field(
        None, description="RDNs a client certificate subject must carry, e.g. 'O=Example University'")
    tls_cn_is_account: bool = Field(
        True, description="the certificate CN must equal the account part of the EAP identity")
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    tls_max_version: Literal["1.2", "1.3"] = "1.2"

    @model_validator(mode="after")
    def _methods(self) -> Eap:
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("methods: a method appears twice")
        if self.default_method not in self.methods:
            raise ValueError(f"default_method: {self.default_method} is not in methods")
        if "tls" in self.methods and self.tls_allowed_subject is None:
            raise ValueError("tls_allowed_subject: required when 'tls' is offered (otherwise every "
                             "certificate of the CA, of any organisation, would be accepted)")
        if float(self.tls_min_version) > float(self.tls_max_version):
            raise ValueError("tls_min_version: above tls_max_version")
        if "ttls" in self.methods and not {"gtc", "mschapv2", "md5"} & set(self.methods):
            raise ValueError("methods: ttls needs an inner EAP method to propose (gtc, mschapv2 or md5)")
        return self

    @property
    def subject_rdns(self) -> tuple[tuple[str, str], ...]:
        """The allowed-subject rule as (type, value) pairs, in order."""
        if self.tls_allowed_subject is None:
            return ()
        pairs = (p.partition("=") for p in self.tls_allowed_subject.split(", "))
        return tuple((t, v) for t, _, v in pairs)


# --------------------------------------------------------------------------- allow-list sync

_SQL_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


class SqlSource(Strict):
    """A registration database: a query or a view returning columns account, vlan[, valid_until]."""

    kind: Literal["sql"]
    name: Token
    url: str = Field(description="SQLAlchemy URL of the registration database")
    password_file: AbsPath | None = None
    query: str | None = Field(None, description="SELECT returning account, vlan[, valid_from, valid_until, "
                              "note]; written by the operator, never built from data")
    view: str | None = Field(None, description="a view/table name (schema.name) instead of a query")

    @model_validator(mode="after")
    def _one_of(self) -> SqlSource:
        if (self.query is None) == (self.view is None):
            raise ValueError("give exactly one of query or view")
        if self.view is not None and not _SQL_IDENT_RE.fullmatch(self.view):
            raise ValueError(f"view: {self.view!r} is not a plain [schema.]name")
        return self


class FileSource(Strict):
    """A list file of account@NNNNNN lines (the seed's $USERLIST)."""

    kind: Literal["file"]
    name: Token
    path: AbsPath
    end_marker: str | None = Field(
        None, max_length=64, description="if set, the last non-blank line must equal it (truncation guard)")


def _group_vlan(v: object) -> object:
    """A VLAN number as a mapping key (YAML gives int, JSON gives text): digits, no leading 0."""
    if isinstance(v, bool):
        raise ValueError("a VLAN number must be a number")
    if isinstance(v, str):
        if not (v.isascii() and v.isdigit()) or len(v) > 9 or (len(v) > 1 and v[0] == "0"):
            raise ValueError(f"{v!r} is not a VLAN management number (1-9 digits, no leading 0)")
        return int(v)
    return v


GroupVlan = Annotated[int, BeforeValidator(_group_vlan), Field(ge=1, le=999_999_999)]


class LdapGroupSource(Strict):
    """One directory group per lab VLAN: its members are the accounts allowed on that VLAN.

    Connects with the ``ldap:`` section (uri, StartTLS/ldaps, CA, require_cert, bind DN).
    """

    kind: Literal["ldap_group"]
    name: Token
    vlans: dict[GroupVlan, Dn] = Field(
        min_length=1, description="VLAN number → DN of the group whose members may use it")
    member_attribute: Literal["member", "uniqueMember", "memberUid"] = Field(
        "member", description="member/uniqueMember hold DNs (resolved to account_attribute); "
        "memberUid holds account names")
    account_attribute: LdapAttr = Field(
        "uid", description="attribute of a member entry that holds the account name")
    timeout: Annotated[float, Field(gt=0, le=3600)] | None = Field(
        None, description="seconds for connect and each answer; default: sync.timeout")


SyncSource = Annotated[SqlSource | FileSource | LdapGroupSource, Field(discriminator="kind")]


class AccountCheck(Strict):
    """Suspend (never delete) the grants of accounts missing or disabled in the directory (ldap.*)."""

    enabled: bool = False
    attribute: LdapAttr = Field("uid", description="the attribute that holds the account name")
    base_dn: Dn | None = Field(None, description="default: ldap.base_dn")
    disabled_filter: LdapFilter | None = Field(
        None, description="filter matching disabled accounts; default: ldap.disabled_filter "
        "(the same accounts RADIUS refuses)")


class Sync(Strict):
    """Where the allow-list comes from and the valves that protect it."""

    sources: list[SyncSource] = Field(default_factory=list)
    max_removal_share: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.2, description="refuse a sync removing more than this share of grants unless --force")
    terminate_revoked: bool = Field(False, description="terminate the SA of a user whose grant is revoked")
    lock_file: AbsPath = Path("/run/ikemgr-sync.lock")
    lock_timeout: Annotated[float, Field(ge=0, le=3600)] = Field(
        30, description="seconds to wait for a concurrent sync before giving up")
    timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        30, description="seconds a source may take to connect and answer")
    interval: Annotated[int, Field(ge=60, le=86400)] = Field(
        900, description="seconds between periodic syncs (systemd timer)")
    account_check: AccountCheck = AccountCheck()

    @model_validator(mode="after")
    def _unique_names(self) -> Sync:
        seen: set[str] = set()
        for i, src in enumerate(self.sources):
            if src.name in seen or src.name == "manual":
                raise ValueError(f"sources[{i}].name: {src.name!r} is already used (or reserved)")
            seen.add(src.name)
        return self


# --------------------------------------------------------------------------- top level


class Config(Strict):
    gateway: Gateway
    pool: Pool
    campus_prefixes: list[IPNetwork] = Field(min_length=1, description="the paper's 全学内 list")
    vlans: list[Vlan] = Field(default_factory=list)
    routing: Routing = Routing()
    strongswan: Strongswan = Strongswan()
    radius: Radius = Radius()
    firewall: Firewall = Firewall()
    policy: Policy = Policy()
    database: Database = Database()
    ldap: Ldap = Ldap()
    eap: Eap = Eap()
    sync: Sync = Sync()
    lab: LabConfig | None = Field(None, description="the namespace lab around the gateway (ikemgr lab)")
    strongswan_cert_auth: CertAuth = CertAuth()

    @model_validator(mode="after")
    def _password_store(self) -> Config:
        """EAP-MSCHAPv2/MD5 need a readable NT hash or cleartext; an LDAP bind cannot do them."""
        has_nt = self.ldap.nt_hash_attribute is not None or self.ldap.cleartext_attribute is not None
        if "mschapv2" in self.eap.methods and not has_nt:
            raise ValueError("eap.methods: mschapv2 needs ldap.nt_hash_attribute or "
                             "ldap.cleartext_attribute")
        if "md5" in self.eap.methods and self.ldap.cleartext_attribute is None:
            raise ValueError("eap.methods: md5 needs ldap.cleartext_attribute")
        return self

    @model_validator(mode="after")
    def _cross(self) -> Config:
        campus = self.gateway.campus
        seg = self.pool.network if self.pool.network is not None else campus.address.network
        for name, end in (("first", self.pool.first), ("last", self.pool.last)):
            if end not in seg:
                raise ValueError(f"pool.{name}: {end} is outside the client segment {seg}")
        for reserved in (campus.address.ip, campus.gateway):
            if int(self.pool.first) <= int(reserved) <= int(self.pool.last):
                raise ValueError(f"pool: range {self.pool.range_text} contains {reserved}")
        object.__setattr__(self.pool, "network", seg)
        for p in self.campus_prefixes:
            _v4_only(p, "campus_prefixes")
        seen_tables: dict[int, str] = {
            campus.table.id: "gateway.campus.table",
            self.routing.charon_table: "routing.charon_table",
        }
        if campus.table.id == self.routing.charon_table:
            raise ValueError("gateway.campus.table.id: equals routing.charon_table")
        seen_names = {campus.table.name: "gateway.campus.table"}
        seen_numbers: set[int] = set()
        seen_ifs: dict[str, str] = {
            self.gateway.outside.interface: "gateway.outside",
            campus.interface: "gateway.campus",
        }
        for i, v in enumerate(self.vlans):
            where = f"vlans[{i}]"
            if v.number in seen_numbers:
                raise ValueError(f"{where}.number: {v.number} appears twice")
            seen_numbers.add(v.number)
            if v.table_id in seen_tables:
                raise ValueError(f"{where}.table: id {v.table_id} already used by "
                                 f"{seen_tables[v.table_id]}")
            seen_tables[v.table_id] = where
            if v.table_label in seen_names:
                raise ValueError(f"{where}.table_name: {v.table_label} already used by "
                                 f"{seen_names[v.table_label]}")
            seen_names[v.table_label] = where
            if v.interface in seen_ifs:
                raise ValueError(f"{where}.interface: {v.interface} already used by "
                                 f"{seen_ifs[v.interface]}")
            seen_ifs[v.interface] = where
        if self.strongswan.kernel_ipsec == "libipsec" and not self.strongswan.encap:
            raise ValueError("strongswan.encap: must be true with kernel_ipsec: libipsec "
                             "(kernel-libipsec only does UDP-encapsulated ESP)")
        return self

    # ------------------------------------------------------------------ helpers
    @property
    def pool_network(self) -> IPv4Network | IPv6Network:
        assert self.pool.network is not None
        return self.pool.network

    def vlan(self, number: int) -> Vlan | None:
        for v in self.vlans:
            if v.number == number:
                return v
        return None

"""The services around the gateway: strongSwan, RADIUS, EAP, LDAP, firewall, policy engine, database."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
    model_validator,
)

from ikemgr.config.dburl import DbUrl
from ikemgr.config.problems import Problems
from ikemgr.config.types import (
    AbsPath,
    Dn,
    IPAddress,
    IPNetwork,
    LdapAttr,
    LdapFilter,
    MssClamp,
    Proposal,
    Strict,
    Token,
)

#: The identity grammar's defaults (``policy.identity_pattern`` / ``account_pattern``):
#: ``account@NNNNNN`` and a bare account. core.identity compiles them.
DEFAULT_PATTERN = r"^[a-z0-9._-]{1,64}@[0-9]{1,9}$"
DEFAULT_ACCOUNT_PATTERN = r"^[a-z0-9._-]{1,64}$"

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


Port = Annotated[int, Field(ge=1, le=65535)]


class RadiusServer(Strict):
    """A RADIUS server the gateway's charon asks (eap-radius), run by someone else."""

    address: IPAddress
    auth_port: Port = 1812
    acct_port: Port = 1813
    secret_file: AbsPath = Field(description="shared secret of this server (one line)")


class RadiusTarget(Strict):
    """One server charon's eap-radius talks to: the local FreeRADIUS or a remote one."""

    name: Literal["primary", "secondary"]
    address: IPAddress
    auth_port: Port
    acct_port: Port
    secret_file: AbsPath
    secret_field: str = Field(description="config path of secret_file, for error messages")


class Radius(Strict):
    """RADIUS: by default a FreeRADIUS on the gateway itself (``address``), rendered by ikemgr.

    With ``servers`` (one, or a primary and a secondary) the RADIUS service is remote: charon's
    eap-radius asks those servers and no FreeRADIUS is rendered; ``address``, ``client_address``,
    ``raddb_dir`` and ``require_message_authenticator`` describe the local FreeRADIUS only.
    """

    address: IPAddress = Field(ipaddress.ip_address("127.0.0.1"),
                               description="where the local FreeRADIUS listens")
    auth_port: Port = 1812
    acct_port: Port = 1813
    secret_file: AbsPath = Path("/etc/ikemgr/radius.secret")
    servers: list[RadiusServer] = Field(
        default_factory=list, max_length=2,
        description="remote RADIUS servers, primary first; none = the local FreeRADIUS")
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

    @model_validator(mode="after")
    def _local_or_remote(self) -> Radius:
        if not self.servers:
            return self
        problems = Problems("Radius")
        # a value other than the default says "local FreeRADIUS" beside "remote": refuse it
        # (defaults are let through, so a dumped config validates again)
        for key in LOCAL_ONLY:
            if key in self.model_fields_set and getattr(self, key) != type(self).model_fields[key].default:
                problems.add((key,), "describes the local FreeRADIUS; with radius.servers (remote RADIUS) "
                             "no FreeRADIUS is rendered: remove it")
        seen: dict[tuple[str, int], int] = {}
        for i, srv in enumerate(self.servers):
            where = (str(srv.address), srv.auth_port)
            if where in seen:
                problems.add(("servers", i, "address"), f"{srv.address}:{srv.auth_port} is also "
                             f"servers[{seen[where]}]")
            seen.setdefault(where, i)
        problems.raise_any()
        return self

    @property
    def local(self) -> bool:
        """True when ikemgr renders and runs the RADIUS server (FreeRADIUS) itself."""
        return not self.servers

    @property
    def targets(self) -> tuple[RadiusTarget, ...]:
        """The servers charon's eap-radius asks, primary first (the local FreeRADIUS, or ``servers``)."""
        if self.local:
            return (RadiusTarget(name="primary", address=self.address, auth_port=self.auth_port,
                                 acct_port=self.acct_port, secret_file=self.secret_file,
                                 secret_field="radius.secret_file"),)
        names: tuple[Literal["primary", "secondary"], ...] = ("primary", "secondary")
        return tuple(RadiusTarget(name=name, address=s.address, auth_port=s.auth_port,
                                  acct_port=s.acct_port, secret_file=s.secret_file,
                                  secret_field=f"radius.servers[{i}].secret_file")
                     for i, (name, s) in enumerate(zip(names, self.servers, strict=False)))


#: keys of ``radius:`` that only mean something for the local FreeRADIUS
LOCAL_ONLY = ("address", "auth_port", "acct_port", "secret_file", "client_address",
              "require_message_authenticator", "raddb_dir")


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
    url: DbUrl = Field("sqlite:////var/lib/ikemgr/ikemgr.db",
                     description="SQLAlchemy URL; postgresql+psycopg://… in production")
    password_file: AbsPath | None = None


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
    crl_file: AbsPath | None = Field(
        None, description="CRL of the client CA (PEM or DER; `ikemgr pki crl` writes <pki.dir>/crl.pem): "
                          "FreeRADIUS refuses revoked client certificates, and one without a CRL")
    crl_reload_interval: Annotated[int, Field(ge=300, le=86400)] = Field(
        300, description="seconds after which FreeRADIUS reads a new CRL, no restart (its floor: 300)")

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
        if self.crl_file is not None and "tls" not in self.methods:
            raise ValueError("crl_file: no certificate method: 'tls' is not offered")
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

"""The interop linter's findings, computed from the Config and data passed in (pure).

Every finding says who breaks, at which exchange, and how to fix it, because the two
field failures of the deployment we model (seed §5) were silent until users complained:
campus sites unreachable because of the path MTU, and macOS/iOS clients dropped every
8 minutes because the gateway's ESP proposals required PFS that macOS never sends when it
rekeys the CHILD_SA. Nothing here reads files, sockets or the clock: ``checks/host.py``
and the command gather the facts (certificate bytes, sysctls, kernel rules, a RADIUS
answer) and hand them in, so each check has a unit test with a config or a fake host
state that triggers it and one that does not.

``config_findings(cfg)`` is the config-only part (proposals, fragmentation/MOBIKE, MSS,
send_cert, the certificate connection); ``ikemgr render`` runs it at its end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from ikemgr.checks import proposals as pr
from ikemgr.checks.client_proposals import CLIENTS, ClientDefaults
from ikemgr.config.schema import Config

# The one function that says which proposals the gateway renders: the swanctl template's
# own context (issue 10 moves it to ikemgr/render/strongswan.py).
from ikemgr.render.strongswan import swanctl_context

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}

IKE_SA_INIT = "IKE_SA_INIT"
IKE_AUTH = "IKE_AUTH"
FIRST_CHILD = "IKE_AUTH (first CHILD_SA)"
CHILD_REKEY = "CREATE_CHILD_SA (CHILD_SA rekey)"
IKE_REKEY = "CREATE_CHILD_SA (IKE_SA rekey)"
DATA = "ESP data path"
ALL_CLIENTS = ("all clients",)


@dataclass(frozen=True)
class Finding:
    """One problem: ``id`` is stable (docs/check.md), ``clients`` and ``exchange`` say who breaks."""

    id: str
    severity: Severity
    message: str
    fix: str
    clients: tuple[str, ...] = ALL_CLIENTS
    exchange: str | None = None
    subject: str = ""  # what the finding is about (a client key, an interface, a table id)

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["clients"] = list(self.clients)
        return d


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.id, f.subject))


# =========================================================================== proposals


def gateway_proposals(cfg: Config) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(IKE, ESP) proposal lists exactly as the swanctl template prints them."""
    ctx = swanctl_context(cfg, header="")
    return tuple(str(ctx["proposals"]).split(",")), tuple(str(ctx["esp_proposals"]).split(","))


@dataclass(frozen=True)
class ClientVerdict:
    """How one client's default proposals fare against the gateway, exchange by exchange."""

    client: ClientDefaults
    ike: pr.Selected | None
    first_child: pr.Selected | None
    child_rekey: pr.Selected | None
    kex_round_trip: bool  # the client's KE group is not the one charon picks: INVALID_KE first

    @property
    def failed_at(self) -> str | None:
        if self.ike is None:
            return IKE_SA_INIT
        if self.first_child is None:
            return FIRST_CHILD
        if self.child_rekey is None:
            return CHILD_REKEY
        return None


def rekey_proposals(client: ClientDefaults, ike_group: str | None) -> tuple[pr.Proposal, ...]:
    """The ESP proposals ``client`` sends in the CREATE_CHILD_SA that rekeys its CHILD_SA."""
    base = pr.parse_list(client.esp, ike=False)
    plain = tuple(pr.with_group(p, None, keep_none=False) for p in base)
    if client.rekey_pfs == "none" or ike_group is None:
        return plain
    return tuple(pr.with_group(p, ike_group, keep_none=False) for p in base) + plain


def verdict(cfg: Config, client: ClientDefaults) -> ClientVerdict:
    ike_list, esp_list = gateway_proposals(cfg)
    ours_ike = pr.parse_list(ike_list, ike=True)
    ours_esp = pr.parse_list(esp_list, ike=False)
    theirs_ike = pr.parse_list(client.ike, ike=True)
    ike = pr.select(ours_ike, theirs_ike, kind="ike")
    kex_rt = False
    if ike is not None:
        kex_rt = theirs_ike[0].groups[:1] != (ike.dh,)
    first = pr.select(ours_esp, pr.parse_list(client.esp, ike=False), kind="esp-auth") if ike else None
    rekey = None
    if first is not None:
        rekey = pr.select(ours_esp, rekey_proposals(client, ike.dh if ike else None), kind="esp-rekey")
    return ClientVerdict(client, ike, first, rekey, kex_rt)


def _proposal_problem(cfg: Config) -> Finding | None:
    ike_list, esp_list = gateway_proposals(cfg)
    try:
        pr.parse_list(ike_list, ike=True)
        pr.parse_list(esp_list, ike=False)
    except pr.ProposalError as e:
        return Finding("proposals.unknown-keyword", "warning", f"cannot model a proposal: {e}",
                       "use the keywords of docs.strongswan.org/docs/5.9/config/proposals.html; "
                       "the proposal checks below are skipped", subject="strongswan.proposals")
    return None


_WEAK = ("modp1024", "modp1536", "3des", "des", "sha1", "md5", "null")


def proposal_findings(cfg: Config, clients: Iterable[ClientDefaults] = CLIENTS) -> list[Finding]:
    """Which client fails on which exchange, and the PFS trap at the CHILD_SA rekey."""
    problem = _proposal_problem(cfg)
    if problem is not None:
        return [problem]
    out: list[Finding] = []
    for c in clients:
        v = verdict(cfg, c)
        who = (c.name,)
        if v.ike is None:
            out.append(Finding(
                "proposals.ike-no-match", "error",
                f"{c.name}: no IKE proposal of the gateway matches its defaults "
                f"({', '.join(c.ike)}); charon answers NO_PROPOSAL_CHOSEN",
                f"add a proposal the client offers to strongswan.proposals, e.g. {c.ike[0]} "
                "(or configure the client's proposals through its profile)",
                who, IKE_SA_INIT, c.key))
            continue
        if v.first_child is None:
            out.append(Finding(
                "proposals.esp-no-match", "error",
                f"{c.name}: IKE_SA_INIT succeeds ({v.ike.describe()}) but no ESP proposal matches "
                f"({', '.join(c.esp)}); the CHILD_SA in IKE_AUTH fails with NO_PROPOSAL_CHOSEN",
                f"add an ESP proposal the client offers to strongswan.esp_proposals, e.g. {c.esp[0]}",
                who, FIRST_CHILD, c.key))
            continue
        if v.child_rekey is None:
            sends = ("no KE payload (no PFS)" if c.rekey_pfs == "none"
                     else f"KE {v.ike.dh} and a proposal without")
            out.append(Finding(
                "proposals.pfs-required", "error",
                f"{c.name}: connects, but its CHILD_SA rekey sends {sends} while every matching "
                "ESP proposal of the gateway requires a DH group; the rekey fails with "
                "NO_PROPOSAL_CHOSEN and the client drops when the CHILD_SA expires (seed §5: "
                "macOS every 8 minutes)",
                "make PFS optional: end each ESP proposal that lists DH groups with '-modpnone' "
                "(e.g. aes256-sha256-ecp256-modp2048-modpnone), or add the same proposal without groups",
                who, CHILD_REKEY, c.key))
            continue
        if v.kex_round_trip:
            out.append(Finding(
                "proposals.invalid-ke", "info",
                f"{c.name}: sends its KE for {pr.parse_list(c.ike, ike=True)[0].groups[0]} but charon "
                f"picks {v.ike.dh}: one extra INVALID_KE_PAYLOAD round trip per connection",
                "put a proposal with the client's first group earlier in strongswan.proposals",
                who, IKE_SA_INIT, c.key))
        weak = [w for w in _WEAK if w in (v.ike.encr, v.ike.integ, v.ike.dh, v.first_child.encr,
                                          v.first_child.integ)]
        if weak:
            out.append(Finding(
                "proposals.weak-negotiated", "warning",
                f"{c.name}: negotiates {v.ike.describe()} / ESP {v.first_child.describe()} "
                f"({', '.join(weak)} is weak)",
                "configure the client's proposals (Windows: Set-VpnConnectionIPsecConfiguration "
                "-DHGroup Group14 -EncryptionMethod AES256; Apple: a profile with IKESecurityAssociation"
                "Parameters), then drop the weak proposal from the gateway",
                who, IKE_SA_INIT, c.key))
    return out


# =========================================================================== IKE features


def feature_findings(cfg: Config) -> list[Finding]:
    ss = cfg.strongswan
    out: list[Finding] = []
    if not ss.fragmentation:
        out.append(Finding(
            "ike.fragmentation-off", "warning",
            "IKE fragmentation is off: IKE_AUTH with certificates exceeds 1500 bytes and is "
            "IP-fragmented; NATs and firewalls that drop fragments stall the connection",
            "set strongswan.fragmentation: true (RFC 7383; Windows, Apple and Android support it)",
            ALL_CLIENTS, IKE_AUTH, "strongswan.fragmentation"))
    if not ss.mobike:
        out.append(Finding(
            "ike.mobike-off", "warning",
            "MOBIKE is off: iOS/macOS/Windows clients that switch between Wi-Fi and cellular "
            "must set up a new IKE SA (and get a new VIP, losing their per-user policy briefly)",
            "set strongswan.mobike: true",
            ("iOS", "macOS", "Windows"),
            IKE_AUTH, "strongswan.mobike"))
    if ss.rekey_time and ss.rekey_time < 600:
        out.append(Finding(
            "ike.rekey-short", "info",
            f"IKE rekey_time {ss.rekey_time}s is short: every rekey is one more exchange that "
            "must match the client's proposals",
            "use at least 3600s in production (strongSwan default 14400s)",
            ALL_CLIENTS, IKE_REKEY, "strongswan.rekey_time"))
    return out


# =========================================================================== MTU / MSS

#: ESP per-packet cost: IV bytes, ICV bytes, block size the payload is padded to
_CIPHER = {"aes128": (16, 16), "aes192": (16, 16), "aes256": (16, 16), "3des": (8, 8), "des": (8, 8),
           "null": (0, 4), "chacha20poly1305": (8, 4)}
_ICV = {"md5": 12, "sha1": 12, "sha256": 16, "sha384": 24, "sha512": 32, "aesxcbc": 12, "aescmac": 12}
UDP_ENCAP = 8  # RFC 3948 UDP header in front of ESP (the non-ESP marker is only on IKE)
ESP_HEADER = 8  # SPI + sequence number
ESP_TRAILER = 2  # pad length + next header
IPV4 = 20
TCP = 20


def esp_overhead(encr: str, integ: str | None) -> tuple[int, int, int]:
    """(IV, ICV, block) of one ESP transform."""
    if "gcm" in encr or "ccm" in encr:
        icv = int(m.group(1)) if (m := re.search(r"(?:gcm|ccm)(8|12|16)$", encr)) else 16
        return 8, icv, 4
    iv, block = _CIPHER.get(encr, (16, 16))
    return iv, _ICV.get(integ or "", 16), block


def max_mss(path_mtu: int, encr: str, integ: str | None, encap: bool = True) -> int:
    """The largest TCP MSS whose segment still fits ``path_mtu`` after ESP (in UDP)."""
    iv, icv, block = esp_overhead(encr, integ)
    room = path_mtu - IPV4 - (UDP_ENCAP if encap else 0) - ESP_HEADER - iv - icv
    inner = (room // block) * block - ESP_TRAILER
    return inner - IPV4 - TCP


def mss_findings(cfg: Config, path_mtu: int = 1500) -> list[Finding]:
    """MSS clamp against the path MTU for every ESP transform the gateway can negotiate."""
    _, esp_list = gateway_proposals(cfg)
    try:
        esp = pr.parse_list(esp_list, ike=False)
    except pr.ProposalError:
        return []
    worst: tuple[int, str] | None = None
    for p in esp:
        for e in p.encr:
            for i in (p.integ or (None,)):
                m = max_mss(path_mtu, e, i)
                if worst is None or m < worst[0]:
                    worst = (m, f"{e}" + (f"/{i}" if i else ""))
    assert worst is not None
    limit, transform = worst
    clamp = cfg.firewall.mss_clamp
    if clamp == "pmtu":
        if cfg.strongswan.kernel_ipsec == "netlink":
            return [Finding(
                "mtu.mss-pmtu", "warning",
                "firewall.mss_clamp is 'pmtu': with kernel ESP the route towards a VIP is the "
                "campus interface (MTU 1500), so SYNs are clamped to 1460 and full-size segments "
                f"do not fit ESP-in-UDP ({limit} is the largest MSS that fits a {path_mtu}-byte "
                f"path with {transform}); they depend on ICMP frag-needed, which the seed's "
                "campus sites did not get through (§5)",
                f"set firewall.mss_clamp: {limit} (or lower for PPPoE/mobile paths)",
                ALL_CLIENTS, DATA, "firewall.mss_clamp")]
        return []
    if int(clamp) > limit:
        return [Finding(
            "mtu.mss-too-large", "error",
            f"firewall.mss_clamp {clamp} is above {limit}, the largest MSS whose segment fits a "
            f"{path_mtu}-byte path after ESP-in-UDP with {transform}: large TCP segments to "
            "clients are dropped or need PMTU discovery (seed §5: some campus sites unreachable)",
            f"set firewall.mss_clamp to {limit} or less",
            ALL_CLIENTS, DATA, "firewall.mss_clamp")]
    return []


# =========================================================================== send_cert


def _blocks(text: str) -> dict[str, object]:
    """A swanctl.conf text as nested dicts (sections → dict, ``key = value`` → str)."""
    root: dict[str, object] = {}
    stack = [root]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.endswith("{"):
            sect: dict[str, object] = {}
            stack[-1][line[:-1].strip()] = sect
            stack.append(sect)
        elif line == "}":
            stack.pop()
        elif "=" in line:
            k, _, v = line.partition("=")
            stack[-1][k.strip()] = v.strip()
    return root


def send_cert_findings(swanctl_text: str, clients: Iterable[ClientDefaults] = CLIENTS) -> list[Finding]:
    """Clients that send no CERTREQ never get the gateway's certificate unless it is sent always."""
    conns = _blocks(swanctl_text).get("connections", {})
    assert isinstance(conns, dict)
    no_req = tuple(c.name for c in clients if not c.sends_certreq)
    out: list[Finding] = []
    for name, body in conns.items():
        if not isinstance(body, dict):
            continue
        value = body.get("send_cert", "ifasked")
        if value != "always" and no_req:
            out.append(Finding(
                "cert.send-cert", "error",
                f"connection {name}: send_cert = {value}; these clients send no CERTREQ, so charon "
                "omits its certificate and they fail to authenticate the gateway",
                "render the connection with send_cert = always (templates/swanctl)",
                no_req, IKE_AUTH, name))
    return out


def rendered_swanctl(cfg: Config) -> str:
    """The swanctl file as ``ikemgr render`` writes it (without secrets or I/O)."""
    from ikemgr.render.cert_auth import cert_auth_context
    from ikemgr.render.templates import render_template

    return render_template("swanctl/conf.d/ikemgr.conf.j2", **swanctl_context(cfg, ""),
                           **cert_auth_context(cfg))


# =========================================================================== certificate connection


def cert_auth_findings(cfg: Config) -> list[Finding]:
    ca = cfg.strongswan_cert_auth
    if not ca.enabled:
        return []
    out: list[Finding] = []
    if ca.connection == cfg.strongswan.connection:
        out.append(Finding(
            "cert-auth.connection-name", "error",
            f"strongswan_cert_auth.connection {ca.connection!r} is the EAP connection's name",
            "choose another name", ALL_CLIENTS, IKE_AUTH, "strongswan_cert_auth.connection"))
    # measured (tests/integration/interop): with both connections loaded, charon answers
    # IKE_SA_INIT with the first matching IKE config, the EAP one (send_certreq = no)
    out.append(Finding(
        "cert-auth.no-certreq", "info",
        "the gateway's IKE_SA_INIT response carries no CERTREQ (charon answers with the EAP "
        "connection's IKE settings), so certificate clients must send their certificate unasked",
        "configure certificate clients to always send their certificate (strongSwan: send_cert = "
        "always; libreswan/Apple/Windows do by default)", ("certificate clients",), IKE_AUTH,
        "strongswan_cert_auth"))
    if ca.subject and "O=" not in ca.subject:
        out.append(Finding(
            "cert-auth.subject-without-o", "warning",
            f"strongswan_cert_auth.subject {ca.subject!r} names no organisation: any certificate "
            "of the CA with that shape is accepted",
            "add the O= RDN your client certificates carry", ("certificate clients",), IKE_AUTH,
            "strongswan_cert_auth.subject"))
    return out


def config_findings(cfg: Config, path_mtu: int = 1500) -> list[Finding]:
    """Everything that follows from the config alone (what ``ikemgr render`` runs at its end)."""
    out = [*proposal_findings(cfg), *feature_findings(cfg), *mss_findings(cfg, path_mtu),
           *cert_auth_findings(cfg)]
    if not any(f.id == "cert-auth.connection-name" for f in out):  # otherwise it cannot render
        out += send_cert_findings(rendered_swanctl(cfg))
    return ordered(out)


# =========================================================================== server certificate

OID_SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
OID_IKE_INTERMEDIATE = "1.3.6.1.5.5.8.2.2"
APPLE_WINDOWS = ("iOS", "macOS", "Windows")


@dataclass(frozen=True)
class CertFacts:
    """What was read from the server certificate and the CA (``host.read_cert_facts``)."""

    path: str
    error: str | None = None  # unreadable / not a certificate
    subject: str = ""
    ekus: frozenset[str] = frozenset()
    dns_sans: tuple[str, ...] = ()
    not_before: datetime | None = None
    not_after: datetime | None = None
    chain_error: str | None = None  # None = verified against gateway.ca


def _dns_match(name: str, fqdn: str) -> bool:
    name, fqdn = name.lower().rstrip("."), fqdn.lower().rstrip(".")
    return name == fqdn


def cert_findings(cfg: Config, facts: CertFacts, now: datetime) -> list[Finding]:
    if facts.error is not None:
        return [Finding("cert.unreadable", "error", f"{facts.path}: {facts.error}",
                        "install the gateway certificate at gateway.cert (PEM or DER)",
                        ALL_CLIENTS, IKE_AUTH, facts.path)]
    out: list[Finding] = []
    if OID_SERVER_AUTH not in facts.ekus:
        out.append(Finding(
            "cert.eku-server-auth", "error",
            f"{facts.path}: no serverAuth extended key usage; macOS/iOS refuse the gateway "
            "certificate and Windows reports error 13806/13801",
            "reissue the certificate with EKU serverAuth and ikeIntermediate (ikemgr pki issue-server)",
            APPLE_WINDOWS, IKE_AUTH, facts.path))
    if OID_IKE_INTERMEDIATE not in facts.ekus:
        out.append(Finding(
            "cert.eku-ike-intermediate", "warning",
            f"{facts.path}: no ikeIntermediate (1.3.6.1.5.5.8.2.2) extended key usage; older "
            "Windows and macOS releases require it next to serverAuth",
            "reissue the certificate with EKU serverAuth and ikeIntermediate",
            ("Windows", "macOS"), IKE_AUTH, facts.path))
    if not any(_dns_match(n, cfg.gateway.fqdn) for n in facts.dns_sans):
        out.append(Finding(
            "cert.san-dns", "error",
            f"{facts.path}: no DNS subjectAltName {cfg.gateway.fqdn} (has: "
            f"{', '.join(facts.dns_sans) or 'none'}); iOS 13+/macOS 10.15+ and Windows match the "
            "server address the user typed against the SAN, not the CN",
            f"reissue the certificate with DNS SAN {cfg.gateway.fqdn}",
            APPLE_WINDOWS + ("Android",), IKE_AUTH, facts.path))
    if facts.chain_error is not None:
        out.append(Finding(
            "cert.chain", "error",
            f"{facts.path}: does not chain to gateway.ca {cfg.gateway.ca}: {facts.chain_error}",
            "issue the certificate from the CA the clients trust, or point gateway.ca at its issuer",
            ALL_CLIENTS, IKE_AUTH, facts.path))
    if facts.not_after is not None and now >= facts.not_after:
        out.append(Finding(
            "cert.expired", "error", f"{facts.path}: expired on {facts.not_after:%Y-%m-%d}",
            "renew the gateway certificate", ALL_CLIENTS, IKE_AUTH, facts.path))
    elif facts.not_after is not None and now + timedelta(days=30) >= facts.not_after:
        out.append(Finding(
            "cert.expires-soon", "warning", f"{facts.path}: expires on {facts.not_after:%Y-%m-%d}",
            "renew the gateway certificate", ALL_CLIENTS, IKE_AUTH, facts.path))
    if facts.not_before is not None and now < facts.not_before:
        out.append(Finding(
            "cert.not-yet-valid", "error", f"{facts.path}: valid only from {facts.not_before:%Y-%m-%d %H:%M}",
            "check the clocks of the CA and the gateway", ALL_CLIENTS, IKE_AUTH, facts.path))
    return out


# =========================================================================== host state


@dataclass(frozen=True)
class HostRule:
    priority: int
    table: int | None
    protocol: int
    text: str  # for the message


@dataclass(frozen=True)
class HostState:
    """Facts read from the running host (``host.read_host_state``); pure data."""

    netns: str | None = None
    sysctls: Mapping[str, str | None] = field(default_factory=dict)
    interfaces: frozenset[str] = frozenset()
    rules: tuple[HostRule, ...] = ()
    #: table id → protocols of the routes in it (numbers, as ``ip -N`` prints them)
    route_protocols: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    #: (id, name, file) of every rt_tables entry outside ikemgr's own file
    rt_tables: tuple[tuple[int, str, str], ...] = ()


def interfaces(cfg: Config) -> list[tuple[str, str]]:
    """(interface, role) of every interface ikemgr routes over."""
    out = [(cfg.gateway.outside.interface, "outside"), (cfg.gateway.campus.interface, "campus")]
    out += [(v.interface, f"VLAN {v.number}") for v in cfg.vlans]
    return out


def sysctl_keys(cfg: Config) -> list[str]:
    keys = ["net/ipv4/ip_forward", "net/ipv4/ip_no_pmtu_disc", "net/ipv4/conf/all/rp_filter",
            "net/ipv4/conf/all/forwarding"]
    for ifname, _ in interfaces(cfg):
        keys += [f"net/ipv4/conf/{ifname}/rp_filter", f"net/ipv4/conf/{ifname}/forwarding"]
    return keys


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def sysctl_findings(cfg: Config, st: HostState) -> list[Finding]:
    out: list[Finding] = []
    where = f" in netns {st.netns}" if st.netns else ""
    s = st.sysctls
    if _int(s.get("net/ipv4/ip_forward")) != 1:
        out.append(Finding(
            "host.ip-forward", "error",
            f"net.ipv4.ip_forward is {s.get('net/ipv4/ip_forward')}{where}: IKE and IKE_AUTH "
            "succeed, but no packet from a VIP is forwarded",
            "sysctl -w net.ipv4.ip_forward=1 (ikemgr renders sysctl.d/90-ikemgr.conf)",
            ALL_CLIENTS, DATA, "net.ipv4.ip_forward"))
    if _int(s.get("net/ipv4/ip_no_pmtu_disc")) not in (0, None):
        out.append(Finding(
            "host.pmtu-disc-off", "warning",
            f"net.ipv4.ip_no_pmtu_disc is {s.get('net/ipv4/ip_no_pmtu_disc')}{where}: path MTU "
            "discovery is off, the seed's cause of unreachable campus sites (§5)",
            "sysctl -w net.ipv4.ip_no_pmtu_disc=0", ALL_CLIENTS, DATA, "net.ipv4.ip_no_pmtu_disc"))
    rp_all = _int(s.get("net/ipv4/conf/all/rp_filter"))
    for ifname, role in interfaces(cfg):
        if ifname not in st.interfaces:
            out.append(Finding(
                "host.interface-missing", "warning",
                f"{role} interface {ifname} does not exist{where}; its settings cannot be checked",
                "create the interface or fix the config", ALL_CLIENTS, DATA, ifname))
            continue
        rp_if = _int(s.get(f"net/ipv4/conf/{ifname}/rp_filter"))
        if rp_all is not None and rp_if is not None:
            eff = max(rp_all, rp_if)
            if eff == 1:
                out.append(Finding(
                    "host.rp-filter-strict", "error",
                    f"effective rp_filter on {role} interface {ifname} is 1 (strict; all={rp_all}, "
                    f"{ifname}={rp_if}){where}: replies that arrive where main has no route back "
                    "(lab VLANs, asymmetric campus paths) are dropped",
                    f"set net.ipv4.conf.all.rp_filter and net.ipv4.conf.{ifname}.rp_filter to "
                    f"{cfg.routing.rp_filter} (the kernel uses the maximum of the two)",
                    ("VLAN users" if role.startswith("VLAN") else "all clients",), DATA, ifname))
            elif eff != cfg.routing.rp_filter:
                out.append(Finding(
                    "host.rp-filter-differs", "info",
                    f"effective rp_filter on {ifname} is {eff}, the config says {cfg.routing.rp_filter}",
                    "load sysctl.d/90-ikemgr.conf", ALL_CLIENTS, DATA, ifname))
        fwd = _int(s.get(f"net/ipv4/conf/{ifname}/forwarding"))
        if fwd == 0:
            out.append(Finding(
                "host.forwarding-off", "error",
                f"net.ipv4.conf.{ifname}.forwarding is 0{where}: nothing is forwarded out of the "
                f"{role} interface",
                f"sysctl -w net.ipv4.conf.{ifname}.forwarding=1", ALL_CLIENTS, DATA, ifname))
    return out


def _ikemgr_tables(cfg: Config) -> dict[int, str]:
    t = {cfg.gateway.campus.table.id: cfg.gateway.campus.table.name}
    t.update({v.table_id: v.table_label for v in cfg.vlans})
    return t


def routing_findings(cfg: Config, st: HostState) -> list[Finding]:
    """Rule priorities and table ids ikemgr will use, against what others already use."""
    r = cfg.routing
    out: list[Finding] = []
    owned = {r.base_priority: "base rule (routing.base_priority)",
             r.charon_priority: "charon's rule (routing.charon_priority)"}
    # marks: three rules from user_priority; rules: each VIP's rules anywhere in the span,
    # so a foreign rule there sits before some users' rules and may shadow them
    span = r.user_span if cfg.policy.backend == "rules" else 3
    for p in range(r.user_priority, r.user_priority + span):
        owned[p] = "per-user rules (routing.user_priority)"
    for rule in st.rules:
        if rule.protocol == r.rule_protocol:
            continue
        if rule.priority == r.charon_priority and rule.table == r.charon_table:
            continue  # charon's own routing_table rule
        if rule.priority in owned:
            out.append(Finding(
                "routing.priority-collision", "error",
                f"a rule not owned by ikemgr sits at priority {rule.priority}, which ikemgr uses "
                f"for the {owned[rule.priority]}: {rule.text}",
                "move the other rule, or change routing.base_priority/user_priority/charon_priority",
                ("lab VLAN users",), DATA, str(rule.priority)))
        elif r.user_priority < rule.priority < r.base_priority:
            out.append(Finding(
                "routing.priority-in-band", "warning",
                f"a foreign rule at priority {rule.priority} lies inside ikemgr's band "
                f"{r.user_priority}..{r.base_priority}: {rule.text}",
                "move it out of the band", ("lab VLAN users",), DATA, str(rule.priority)))
        if rule.table in _ikemgr_tables(cfg):
            out.append(Finding(
                "routing.table-used-by-rule", "warning",
                f"a foreign rule looks up table {rule.table}, which ikemgr fills: {rule.text}",
                "use another table for that rule, or change the ikemgr table id",
                ("lab VLAN users",), DATA, str(rule.table)))
    for tid, name in _ikemgr_tables(cfg).items():
        foreign = sorted({p for p in st.route_protocols.get(tid, ()) if p != r.rule_protocol})
        if foreign:
            out.append(Finding(
                "routing.table-id-collision", "error",
                f"table {tid} ({name}) already holds routes ikemgr does not own (protocol "
                f"{', '.join(map(str, foreign))}); ikemgr's routes would mix with them",
                "give the table another id in the config (gateway.campus.table / vlans[].table)",
                ("lab VLAN users",) if tid != cfg.gateway.campus.table.id else ALL_CLIENTS, DATA, str(tid)))
    wanted = _ikemgr_tables(cfg)
    wanted_names = {v: k for k, v in wanted.items()}
    for tid, name, path in st.rt_tables:
        if tid in wanted and name != wanted[tid]:
            out.append(Finding(
                "routing.table-name-collision", "error",
                f"{path}: table id {tid} is named {name!r} there, ikemgr names it {wanted[tid]!r}",
                "change one of the two ids", ("operators",), None, str(tid)))
        elif name in wanted_names and tid != wanted_names[name]:
            out.append(Finding(
                "routing.table-name-collision", "error",
                f"{path}: name {name!r} means table {tid} there, ikemgr uses it for {wanted_names[name]}",
                "rename one of the two tables", ("operators",), None, name))
    return out


def host_findings(cfg: Config, st: HostState) -> list[Finding]:
    return [*sysctl_findings(cfg, st), *routing_findings(cfg, st)]


# =========================================================================== RADIUS


@dataclass(frozen=True)
class RadiusProbe:
    server: str
    outcome: str | None  # accept/reject/challenge; None = no valid answer
    error: str | None = None
    rtt_ms: float | None = None


def radius_findings(probe: RadiusProbe) -> list[Finding]:
    if probe.outcome is not None:
        return []
    return [Finding(
        "radius.unreachable", "error",
        f"RADIUS {probe.server}: {probe.error or 'no answer'}; every EAP client fails in IKE_AUTH "
        "(charon's eap-radius gets no answer)",
        "check radius.address/auth_port, the shared secret and that FreeRADIUS runs",
        ("EAP clients",), IKE_AUTH, probe.server)]

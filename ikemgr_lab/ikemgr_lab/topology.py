"""Config → the lab topology as data (pure), and the one function that builds it.

``plan(cfg)`` derives every namespace, link, address, route, sysctl and NAT rule from
the gateway config plus its ``lab:`` section, so the lab is always the gateway the
config describes. The plan is a list of argv steps (never shell strings) built only
from validated, typed values; ``build`` runs them and stops at the first failure with
the step that failed.

    [client]..(home br0)..[home NAT] ─┐
    [client] ─────────────────────────┴─ br0 [inet] ── ens1 [gw] ens2 ── [campus] ─ brs ─ [csrv] [ldap]
                                                               ens3.N ──── brvN ─ [labN]
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from ipaddress import IPv4Interface

from ikemgr.errors import ApplyFailed, UsageError
from ikemgr_lab.model import LabConfig, LabDocument

FIXED_NODES = ("inet", "home", "gw", "campus", "csrv", "ldap")


@dataclass(frozen=True)
class Step:
    what: str
    argv: tuple[str, ...]
    stdin: str | None = None


@dataclass(frozen=True)
class Topology:
    namespaces: tuple[str, ...]
    steps: tuple[Step, ...]
    nodes: dict[str, str] = field(default_factory=dict)  # short node name → namespace

    def ns(self, node: str) -> str:
        return self.nodes[node]


def lab_of(cfg: LabDocument) -> LabConfig:
    return cfg.lab


def node_names(cfg: LabDocument) -> list[str]:
    lab = lab_of(cfg)
    names = list(FIXED_NODES)
    names += [f"lab{i + 1}" for i in range(len(lab.lab_hosts))]
    for c in lab.clients:
        if c.name in names:
            raise UsageError(f"lab.clients: name {c.name} is already a lab node ({', '.join(names)})")
        names.append(c.name)
    return names


def _ip(ns: str, *args: str) -> tuple[str, ...]:
    return ("ip", "-n", ns, *args)


def _sysctl(ns: str, *pairs: str) -> tuple[str, ...]:
    return ("ip", "netns", "exec", ns, "sysctl", "-qw", *pairs)


def plan(cfg: LabDocument) -> Topology:
    """Every step that makes the lab's network, in order."""
    lab = lab_of(cfg)
    names = node_names(cfg)
    nodes = {n: f"{lab.prefix}{n}" for n in names}
    gw = cfg.gateway
    steps: list[Step] = []

    def add(what: str, argv: tuple[str, ...], stdin: str | None = None) -> None:
        steps.append(Step(what, argv, stdin))

    for n in names:
        ns = nodes[n]
        add(f"namespace {ns}", ("ip", "netns", "add", ns))
        add(f"{ns}: lo up", _ip(ns, "link", "set", "lo", "up"))
        # rp_filter off: the gateway sends replies on other interfaces than the requests came
        # in on (VIPs are routed to ipsec0, lab VLANs have no route in main)
        add(f"{ns}: sysctls", _sysctl(ns, "net.ipv4.conf.all.rp_filter=0",
                                      "net.ipv4.conf.default.rp_filter=0"))
    for n in ("inet", "home", "gw", "campus"):
        add(f"{nodes[n]}: forwarding", _sysctl(nodes[n], "net.ipv4.ip_forward=1"))

    def veth(a: str, a_if: str, b: str, b_if: str) -> None:
        add(f"veth {nodes[a]}:{a_if} ↔ {nodes[b]}:{b_if}",
            ("ip", "link", "add", a_if, "netns", nodes[a], "type", "veth",
             "peer", "name", b_if, "netns", nodes[b]))

    def bridge(n: str, br: str, addr: IPv4Interface | None) -> None:
        add(f"{nodes[n]}: bridge {br}", _ip(nodes[n], "link", "add", br, "type", "bridge"))
        if addr is not None:
            add(f"{nodes[n]}: {br} {addr}", _ip(nodes[n], "addr", "add", str(addr), "dev", br))
        add(f"{nodes[n]}: {br} up", _ip(nodes[n], "link", "set", br, "up"))

    def port(n: str, ifname: str, br: str) -> None:
        add(f"{nodes[n]}: {ifname} → {br}", _ip(nodes[n], "link", "set", ifname, "master", br, "up"))

    def address(n: str, ifname: str, addr: IPv4Interface, *extra: str) -> None:
        add(f"{nodes[n]}: {ifname} {addr}", _ip(nodes[n], "addr", "add", str(addr), "dev", ifname, *extra))
        add(f"{nodes[n]}: {ifname} up", _ip(nodes[n], "link", "set", ifname, "up"))

    def route(n: str, dst: str, via: str) -> None:
        add(f"{nodes[n]}: route {dst} via {via}", _ip(nodes[n], "route", "add", dst, "via", via))

    # ---- the Internet: a bridge in inet; its address is the gateway's outside next hop
    inet_net = gw.outside.address.network
    inet_if = IPv4Interface(f"{gw.outside.gateway}/{inet_net.prefixlen}")
    bridge("inet", "br0", inet_if)
    add("inet: internet server", _ip(nodes["inet"], "addr", "add", f"{lab.internet.server}/32", "dev", "lo"))

    # ---- gateway outside (ens1)
    veth("gw", gw.outside.interface, "inet", "p-gw")
    port("inet", "p-gw", "br0")
    address("gw", gw.outside.interface, gw.outside.address)  # type: ignore[arg-type]
    route("gw", "default", str(gw.outside.gateway))

    # ---- home NAT router
    veth("home", "wan0", "inet", "p-home")
    port("inet", "p-home", "br0")
    address("home", "wan0", IPv4Interface(f"{lab.home.wan}/{inet_net.prefixlen}"))
    route("home", "default", str(gw.outside.gateway))
    bridge("home", "br0", lab.home.lan)
    add("home: masquerade", ("ip", "netns", "exec", nodes["home"], "nft", "-f", "-"),
        "table ip lab_home_nat {\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        '    oifname "wan0" masquerade\n'
        "  }\n}\n")

    # ---- campus router: the campus segment (ens2), the server segment, one bridge per VLAN
    campus = gw.campus
    veth("gw", campus.interface, "campus", "c-gw")
    address("gw", campus.interface, campus.address)  # type: ignore[arg-type]
    address("campus", "c-gw", IPv4Interface(f"{campus.gateway}/{campus.address.network.prefixlen}"))
    # the gateway's own traffic (RADIUS → LDAP) reaches the server segment through the campus
    route("gw", str(lab.campus.subnet.network), str(campus.gateway))
    bridge("campus", "brs", lab.campus.subnet)
    for n, addr in (("csrv", lab.campus.server), ("ldap", lab.campus.ldap)):
        veth(n, "eth0", "campus", f"p-{n}")
        port("campus", f"p-{n}", "brs")
        address(n, "eth0", IPv4Interface(f"{addr}/{lab.campus.subnet.network.prefixlen}"))
        route(n, "default", str(lab.campus.subnet.ip))

    for i, v in enumerate(cfg.vlans, start=1):
        br = f"brv{i}"
        bridge("campus", br, IPv4Interface(f"{v.gateway}/{v.subnet.prefixlen}"))
        veth("gw", v.interface, "campus", f"p{i}-gw")
        port("campus", f"p{i}-gw", br)
        # noprefixroute: main must not reach the lab /24, only the VLAN's table does
        address("gw", v.interface, IPv4Interface(f"{v.snat_address}/{v.subnet.prefixlen}"),  # type: ignore[arg-type]
                "noprefixroute")
    vlan_index = {v.number: i for i, v in enumerate(cfg.vlans, start=1)}
    for j, host in enumerate(lab.lab_hosts, start=1):
        hv = cfg.vlan(host.vlan)
        if hv is None:
            raise UsageError(f"lab.lab_hosts[{j - 1}].vlan: {host.vlan} is not in vlans")
        if host.address not in hv.subnet or host.address in (hv.gateway, hv.snat_address):
            raise UsageError(f"lab.lab_hosts[{j - 1}].address: {host.address} "
                             f"is not a free host of {hv.subnet}")
        n = f"lab{j}"
        veth(n, "eth0", "campus", f"p{vlan_index[host.vlan]}-h{j}")
        port("campus", f"p{vlan_index[host.vlan]}-h{j}", f"brv{vlan_index[host.vlan]}")
        address(n, "eth0", IPv4Interface(f"{host.address}/{hv.subnet.prefixlen}"))
        route(n, "default", str(hv.gateway))

    # ---- clients
    for k, c in enumerate(lab.clients, start=1):
        if c.site == "home":
            veth(c.name, "eth0", "home", f"p-c{k}")
            port("home", f"p-c{k}", "br0")
            address(c.name, "eth0", IPv4Interface(f"{c.address}/{lab.home.lan.network.prefixlen}"))
            route(c.name, "default", str(lab.home.lan.ip))
        else:
            if c.address not in inet_net:
                raise UsageError(f"lab.clients: {c.name}: {c.address} "
                                 f"is not on the Internet segment {inet_net}")
            veth(c.name, "eth0", "inet", f"p-c{k}")
            port("inet", f"p-c{k}", "br0")
            address(c.name, "eth0", IPv4Interface(f"{c.address}/{inet_net.prefixlen}"))
            route(c.name, "default", str(gw.outside.gateway))

    return Topology(tuple(nodes[n] for n in names), tuple(steps), nodes)


def run_step(step: Step, timeout: float = 20.0) -> None:
    r = subprocess.run(step.argv, input=step.stdin, capture_output=True, text=True,
                       timeout=timeout, check=False)
    if r.returncode != 0:
        raise ApplyFailed(f"topology step '{step.what}' failed: {(r.stderr or r.stdout).strip()}")


def build(topo: Topology) -> int:
    """Run every step; returns the number of steps."""
    for step in topo.steps:
        run_step(step)
    return len(topo.steps)

"""Network namespaces for the policy engine's root tests; everything is removed at teardown.

``gw`` is the gateway namespace ``ikt-p-<random>``; ``<gw>c`` holds a client whose
address stands for a VIP, ``<gw>k`` the campus router (main table's default route) and
``<gw>l`` the lab VLAN router (table 123456's default route). Packets from the client to
a campus prefix leave the gateway on ``campus0`` unless ikemgr's policy sends them to
``lab0``; the veth tx counters show which way they went.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers import IKEMGR, sh
from helpers.gateway import gateway_doc, vlan

VLAN_A = vlan(123456, "lab0", 0)
VLAN_B = vlan(123457, "lab1", 1)


@dataclass
class Lab:
    ns: str
    tmp: Path

    @property
    def client(self) -> str:
        return self.ns + "c"

    def config(self, backend: str = "marks", name: str = "", **extra: Any) -> Path:
        own = {"routing": {"rt_tables_file": str(self.tmp / "rt_tables.conf")},
               "policy": {"backend": backend, "state_dir": str(self.tmp / "state"),
                          "lock_file": str(self.tmp / "ikemgr.lock")}}
        # a section given in ``extra`` (e.g. policy: {reconcile_interval: 1}) is merged
        # into the one above, so the test's own state dir and lock file stay
        merged = {**own, **{k: {**own[k], **v} if k in own and isinstance(v, dict) else v
                            for k, v in extra.items()}}
        doc = gateway_doc(outside="out0", campus="campus0",
                          campus_prefixes=("10.20.0.0/16", "198.51.100.0/24"),
                          vlans=[VLAN_A, VLAN_B], **merged)
        path = self.tmp / f"ikemgr-{backend}{name}.yaml"
        path.write_text(json.dumps(doc, indent=1))
        return path

    def owned_rules(self, lo: int = 29000, hi: int = 30001) -> list[dict[str, Any]]:
        out = json.loads(sh("ip", "-N", "-n", self.ns, "-j", "rule", "show").stdout)
        return [r for r in out if lo <= r["priority"] < hi and r.get("protocol") == "99"]

    def user_rules(self) -> set[tuple[str, str, str]]:
        """(VIP, campus prefix, table) of the rules backend's per-user rules."""
        return {(r["src"], f"{r.get('dst', 'all')}/{r.get('dstlen', 0)}", r["table"])
                for r in self.owned_rules() if r.get("src", "all") != "all"}

    def fwmark_tables(self) -> set[str]:
        return {r["table"] for r in self.owned_rules() if "fwmark" in r and r["fwmark"] != "0"}

    def map_elements(self) -> dict[str, int]:
        p = sh("ip", "netns", "exec", self.ns, "nft", "-j", "list", "map", "ip", "ikemgr_policy", "users",
               check=False)
        if p.returncode != 0:
            return {}
        out: dict[str, int] = {}
        for item in json.loads(p.stdout)["nftables"]:
            for vip, mark in item.get("map", {}).get("elem") or []:
                out[vip] = mark
        return out

    def routed(self, backend: str) -> dict[str, int]:
        """VIP → table id, read back from the kernel in the backend's own terms."""
        if backend == "marks":
            tables = self.fwmark_tables()
            return {vip: m for vip, m in self.map_elements().items() if str(m) in tables}
        out: dict[str, int] = {}
        for vip, _dst, table in self.user_rules():
            out[vip] = int(table)
        return out

    def tx(self, dev: str) -> int:
        return int(sh("ip", "netns", "exec", self.ns, "cat", f"/sys/class/net/{dev}/statistics/tx_packets")
                   .stdout)

    def ikemgr(self, *args: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([str(IKEMGR), *args], capture_output=True, text=True, timeout=timeout, env=e)


def _topology(ns: str) -> None:
    c, k, lab = ns + "c", ns + "k", ns + "l"
    for n in (ns, c, k, lab):
        sh("ip", "netns", "add", n)
        sh("ip", "-n", n, "link", "set", "lo", "up")
        # no IPv6 chatter (RS, MLD, DAD) on the links whose packet counters the tests read
        sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1")
    pairs = [("cli0", ns, "eth0", c), ("campus0", ns, "eth0", k), ("lab0", ns, "eth0", lab)]
    for a, na, b, nb in pairs:
        sh("ip", "link", "add", f"{a}-{nb[-6:]}", "type", "veth", "peer", "name", f"{b}-{nb[-6:]}")
        sh("ip", "link", "set", f"{a}-{nb[-6:]}", "netns", na, "name", a)
        sh("ip", "link", "set", f"{b}-{nb[-6:]}", "netns", nb, "name", b)
        sh("ip", "-n", na, "link", "set", a, "up")
        sh("ip", "-n", nb, "link", "set", b, "up")
    # client: its address is the VIP 10.1.0.10 (and .11 as a second user)
    sh("ip", "-n", c, "addr", "add", "10.1.0.10/24", "dev", "eth0")
    sh("ip", "-n", c, "addr", "add", "10.1.0.11/24", "dev", "eth0")
    sh("ip", "-n", c, "route", "add", "default", "via", "10.1.0.1")
    sh("ip", "-n", ns, "addr", "add", "10.1.0.1/24", "dev", "cli0")
    sh("ip", "-n", ns, "addr", "add", "198.18.0.1/24", "dev", "campus0")
    sh("ip", "-n", k, "addr", "add", "198.18.0.2/24", "dev", "eth0")
    sh("ip", "-n", ns, "route", "add", "default", "via", "198.18.0.2")
    # lab VLAN: noprefixroute, reachable only through table 123456 (lab-recipe gotcha 11)
    sh("ip", "-n", ns, "addr", "add", "10.2.0.253/24", "dev", "lab0", "noprefixroute")
    sh("ip", "-n", lab, "addr", "add", "10.2.0.254/24", "dev", "eth0")
    sh("ip", "-n", ns, "route", "add", "10.2.0.0/24", "dev", "lab0", "src", "10.2.0.253", "table", "123456")
    sh("ip", "-n", ns, "route", "add", "default", "via", "10.2.0.254", "dev", "lab0", "table", "123456")
    for n in (ns, c, k, lab):
        sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
           "net.ipv4.conf.default.rp_filter=0")
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    ns = "ikt-p-" + secrets.token_hex(3)
    try:
        _topology(ns)
        yield Lab(ns, tmp_path)
    finally:
        for n in (ns, ns + "c", ns + "k", ns + "l"):
            sh("ip", "netns", "del", n, check=False)

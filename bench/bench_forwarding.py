#!/usr/bin/env python3
"""Forwarding cost of per-user policy: ping RTT and TCP throughput through the gateway
with 0, 1,000 and 10,000 other active lab users, for both policy backends, same run.

Topology (namespaces ``ikt-p-f<random>{,c,l}``): client (its address is the measured VIP)
→ gateway → lab VLAN router, which holds the campus server address 10.20.0.10. The
measured user is always on the allow-list, so every figure has the same path; the other
users only add policy. For ``rules`` their rules are added first, so the measured rule is
the last one the kernel reaches (the worst case, as a busy day would have it). Return
traffic (ACKs) from the server also walks the rule list. The policy is installed by the
engine itself (reconcile path), not by hand.

Needs root. Usage: .venv/bin/python bench/bench_forwarding.py [--users 0,1000,10000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ikemgr.config.load import load_text  # noqa: E402
from ikemgr.core.model import Sa  # noqa: E402
from ikemgr.engine.wiring import build_engine, close_engine  # noqa: E402

MEASURED = IPv4Address("10.64.1.0")
SERVER = "10.20.0.10"
RECEIVER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.20.0.10", 5001)); s.listen(1)
c, _ = s.accept(); n = 0; t0 = None; buf = bytearray(1 << 20)
while True:
    k = c.recv_into(buf)
    if not k: break
    if t0 is None: t0 = time.perf_counter()
    n += k
print(n, time.perf_counter() - t0)
"""
SENDER = r"""
import socket, sys, time
c = socket.create_connection(("10.20.0.10", 5001)); data = b"x" * (1 << 18)
end = time.perf_counter() + float(sys.argv[1])
while time.perf_counter() < end: c.sendall(data)
c.close()
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=600)


def config(tmp: Path, backend: str) -> str:
    return json.dumps({
        "gateway": {"fqdn": "vpn.example.test",
                    "outside": {"interface": "out0", "address": "192.0.2.1/24", "gateway": "192.0.2.254"},
                    "campus": {"interface": "cli0", "address": "10.64.0.1/10", "gateway": "10.64.0.2"}},
        "pool": {"first": "10.64.0.10", "last": "10.127.255.250"},
        "campus_prefixes": ["10.20.0.0/16"],
        "vlans": [{"number": 123456 + i, "interface": f"lab{i}", "subnet": f"10.2.{i}.0/24",
                   "gateway": f"10.2.{i}.254"} for i in range(8)],
        "policy": {"backend": backend, "state_dir": str(tmp / "state"), "lock_file": str(tmp / "lock")},
    })


def topology(ns: str, offload: bool) -> None:
    c, lab = ns + "c", ns + "l"
    for n in (ns, c, lab):
        sh("ip", "netns", "add", n)
        sh("ip", "-n", n, "link", "set", "lo", "up")
    for a, b, peer in (("cli0", "eth0", c), ("lab0", "eth0", lab)):
        sh("ip", "link", "add", f"x{peer[-7:]}", "type", "veth", "peer", "name", f"y{peer[-7:]}")
        sh("ip", "link", "set", f"x{peer[-7:]}", "netns", ns, "name", a)
        sh("ip", "link", "set", f"y{peer[-7:]}", "netns", peer, "name", b)
        sh("ip", "-n", ns, "link", "set", a, "up")
        sh("ip", "-n", peer, "link", "set", b, "up")
    sh("ip", "-n", c, "addr", "add", f"{MEASURED}/10", "dev", "eth0")
    sh("ip", "-n", c, "route", "add", "default", "via", "10.64.0.1")
    sh("ip", "-n", ns, "addr", "add", "10.64.0.1/10", "dev", "cli0")
    sh("ip", "-n", ns, "addr", "add", "10.2.0.253/24", "dev", "lab0", "noprefixroute")
    sh("ip", "-n", ns, "route", "add", "10.2.0.0/24", "dev", "lab0", "table", "123456")
    sh("ip", "-n", ns, "route", "add", "default", "via", "10.2.0.254", "dev", "lab0", "table", "123456")
    sh("ip", "-n", lab, "addr", "add", "10.2.0.254/24", "dev", "eth0")
    sh("ip", "-n", lab, "addr", "add", f"{SERVER}/32", "dev", "lo")
    sh("ip", "-n", lab, "route", "add", "10.64.0.0/10", "via", "10.2.0.253")
    for n in (ns, c, lab):
        sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
           "net.ipv4.conf.default.rp_filter=0")
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    if not offload:
        for n, dev in ((ns, "cli0"), (ns, "lab0"), (c, "eth0"), (lab, "eth0")):
            sh("ip", "netns", "exec", n, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off")


def measure(ns: str, seconds: float, repeat: int) -> tuple[float, float]:
    """Medians over ``repeat`` runs: other tests share the two cores, single runs are noisy."""
    runs = sorted(measure_once(ns, seconds) for _ in range(repeat))
    rtts = sorted(r for r, _ in runs)
    gbits = sorted(g for _, g in runs)
    return rtts[len(rtts) // 2], gbits[len(gbits) // 2]


def measure_once(ns: str, seconds: float) -> tuple[float, float]:
    c, lab = ns + "c", ns + "l"
    p = sh("ip", "netns", "exec", c, "ping", "-n", "-q", "-c", "50", "-i", "0.01", SERVER, check=False)
    m = re.search(r"= [\d.]+/([\d.]+)/", p.stdout)
    rtt = float(m.group(1)) if m else float("nan")
    rx = subprocess.Popen(["ip", "netns", "exec", lab, sys.executable, "-c", RECEIVER],
                          stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    sh("ip", "netns", "exec", c, sys.executable, "-c", SENDER, str(seconds))
    out, _ = rx.communicate(timeout=60)
    n, t = out.split()
    return rtt, int(n) * 8 / float(t) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", default="0,1000,10000")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--backends", default="marks,rules")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--offload", action="store_true",
                    help="keep TSO/GSO/GRO on (default off: per-packet costs show as they would "
                         "for an MTU-sized ESP/NAT path)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    counts = [int(x) for x in args.users.split(",")]
    print(f"machine: {os.cpu_count()} CPUs; one TCP stream, {args.seconds:.0f} s each, median of "
          f"{args.repeat}; ping x50; offloads {'on' if args.offload else 'off'}")
    with tempfile.TemporaryDirectory(prefix="ikt-p-fwd-") as d:
        tmp = Path(d)
        allow = tmp / "allow.txt"
        lines = ["measured@123456"] + [f"user{i}@{123456 + i % 8}" for i in range(max(counts))]
        allow.write_text("\n".join(lines) + "\n")
        for backend in args.backends.split(","):
            ns = "ikt-p-f" + secrets.token_hex(3)
            try:
                topology(ns, args.offload)
                eng = build_engine(load_text(config(tmp, backend)), netns=ns, allow_file=allow,
                                   lock_file=tmp / "lock", flush_conntrack=False)
                base = None
                for n in counts:
                    others = [Sa(str(10 + i), f"user{i}@{123456 + i % 8}", (IPv4Address("10.65.0.0") + i,),
                                 "ESTABLISHED") for i in range(n)]
                    t = time.perf_counter()
                    eng.full(others)  # others first: the measured user's rule comes last
                    eng.full([*others, Sa("1", "measured@123456", (MEASURED,), "ESTABLISHED")])
                    setup = time.perf_counter() - t
                    rtt, gbit = measure(ns, args.seconds, args.repeat)
                    base = base or gbit
                    print(f"{backend:6} {n:6d} other users: ping avg {rtt:6.3f} ms   TCP {gbit:6.2f} Gbit/s"
                          f"   ({gbit / base * 100:5.1f} % of the first; policy set up in {setup:.1f} s)")
                eng.full([])
                close_engine(eng)
            finally:
                for n_ in (ns, ns + "c", ns + "l"):
                    sh("ip", "netns", "del", n_, check=False)


if __name__ == "__main__":
    main()

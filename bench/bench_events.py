#!/usr/bin/env python3
"""Events/s and event→policy latency: the real ``ikemgr watch`` against the seed's shell updown.

**The baseline.** The seed (paper, setting 6) runs per event: ``expr`` on the identity,
``grep | cut`` over the user list, ``ip rule add`` and ``logger``. It is re-created here
faithfully (numeric table instead of ``gw$VLANGW`` so nothing is written to /etc/iproute2)
and run in a network namespace of its own, as charon runs updown: one ``sh`` per CHILD_SA
up or down, from charon's worker threads — a pool of ``strongswan.threads`` threads (the
config's value) runs the scripts concurrently. The one-after-another rate is measured too;
it sets the pace of the latency run.

**ikemgr.** The real ``ikemgr watch`` process (``.venv/bin/ikemgr``, started here as a
subprocess, ``--log-format json`` to a file, its own batch size and tick, conntrack flushes
on) reads a VICI socket. A real charon cannot be driven at thousands of events/s, so the
socket belongs to ``bench/vici_server.py``: the real VICI wire protocol through the ``vici``
package's codec, answering register/list-sas/get-pools and sending, per connect, the
``ike-updown`` and ``child-updown`` events charon 5.9.8 sends (copies of the recorded
``tests/unit/test_vici_sample_events.json``; a down carries no ``up`` key). One
*transition* (a connect or a disconnect) is two VICI events, and is what one updown run
handles; rates below are transitions/s on both sides.

**Kernel as the oracle.** Event→policy latency runs from the moment the server wrote the
transition's first event into the socket to the moment the kernel announced the change:
``bench/kernel_monitor.py`` is a separate process in the gateway namespace subscribed to
the kernel's rule (RTNLGRP_IPV4_RULE) and nftables (NFNLGRP_NFTABLES) notifications, and
stamps each when ``recv`` returns it; it runs at a real-time priority where it may (so the
stamp is not the wait of an instrument for a CPU: printed as "kernel monitor: ...").
Throughput is transitions / (last kernel change − first send) per phase (all connects,
then all disconnects). After each phase the kernel is
read (``ip -j rule``; ``nft -j list map``): every VIP present after the connects, none
after the disconnects.

Floors (2-core machine), printed as met/not met: events/s ≥ 50× the concurrent shell, and
p99 event→policy ≤ 5 ms when paced at 50× the shell's sequential rate. The machine's speed
drifts within a run (a shared 2-core host), so each backend gets baselines of its own, taken
right before its runs, and the concurrent shell again right after them (the floor's divisor
is the mean of the two); the burst figure is the median of three bursts in one ``watch``
process (one burst lasts ~0.3 s): one burst, the latency run, then two more.

Also: reconcile of 10,000 SAs through the engine's full reconcile (empty kernel; a restart
with the kernel holding all 10,000 users' policy; everyone gone).

Needs root. Usage: .venv/bin/python bench/bench_events.py [--transitions 4000]
[--paced-transitions 8000] [--shell-events 400] [--reconcile-sas 10000] [--backends marks,rules]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kernel_monitor import KernelMonitor  # noqa: E402
from vici_server import ServerProcess  # noqa: E402

from ikemgr.config.load import load_text  # noqa: E402
from ikemgr.core.model import Sa  # noqa: E402
from ikemgr.engine.engine import Engine, Report  # noqa: E402
from ikemgr.engine.wiring import build_engine, close_engine  # noqa: E402
from ikemgr.log import setup_logging  # noqa: E402

IKEMGR = Path(sys.executable).parent / "ikemgr"
NS_PREFIX = os.environ.get("IKEMGR_BENCH_NS_PREFIX", "ikb-")
LATENCIES: Path | None = None  # --latencies FILE
MONITOR_SAID: list[str] = []  # the kernel monitor's scheduling, printed once
#: bursts per watch process: the headline is the median one (a burst lasts ~0.3 s: one hiccup
#: of a shared machine would otherwise be the figure)
BURSTS = 3

SEED_UPDOWN = r"""#!/bin/sh
# the seed's updown addition (setting 6), as published, with a numeric table
TAG=vpn-updown
FAC_PRIOD=local0.notice
case "$PLUTO_VERB" in
up-client)
if expr "$PLUTO_XAUTH_ID" : '.\+@[0-9]\+$' > /dev/null
then
    VLANGW=`grep "^$PLUTO_XAUTH_ID$" $USERLIST | cut -d@ -f2`
    if [ $VLANGW ]
    then
        ip rule add from $PLUTO_PEER_CLIENT to 10.20.0.0/16 lookup $VLANGW
        logger -t $TAG -p $FAC_PRIOD \
            "added ip rule gw$VLANGW from $PLUTO_PEER_CLIENT by $PLUTO_XAUTH_ID" 2>/dev/null
    else
        logger -t $TAG -p $FAC_PRIOD "$PLUTO_XAUTH_ID VLAN and ID pair is not valid" 2>/dev/null
    fi
fi
;;
down-client)
if expr "$PLUTO_XAUTH_ID" : '.\+@[0-9]\+$' > /dev/null
then
    VLANGW=`grep "^$PLUTO_XAUTH_ID$" $USERLIST | cut -d@ -f2`
    if [ $VLANGW ]
    then
        ip rule del from $PLUTO_PEER_CLIENT to 10.20.0.0/16 lookup $VLANGW
        logger -t $TAG -p $FAC_PRIOD \
            "deleted ip rule gw$VLANGW from $PLUTO_PEER_CLIENT by $PLUTO_XAUTH_ID" 2>/dev/null
    fi
fi
;;
esac
"""

VLANS = [123456 + i for i in range(8)]


def config(tmp: Path, backend: str, vici_uri: str = "unix:///nonexistent/charon.vici") -> str:
    vlans = [{"number": n, "interface": f"lab{i}", "subnet": f"10.2.{i}.0/24", "gateway": f"10.2.{i}.254"}
             for i, n in enumerate(VLANS)]
    return json.dumps({
        "gateway": {"fqdn": "vpn.example.test",
                    "outside": {"interface": "out0", "address": "192.0.2.1/24", "gateway": "192.0.2.254"},
                    "campus": {"interface": "campus0", "address": "10.64.0.1/10", "gateway": "10.64.0.2"}},
        "pool": {"first": "10.64.0.10", "last": "10.127.255.250"},
        "campus_prefixes": ["10.20.0.0/16"],
        "vlans": vlans,
        "strongswan": {"vici_socket": vici_uri},
        "policy": {"backend": backend, "state_dir": str(tmp / "state"), "lock_file": str(tmp / "lock")},
        "database": {"url": f"sqlite:///{tmp / 'ikemgr.db'}"},
        "sync": {"sources": [{"kind": "file", "name": "userlist", "path": str(tmp / "users.txt")}],
                 "lock_file": str(tmp / "sync.lock")},
    })


def vip(i: int) -> IPv4Address:
    return IPv4Address("10.64.1.0") + i


def user(i: int) -> str:
    return f"user{i}@{VLANS[i % len(VLANS)]}"


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def netns(name: str) -> None:
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)


def userlist(tmp: Path, n_users: int, lines: int) -> Path:
    f = tmp / "users.txt"
    with f.open("w") as out:
        for i in range(n_users):
            out.write(user(i) + "\n")
        for j in range(n_users, lines):
            out.write(f"other{j}@{VLANS[j % len(VLANS)]}\n")
    return f


def met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


# --------------------------------------------------------------------------- the kernel's view


def kernel_vips(ns: str, backend: str) -> set[int]:
    """The VIPs the kernel routes by user policy now, read from the kernel itself."""
    if backend == "rules":
        out = subprocess.run(["ip", "-n", ns, "-j", "rule", "show"], capture_output=True, text=True,
                             check=True).stdout
        return {int(IPv4Address(r["src"])) for r in json.loads(out)
                if r.get("src") not in (None, "all") and r.get("dst") == "10.20.0.0"}
    argv = ["ip", "netns", "exec", ns, "nft", "-j", "list", "map", "ip", "ikemgr_policy", "users"]
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"nft list map failed: {res.stderr.strip()}")
    vips: set[int] = set()
    for item in json.loads(res.stdout)["nftables"]:
        for elem in item.get("map", {}).get("elem", []):
            vips.add(int(IPv4Address(elem[0])))
    return vips


# --------------------------------------------------------------------------- shell baseline


def bench_shell(ns: str, tmp: Path, users: Path, n: int, threads: int) -> dict[str, float]:
    """``n`` updown runs (n/2 up-client, then n/2 down-client) on ``threads`` worker threads."""
    from pyroute2 import netns as pr_netns

    script = tmp / "updown.sh"
    script.write_text(SEED_UPDOWN)
    lat: list[float] = []
    lock = threading.Lock()

    def one(verb: str, i: int) -> None:
        env = {"PATH": os.environ["PATH"], "USERLIST": str(users), "PLUTO_VERB": verb,
               "PLUTO_XAUTH_ID": user(i), "PLUTO_PEER_CLIENT": f"{vip(i)}/32"}
        t = time.perf_counter()
        subprocess.run(["sh", str(script)], env=env, check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        with lock:
            lat.append(time.perf_counter() - t)

    phases: list[float] = []
    with ThreadPoolExecutor(threads, initializer=lambda: pr_netns.setns(ns, flags=0)) as pool:
        for verb, want in (("up-client", n // 2), ("down-client", 0)):
            t0 = time.perf_counter()
            list(pool.map(lambda i, v=verb: one(v, i), range(n // 2)))  # type: ignore[misc]
            phases.append(time.perf_counter() - t0)
            got = len({v for v in kernel_vips(ns, "rules") if v - int(vip(0)) < n // 2})
            assert got == want, f"shell baseline: {got} rules in the kernel after {verb}, expected {want}"
    return {"events": len(lat), "eps": len(lat) / sum(phases), "p50": pct(lat, 50), "p99": pct(lat, 99)}


# --------------------------------------------------------------------------- ikemgr watch


Transition = tuple[int, str, str, bool]  # (IKE_SA unique id, identity, VIP, up)


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in ns (``/proc/PID/task/*/schedstat``)."""
    total = 0
    for f in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(f.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total


def _phase(srv: ServerProcess, mon: KernelMonitor, ns: str, backend: str, items: list[Transition],
           rate: float | None, pid: int) -> dict[str, float]:
    up = items[0][3]
    want = {int(IPv4Address(v)): "add" if up else "del" for _, _, v, _ in items}
    mon.take()
    cpu0 = cpu_ns(pid)
    sent = srv.stream(items, rate)
    got, lost = mon.wait_for(want, timeout=60.0)
    cpu = (cpu_ns(pid) - cpu0) / 1e9  # read after the kernel check's poll: an upper bound
    in_kernel = kernel_vips(ns, backend) & set(want)
    expect = len(want) if up else 0
    if len(in_kernel) != expect:
        raise SystemExit(f"{backend}: the kernel holds {len(in_kernel)} of these VIPs after the "
                         f"{'connects' if up else 'disconnects'}, expected {expect}")
    lat = [got[int(IPv4Address(v))] - t for (_, _, v, _), t in zip(items, sent, strict=True)
           if int(IPv4Address(v)) in got]
    if LATENCIES is not None:  # --latencies: one JSON line per phase, for a look at the tail
        with LATENCIES.open("a") as f:
            f.write(json.dumps({"backend": backend, "rate": rate, "up": up,
                                "sent_s": [round(t - sent[0], 6) for t in sent],
                                "latency_s": [round(x, 6) for x in lat]}) + "\n")
    return {"n": len(items), "seen": len(got), "lost_bufs": lost, "elapsed": max(got.values()) - sent[0],
            "cpu": cpu,
            "send_span": sent[-1] - sent[0], "lat": lat}  # type: ignore[dict-item]


def fill_store(tmp: Path, ikemgr: Path) -> None:
    """The allow-list as in production: the store (SQLite here), filled by that build's `ikemgr sync`."""
    (tmp / "sync.json").write_text(config(tmp, "rules"))
    subprocess.run([str(ikemgr), "sync", "--no-live", "--force", "--config", str(tmp / "sync.json")],
                   check=True, capture_output=True)


def bench_watch(ns: str, tmp: Path, users: Path, backend: str, n_burst: int, n_paced: int, rate: float,
                conntrack: bool, profile: Path | None = None,
                ikemgr: Path = IKEMGR, bursts: int = BURSTS) -> dict[str, dict[str, float]]:
    """One ``ikemgr watch`` process: a burst (connects, then disconnects), a paced run, then the
    other ``bursts - 1`` bursts. ``burst`` is the burst of median rate (its p50/p99 with it),
    ``burst_rates`` all of them in order."""
    srv = ServerProcess(tmp / f"vici-{backend}.sock")
    cfg = tmp / f"ikemgr-{backend}.json"
    cfg.write_text(config(tmp, backend, srv.uri))
    logf = tmp / f"watch-{backend}.log"
    mon = KernelMonitor(ns)
    if not MONITOR_SAID:
        MONITOR_SAID.append(mon.sched)
        print(f"  kernel monitor: {mon.sched}")
    prof = [sys.executable, "-m", "cProfile", "-o", f"{profile}.{backend}"] if profile else []
    argv = [*prof, str(ikemgr), "watch", "--config", str(cfg), "--netns", ns, "--log-format", "json",
            ] + ([] if conntrack else ["--no-conntrack-flush"])
    out: dict[str, dict[str, float]] = {}
    with logf.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    try:
        end = time.monotonic() + 60
        while b'"event": "connected"' not in logf.read_bytes():
            if proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"ikemgr watch did not connect: {logf.read_text()[-800:]}")
            time.sleep(0.05)
        uid = 1000
        runs: list[dict[str, float]] = []
        # one burst, the latency run (as with a single burst: its figures stay comparable with
        # earlier runs), then the other bursts
        burst: tuple[str, int, float | None] = ("burst", n_burst, None)
        plan = [burst, ("paced", n_paced, rate)] + [burst] * (bursts - 1)
        for name, n, r in plan:
            half = n // 2
            ups = [(uid + i, user(i), str(vip(i)), True) for i in range(half)]
            downs = [(uid + i, user(i), str(vip(i)), False) for i in range(half)]
            uid += half
            a = _phase(srv, mon, ns, backend, ups, r, proc.pid)
            b = _phase(srv, mon, ns, backend, downs, r, proc.pid)
            lat = a["lat"] + b["lat"]  # type: ignore[operator]
            out[name] = {"transitions": a["n"] + b["n"], "seen": a["seen"] + b["seen"],
                         "lost_bufs": a["lost_bufs"] + b["lost_bufs"],
                         "eps": (a["n"] + b["n"]) / (a["elapsed"] + b["elapsed"]),
                         "cpu_us": (a["cpu"] + b["cpu"]) / (a["n"] + b["n"]) * 1e6,
                         "wall_us": (a["elapsed"] + b["elapsed"]) / (a["n"] + b["n"]) * 1e6,
                         "offered": (a["n"] + b["n"]) / max(1e-9, a["send_span"] + b["send_span"]),
                         "p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat)}
            if name == "burst":
                runs.append(out[name])
        out["burst_rates"] = {str(i): x["eps"] for i, x in enumerate(runs)}
        out["burst"] = sorted(runs, key=lambda x: x["eps"])[len(runs) // 2]
        if proc.poll() is not None:
            raise SystemExit(f"ikemgr watch exited ({proc.returncode}): {logf.read_text()[-800:]}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        mon.stop()
        srv.stop()
    lines = logf.read_bytes().splitlines()
    bad = [ln for ln in lines if b'"level": "error"' in ln or b"Traceback" in ln]
    if bad:
        at = lines.index(bad[0])
        shown = b"\n".join(lines[at:at + 30]).decode(errors="replace")
        raise SystemExit("ikemgr watch logged errors:\n" + shown)
    out["log"] = {"lines": len(lines), "bytes": logf.stat().st_size}
    return out


def bench_reconcile(ns: str, tmp: Path, backend: str, n: int) -> dict[str, float]:
    """The engine's full reconcile of ``n`` SAs (the start-up path of watch), kernel checked after.

    Logging as ``watch --log-format json`` has it (one line per decision and per rule
    change, to a file). The allow-list is read from the store first and timed apart
    (``allow_read_s``): a restart pays it once. Wall seconds and CPU seconds of this
    process (all threads, kernel time of its syscalls included) are both kept: on a shared
    machine the CPU figure moves less.
    """
    cfg = load_text(config(tmp, backend))
    sas = [Sa(str(100_000 + i), user(i), (vip(i),), "ESTABLISHED") for i in range(n)]
    want = {int(vip(i)) for i in range(n)}
    out: dict[str, float] = {}
    logf = (tmp / f"reconcile-{backend}.log").open("w")
    saved, sys.stderr = sys.stderr, logf
    try:
        setup_logging("json")
    finally:
        sys.stderr = saved

    def engine() -> Engine:
        eng = build_engine(cfg, netns=ns, lock_file=tmp / "lock", flush_conntrack=False)
        t = time.perf_counter()
        eng.refresh_allow()
        out["allow_read_s"] = time.perf_counter() - t
        return eng

    def timed(key: str, eng: Engine, sas: list[Sa]) -> Report:
        t, c = time.perf_counter(), time.process_time()
        r = eng.full(sas)
        out[key] = time.perf_counter() - t
        out[key + "_cpu"] = time.process_time() - c
        return r

    try:
        eng = engine()
        r = timed("empty_kernel", eng, sas)
        assert len(r.plan.add) == n and kernel_vips(ns, backend) & want == want
        close_engine(eng)
        eng = engine()
        r = timed("restart_in_sync", eng, sas)  # restart of watch: the kernel holds every user's policy
        assert r.plan.empty
        timed("remove_all", eng, [])  # everyone gone (charon restarted)
        assert not kernel_vips(ns, backend) & want
        close_engine(eng)
    finally:
        logging.getLogger("ikemgr").handlers[:] = []
        logf.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transitions", type=int, default=4000, help="burst: connects + disconnects")
    ap.add_argument("--paced-transitions", type=int, default=8000,
                    help="latency run: connects + disconnects")
    ap.add_argument("--shell-events", type=int, default=400)
    ap.add_argument("--list-lines", type=int, default=10_000)
    ap.add_argument("--paced-rate", type=float, default=None,
                    help="transitions/s for the latency run (default: 50x the sequential shell in this run)")
    ap.add_argument("--reconcile-sas", type=int, default=10_000)
    ap.add_argument("--backends", default="marks,rules")
    ap.add_argument("--bursts", type=int, default=BURSTS,
                    help="bursts per watch process (the median is the headline)")
    ap.add_argument("--no-conntrack", action="store_true", help="watch without conntrack flushes")
    ap.add_argument("--profile-watch", type=Path, default=None,
                    help="run watch under cProfile, write FILE.<backend>")
    ap.add_argument("--latencies", type=Path, default=None, metavar="FILE",
                    help="append each phase's send offsets and latencies (JSON lines) to FILE")
    ap.add_argument("--compare", type=Path, default=None, metavar="IKEMGR",
                    help="also run the burst and paced runs with another build's ikemgr executable "
                         "(e.g. an older commit's .venv/bin/ikemgr), in this run, beside this build")
    args = ap.parse_args()
    global LATENCIES
    LATENCIES = args.latencies
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    n_users = max(args.transitions // 2, args.paced_transitions // 2, args.shell_events // 2,
                  args.reconcile_sas)
    lines = max(args.list_lines, n_users)
    threads = load_text(config(Path("/nonexistent"), "rules")).strongswan.threads
    with tempfile.TemporaryDirectory(prefix="ikemgr-ikb-bench-") as d:
        tmp = Path(d)
        users = userlist(tmp, n_users, lines)
        fill_store(tmp, IKEMGR)
        builds = [("", tmp, IKEMGR)]
        if args.compare:
            (tmp / "compare").mkdir()
            userlist(tmp / "compare", n_users, lines)
            fill_store(tmp / "compare", args.compare)
            builds.append((f" [{args.compare}]", tmp / "compare", args.compare))
        names: list[str] = []
        try:
            ns = NS_PREFIX + "b" + secrets.token_hex(3)
            names.append(ns)
            netns(ns)
            print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; user list {lines} lines; "
                  "rates are transitions/s (one connect or disconnect = one updown run = two VICI events)")

            def shell(name: str, threads_: int) -> dict[str, float]:
                r = bench_shell(ns, tmp, users, args.shell_events, threads_)
                print(f"seed shell updown, {name:21}: {r['eps']:8.0f} /s   p50 {r['p50'] * 1e3:6.2f} ms   "
                      f"p99 {r['p99'] * 1e3:6.2f} ms   ({r['events']} runs)")
                return r

            for backend in args.backends.split(","):
                ns_b = NS_PREFIX + "b" + secrets.token_hex(3)
                names.append(ns_b)
                netns(ns_b)
                # the baselines right before this backend's runs (the concurrent one again right
                # after them): a shared machine's speed drifts within a run
                print(f"-- {backend}")
                seq = shell("one after another", 1)
                con = shell(f"{threads} threads (charon)", threads)
                rate = args.paced_rate or round(50 * seq["eps"])
                print(f"latency runs paced at {rate:.0f} transitions/s = {rate / seq['eps']:.0f}x "
                      "the sequential shell")
                for label, btmp, exe in reversed(builds):  # the compared build first, this one last
                    w = bench_watch(ns_b, btmp, btmp / "users.txt", backend, args.transitions,
                                    args.paced_transitions, rate, not args.no_conntrack,
                                    args.profile_watch, exe, args.bursts)
                    b, p = w["burst"], w["paced"]
                    lost = "" if not (b["lost_bufs"] or p["lost_bufs"]) else (
                        f"  ({b['lost_bufs'] + p['lost_bufs']} notification overruns: "
                        "those latencies are missing)")
                    rates = ", ".join(f"{x:.0f}" for x in w["burst_rates"].values())
                    print(f"ikemgr watch {backend:5} burst{label}: {b['eps']:8.0f} /s   "
                          f"p50 {b['p50'] * 1e3:7.2f} ms   p99 {b['p99'] * 1e3:7.2f} ms   "
                          f"({b['transitions']:.0f} transitions, {b['seen']:.0f} seen by the monitor; "
                          f"the median of {len(w['burst_rates'])} bursts: {rates}/s){lost}")
                    print(f"  watch process in that burst: {b['cpu_us']:.1f} us CPU per transition "
                          f"(user + system, every thread), {b['wall_us']:.1f} us wall")
                    print(f"ikemgr watch {backend:5} paced{label} {rate:.0f}/s "
                          f"(offered {p['offered']:.0f}/s): "
                          f"p50 {p['p50'] * 1e3:5.2f} ms   p99 {p['p99'] * 1e3:5.2f} ms   "
                          f"max {p['max'] * 1e3:5.1f} ms   ({p['transitions']:.0f} transitions)")
                after = shell(f"{threads} threads, after", threads)
                base = (con["eps"] + after["eps"]) / 2
                ratio = b["eps"] / base
                print(f"  floor events/s >= 50x the concurrent shell: {ratio:.1f}x ({b['eps']:.0f} vs "
                      f"{base:.0f}/s, the mean of the runs before and after): {met(ratio >= 50)}; "
                      f"vs the sequential shell {b['eps'] / seq['eps']:.1f}x")
                print(f"  floor p99 event->policy <= 5 ms at {rate / seq['eps']:.0f}x the sequential shell: "
                      f"{p['p99'] * 1e3:.2f} ms: {met(p['p99'] <= 0.005)}")
                print(f"  watch log (json): {w['log']['lines']:.0f} lines, {w['log']['bytes'] / 1e6:.1f} MB")
                rec = bench_reconcile(ns_b, tmp, backend, args.reconcile_sas)
                print(f"  reconcile of {args.reconcile_sas} SAs ({backend}), wall s (CPU s):")
                for key, what in (("restart_in_sync", "restart, the kernel holding every user's policy"),
                                  ("empty_kernel", "empty kernel (all added)"),
                                  ("remove_all", "everyone gone (all removed)")):
                    print(f"    {what:48} {rec[key]:5.2f} ({rec[key + '_cpu']:4.2f})  "
                          f"floor <= 1 s: {met(rec[key] <= 1.0)}")
                print(f"    (the allow-list read from the store before it: {rec['allow_read_s']:.2f} s)")
        finally:
            for n in names:
                subprocess.run(["ip", "netns", "del", n], check=False)


if __name__ == "__main__":
    main()

"""The pause of watch's idle-tick garbage collection, young (this build) against full (the baseline).

``engine.watch.IdleCollector`` runs Python's cyclic collector only at idle ticks. A full
collection walks every tracked object that is not frozen: on a gateway whose users came
after watch started (its start-up heap is frozen, they are not), that is the whole SA
index and the rules built, at every idle tick. A young one walks only what was allocated
since the one before; a full one runs every ``full_every`` s.

In one process, as ``event_path_cpu.py`` runs watch's event path (the session's decode,
``parse_batch``, ``Engine.events`` with the configured backend into a namespace of its own,
the JSON log to a file): ``--users`` connect and stay, then ``--rounds`` times a little
traffic (``--churn`` connects and as many disconnects of other users) followed by an idle
tick. Each tick is timed twice over the same heap state: through ``IdleCollector`` as watch
runs it, and, as the baseline in the same run, the same collector with ``full_every=0``
(every idle collection a full one, the policy before). Prints the pause per tick
(``time.perf_counter`` around ``tick``), best and median.

    sudo .venv/bin/python bench/idle_collect.py [--users 10000] [--churn 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ikemgr  # noqa: E402, I001

import bench_events as be  # noqa: E402
import vici_server as vs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10_000, help="users who connect and stay")
    ap.add_argument("--churn", type=int, default=200, help="connects (and disconnects) between ticks")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--backend", default="rules", choices=("rules", "marks"))
    a = ap.parse_args()
    from ikemgr.adapters.vici.codec import parse_batch
    from ikemgr.adapters.vici.session import EventSession
    from ikemgr.config.load import load
    from ikemgr.config.schema import Config
    from ikemgr.engine.watch import IdleCollector
    from ikemgr.engine.wiring import build_engine, close_engine
    from ikemgr.log import setup_logging

    ns = f"{be.NS_PREFIX}gc{os.urandom(3).hex()}"
    be.netns(ns)
    tmp = Path(tempfile.mkdtemp(prefix="ikemgr-gc-"))
    total = a.users + a.churn * a.rounds * 2
    try:
        be.userlist(tmp, total, max(10_000, total))
        be.fill_store(tmp, Path(sys.executable).parent / "ikemgr")
        (tmp / "cfg.json").write_text(be.config(tmp, a.backend))
        cfg = load(tmp / "cfg.json", Config)
        saved = os.dup(2)
        with (tmp / "watch.log").open("w") as logf:
            os.dup2(logf.fileno(), 2)  # the JSON lines go to a file, as watch's do
            setup_logging("json", "info")
            engine = build_engine(cfg, netns=ns, flush_conntrack=True, long_lived=True)
            engine.refresh_allow()
            a_sock, b_sock = socket.socketpair()
            sess = EventSession(a_sock)
            clock = [0.0]
            young = IdleCollector(idle_after=1.0, full_every=600.0, clock=lambda: clock[0])
            full = IdleCollector(idle_after=1.0, full_every=0.0, clock=lambda: clock[0])
            young.start()  # watch's start: one collection, freeze, automatic collection off

            def run(first: int, n: int, up: bool) -> None:
                sess._pending = b"".join(len(p).to_bytes(4, "big") + p for i in range(first, first + n)
                                         for p in vs.transition(1000 + i, be.user(i), str(be.vip(i)), up))
                while batch := sess.batch(0.0):
                    engine.events(parse_batch(batch), time.monotonic())

            def pause(c: IdleCollector) -> float:
                clock[0] += 2.0  # an idle tick after idle_after
                t0 = time.perf_counter()
                c.tick(idle=True)
                return (time.perf_counter() - t0) * 1000

            run(0, a.users, True)
            pauses: dict[str, list[float]] = {"young": [], "full": []}
            first_young = pause(young)  # the first tick after the users came: walks all of them
            nxt = a.users
            for _ in range(a.rounds):
                run(nxt, a.churn, True)
                run(nxt, a.churn, False)
                nxt += a.churn
                # the same heap state twice: the young collection first (what watch does), then
                # the full one as the baseline; each after its own bit of traffic
                pauses["young"].append(pause(young))
                run(nxt, a.churn, True)
                run(nxt, a.churn, False)
                nxt += a.churn
                pauses["full"].append(pause(full))
            routed = len(be.kernel_vips(ns, a.backend))
            close_engine(engine)
            young.stop()
            a_sock.close()
            b_sock.close()
        os.dup2(saved, 2)
        print(f"ikemgr from {Path(ikemgr.__file__).parent}; backend {a.backend}; {a.users} users connected "
              f"and staying ({routed} routed); {a.rounds} rounds of {a.churn} connects + {a.churn} "
              f"disconnects, then an idle tick; load {os.getloadavg()[0]:.2f}")
        print(f"  first idle tick after the {a.users} connects (young): {first_young:7.2f} ms")
        for k, label in (("young", "young collection (IdleCollector as watch runs it)"),
                         ("full", "full collection (baseline: every idle collection full)")):
            v = pauses[k]
            print(f"  {label:56} {min(v):7.2f} ms best, {statistics.median(v):7.2f} ms median per idle tick")
        print(f"  a full collection still runs every {young.full_every:.0f} s at an idle tick, "
              "with the baseline's pause")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

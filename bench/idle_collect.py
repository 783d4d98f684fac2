"""The pause of watch's idle-tick garbage collection, young (this build) against full (the baseline).

``engine.watch.IdleCollector`` runs Python's cyclic collector only at idle ticks. A full
collection walks every tracked object that is not frozen: on a gateway whose users came
after watch started (its start-up heap is frozen, they are not), that is the whole SA
index, at every idle tick. A young one walks only what was allocated
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
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ikemgr  # noqa: E402, I001

from inprocess import in_process  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10_000, help="users who connect and stay")
    ap.add_argument("--churn", type=int, default=200, help="connects (and disconnects) between ticks")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--backend", default="rules", choices=("rules", "marks"))
    a = ap.parse_args()
    from ikemgr.engine.watch import IdleCollector

    clock = [0.0]
    young = IdleCollector(idle_after=1.0, full_every=600.0, clock=lambda: clock[0])
    full = IdleCollector(idle_after=1.0, full_every=0.0, clock=lambda: clock[0])

    def pause(c: IdleCollector) -> float:
        clock[0] += 2.0  # an idle tick after idle_after
        t0 = time.perf_counter()
        c.tick(idle=True)
        return (time.perf_counter() - t0) * 1000

    pauses: dict[str, list[float]] = {"young": [], "full": []}
    with in_process("gc", a.backend, a.users + a.churn * a.rounds * 2) as (path, _):
        # every event made first: building them (the vici package's encoder) leaves cyclic
        # garbage of its own, which is not watch's and must not be in the heap measured
        arrive = path.frames(0, a.users, True)
        churn = [(path.frames(first, a.churn, True), path.frames(first, a.churn, False))
                 for first in range(a.users, a.users + 2 * a.rounds * a.churn, a.churn)]
        young.start()  # watch's start: one collection, freeze, automatic collection off
        try:
            path.run(0, a.users, True, arrive)
            first_young = pause(young)  # the first tick after the users came: walks all of them
            for r in range(a.rounds):
                # the same heap state twice: the young collection first (what watch does), then
                # the full one as the baseline; each after its own bit of traffic
                for k, (kind, c) in enumerate((("young", young), ("full", full))):
                    ups, downs = churn[2 * r + k]
                    path.run(0, 0, True, ups)
                    path.run(0, 0, False, downs)
                    pauses[kind].append(pause(c))
            routed = len(path.routed(a.backend))
        finally:
            young.stop()
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


if __name__ == "__main__":
    main()

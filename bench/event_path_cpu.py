"""CPU per transition of watch's event path, in one process: for A/Bs of a small change.

``bench_events.py`` measures the real ``ikemgr watch`` process against the shell; its
burst figure moves by ±30 % with the state of this shared machine, more than most single
changes to the event path. This runs the same path in-process (the session's frame decode,
``parse_batch``, ``Engine.events`` with the configured backend into a namespace of its own,
the JSON log to a file, conntrack flushes on) on the events ``bench/vici_server.py`` makes,
and prints the CPU time per connect and per disconnect (``time.process_time``, best and
median of ``--rounds``), the decode, parse and engine parts apart. For an A/B run it twice
in a row with ``PYTHONPATH`` pointing at each tree (a ``git worktree`` of the other build).

    sudo .venv/bin/python bench/event_path_cpu.py [--rounds 7] [--backend rules]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# first, so PYTHONPATH decides which tree is measured: bench_events puts this checkout's
# root first on sys.path, and every ikemgr module after this one comes from the same package
import ikemgr  # noqa: E402, I001

import bench_events as be  # noqa: E402
from inprocess import in_process  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--transitions", type=int, default=2000,
                    help="connects per round (then as many disconnects)")
    ap.add_argument("--backend", default="rules", choices=("rules", "marks"))
    a = ap.parse_args()
    from ikemgr.adapters.vici.codec import parse_batch

    res: dict[str, list[float]] = {}
    n = a.transitions
    with in_process("cpu", a.backend, n) as (path, _):
        gc.collect()
        gc.freeze()
        gc.disable()  # as watch runs (engine.watch.IdleCollector)
        uid = 1000
        for _ in range(a.rounds):
            for up in (True, False):  # the same n users every round, with new IKE_SA numbers
                path.session._pending = path.frames(0, n, up, uid)
                t0 = time.process_time()
                batches = []
                while batch := path.session.batch(0.0):
                    batches.append(batch)
                t1 = time.process_time()
                updates = [parse_batch(b) for b in batches]
                t2 = time.process_time()
                for u in updates:
                    path.engine.events(u, time.monotonic())
                t3 = time.process_time()
                way = "connect" if up else "disconnect"
                for part, secs in (("all", t3 - t0), ("decode", t1 - t0), ("parse", t2 - t1),
                                   ("engine", t3 - t2)):
                    res.setdefault(f"{way} {part}", []).append(secs / n * 1e6)
            uid += n
            gc.collect()
        left = len(path.routed(a.backend) & {int(be.vip(i)) for i in range(n)})
    print(f"ikemgr from {Path(ikemgr.__file__).parent}; backend {a.backend}; {a.rounds} rounds of "
          f"{n} connects + {n} disconnects; load {os.getloadavg()[0]:.2f}")
    for k, v in res.items():
        print(f"  {k:18} CPU {min(v):6.1f} us best, {statistics.median(v):6.1f} us median per transition")
    if left:
        raise SystemExit(f"{left} VIPs still routed after the last disconnects")


if __name__ == "__main__":
    main()

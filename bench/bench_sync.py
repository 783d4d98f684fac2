"""Benchmark: `ikemgr sync` of 100,000 grants with 1 % changed, against a naive baseline.

Prints figures; it is not a test. Every measurement runs in its own child process so that
peak RSS (``ru_maxrss`` from ``wait4`` on that child) belongs to that measurement alone.

* ``ikemgr sync`` (the headline) — the whole command as an operator runs it: interpreter
                  start, config, store open, fetch, validate, diff, one transaction with audit
                  rows, then the live reconcile: ``list-sas``/``get-pools`` from a VICI server
                  (``bench/vici_server.py``, the real wire protocol, some live SAs, a few of
                  them among the users the change revokes) and the engine's full reconcile
                  into a network namespace. Needs root; ``--no-live`` leaves it out.
* ``ikemgr sync --no-live`` — the same command without the live reconcile;
* ``sync``      — run_sync in-process (store open excluded): what the command spends inside
                  (these two with ``--all-modes``, or when the live reconcile is left out);
* ``naive``     — read + validate, then DELETE every grant of the source and re-INSERT all
                  100,000 in one transaction (no audit rows, so the baseline is flattered).
                  Its rows come from ``Validated.grants``, built from validate's plain texts:
                  validate and rows 0.22-0.23 s against 0.17 s for afdd737's one-lane
                  validate (one process, 100,000 lines), 1-3 % of the baseline's work.

Goal for the headline: <= 1 s and <= 200 MB, printed as met/not met.

SQLite always; PostgreSQL too when Debian's server binaries are installed (a throw-away
server, ``ikemgr_lab.postgres.PgCluster`` with durable commits, is started as the postgres
user in a temp dir and removed afterwards).

    .venv/bin/python bench/bench_sync.py [--grants 100000] [--changed 0.01] [--repeat 2]
        [--live-sas 200] [--no-postgres] [--no-live] [--all-modes]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
PY = sys.executable
VLANS = [123456 + i for i in range(100)]


# --------------------------------------------------------------------------- child side


def child(mode: str, config: Path) -> None:
    """One measurement; prints {"seconds": …, …} as JSON on stdout."""
    from sqlalchemy import delete, insert

    from ikemgr.allowlist.sources import fetch_all
    from ikemgr.allowlist.store import open_store
    from ikemgr.allowlist.store.models import grants
    from ikemgr.allowlist.sync import run_sync
    from ikemgr.config.load import load
    from ikemgr.core.grants import validate
    from ikemgr.core.identity import IdentityGrammar

    cfg = load(config)
    store = open_store(cfg)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    if mode == "sync":
        out = run_sync(cfg, store, lambda: fetch_all(cfg.sync), now, actor="bench", force=True)
        info = out.plan.summary()
    elif mode == "naive":
        # the obvious SQLAlchemy Core version: delete the sources' grants, insert them all again
        from sqlalchemy.dialects import postgresql, sqlite

        from ikemgr.allowlist.store.models import accounts, vlans

        fetched = fetch_all(cfg.sync)
        g = IdentityGrammar(cfg.policy.identity_pattern, cfg.policy.account_pattern)
        v = validate([e for b in fetched.values() for e in b], g, now)
        names = list(fetched)
        rows = list(v.grants.values())
        upsert = (postgresql if store.dialect == "postgresql" else sqlite).insert
        with store.engine.begin() as conn:
            conn.execute(delete(grants).where(grants.c.source.in_(names)))
            conn.execute(upsert(accounts).on_conflict_do_nothing(),
                         [{"name": n, "created_at": now} for n in sorted({r[0] for r in rows})])
            conn.execute(upsert(vlans).on_conflict_do_nothing(),
                         [{"number": n, "created_at": now} for n in sorted({r[1] for r in rows})])
            conn.execute(insert(grants), [
                {"account": a, "vlan": vl, "source": src, "valid_from": vf, "valid_until": vu, "note": note,
                 "suspended": False, "created_at": now, "updated_at": now}
                for a, vl, src, vf, vu, note, _ in rows])
        info = {"inserted": len(v.grants)}
    else:
        raise SystemExit(f"unknown mode {mode}")
    seconds = time.perf_counter() - t0
    store.close()
    print(json.dumps({"seconds": seconds, **info}))


# --------------------------------------------------------------------------- parent side


CPU: dict[str, float] = {}  # the last child's CPU seconds (user + system), by argv[1]


def measure(argv: list[str]) -> tuple[float, float, str]:
    """Run a child; return (wall seconds, peak RSS MiB, stdout); its CPU seconds go to ``CPU``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    CPU["last"] = usage.ru_utime + usage.ru_stime
    if proc.returncode not in (0,):
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err.strip()[-500:]}")
    return wall, usage.ru_maxrss / 1024, out


Row = tuple[str, float, float, float, float, float]


def write_list(path: Path, n: int, skip: range = range(0), extra: int = 0) -> None:
    lines = [f"user{i}@{VLANS[i % len(VLANS)]}\n" for i in range(n) if i not in skip]
    lines += [f"new{i}@{VLANS[i % len(VLANS)]}\n" for i in range(extra)]
    path.write_text("".join(lines))


def write_config(tmp: Path, db_url: str, vici_uri: str | None = None) -> Path:
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load((REPO / "examples" / "campus.yaml").read_text())
    doc["database"] = {"url": db_url}
    if vici_uri is not None:
        doc.setdefault("strongswan", {})["vici_socket"] = vici_uri
    doc["policy"] = {"state_dir": str(tmp / "state"), "lock_file": str(tmp / "ikemgr.lock")}
    doc["sync"] = {"sources": [{"kind": "file", "name": "userlist", "path": str(tmp / "userlist")}],
                   "lock_file": str(tmp / "sync.lock"), "max_removal_share": 1.0}
    cfg = tmp / "ikemgr.yaml"
    cfg.write_text(json.dumps(doc))
    return cfg


class Live:
    """A VICI server with live SAs and the gateway namespace the live reconcile applies in."""

    def __init__(self, tmp: Path, n_sas: int, n_grants: int) -> None:
        from vici_server import ServerProcess

        self.ns = "ikb-s" + secrets.token_hex(3)
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)
        self.server = ServerProcess(tmp / "charon.vici")
        # users of the two first VLANs (configured in examples/campus.yaml) hold VIPs of its pool
        users = [i for i in range(n_grants) if i % len(VLANS) in (0, 1)][:n_sas]
        self.sas = {1000 + k: (f"user{i}@{VLANS[i % len(VLANS)]}", str(IPv4Address("10.1.0.10") + k))
                    for k, i in enumerate(users)}
        self.users = users

    def reset(self) -> None:
        self.server.set_live(self.sas)

    def routed(self, backend: str) -> int:
        from bench_events import kernel_vips

        return len(kernel_vips(self.ns, backend))

    def close(self) -> None:
        self.server.stop()
        subprocess.run(["ip", "netns", "del", self.ns], check=False)


def run_backend(label: str, tmp: Path, db_url: str, n: int, changed: float, repeat: int,
                reset: Callable[[], None], live: Live | None, all_modes: bool = False) -> list[Row]:
    """Rows of (name, best work s, median work s, best wall s, peak RSS MiB, best CPU s) for one backend."""
    cfg = write_config(tmp, db_url, live.server.uri if live else None)
    lst = tmp / "userlist"
    k = int(n * changed / 2)
    skip = range(0, n, n // k)[:k]
    ikemgr = str(Path(sys.executable).parent / "ikemgr")
    rows = []
    reset()
    write_list(lst, n)
    wall, rss, out = measure([PY, __file__, "--child", "sync", str(cfg)])
    work = json.loads(out)["seconds"]
    rows.append((f"{label}: initial import of {n}", work, work, wall, rss, CPU["last"]))
    # 1 % changed (k removed + k added), each mode from the same starting point, `repeat` times
    extra = ("cli", "sync") if all_modes or not live else ()
    modes = (("cli-live",) if live else ()) + extra + ("naive",)
    for mode in modes:
        works, walls, cpus, peak = [], [], [], 0.0
        for _ in range(repeat):
            reset()
            write_list(lst, n)
            if mode == "cli-live":
                assert live is not None
                live.reset()
                # the starting point of a running gateway: the kernel holds the live users' policy
                measure([ikemgr, "sync", "--force", "--json", "--config", str(cfg), "--netns", live.ns])
            else:
                measure([PY, __file__, "--child", "sync", str(cfg)])
            write_list(lst, n, skip=skip, extra=k)
            if mode == "cli-live":
                assert live is not None
                before = live.routed("marks")
                live.reset()
                wall, rss, out = measure([ikemgr, "sync", "--force", "--json", "--config", str(cfg),
                                          "--netns", live.ns])
                data = json.loads(out)["data"]
                revoked = sum(1 for i in live.users if i in skip)
                after = live.routed("marks")
                if not data["reconciled"] or before - after != revoked:
                    raise SystemExit(f"{label}: the live reconcile left {after} routed VIPs "
                                     f"(from {before}; {revoked} revoked): {data.get('reconcile_error')}")
                work = wall
            elif mode == "cli":
                wall, rss, _ = measure([ikemgr, "sync", "--no-live", "--force", "--json", "--config",
                                        str(cfg)])
                work = wall
            else:
                wall, rss, out = measure([PY, __file__, "--child", mode, str(cfg)])
                work = json.loads(out)["seconds"]
            works.append(work)
            walls.append(wall)
            cpus.append(CPU["last"])
            peak = max(peak, rss)
        what = {"cli-live": f"ikemgr sync (live reconcile, {len(live.sas) if live else 0} SAs)",
                "cli": "ikemgr sync --no-live", "sync": "sync in-process (diff, 1 transaction)",
                "naive": "naive delete all + reinsert"}[mode]
        rows.append((f"{label}: {what}, {changed:.0%} changed", min(works), statistics.median(works),
                     min(walls), peak, min(cpus)))
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grants", type=int, default=100_000)
    ap.add_argument("--changed", type=float, default=0.01)
    ap.add_argument("--repeat", type=int, default=2, help="runs per measurement (best and median shown)")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-live", action="store_true", help="leave out the live reconcile (no root needed)")
    ap.add_argument("--live-sas", type=int, default=200, help="SAs the VICI server reports as live")
    ap.add_argument("--all-modes", action="store_true",
                    help="also `ikemgr sync --no-live` and the in-process sync beside the headline")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "CONFIG"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], Path(a.child[1]))
        return
    tmp = Path(tempfile.mkdtemp(prefix="ikemgr-bench-"))
    rows: list[Row] = []
    pg = None
    live: Live | None = None
    try:
        if not a.no_live:
            if os.geteuid() != 0:
                raise SystemExit("the live reconcile needs root (a network namespace); or pass --no-live")
            live = Live(tmp, a.live_sas, a.grants)
        db = tmp / "sqlite" / "ikemgr.db"
        (tmp / "sqlite").mkdir()

        def reset_sqlite() -> None:
            for p in db.parent.glob("ikemgr.db*"):
                p.unlink()

        rows += run_backend("sqlite", tmp / "sqlite", f"sqlite:///{db}", a.grants, a.changed, a.repeat,
                            reset_sqlite, live, a.all_modes)
        # imported here, not at the top: the measured children import only what they measure
        from ikemgr_lab import postgres
        from ikemgr_lab.postgres import PgCluster

        if not a.no_postgres and postgres.available():
            workdir = Path(tempfile.mkdtemp(prefix="ikemgr-bench-pg-"))
            server = pg = PgCluster(workdir, free_port(), fsync=True)
            server.init().start()
            url = server.url("postgres")

            def reset_pg() -> None:
                server.psql("postgres", "DROP TABLE IF EXISTS ikemgr_audit, ikemgr_grants, ikemgr_accounts, "
                                    "ikemgr_vlans, ikemgr_sync_sources, ikemgr_alembic_version")

            (tmp / "pg").mkdir()
            rows += run_backend("postgresql", tmp / "pg", url, a.grants, a.changed, a.repeat, reset_pg, live,
                                a.all_modes)
    finally:
        if live is not None:
            live.close()
        if pg is not None:
            pg.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    head = f"{'work best':>9}  {'median':>7}  {'wall best':>9}  {'CPU best':>8}  {'peak RSS MiB':>12}"
    print(f"{'measurement':<{width}}  {head}")
    for name, best, median, wall, rss, cpu in rows:
        print(f"{name:<{width}}  {best:9.3f}  {median:7.3f}  {wall:9.3f}  {cpu:8.3f}  {rss:12.1f}")
    print(f"work = seconds inside the sync (store open excluded; the commands: their wall), best and "
          f"median of {a.repeat}; wall = the whole child process, interpreter start included; "
          "CPU = the child's user + system seconds (steadier than wall on a shared machine); load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs.")
    by_name = {r[0]: r for r in rows}
    for label in ("sqlite", "postgresql"):
        head_row = next((r for n, r in by_name.items() if n.startswith(f"{label}: ikemgr sync (live")), None)
        naive = next((r for n, r in by_name.items() if n.startswith(f"{label}: naive")), None)
        if head_row is None or naive is None:
            continue
        mb = head_row[4] * 1.048576
        print(f"{label}: headline `ikemgr sync` with live reconcile {head_row[3]:.2f} s wall, "
              f"{head_row[5]:.2f} s CPU (floor <= 1 s wall: "
              f"{'met' if head_row[3] <= 1.0 else 'NOT MET'}), {mb:.0f} MB peak RSS (floor <= 200 MB: "
              f"{'met' if mb <= 200 else 'NOT MET'}); naive baseline in this run {naive[1]:.2f} s of work "
              f"({naive[1] / head_row[3]:.1f}x the whole command)")


if __name__ == "__main__":
    main()

"""Benchmark: `ikemgr sync` of 100,000 grants with 1 % changed, against a naive baseline.

Prints figures; it is not a test. Every measurement runs in its own child process so that
peak RSS (from wait4) belongs to that measurement alone. Figures:

* ``sync``      — run_sync in-process: read the list file, validate, diff, apply in one
                  transaction with audit rows (what ikemgr does);
* ``cli``       — the same through the `ikemgr sync` command (interpreter start included);
* ``naive``     — read + validate, then DELETE every grant of the source and re-INSERT all
                  100,000 in one transaction (no audit rows, so the baseline is flattered).

SQLite always; PostgreSQL too when Debian's server binaries are installed (a throw-away
server is started as the postgres user in a temp dir and removed afterwards).

    .venv/bin/python bench/bench_sync.py [--grants 100000] [--changed 0.01] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
PG_BIN = Path("/usr/lib/postgresql/15/bin")
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
        fetched = fetch_all(cfg.sync)
        g = IdentityGrammar(cfg.policy.identity_pattern, cfg.policy.account_pattern)
        v = validate([e for b in fetched.values() for e in b], g, now)
        names = list(fetched)
        with store.engine.begin() as conn:
            conn.execute(delete(grants).where(grants.c.source.in_(names)))
            store.ensure_refs(conn, list(v.grants.values()), now)
            conn.execute(insert(grants), [
                {"account": x.account, "vlan": x.vlan, "source": x.source, "valid_from": x.valid_from,
                 "valid_until": x.valid_until, "note": x.note, "suspended": False, "created_at": now,
                 "updated_at": now} for x in v.grants.values()])
        info = {"inserted": len(v.grants)}
    else:
        raise SystemExit(f"unknown mode {mode}")
    seconds = time.perf_counter() - t0
    store.close()
    print(json.dumps({"seconds": seconds, **info}))


# --------------------------------------------------------------------------- parent side


def measure(argv: list[str]) -> tuple[float, float, str]:
    """Run a child; return (wall seconds, peak RSS MiB, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0,):
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err.strip()[-500:]}")
    return wall, usage.ru_maxrss / 1024, out


def write_list(path: Path, n: int, skip: range = range(0), extra: int = 0) -> None:
    lines = [f"user{i}@{VLANS[i % len(VLANS)]}\n" for i in range(n) if i not in skip]
    lines += [f"new{i}@{VLANS[i % len(VLANS)]}\n" for i in range(extra)]
    path.write_text("".join(lines))


def write_config(tmp: Path, db_url: str) -> Path:
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load((REPO / "examples" / "campus.yaml").read_text())
    doc["database"] = {"url": db_url}
    doc["policy"] = {"state_dir": str(tmp / "state"), "lock_file": str(tmp / "ikemgr.lock")}
    doc["sync"] = {"sources": [{"kind": "file", "name": "userlist", "path": str(tmp / "userlist")}],
                   "lock_file": str(tmp / "sync.lock"), "max_removal_share": 1.0}
    cfg = tmp / "ikemgr.yaml"
    cfg.write_text(json.dumps(doc))
    return cfg


def run_backend(label: str, tmp: Path, db_url: str, n: int, changed: float, repeat: int,
                reset: Callable[[], None]) -> list[tuple[str, float, float, float, float]]:
    """Rows of (name, best work s, median work s, best wall s, peak RSS MiB) for one backend."""
    cfg = write_config(tmp, db_url)
    lst = tmp / "userlist"
    k = int(n * changed / 2)
    rows = []
    reset()
    write_list(lst, n)
    wall, rss, out = measure([PY, __file__, "--child", "sync", str(cfg)])
    work = json.loads(out)["seconds"]
    rows.append((f"{label}: initial import of {n}", work, work, wall, rss))
    # 1 % changed (k removed + k added), each mode from the same starting point, `repeat` times
    for mode in ("sync", "cli", "naive"):
        works, walls, peak = [], [], 0.0
        for _ in range(repeat):
            reset()
            write_list(lst, n)
            measure([PY, __file__, "--child", "sync", str(cfg)])
            write_list(lst, n, skip=range(0, n, n // k)[:k], extra=k)
            if mode == "cli":
                # the store alone: no charon runs here, so live sessions are left out (--no-live)
                wall, rss, _ = measure([str(Path(sys.executable).parent / "ikemgr"), "sync", "--no-live",
                                        "--force", "--json", "--config", str(cfg)])
                work = wall
            else:
                wall, rss, out = measure([PY, __file__, "--child", mode, str(cfg)])
                work = json.loads(out)["seconds"]
            works.append(work)
            walls.append(wall)
            peak = max(peak, rss)
        what = {"sync": "sync (diff, 1 transaction)", "cli": "ikemgr sync CLI",
                "naive": "naive delete all + reinsert"}[mode]
        rows.append((f"{label}: {what}, {changed:.0%} changed", min(works), statistics.median(works),
                     min(walls), peak))
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres(*cmd: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grants", type=int, default=100_000)
    ap.add_argument("--changed", type=float, default=0.01)
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (best and median shown)")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "CONFIG"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], Path(a.child[1]))
        return
    tmp = Path(tempfile.mkdtemp(prefix="ikemgr-bench-"))
    rows: list[tuple[str, float, float, float, float]] = []
    pg_root: Path | None = None
    try:
        db = tmp / "sqlite" / "ikemgr.db"
        (tmp / "sqlite").mkdir()

        def reset_sqlite() -> None:
            for p in db.parent.glob("ikemgr.db*"):
                p.unlink()

        rows += run_backend("sqlite", tmp / "sqlite", f"sqlite:///{db}", a.grants, a.changed, a.repeat,
                            reset_sqlite)
        if not a.no_postgres and (PG_BIN / "initdb").exists():
            pg_root = Path(tempfile.mkdtemp(prefix="ikemgr-bench-pg-"))
            shutil.chown(pg_root, "postgres", "postgres")
            port = free_port()
            as_postgres(str(PG_BIN / "initdb"), "-D", str(pg_root / "data"), "-A", "trust", "-U", "postgres",
                        "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
            as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(pg_root / "data"), "-l", str(pg_root / "log"), "-w",
                        "-o", f"-p {port} -k {pg_root} -c listen_addresses=127.0.0.1", "start")
            url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

            def reset_pg() -> None:
                subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-q", "-h", str(pg_root), "-p",
                                str(port), "-d", "postgres", "-c",
                                "DROP TABLE IF EXISTS ikemgr_audit, ikemgr_grants, ikemgr_accounts, "
                                "ikemgr_vlans, ikemgr_alembic_version"], check=True, capture_output=True)

            (tmp / "pg").mkdir()
            rows += run_backend("postgresql", tmp / "pg", url, a.grants, a.changed, a.repeat, reset_pg)
    finally:
        if pg_root is not None:
            subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D",
                            str(pg_root / "data"), "-m", "immediate", "-w", "stop"], capture_output=True)
            shutil.rmtree(pg_root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    head = f"{'work best':>9}  {'median':>7}  {'wall best':>9}  {'peak RSS MiB':>12}"
    print(f"{'measurement':<{width}}  {head}")
    for name, best, median, wall, rss in rows:
        print(f"{name:<{width}}  {best:9.3f}  {median:7.3f}  {wall:9.3f}  {rss:12.1f}")
    print(f"work = seconds inside the sync (store open excluded), best and median of {a.repeat}; wall = the "
          "whole child process, interpreter start included; load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs.")


if __name__ == "__main__":
    main()

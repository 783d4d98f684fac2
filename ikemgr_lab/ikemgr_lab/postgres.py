"""PostgreSQL as the lab's registration database, when ``database.url`` asks for it.

Debian's server binaries run as the ``postgres`` user (``setpriv`` execs in place, so
the supervised pid is the postmaster's) with a private data directory under the lab's
state dir, inside the campus services namespace, listening only on the address the
URL names. Authentication is ``trust``: the server is reachable only from inside the
lab's namespaces and lives as long as the lab.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from ikemgr.errors import ApplyFailed, UsageError
from ikemgr_lab import procs

_DB_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def bin_dir() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not versions:
        raise ApplyFailed("PostgreSQL server binaries not found (install postgresql: scripts/setup.sh)")
    return versions[-1].parent


def target(url: str) -> tuple[str, int, str, str]:
    """(host, port, database, user) of a postgresql URL; only plain names are accepted."""
    u = make_url(url)
    host, port, db, user = u.host or "", u.port or 5432, u.database or "", u.username or "postgres"
    if not _DB_RE.fullmatch(db) or not _DB_RE.fullmatch(user):
        raise UsageError(f"database.url: database and user must be plain lower-case names, "
                         f"not {db!r}/{user!r}")
    return host, port, db, user


def _as_postgres(*argv: str) -> list[str]:
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


def start(url: str, workdir: Path, state_dir: Path, netns: str) -> int:
    host, port, db, user = target(url)
    bindir = bin_dir()
    data, sock = workdir / "data", workdir / "sock"
    sock.mkdir(parents=True, exist_ok=True)
    for p in (workdir, sock):
        shutil.chown(p, "postgres", "postgres")
    r = subprocess.run(_as_postgres(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", user,
                                    "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"),
                       capture_output=True, text=True, timeout=120, check=False)
    if r.returncode != 0:
        raise ApplyFailed(f"initdb failed: {(r.stderr or r.stdout).strip()[-400:]}")
    with open(data / "pg_hba.conf", "a") as f:
        f.write("# the lab: only the lab's namespaces can reach this server\nhost all all 0.0.0.0/0 trust\n")
    log = workdir / "postgres.log"
    argv = _as_postgres(str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
                        "-c", f"listen_addresses={host}", "-c", "fsync=off", "-c", "max_connections=40",
                        # commit times: the e2e tests measure commit (NOTIFY) → kernel rule
                        "-c", "track_commit_timestamp=on")
    pid = procs.start(state_dir, "postgres", netns, argv, log)

    def ready() -> bool:
        q = subprocess.run(["pg_isready", "-q", "-h", str(sock), "-p", str(port)], capture_output=True,
                           timeout=5, check=False)
        return q.returncode == 0

    procs.wait_until("postgres", ready, 30, pid, log, interval=0.1)
    r = subprocess.run(_as_postgres("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(sock),
                                    "-p", str(port), "-U", user, "-d", "postgres",
                                    "-c", f'CREATE DATABASE "{db}"'),
                       capture_output=True, text=True, timeout=30, check=False)
    if r.returncode != 0:
        raise ApplyFailed(f"CREATE DATABASE {db} failed: {r.stderr.strip()}")
    return pid

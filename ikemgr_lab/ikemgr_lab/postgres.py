"""PostgreSQL for the lab's registration database and for the tests and benchmarks.

``PgCluster`` is the one way this project runs a PostgreSQL server: Debian's server
binaries run as the ``postgres`` user (``setpriv`` execs in place, so the started pid is
the postmaster's) with a private data directory and socket dir under ``workdir``,
listening only on ``host``:``port``, authentication ``trust``. ``init()`` makes the
cluster; then either ``start()`` runs the postmaster as this process's child (tests,
benchmarks: ``stop(mode)`` ends it with PostgreSQL's own smart/fast/immediate shutdown) or
a supervisor runs ``argv()`` itself, as the lab does.

The lab (``start``): the server lives in the campus services namespace, under the lab's
state dir, reachable only from inside the lab's namespaces, and lives as long as the lab.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from ikemgr.errors import ApplyFailed, UsageError
from ikemgr_lab import procs

_DB_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

#: pg_ctl's stop modes as the signals the postmaster takes for them
STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def bin_dir() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not versions:
        raise ApplyFailed("PostgreSQL server binaries not found (install postgresql: scripts/setup.sh)")
    return versions[-1].parent


def available() -> bool:
    """Whether PostgreSQL's server binaries are installed."""
    try:
        bin_dir()
    except ApplyFailed:
        return False
    return True


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


class PgCluster:
    """One PostgreSQL cluster in ``workdir`` serving ``host``:``port``, superuser ``user``."""

    def __init__(self, workdir: Path, port: int, host: str = "127.0.0.1", user: str = "postgres",
                 commit_timestamps: bool = False, fsync: bool = False) -> None:
        self.workdir = Path(workdir)
        self.port = port
        self.host = host
        self.user = user
        #: track_commit_timestamp: the lab's e2e tests measure commit (NOTIFY) → kernel rule
        self.commit_timestamps = commit_timestamps
        #: off by default (throw-away servers); a benchmark keeps PostgreSQL's durable commits
        self.fsync = fsync
        self.data = self.workdir / "data"
        self.sockdir = self.workdir / "sock"
        self.log_path = self.workdir / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.dbs: list[str] = []

    def url(self, db: str, user: str | None = None) -> str:
        return f"postgresql+psycopg://{user or self.user}@{self.host}:{self.port}/{db}"

    def init(self, any_host: bool = False) -> PgCluster:
        """initdb; ``any_host`` also trusts every address (the lab: its namespaces only reach it)."""
        self.sockdir.mkdir(parents=True, exist_ok=True)
        for p in (self.workdir, self.sockdir):
            shutil.chown(p, "postgres", "postgres")
        r = subprocess.run(_as_postgres(str(bin_dir() / "initdb"), "-D", str(self.data), "-A", "trust",
                                        "-U", self.user, "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"),
                           capture_output=True, text=True, timeout=120, check=False)
        if r.returncode != 0:
            raise ApplyFailed(f"initdb failed: {(r.stderr or r.stdout).strip()[-400:]}")
        if any_host:
            with open(self.data / "pg_hba.conf", "a") as f:
                f.write("# the lab: only the lab's namespaces can reach this server\n"
                        "host all all 0.0.0.0/0 trust\n")
        return self

    def argv(self) -> list[str]:
        """The postmaster's command line, run as the ``postgres`` user."""
        settings = ["-c", f"listen_addresses={self.host}", "-c", "max_connections=40"]
        if not self.fsync:
            settings += ["-c", "fsync=off"]
        if self.commit_timestamps:
            settings += ["-c", "track_commit_timestamp=on"]
        return _as_postgres(str(bin_dir() / "postgres"), "-D", str(self.data), "-p", str(self.port),
                            "-k", str(self.sockdir), *settings)

    def ready(self) -> bool:
        q = subprocess.run(["pg_isready", "-q", "-h", str(self.sockdir), "-p", str(self.port)],
                           capture_output=True, timeout=5, check=False)
        return q.returncode == 0

    def start(self, timeout: float = 60) -> PgCluster:
        """Run the postmaster as this process's child; returns once it accepts connections."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            procs.wait_until("postgres", self.ready, timeout, self.proc.pid, self.log_path, interval=0.05)
        except BaseException:
            self.stop("immediate")
            raise
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Shut the child postmaster down (pg_ctl's ``smart``/``fast``/``immediate``); waits for it."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(STOP_SIGNALS[mode])
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def psql(self, db: str, sql: str, timeout: float = 60) -> str:
        """``sql`` run on ``db`` over the socket dir; the unaligned tuples-only output."""
        r = subprocess.run(_as_postgres("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.sockdir),
                                        "-p", str(self.port), "-U", self.user, "-d", db, "-At", "-c", sql),
                           capture_output=True, text=True, timeout=timeout, check=False)
        if r.returncode != 0:
            raise ApplyFailed(f"psql on {db} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def createdb(self, name: str) -> str:
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        self.dbs.append(name)
        return name

    def remove(self) -> None:
        """Stop the server (immediate) and delete its directory."""
        self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)


def start(url: str, workdir: Path, state_dir: Path, netns: str) -> int:
    """The lab's server for ``url``, supervised (``procs``) inside ``netns``; returns its pid."""
    host, port, db, user = target(url)
    pg = PgCluster(workdir, port, host=host, user=user, commit_timestamps=True).init(any_host=True)
    pid = procs.start(state_dir, "postgres", netns, pg.argv(), pg.log_path)
    procs.wait_until("postgres", pg.ready, 30, pid, pg.log_path, interval=0.1)
    try:
        pg.createdb(db)
    except ApplyFailed as e:
        raise ApplyFailed(f"CREATE DATABASE {db} failed: {e}") from None
    return pid

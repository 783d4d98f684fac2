"""Helpers for the allow-list store tests: configs in tmp dirs, the real CLI, PostgreSQL and slapd.

PostgreSQL is Debian's own server binaries (initdb + pg_ctl) run as the ``postgres`` user
in a private temp dir, listening on 127.0.0.1 on a free port and on a private socket dir;
every server is stopped and its directory removed at teardown, also when a test fails (the
fixtures in conftest.py own that). slapd runs the same way, as root, with its own config.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from helpers import IKEMGR, free_port

REPO = Path(__file__).resolve().parents[3]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


# --------------------------------------------------------------------------- config + CLI


def base_config() -> dict[str, Any]:
    return YAML(typ="safe").load((REPO / "examples" / "campus.yaml").read_text())


@dataclass
class Env:
    """One test's gateway: its config file, its database, its list file."""

    tmp: Path
    config: Path
    doc: dict[str, Any]
    list_file: Path

    def write(self, **sections: Any) -> None:
        for k, v in sections.items():
            self.doc[k] = v
        self.config.write_text(json.dumps(self.doc, indent=1))

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # these tests are about the store; no charon runs, so `sync` leaves live sessions alone
        # (the live path is tested on the lab: tests/e2e/test_lab_sync.py)
        extra = ("--no-live",) if args[:1] == ("sync",) else ()
        return subprocess.run([str(IKEMGR), *args, *extra, "--config", str(self.config)], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})

    def json(self, *args: str) -> tuple[int, dict[str, Any]]:
        p = self.run(*args, "--json")
        try:
            return p.returncode, json.loads(p.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"not JSON (rc {p.returncode}): {p.stdout!r} {p.stderr!r}") from None


def make_env(tmp: Path, db_url: str | None = None, sources: list[dict[str, Any]] | None = None,
             **sync: Any) -> Env:
    doc = base_config()
    list_file = tmp / "userlist"
    doc["database"] = {"url": db_url or f"sqlite:///{tmp}/db/ikemgr.db"}
    doc["policy"] = {"backend": "marks", "state_dir": str(tmp / "state"), "lock_file": str(tmp / "ikemgr.lock")}
    doc["sync"] = {"sources": sources if sources is not None else
                   [{"kind": "file", "name": "userlist", "path": str(list_file)}],
                   "lock_file": str(tmp / "sync.lock"), "lock_timeout": 1, "timeout": 5, **sync}
    env = Env(tmp, tmp / "ikemgr.yaml", doc, list_file)
    env.write()
    return env


# --------------------------------------------------------------------------- PostgreSQL


def as_postgres(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:1])} failed ({p.returncode}): {p.stderr.strip()}")
    return p


@dataclass
class PgServer:
    root: Path
    port: int
    running: bool = False
    dbs: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        return self.root / "sock"

    def url(self, db: str, user: str = "postgres") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=40")
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"),
                    "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)
            self.running = False

    def psql(self, db: str, sql: str) -> str:
        p = as_postgres("/usr/bin/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.sockdir), "-p",
                        str(self.port), "-d", db, "-At", "-c", sql)
        return p.stdout

    def createdb(self, name: str) -> str:
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        self.dbs.append(name)
        return name


def new_server() -> PgServer:
    root = Path(tempfile.mkdtemp(prefix="ikt-s-pg-"))
    shutil.chown(root, "postgres", "postgres")
    srv = PgServer(root, free_port())
    (root / "sock").mkdir()
    shutil.chown(root / "sock", "postgres", "postgres")
    try:
        as_postgres(str(PG_BIN / "initdb"), "-D", str(srv.data), "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        srv.start()
    except BaseException:
        srv.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
        raise
    return srv


# --------------------------------------------------------------------------- slapd

SLAPD = Path("/usr/sbin/slapd")
LDAP_SUFFIX = "dc=example,dc=ac,dc=jp"
LDAP_ADMIN = f"cn=admin,{LDAP_SUFFIX}"
LDAP_PASSWORD = "admin-secret"


@dataclass
class Slapd:
    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def start(self) -> None:
        (self.root / "db").mkdir(parents=True, exist_ok=True)
        conf = self.root / "slapd.conf"
        conf.write_text("\n".join([
            *(f"include /etc/ldap/schema/{s}.schema" for s in ("core", "cosine", "nis", "inetorgperson")),
            "modulepath /usr/lib/ldap", "moduleload back_mdb",
            f"pidfile {self.root}/slapd.pid", f"argsfile {self.root}/slapd.args",
            "database mdb", "maxsize 10485760", f'suffix "{LDAP_SUFFIX}"', f'rootdn "{LDAP_ADMIN}"',
            f"rootpw {LDAP_PASSWORD}", f"directory {self.root}/db", ""]))
        self.proc = subprocess.Popen([str(SLAPD), "-d", "0", "-f", str(conf), "-h", f"{self.uri}/"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError("slapd did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

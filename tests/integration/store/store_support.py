"""Helpers for the allow-list store tests: configs in tmp dirs, the real CLI, slapd.

PostgreSQL is the project's one server runner, ``ikemgr_lab.postgres.PgCluster`` (a
private temp dir, 127.0.0.1 on a free port, a private socket dir); slapd runs as root with
its own config. Every server is stopped and its directory removed at teardown, also when a
test fails (the fixtures in conftest.py own that).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from helpers import IKEMGR
from ikemgr.config.load import load
from ikemgr.config.schema import Config

REPO = Path(__file__).resolve().parents[3]


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


def config(tmp: Path, url: str | None = None) -> Config:
    """The loaded config of ``make_env(tmp, url)``: for tests that call the store in-process."""
    return load(make_env(tmp, db_url=url).config)


# --------------------------------------------------------------------------- slapd

SLAPD = Path("/usr/sbin/slapd")
LDAP_SUFFIX = "dc=example,dc=ac,dc=jp"
LDAP_ADMIN = f"cn=admin,{LDAP_SUFFIX}"
LDAP_PASSWORD = "admin-secret"
LDAP_PEOPLE = f"ou=people,{LDAP_SUFFIX}"
#: the enabled people of the posix directory (conftest.py: posix_directory); bob is the disabled one
LDAP_USERS = [f"user{i}" for i in range(8)]


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

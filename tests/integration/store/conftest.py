"""Fixtures for the allow-list store tests (helpers live in store_support.py).

Every PostgreSQL server made here is stopped and its directory removed at session end,
also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from store_support import SLAPD, Env, Slapd, make_env

from helpers import free_port
from ikemgr_lab import postgres
from ikemgr_lab.postgres import PgCluster


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


@pytest.fixture(scope="session")
def pg_factory() -> Iterator[Callable[[], PgCluster]]:
    """Makes real PostgreSQL servers; all of them are stopped and deleted at session end."""
    if not postgres.available():
        pytest.skip("PostgreSQL server binaries are not installed (scripts/setup.sh)")
    if os.geteuid() != 0:
        pytest.skip("the PostgreSQL tests run the server as the postgres user: they need root")
    made: list[PgCluster] = []

    def make() -> PgCluster:
        srv = PgCluster(Path(tempfile.mkdtemp(prefix="ikt-s-pg-")), free_port())
        made.append(srv)
        return srv.init().start()

    yield make
    for srv in made:
        srv.remove()


@pytest.fixture(scope="session")
def pg(pg_factory: Callable[[], PgCluster]) -> PgCluster:
    """One shared server for the tests that do not stop it."""
    return pg_factory()


_counter = iter(range(1_000_000))


@pytest.fixture
def pg_db(pg: PgCluster) -> str:
    """A fresh database on the shared server, for one test."""
    return pg.createdb(f"ikt_{os.getpid()}_{next(_counter)}_{int(time.time() * 1000) % 100000}")


@pytest.fixture(scope="session")
def slapd() -> Iterator[Slapd]:
    """A real OpenLDAP server on 127.0.0.1 with an empty directory; stopped and removed at the end."""
    if not SLAPD.exists():
        pytest.skip("slapd is not installed (scripts/setup.sh)")
    root = Path(tempfile.mkdtemp(prefix="ikt-s-ldap-"))
    srv = Slapd(root, free_port())
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)

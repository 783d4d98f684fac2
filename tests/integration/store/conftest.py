"""Fixtures for the allow-list store tests (helpers live in store_support.py and ldap_groups.py).

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

import ldap_groups
import pytest
from ldap3 import Connection, Server
from ldap_groups import Directory
from store_support import (
    LDAP_ADMIN,
    LDAP_PASSWORD,
    LDAP_PEOPLE,
    LDAP_SUFFIX,
    LDAP_USERS,
    SLAPD,
    Env,
    Slapd,
    config,
    make_env,
)

from helpers import free_port
from ikemgr.allowlist.store import Store, open_store
from ikemgr.config.schema import Config
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


@pytest.fixture(scope="module")
def posix_directory(slapd: Slapd) -> Iterator[Connection]:
    """People (posixAccount) user0…user7 and bob, bob disabled by his login shell; an admin connection."""
    conn = Connection(Server(slapd.uri), LDAP_ADMIN, LDAP_PASSWORD, auto_bind=True)
    conn.add(LDAP_SUFFIX, ["dcObject", "organization"], {"o": "example", "dc": "example"})
    conn.add(LDAP_PEOPLE, ["organizationalUnit"], {"ou": "people"})
    for n, uid in enumerate([*LDAP_USERS, "bob"]):
        shell = "/usr/sbin/nologin" if uid == "bob" else "/bin/bash"
        assert conn.add(f"uid={uid},{LDAP_PEOPLE}", ["inetOrgPerson", "posixAccount"], {
            "cn": uid, "sn": uid, "uid": uid, "uidNumber": 10000 + n, "gidNumber": 10000,
            "homeDirectory": f"/home/{uid}", "loginShell": shell}), conn.result
    yield conn
    conn.unbind()


@pytest.fixture(scope="module")
def group_directory() -> Iterator[Directory]:
    """ldap_groups' directory on a TLS-only slapd (see there); stopped and removed after the module."""
    if not SLAPD.exists():
        pytest.skip("slapd is not installed (scripts/setup.sh)")
    with ldap_groups.running() as d:
        yield d


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.root])])
def cfg(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    """A gateway's config whose database is SQLite, then a fresh database on the shared PostgreSQL."""
    if request.param == "sqlite":
        return config(tmp_path)
    pg: PgCluster = request.getfixturevalue("pg")
    db = request.getfixturevalue("pg_db")
    return config(tmp_path, pg.url(db))


@pytest.fixture
def store(cfg: Config) -> Iterator[Store]:
    """``cfg``'s store, opened (schema made by the migrations) and closed after the test."""
    s = open_store(cfg)
    yield s
    s.close()

"""`ikemgr sync` from a registration database on a real PostgreSQL server, and its outages."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from store_support import IKEMGR, Env, make_env

from ikemgr_lab.postgres import PgCluster

pytestmark = [pytest.mark.postgres, pytest.mark.root]  # PostgreSQL runs as the postgres user

REGDB_SQL = """
CREATE TABLE registrations (account text, vlan integer, valid_until timestamptz, note text);
INSERT INTO registrations VALUES
  ('alice', 123456, NULL, 'lab A'),
  ('bob', 123456, '2099-01-01T00:00:00Z', NULL),
  ('carol', 123457, NULL, NULL);
CREATE TABLE raw_rows (account bytea, vlan text);
CREATE VIEW lab_members AS SELECT account, vlan, valid_until FROM registrations;
"""

HOSTILE_TEXT = [
    ("alice'; DROP TABLE ikemgr_grants; --", "123456"),
    ("' OR '1'='1", "123456"),
    (".*", "123456"),
    ("a|b", "123456"),
    ("x" * 300, "123456"),
    ("dave", "0123456"),
    ("dave", "123456 OR 1=1"),
    ("eve@123457", "123456"),
    ("fr\tank", "123456"),
]


def sql_literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def regdb(pg: PgCluster, db: str) -> str:
    """Load the registration tables into an existing database."""
    pg.psql(db, REGDB_SQL)
    return db


def sql_env(tmp: Path, pg: PgCluster, db: str, query: str | None = None, store_url: str | None = None,
            **sync: object) -> Env:
    src: dict[str, object] = {"kind": "sql", "name": "regdb", "url": pg.url(db)}
    src["query"] = query or "SELECT account, vlan, valid_until, note FROM registrations"
    return make_env(tmp, db_url=store_url, sources=[src], **sync)


def pairs(env: Env) -> set[str]:
    rc, out = env.json("grant", "list")
    assert rc == 0, out
    return {g["identity"] for g in out["data"]["grants"]}


def test_sync_from_postgres_into_a_postgres_store(pg: PgCluster, pg_db: str, tmp_path: Path) -> None:
    db = regdb(pg, pg.createdb(pg_db + "_reg"))
    env = sql_env(tmp_path, pg, db, store_url=pg.url(pg_db))
    rc, out = env.json("sync")
    assert rc == 0, out
    assert out["data"]["summary"]["added"] == 3 and out["data"]["sources"] == {"regdb": 3}
    rc, listed = env.json("grant", "list")
    by_id = {g["identity"]: g for g in listed["data"]["grants"]}
    assert by_id["bob@123456"]["valid_until"] == "2099-01-01T00:00:00+00:00"
    assert by_id["alice@123456"]["note"] == "lab A"
    pg.psql(db, "UPDATE registrations SET valid_until = '2098-01-01Z' WHERE account = 'bob'; "
                "INSERT INTO registrations VALUES ('dave', 200001, NULL, NULL)")
    rc, out = env.json("sync")
    assert rc == 0
    assert out["data"]["summary"] == {"added": 1, "removed": 0, "expired": 0, "updated": 1, "rejected": 0,
                                      "unchanged": 2, "current": 3}
    assert out["data"]["updated"][0]["after"]["valid_until"] == "2098-01-01T00:00:00+00:00"


def test_hostile_rows_are_rejected_with_their_row_numbers(pg: PgCluster, pg_db: str, tmp_path: Path) -> None:
    db = regdb(pg, pg_db)
    values = ", ".join(f"({sql_literal(a)}, {sql_literal(v)})" for a, v in HOSTILE_TEXT)
    pg.psql(db, f"CREATE TABLE hostile (n serial, account text, vlan text); "
                f"INSERT INTO hostile (account, vlan) VALUES {values}")
    pg.psql(db, r"INSERT INTO raw_rows VALUES ('\xfffe616c696365'::bytea, '123456'), "
                r"('\x6f6b'::bytea, '123457')")
    env = make_env(tmp_path, sources=[
        {"kind": "sql", "name": "regdb", "url": pg.url(db),
         "query": "SELECT account, vlan FROM hostile ORDER BY n"},
        {"kind": "sql", "name": "raw", "url": pg.url(db), "query": "SELECT account, vlan FROM raw_rows"},
    ])
    rc, out = env.json("sync")
    assert rc == 0, out
    rejected = out["data"]["rejected"]
    assert [(r["source"], r["where"]) for r in rejected] == (
        [("regdb", f"row {n}") for n in range(1, len(HOSTILE_TEXT) + 1)] + [("raw", "row 1")])
    assert "UTF-8" in rejected[-1]["reason"]
    assert pairs(env) == {"ok@123457"}
    assert pg.psql(db, "SELECT count(*) FROM registrations").strip() == "3"  # nothing was executed


def test_view_source(pg: PgCluster, pg_db: str, tmp_path: Path) -> None:
    db = regdb(pg, pg_db)
    env = make_env(tmp_path, sources=[{"kind": "sql", "name": "regdb", "url": pg.url(db),
                                       "view": "public.lab_members"}])
    assert env.run("sync").returncode == 0
    assert pairs(env) == {"alice@123456", "bob@123456", "carol@123457"}


@pytest.mark.parametrize(("query", "needle"), [
    ("SELECT account, vlan FROM no_such_table", "no_such_table"),
    ("SELECT account FROM registrations", "no column(s) vlan"),
    ("SELECT r.account, r.vlan FROM registrations r, pg_sleep(4)", "statement timeout"),
    ("INSERT INTO registrations VALUES ('mallory', 123456) RETURNING account, vlan", "read-only"),
])
def test_source_errors_keep_the_last_good_list(pg: PgCluster, pg_db: str, tmp_path: Path, query: str,
                                               needle: str) -> None:
    db = regdb(pg, pg_db)
    env = sql_env(tmp_path, pg, db, timeout=1)
    assert env.run("sync").returncode == 0
    env.doc["sync"]["sources"][0]["query"] = query
    env.write()
    p = env.run("sync", "--force")
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert p.stderr.startswith("error: source regdb unavailable:") and needle in p.stderr
    assert "nothing changed" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert pairs(env) == {"alice@123456", "bob@123456", "carol@123457"}
    assert pg.psql(db, "SELECT count(*) FROM registrations WHERE account = 'mallory'").strip() == "0"


def test_source_server_stopped_mid_sync(pg_factory: Callable[[], PgCluster], tmp_path: Path) -> None:
    srv = pg_factory()
    db = regdb(srv, srv.createdb("reg"))
    env = sql_env(tmp_path, srv, db, timeout=20)
    assert env.run("sync").returncode == 0
    env.doc["sync"]["sources"][0]["query"] = "SELECT r.account, r.vlan FROM registrations r, pg_sleep(3)"
    env.write()
    proc = subprocess.Popen([str(IKEMGR), "sync", "--force", "--config", str(env.config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until the query is really running
        if srv.psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3)%' "
                                "AND pid <> pg_backend_pid()").strip() == "1":
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the sync query never started")
    srv.stop("immediate")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, (out, err)
    assert "source regdb unavailable" in err and "nothing changed" in err
    assert pairs(env) == {"alice@123456", "bob@123456", "carol@123457"}
    p = env.run("sync", "--force")  # server down: connection refused, still not "empty"
    assert p.returncode == 3 and "source regdb unavailable" in p.stderr
    assert pairs(env) == {"alice@123456", "bob@123456", "carol@123457"}


def test_emptied_registration_table_hits_the_valve(pg: PgCluster, pg_db: str, tmp_path: Path) -> None:
    db = regdb(pg, pg_db)
    env = sql_env(tmp_path, pg, db)
    assert env.run("sync").returncode == 0
    pg.psql(db, "DELETE FROM registrations")
    p = env.run("sync")
    assert p.returncode == 4 and "remove 3 of 3 grants (100% > 20%)" in p.stderr
    assert len(pairs(env)) == 3


def test_two_gateways_sharing_a_database_sync_one_at_a_time(pg: PgCluster, pg_db: str, tmp_path: Path) -> None:
    import psycopg

    from ikemgr.allowlist.store.repository import SYNC_LOCK_KEY

    db = regdb(pg, pg.createdb(pg_db + "_reg"))
    gw1 = sql_env(tmp_path, pg, db, store_url=pg.url(pg_db))
    (tmp_path / "gw2").mkdir()
    gw2 = sql_env(tmp_path / "gw2", pg, db, store_url=pg.url(pg_db))  # its own local lock file
    with psycopg.connect(f"host=127.0.0.1 port={pg.port} dbname={pg_db} user=postgres",
                         autocommit=True) as other:  # gateway 1 in the middle of a sync
        other.execute("SELECT pg_advisory_lock(%s)", (SYNC_LOCK_KEY,))
        p = gw2.run("sync")
        assert p.returncode == 4 and "another gateway is syncing this database" in p.stderr
        assert pairs(gw2) == set()
    assert gw2.run("sync").returncode == 0
    rc, out = gw1.json("sync")
    assert rc == 0 and not out["data"]["applied"] and out["data"]["summary"]["unchanged"] == 3

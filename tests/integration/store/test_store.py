"""The store API the policy engine uses, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import inspect, text
from store_support import config, make_env

from helpers import until
from ikemgr.allowlist.store import NOTIFY_CHANNEL, Store, open_store
from ikemgr.allowlist.store.models import VERSION_TABLE
from ikemgr.config.schema import Config
from ikemgr.core.grants import Grant, SyncPlan, plain_row
from ikemgr.errors import ApplyFailed, BackendUnavailable
from ikemgr_lab.postgres import PgCluster

NOW = datetime.now(UTC).replace(microsecond=0)
H = timedelta(hours=1)


def test_open_creates_the_schema_through_migrations_and_reopens_cheaply(cfg: Config, store: Store) -> None:
    names = set(inspect(store.engine).get_table_names())
    assert {"ikemgr_accounts", "ikemgr_vlans", "ikemgr_grants", "ikemgr_audit", "ikemgr_sync_sources",
            VERSION_TABLE} <= names
    with store.engine.connect() as c:
        assert c.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one() == "0003"
    t0 = time.monotonic()
    again = open_store(cfg)
    assert again.active_pairs(NOW) == frozenset()
    again.close()
    assert time.monotonic() - t0 < 2.0


def test_a_store_of_the_previous_schema_is_upgraded_at_open_and_keeps_its_grants(cfg: Config) -> None:
    """A gateway upgraded from a release at revision 0002: the next open adds the sync-sources
    table (0003); the grants stay, and its first sync records the grammar's fingerprint."""
    from alembic import command

    from ikemgr.allowlist.store.migrate import _alembic_config

    old = open_store(cfg, migrate=False)  # an empty database: migrated by hand to 0002 below
    with old.engine.begin() as conn:
        acfg = _alembic_config()
        acfg.attributes["connection"] = conn
        command.upgrade(acfg, "0002")
    old.put_grant(Grant("alice", 123456, "userlist"), "t", NOW)
    old.close()
    store = open_store(cfg)
    try:
        with store.engine.connect() as c:
            assert c.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one() == "0003"
        view = store.source_view(["userlist"])
        assert view.plain == {"userlist": {"alice@123456"}} and view.grammars == {}
        store.apply(SyncPlan(sources=("userlist",)), "sync", NOW, grammar="fp")
        assert store.source_view(["userlist"]).grammars == {"userlist": "fp"}
    finally:
        store.close()


def test_active_pairs_honours_window_and_suspension(store: Store) -> None:
    rows = [
        Grant("open", 123456, "manual"),
        Grant("future", 123456, "manual", valid_from=NOW + H),
        Grant("past", 123456, "manual", valid_until=NOW - H),
        Grant("until", 123457, "manual", valid_from=NOW - H, valid_until=NOW + H),
        Grant("susp", 123457, "manual"),
        Grant("open", 123456, "regdb"),  # same pair from two sources counts once
    ]
    for g in rows:
        assert store.put_grant(g, "t", NOW)[0] == "added"
    store.set_suspended({"susp": "disabled", "open": "ok"}, "ldap-check", NOW)
    assert store.active_pairs(NOW) == {("open", 123456), ("until", 123457)}
    assert store.active_pairs(NOW + 2 * H) == {("open", 123456), ("future", 123456)}
    assert store.active_pairs(NOW + H) == {("open", 123456), ("future", 123456)}  # valid_until exclusive
    assert store.active_pairs(NOW + H - timedelta(seconds=1)) == {("open", 123456), ("until", 123457)}
    listed = {g.account: g for g in store.grants(vlan=123457)}
    assert listed["susp"].suspended and listed["until"].valid_until == NOW + H
    store.set_suspended({"susp": "ok"}, "ldap-check", NOW)
    assert ("susp", 123457) in store.active_pairs(NOW)
    assert [e.action for e in store.audit(account="susp")] == ["grant.resume", "grant.suspend", "grant.add"]


def test_apply_is_one_transaction(store: Store) -> None:
    base = [Grant(f"u{i}", 123456, "list") for i in range(5)]
    store.apply(SyncPlan(added=tuple(base)), "sync@t", NOW)
    assert len(store.audit(limit=1000)) == 5
    clash = SyncPlan(added=(Grant("new", 123456, "list"), base[0]), removed=tuple(base[1:3]),
                     current=5)
    with pytest.raises(ApplyFailed, match="nothing was written"):
        store.apply(clash, "sync@t", NOW)
    assert {g.account for g in store.grants()} == {f"u{i}" for i in range(5)}
    assert len(store.audit(limit=1000)) == 5


def test_audit_filters_are_exact(store: Store) -> None:
    store.put_grant(Grant("alice", 123456, "manual"), "root@gw1", NOW - 2 * H)
    store.put_grant(Grant("alice", 123457, "manual"), "root@gw2", NOW)
    store.remove_grant("alice", 123456, "manual", "root@gw1", NOW)
    assert [e.vlan for e in store.audit(account="alice")] == [123456, 123457, 123456]
    assert [e.action for e in store.audit(actor="root@gw1")] == ["grant.remove", "grant.add"]
    assert [e.vlan for e in store.audit(since=NOW - H)] == [123456, 123457]
    assert [e.action for e in store.audit(until=NOW - H)] == ["grant.add"]
    assert store.audit(account="%") == [] and store.audit(actor="root@gw_") == []
    assert store.audit(limit=1)[0].before == {"note": "", "suspended": False, "valid_from": None,
                                              "valid_until": None}


@pytest.mark.postgres
@pytest.mark.root
def test_concurrent_first_open_on_a_shared_database(pg: PgCluster, pg_db: str, tmp_path: Path) -> None:
    cfg = config(tmp_path, pg.url(pg_db))
    errors: list[BaseException] = []

    def one() -> None:
        try:
            open_store(cfg).close()
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


@pytest.mark.postgres
@pytest.mark.root
def test_notify_reaches_a_listener_within_a_second(pg: PgCluster, pg_db: str, tmp_path: Path) -> None:
    cfg = config(tmp_path, pg.url(pg_db))
    store = open_store(cfg)
    with psycopg.connect(f"host=127.0.0.1 port={pg.port} dbname={pg_db} user=postgres",
                         autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        t0 = time.monotonic()
        store.put_grant(Grant("alice", 123456, "manual"), "t", NOW)
        got = list(listener.notifies(timeout=1.0, stop_after=1))
        assert [n.channel for n in got] == [NOTIFY_CHANNEL]
        assert time.monotonic() - t0 < 1.0
    store.close()


@pytest.mark.postgres
@pytest.mark.root
def test_database_outage_is_backend_unavailable_and_recovers(pg_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    srv: PgCluster = pg_factory()
    db = srv.createdb("gw")
    cfg = config(tmp_path, srv.url(db))
    store = open_store(cfg)
    store.put_grant(Grant("alice", 123456, "manual"), "t", NOW)
    srv.stop("immediate")
    with pytest.raises(BackendUnavailable) as e:
        store.active_pairs(NOW)
    assert e.value.backend == "db" and e.value.exit_code == 3
    with pytest.raises(BackendUnavailable):
        open_store(cfg)
    (tmp_path / "cli").mkdir()
    env = make_env(tmp_path / "cli", db_url=srv.url(db))
    p = env.run("grant", "list")
    assert p.returncode == 3 and p.stderr.startswith("error: db unavailable:")
    assert len(p.stderr.strip().splitlines()) == 1
    srv.start()
    assert store.active_pairs(NOW) == {("alice", 123456)}  # the same Store reconnects
    store.close()


def test_the_sync_view_equals_the_general_read(store: Store) -> None:
    gs = [Grant("a", 123456, "list"), Grant("b", 123457, "list", valid_from=NOW - H, valid_until=NOW + H,
                                           note="n"),
          Grant("c", 123456, "other"), Grant("d", 123456, "list", valid_until=NOW - H),
          Grant("e", 123457, "list"), Grant("f", 123456, "other", note="n")]
    store.apply(SyncPlan(added=tuple(gs), sources=("list", "other")), "t", NOW, grammar="g1")
    store.set_suspended({"a": "missing"}, "t", NOW)
    view = store.source_view(["list"])
    assert view.plain == {"list": {"e@123457"}}  # a plain grant: its canonical text, made in SQL
    assert sorted(g.account for g in view.rows) == ["a", "b", "d"]
    rows = sorted(view.rows + [plain_row(t, s) for s, texts in view.plain.items() for t in texts])
    assert rows == sorted(store.grants(sources=["list"]))
    a, b = sorted(Grant._make(r) for r in view.rows)[:2]
    assert a.suspended and b.valid_until == NOW + H and b.valid_until.tzinfo is not None
    assert view.grammars == {"list": "g1"}
    both = store.source_view(["other", "list"])
    assert both.plain == {"list": {"e@123457"}, "other": {"c@123456"}}
    assert both.grammars == {"list": "g1", "other": "g1"}
    assert len(both.rows) == 4
    store.apply(SyncPlan(sources=("list",)), "t", NOW, grammar="g2")  # nothing else changed: recorded
    assert store.source_view(["list", "other"]).grammars == {"list": "g2", "other": "g1"}


def test_change_listener_wakes_within_a_second(cfg: Config, store: Store) -> None:
    from ikemgr.allowlist.store.notify import ChangeListener

    with ChangeListener(cfg) as listener:
        assert listener.wait(0.3) is False
        writer = open_store(cfg)  # another connection, as another process or gateway would be
        timer = threading.Timer(0.3, lambda: writer.put_grant(Grant("alice", 123456, "manual"), "t", NOW))
        t0 = time.monotonic()
        timer.start()
        try:
            assert listener.wait(5.0) is True
            assert time.monotonic() - t0 < 1.3  # 0.3 s until the write, then under a second
        finally:
            timer.join()
            writer.close()
        assert ("alice", 123456) in store.active_pairs(NOW)
        assert listener.wait(0.3) is False


def test_a_write_by_another_tool_wakes_the_change_listener_too(cfg: Config, store: Store) -> None:
    """Plain SQL on the grants table, not through ikemgr (psql on the shared database, the
    sqlite3 shell): PostgreSQL's statement trigger notifies, SQLite's data_version moves."""
    from sqlalchemy import create_engine

    from ikemgr.allowlist.store.notify import ChangeListener

    store.put_grant(Grant("alice", 123456, "manual"), "t", NOW)
    other = create_engine(store.engine.url)  # a connection of its own, as a DBA's would be
    try:
        with ChangeListener(cfg) as listener:
            assert listener.wait(0.3) is False
            with other.begin() as c:
                assert c.execute(text("DELETE FROM ikemgr_grants WHERE account = 'alice'")).rowcount == 1
            t0 = time.monotonic()
            assert listener.wait(5.0) is True
            assert time.monotonic() - t0 < 1.0
            assert listener.wait(0.3) is False
    finally:
        other.dispose()
    assert ("alice", 123456) not in store.active_pairs(NOW)


def test_next_change_is_the_first_grant_start_or_end_after_now(store: Store) -> None:
    """What watch sleeps until when its change listener is healthy: the clock alone changes
    the list only where a grant starts or ends; suspended grants do not count."""
    assert store.next_change(NOW) is None  # empty store
    for g in (Grant("a", 123456, "manual", valid_until=NOW + 3 * H),
              Grant("b", 123456, "manual", valid_from=NOW + 2 * H),
              Grant("c", 123457, "manual"),
              Grant("d", 123457, "manual", valid_until=NOW + H, suspended=True)):
        store.put_grant(g, "t", NOW)
    got = store.next_change(NOW)
    assert got == NOW + 2 * H and got.tzinfo is not None  # b starts before a ends
    assert store.next_change(NOW + 2 * H) == NOW + 3 * H  # b's start is not after now
    assert store.next_change(NOW + 3 * H) is None


def test_pair_ends_are_the_latest_end_of_pairs_that_end(store: Store) -> None:
    """What the snapshot keeps for an outage: a pair ends when its last grant ends; a pair
    with any open-ended grant never ends (also with SQLite's naive timestamps: aware back)."""
    for g in (Grant("a", 123456, "manual", valid_until=NOW + H),
              Grant("a", 123456, "regdb", valid_until=NOW + 2 * H),
              Grant("b", 123456, "manual", valid_until=NOW + H), Grant("b", 123456, "regdb"),
              Grant("c", 123457, "manual")):
        assert store.put_grant(g, "t", NOW)[0] == "added"
    assert store.pair_ends(NOW) == {("a", 123456): NOW + 2 * H}
    assert store.pair_ends(NOW + H) == {("a", 123456): NOW + 2 * H}


def test_allow_list_is_active_pairs_and_pair_ends_in_one_read(store: Store) -> None:
    """The engine's one read after a sync: the same pairs and ends as the two separate reads,
    at every moment of the grants' windows (suspended, future, ended and open-ended grants)."""
    for g in (Grant("a", 123456, "manual", valid_until=NOW + H),
              Grant("a", 123456, "regdb", valid_until=NOW + 2 * H),
              Grant("b", 123456, "manual", valid_until=NOW + H), Grant("b", 123456, "regdb"),
              Grant("c", 123457, "manual"), Grant("d", 123457, "manual", valid_from=NOW + H),
              Grant("e", 123457, "manual", valid_from=NOW - H, valid_until=NOW + 3 * H)):
        assert store.put_grant(g, "t", NOW)[0] == "added"
    store.set_suspended({"c": "disabled"}, "t", NOW)
    for at in (NOW - 2 * H, NOW, NOW + H - timedelta(seconds=1), NOW + H, NOW + 2 * H, NOW + 4 * H):
        pairs, ends = store.allow_list(at)
        assert pairs == store.active_pairs(at)
        assert ends == store.pair_ends(at)
        assert all(t.tzinfo is not None for t in ends.values())
    assert store.allow_list(NOW)[1] == {("a", 123456): NOW + 2 * H, ("e", 123457): NOW + 3 * H}


def test_active_among_is_the_allow_list_restricted_to_the_pairs_asked(store: Store,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """What a sync's live reconcile reads for charon's SAs: ``active_pairs(now) & pairs`` at
    every moment of the grants' windows, across several IN lists (chunks of 3 here)."""
    from ikemgr.allowlist.store import repository

    monkeypatch.setattr(repository, "ACCOUNTS_PER_QUERY", 3)
    grants = [Grant("a", 123456, "manual", valid_until=NOW + H), Grant("a", 123457, "regdb"),
              Grant("b", 123456, "manual", valid_from=NOW + H), Grant("c", 123457, "manual"),
              Grant("d", 123456, "manual", valid_until=NOW - H)]
    grants += [Grant(f"u{i}", 123456, "regdb") for i in range(10)]
    for g in grants:
        assert store.put_grant(g, "t", NOW)[0] == "added"
    store.set_suspended({"c": "disabled"}, "t", NOW)
    asked = {("a", 123456), ("a", 123458), ("b", 123456), ("c", 123457), ("d", 123456), ("nobody", 123456)}
    asked |= {(f"u{i}", 123456) for i in range(0, 10, 2)} | {("u1", 123457)}
    for at in (NOW - 2 * H, NOW, NOW + H, NOW + 2 * H):
        assert store.active_among(asked, at) == store.active_pairs(at) & asked
    assert store.active_among(asked, NOW) == {("a", 123456)} | {(f"u{i}", 123456) for i in range(0, 10, 2)}
    assert store.active_among((), NOW) == frozenset()


@pytest.mark.postgres
@pytest.mark.root
def test_a_bulk_sync_leaves_postgresql_with_statistics_and_an_index_plan(pg: PgCluster, pg_db: str,
                                                                         tmp_path: Path) -> None:
    """A first sync of many grants ends with ANALYZE (autovacuum's threshold: 50 + 10 %), so
    the live reconcile's lookup of a few accounts uses the index at once; a small change
    does not analyze again."""
    store = open_store(config(tmp_path, pg.url(pg_db)))
    try:
        def analyzed() -> int:
            with store.engine.connect() as c:
                return int(c.execute(text("SELECT analyze_count FROM pg_stat_user_tables "
                                          "WHERE relname = 'ikemgr_grants'")).scalar_one())

        bulk = tuple(Grant(f"u{i}", 123456 + i % 2, "regdb") for i in range(30000))
        store.apply(SyncPlan(added=bulk, current=0), "t", NOW)
        assert until(lambda: analyzed() >= 1, timeout=5.0) is not None  # the statistics view lags a little
        with store.engine.connect() as c:
            plan = "\n".join(r[0] for r in c.execute(text(
                "EXPLAIN SELECT account, vlan FROM ikemgr_grants WHERE account = ANY(:a)"),
                {"a": [f"u{i}" for i in range(0, 30000, 1000)]}))
        assert "Index" in plan and "Seq Scan" not in plan, plan
        store.apply(SyncPlan(added=(Grant("late", 123456, "regdb"),), current=30000), "t", NOW)
        time.sleep(1.0)
        assert analyzed() == 1
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.root
def test_a_store_connection_the_server_dropped_is_replaced_by_the_next_read_and_write(
        pg: PgCluster, pg_db: str, tmp_path: Path) -> None:
    """The store keeps one connection open (a daemon's reads between syncs); when the server
    drops it (a restart, a DBA's pg_terminate_backend), the next read reconnects and retries
    once, and the next write checks the connection first, so it runs exactly once."""
    store = open_store(config(tmp_path, pg.url(pg_db)))

    def drop_store_connections() -> int:
        with psycopg.connect(pg.url(pg_db).replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
            return len(c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())

    try:
        store.put_grant(Grant("alice", 123456, "manual"), "t", NOW)
        assert drop_store_connections() >= 1
        assert store.active_pairs(NOW) == {("alice", 123456)}
        assert drop_store_connections() >= 1
        assert store.put_grant(Grant("bob", 123456, "manual"), "t", NOW)[0] == "added"
        assert store.active_pairs(NOW) == {("alice", 123456), ("bob", 123456)}
        assert [e.action for e in store.audit(account="bob")] == ["grant.add"]  # written once
    finally:
        store.close()

"""run_sync in-process on a real SQLite store: the on_change step runs after the commit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from store_support import make_env

from ikemgr.allowlist.sources import fetch_all
from ikemgr.allowlist.store import open_store
from ikemgr.allowlist.sync import SyncOutcome, run_sync
from ikemgr.commands.sync import outcome_result
from ikemgr.config.load import load
from ikemgr.errors import ApplyFailed


def test_on_change_sees_the_committed_store_and_what_was_revoked(tmp_path: Path) -> None:
    env = make_env(tmp_path, max_removal_share=0.5)
    cfg = load(env.config)
    store = open_store(cfg)
    seen: list[tuple[frozenset[tuple[str, int]], frozenset[tuple[str, int]]]] = []

    def on_change(out: SyncOutcome) -> None:
        other = open_store(cfg)  # another connection: only committed data is visible
        try:
            seen.append((other.active_pairs(datetime.now(UTC)), out.revoked_pairs()))
        finally:
            other.close()

    try:
        env.list_file.write_text("alice@123456\nbob@123457\n")
        out = run_sync(cfg, store, lambda: fetch_all(cfg.sync), datetime.now(UTC), actor="t",
                       on_change=on_change)
        assert out.reconciled and seen[-1] == ({("alice", 123456), ("bob", 123457)}, frozenset())
        env.list_file.write_text("alice@123456\n")
        out = run_sync(cfg, store, lambda: fetch_all(cfg.sync), datetime.now(UTC), actor="t",
                       on_change=on_change)
        assert seen[-1] == ({("alice", 123456)}, {("bob", 123457)})
        out = run_sync(cfg, store, lambda: fetch_all(cfg.sync), datetime.now(UTC), actor="t",
                       on_change=on_change)
        assert not out.applied and len(seen) == 2  # nothing changed: no reconcile
    finally:
        store.close()


def test_failed_reconcile_keeps_the_store_and_exits_1(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    cfg = load(env.config)
    store = open_store(cfg)

    def broken(out: SyncOutcome) -> None:
        raise ApplyFailed("netlink said no")

    try:
        env.list_file.write_text("alice@123456\n")
        out = run_sync(cfg, store, lambda: fetch_all(cfg.sync), datetime.now(UTC), actor="t", on_change=broken)
        assert out.applied and not out.reconciled and out.reconcile_error == "netlink said no"
        assert store.active_pairs(datetime.now(UTC)) == {("alice", 123456)}
        result = outcome_result(out)
        assert result.exit_code == 1
        assert result.errors == ("store updated, but live sessions were not reconciled: netlink said no",)
    finally:
        store.close()

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


def test_a_changed_identity_grammar_checks_every_stored_grant_again(tmp_path: Path, monkeypatch,
                                                                    caplog) -> None:
    """A sync trusts an entry equal to a plain grant only if the same grammar accepted it.

    The second sync with the same config checks none of the unchanged lines; after the
    pattern is tightened, a stored grant it no longer accepts is rejected (with its line)
    and removed, although the list file did not change.
    """
    import logging

    from ikemgr.core.identity import IdentityGrammar

    caplog.set_level(logging.INFO, logger="ikemgr.allowlist")
    env = make_env(tmp_path, max_removal_share=1.0)
    cfg = load(env.config)
    strict_policy = cfg.policy.model_copy(update={"identity_pattern": r"^[a-z]{1,64}@[0-9]{1,9}$"})
    strict = cfg.model_copy(update={"policy": strict_policy})
    store = open_store(cfg)
    checked: list[object] = []
    real = IdentityGrammar.vlan_pair

    def counting(self: IdentityGrammar, value: object) -> tuple[str, int]:
        checked.append(value)
        return real(self, value)

    monkeypatch.setattr(IdentityGrammar, "vlan_pair", counting)

    def sync(c: object) -> SyncOutcome:
        checked.clear()
        return run_sync(c, store, lambda: fetch_all(c.sync), datetime.now(UTC), actor="t")  # type: ignore[attr-defined]

    try:
        env.list_file.write_text("alice@123456\nbob_x@123457\ncarol@123456\n")
        first = sync(cfg)
        assert first.plan.summary()["added"] == 3 and len(checked) == 3
        env.list_file.write_text("alice@123456\nbob_x@123457\ncarol@123456\ndave@123457\n")
        second = sync(cfg)
        assert [g.account for g in second.plan.added] == ["dave"] and second.plan.unchanged == 3
        assert checked == ["dave@123457"]  # the three stored lines were not checked again
        changed = "sync-grammar-changed"
        assert not [r for r in caplog.records if getattr(r, "fields", {}).get("event") == changed]
        third = sync(strict)
        said = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == changed]
        assert [r.fields["source"] for r in said] == ["userlist"]  # type: ignore[attr-defined]
        assert [(r.where, r.shown) for r in third.plan.rejected] == [("line 2", "'bob_x@123457'")]
        assert [g.account for g in third.plan.removed] == ["bob_x"] and len(checked) == 4
        assert store.active_pairs(datetime.now(UTC)) == {("alice", 123456), ("carol", 123456), ("dave", 123457)}
        fourth = sync(strict)  # the strict grammar's fingerprint is stored now
        assert not fourth.applied and checked == ["bob_x@123457"] and len(fourth.plan.rejected) == 1
        back = sync(cfg)  # and the default grammar's is not: every line is checked, bob_x comes back
        assert [g.account for g in back.plan.added] == ["bob_x"] and len(checked) == 4
    finally:
        store.close()

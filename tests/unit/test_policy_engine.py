"""The engine's bookkeeping (SA index, owned index, batching, logging) over an in-memory
backend. The same engine against the real kernel is in tests/integration/policy/."""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikemgr.adapters.policy.base import KernelView
from ikemgr.adapters.vici.codec import parse_event
from ikemgr.allowlist.snapshot import SnapshotAllowList
from ikemgr.allowlist.sources.listfile import FileAllowList
from ikemgr.config.load import load
from ikemgr.core.identity import IdentityGrammar
from ikemgr.core.model import Sa, SaUpdate, UserRule
from ikemgr.core.policy_diff import Plan
from ikemgr.core.policy_diff import apply as plan_apply
from ikemgr.engine.engine import Engine
from ikemgr.errors import BackendUnavailable

CFG = load(Path(__file__).resolve().parents[2] / "examples" / "campus.yaml")
VIP = IPv4Address("10.1.0.10")


class MemoryBackend:
    """Records applied plans; ``kernel`` plays the kernel for read()."""

    name = "memory"
    needs_tables = True

    def __init__(self) -> None:
        self.kernel: dict[IPv4Address, UserRule] = {}
        self.plans: list[Plan] = []
        self.reads = 0

    def ensure(self) -> None: ...

    def read(self) -> KernelView:
        self.reads += 1
        return KernelView(dict(self.kernel))

    def apply(self, plan: Plan, tables: AbstractSet[int]) -> None:
        self.plans.append(plan)
        self.kernel = plan_apply(plan, self.kernel)
        assert tables == {r.table_id for r in self.kernel.values()}, "tables_after disagrees"

    def close(self) -> None: ...


class Pairs:
    def __init__(self, *pairs: tuple[str, int]) -> None:
        self.pairs = frozenset(pairs)

    def active_pairs(self, now: datetime) -> frozenset[tuple[str, int]]:
        return self.pairs

    def pair_ends(self, now: datetime) -> dict[tuple[str, int], datetime]:
        return {}

    def next_change(self, now: datetime) -> datetime | None:
        return None


def engine(*pairs: tuple[str, int]) -> tuple[Engine, MemoryBackend]:
    b = MemoryBackend()
    return Engine(CFG, b, Pairs(*pairs)), b


def up(uid: str, ident: str, *vips: str, state: str = "ESTABLISHED") -> SaUpdate:
    sa = Sa(uid, ident, tuple(IPv4Address(v) for v in vips), state)
    return SaUpdate("ike-updown", sa, sa.live)


def test_up_down_cycle_and_duplicate_events() -> None:
    e, b = engine(("alice", 123456))
    e.full([])
    e.events([up("7", "alice@123456", "10.1.0.10")])
    assert b.kernel == {VIP: UserRule(VIP, 123456, 123456, 29000)}
    assert e.events([up("7", "alice@123456", "10.1.0.10")]) is None  # child-updown repeat
    e.events([up("7", "alice@123456", "10.1.0.10", state="DELETING")])
    assert b.kernel == {} and len(b.plans) == 2
    assert b.reads == 1  # one kernel read at start; events use the index


def test_a_backend_that_needs_no_tables_is_given_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """``rules`` keeps nothing per VLAN: the engine does not count the tables in use for it
    (O(plan) per batch, for nothing); a backend that needs them gets them (MemoryBackend
    checks them against its kernel at every apply)."""
    from ikemgr.engine import engine as engine_mod

    e, b = engine(("alice", 123456))
    e.full([])
    e.events([up("7", "alice@123456", "10.1.0.10")])
    assert b.kernel == {VIP: UserRule(VIP, 123456, 123456, 29000)}
    given: list[AbstractSet[int]] = []
    real_apply = b.apply
    monkeypatch.setattr(b, "needs_tables", False, raising=False)
    monkeypatch.setattr(b, "apply", lambda plan, tables: (given.append(tables), real_apply(plan, {123456})))

    def counted(*a: object) -> frozenset[int]:
        raise AssertionError("tables_after for a backend that needs no tables")

    monkeypatch.setattr(engine_mod, "tables_after", counted)
    e.events([up("8", "alice@123456", "10.1.0.11")])
    assert given == [frozenset()] and set(b.kernel) == {VIP, IPv4Address("10.1.0.11")}


def test_second_device_and_make_before_break() -> None:
    e, b = engine(("alice", 123456))
    e.full([])
    e.events([up("1", "alice@123456", "10.1.0.10"), up("2", "alice@123456", "10.1.0.11")])
    assert set(b.kernel) == {VIP, IPv4Address("10.1.0.11")}
    # reauth of device 1: new SA 3 gets the same VIP before SA 1 goes
    e.events([up("3", "alice@123456", "10.1.0.10")])
    e.events([up("1", "alice@123456", "10.1.0.10", state="DELETING")])
    e.events([up("2", "alice@123456", "10.1.0.11", state="DELETING")])
    assert set(b.kernel) == {VIP}
    assert len(b.plans) == 2  # one add batch, one remove: no flap for 10.1.0.10


def test_ike_rekey_causes_no_change() -> None:
    e, b = engine(("alice", 123456))
    e.full([])
    e.events([up("4", "alice@123456", "10.1.0.10")])
    old = {"uniqueid": b"4", "state": b"REKEYED", "remote-eap-id": b"alice@123456",
           "remote-vips": [b"10.1.0.10"]}
    new = {**old, "uniqueid": b"5", "state": b"ESTABLISHED"}
    assert e.events(parse_event("ike-rekey", {"kuins": {"old": old, "new": new}})) is not None
    assert len(b.plans) == 1 and set(e.sas) == {"5"}


def test_half_open_down_is_ignored() -> None:
    e, b = engine(("alice", 123456))
    e.full([])
    assert e.events([SaUpdate("ike-updown", Sa("9", b"%any", (), "CONNECTING"), False)]) is None
    assert b.plans == []


def test_full_reconcile_repairs_the_kernel_and_allow_list_change_recomputes() -> None:
    e, b = engine(("alice", 123456))
    stale = IPv4Address("10.1.0.99")
    b.kernel = {stale: UserRule(stale, 123457, 123457, 29000)}
    r = e.full([Sa("1", "alice@123456", (VIP,), "ESTABLISHED")])
    assert b.kernel == {VIP: UserRule(VIP, 123456, 123456, 29000)}
    assert len(r.plan.add) == 1 and len(r.plan.remove) == 1
    e.allow = Pairs()
    assert e.refresh_allow() is True
    e.recompute()
    assert b.kernel == {}


def test_one_log_line_per_decision(caplog: pytest.LogCaptureFixture) -> None:
    e, _ = engine(("alice", 123456))
    e.full([])
    caplog.set_level(logging.INFO, logger="ikemgr.policy")
    for _ in range(3):
        e.events([up("7", "$(reboot)@123456", "10.1.0.10")])
        e.events([up("8", "bob@123456", "10.1.0.11")])
        e.full([Sa("7", "$(reboot)@123456", (VIP,), "ESTABLISHED"),
                Sa("8", "bob@123456", (IPv4Address("10.1.0.11"),), "ESTABLISHED")])
    decisions = [r for r in caplog.records if r.getMessage() == "decision"]
    assert [(r.fields["uniqueid"], r.fields["outcome"]) for r in decisions] == [  # type: ignore[attr-defined]
        ("'7'", "rejected-identity"), ("'8'", "not-on-list")]


def test_an_updated_sa_logs_its_decision_again_only_when_it_changed(caplog: pytest.LogCaptureFixture) -> None:
    e, _ = engine(("alice", 123456))
    e.full([])
    caplog.set_level(logging.INFO, logger="ikemgr.policy")
    e.events([up("7", "alice@123456", "10.1.0.10")])
    e.events([up("7", "alice@123456", "10.1.0.10", state="REKEYING")])  # a changed SA, same decision
    e.full([Sa("7", "alice@123456", (VIP,), "ESTABLISHED")])
    e.allow = Pairs()
    e.refresh_allow()
    e.recompute()  # the decision changed: logged once more
    e.events([up("7", "alice@123456", "10.1.0.10", state="DELETING")])
    e.events([up("7", "alice@123456", "10.1.0.10")])  # down, then up again: a new decision
    decisions = [r.fields["outcome"] for r in caplog.records  # type: ignore[attr-defined]
                 if r.getMessage() == "decision"]
    assert decisions == ["allowed", "not-on-list", "not-on-list"]


def test_snapshot_serves_the_last_good_allow_list(tmp_path: Path) -> None:
    g = IdentityGrammar()
    f = tmp_path / "allow.txt"
    f.write_text("alice@123456\n# comment\n.*@123456\nbob@0123\ncarol@123457\n")
    snap = SnapshotAllowList(FileAllowList(f, g), tmp_path / "state")
    now = datetime.now(UTC)
    good = frozenset({("alice", 123456), ("carol", 123457)})
    assert snap.active_pairs(now) == good and not snap.stale
    f.unlink()
    assert snap.active_pairs(now) == good and snap.stale
    fresh = SnapshotAllowList(FileAllowList(f, g), tmp_path / "state")  # after a restart too
    assert fresh.active_pairs(now) == good
    with pytest.raises(BackendUnavailable, match="^source allow-file unavailable: .*No such file"):
        SnapshotAllowList(FileAllowList(f, g), tmp_path / "empty").active_pairs(now)


def test_allow_file_takes_the_list_file_sources_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """--allow-file is parsed and validated like a sync's list-file source, with its valves.

    A file without its final newline looks truncated and is refused (the snapshot keeps
    the last good list); a file that would drop more than sync.max_removal_share of the
    pairs is refused the same way; a refused line is logged with its line number.
    """
    g = IdentityGrammar()
    f = tmp_path / "allow.txt"
    f.write_text("alice@123456\nbob@123456\ncarol@123457\nerin@123457\nfrank@123456\n$(reboot)@123456\n")
    snap = SnapshotAllowList(FileAllowList(f, g, max_removal_share=0.2), tmp_path / "state")
    now = datetime.now(UTC)
    caplog.set_level(logging.WARNING, logger="ikemgr.allowlist")
    full = snap.active_pairs(now)
    assert len(full) == 5 and not snap.stale
    assert any("line 6" in r.getMessage() for r in caplog.records)
    f.write_text("alice@123456\nbob@123456\ncarol@123457\nerin@123457\nfrank@123456")  # no final newline
    assert snap.active_pairs(now) == full and snap.stale
    f.write_text("alice@123456\nbob@123456\n")  # 3 of 5 would go: over the 20 % valve
    assert snap.active_pairs(now) == full and snap.stale
    f.write_text("alice@123456\nbob@123456\ncarol@123457\nerin@123457\n")  # 1 of 5 is within it
    assert snap.active_pairs(now) == full - {("frank", 123456)} and not snap.stale


def test_watch_unit_renders_with_computed_values() -> None:
    from ikemgr.render.systemd import watch_unit_context
    from ikemgr.render.templates import render_template

    ctx = watch_unit_context(CFG, "generated by ikemgr", Path("/etc/ikemgr/ikemgr.yaml"), metrics_port=9108)
    text = render_template("systemd/ikemgr-watch.service.j2", **ctx)
    assert "ExecStart=/usr/local/bin/ikemgr watch --config /etc/ikemgr/ikemgr.yaml --log-format json " \
           "--metrics-listen 127.0.0.1 --metrics-port 9108\n" in text
    assert "StateDirectory=ikemgr\n" in text and "ReadWritePaths=/var/lib/ikemgr /run\n" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text


def test_rule_lines_in_iproute2_syntax() -> None:
    from ipaddress import ip_network

    from ikemgr.core.model import Rule

    r = Rule(29000, 123456, ip_network("10.1.0.10/32"), ip_network("10.0.0.0/8"))  # type: ignore[arg-type]
    assert r.ip_args(protocol=99) == "priority 29000 from 10.1.0.10/32 to 10.0.0.0/8 lookup 123456 protocol 99"
    g = Rule(29000, 0, fwmark=0, fwmask=0xFFFFFFFF, action="goto", goto=29002)
    assert g.ip_args(protocol=99) == "priority 29000 fwmark 0x0/0xffffffff goto 29002 protocol 99"
    assert Rule(29002, action="nop").ip_args(protocol=99) == "priority 29002 nop protocol 99"
    assert Rule(29001, 300, fwmark=300).ip_args(protocol=99) == \
        "priority 29001 fwmark 0x12c/0xffffffff lookup 300 protocol 99"  # table ids above 255


def test_the_snapshot_ends_grants_on_time_during_an_outage(tmp_path: Path) -> None:
    """A grant that expires while the database is away ends when it was meant to end: the
    snapshot keeps each pair's end and drops the pair at that time."""
    from datetime import timedelta

    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    class Source:
        down = False

        def active_pairs(self, now: datetime) -> frozenset[tuple[str, int]]:
            if self.down:
                raise BackendUnavailable("db", "connection refused")
            return frozenset({("alice", 123456), ("bob", 123456)})

        def pair_ends(self, now: datetime) -> dict[tuple[str, int], datetime]:
            return {("alice", 123456): t0 + timedelta(minutes=10)}  # bob has no end

        def next_change(self, now: datetime) -> datetime | None:
            if self.down:
                raise BackendUnavailable("db", "connection refused")
            return t0 + timedelta(minutes=10)

    src = Source()
    snap = SnapshotAllowList(src, tmp_path)
    assert snap.active_pairs(t0) == {("alice", 123456), ("bob", 123456)}
    src.down = True
    assert snap.active_pairs(t0 + timedelta(minutes=9)) == {("alice", 123456), ("bob", 123456)}
    assert snap.stale
    assert snap.active_pairs(t0 + timedelta(minutes=10)) == {("bob", 123456)}
    restarted = SnapshotAllowList(src, tmp_path)  # the ends survive a restart too
    assert restarted.active_pairs(t0 + timedelta(hours=1)) == {("bob", 123456)}
    # while the source is down, the next change by the clock is the next end the snapshot knows
    assert snap.next_change(t0) == t0 + timedelta(minutes=10)
    assert snap.next_change(t0 + timedelta(minutes=10)) is None
    src.down = False
    assert snap.next_change(t0) == t0 + timedelta(minutes=10)  # the source's answer again


def test_a_revocation_journalled_after_the_snapshot_stays_revoked_in_an_outage(tmp_path: Path) -> None:
    """``ikemgr sync`` revokes without reading the whole list again, so this host's snapshot
    may predate the revocation: the pairs are journalled beside it, and a snapshot served
    during an outage leaves them out, after a restart too. The next good read saw the
    revocation: it prunes the journal, and a pair granted again is served again."""
    from ikemgr.allowlist.snapshot import REVOKED_FILE, note_revoked

    alice, bob = ("alice", 123456), ("bob", 123456)

    class Source:
        down = False
        pairs = frozenset({alice, bob})

        def active_pairs(self, now: datetime) -> frozenset[tuple[str, int]]:
            if self.down:
                raise BackendUnavailable("db", "connection refused")
            return self.pairs

        def pair_ends(self, now: datetime) -> dict[tuple[str, int], datetime]:
            return {}

        def next_change(self, now: datetime) -> datetime | None:
            return None

    src = Source()
    snap = SnapshotAllowList(src, tmp_path)
    assert snap.active_pairs(datetime.now(UTC)) == {alice, bob}
    src.pairs = frozenset({bob})  # committed after that read, then journalled
    note_revoked(tmp_path, [alice])
    src.down = True
    assert snap.active_pairs(datetime.now(UTC)) == {bob} and snap.stale
    assert SnapshotAllowList(src, tmp_path).active_pairs(datetime.now(UTC)) == {bob}
    src.down, src.pairs = False, frozenset({alice, bob})  # granted again, and read
    assert snap.active_pairs(datetime.now(UTC)) == {alice, bob}
    assert len((tmp_path / REVOKED_FILE).read_text().splitlines()) == 1  # its header only
    src.down = True
    assert snap.active_pairs(datetime.now(UTC)) == {alice, bob}
    # a journal that cannot be read serves no snapshot at all: it might hold a revocation
    (tmp_path / REVOKED_FILE).unlink()
    (tmp_path / REVOKED_FILE).mkdir()
    with pytest.raises(BackendUnavailable):
        SnapshotAllowList(src, tmp_path).active_pairs(datetime.now(UTC))


class _Db:
    """An allow-list source whose read can run something in the middle (a commit elsewhere)."""

    def __init__(self, pairs: set[tuple[str, int]]) -> None:
        self.pairs = set(pairs)
        self.down = False
        self.during_read: list[Callable[[], None]] = []

    def active_pairs(self, now: datetime) -> frozenset[tuple[str, int]]:
        if self.down:
            raise BackendUnavailable("db", "connection refused")
        answer = frozenset(self.pairs)  # what the read saw ...
        while self.during_read:  # ... before these commits
            self.during_read.pop(0)()
        return answer

    def pair_ends(self, now: datetime) -> dict[tuple[str, int], datetime]:
        return {}

    def next_change(self, now: datetime) -> datetime | None:
        return None


def test_a_revocation_during_a_read_is_not_undone_by_that_reads_snapshot(tmp_path: Path) -> None:
    """Ordered by journal number, not by the clock: a revocation committed while a read was
    in flight stays out of what an outage serves, and an older read never replaces the
    snapshot of a newer one (whose save pruned the entry)."""
    from ikemgr.allowlist.snapshot import REVOKED_FILE, note_revoked

    alice, bob = ("alice", 123456), ("bob", 123456)
    db = _Db({alice, bob})
    watch, hook = SnapshotAllowList(db, tmp_path), SnapshotAllowList(db, tmp_path)

    def revoke_alice() -> None:
        db.pairs.discard(alice)
        note_revoked(tmp_path, [alice])

    db.during_read = [revoke_alice]
    assert watch.active_pairs(datetime.now(UTC)) == {alice, bob}  # read before the commit
    db.down = True
    assert SnapshotAllowList(db, tmp_path).active_pairs(datetime.now(UTC)) == {bob}
    db.down = False
    # watch's next read starts; meanwhile alice is revoked again and hook reads and saves
    db.pairs.add(alice)
    db.during_read = [revoke_alice, lambda: hook.active_pairs(datetime.now(UTC))]
    watch._last = None  # its answer differs from what it saved: it tries to save it
    assert watch.active_pairs(datetime.now(UTC)) == {alice, bob}
    db.down = True
    assert SnapshotAllowList(db, tmp_path).active_pairs(datetime.now(UTC)) == {bob}
    # many revocations of one pair keep one entry; a good read that saw them prunes them all
    db.down = False
    for _ in range(3):
        note_revoked(tmp_path, [alice, ("carol", 123457)])
    assert len((tmp_path / REVOKED_FILE).read_text().splitlines()) == 3  # the header and two pairs
    assert watch.active_pairs(datetime.now(UTC)) == {bob}
    assert len((tmp_path / REVOKED_FILE).read_text().splitlines()) == 1


def test_a_damaged_journal_header_keeps_its_entries_and_their_order(tmp_path: Path) -> None:
    """A journal whose header line is unreadable keeps its entries, and the next write is
    numbered after all of them, so no snapshot read before it can prune them."""
    from ikemgr.allowlist.snapshot import REVOKED_FILE, Journal, note_revoked

    (tmp_path / REVOKED_FILE).write_text('garbage\n[57, "alice", 123456]\n')
    note_revoked(tmp_path, [("bob", 123456)])
    j = Journal.read(tmp_path)
    assert j.entries == {("alice", 123456): 57, ("bob", 123456): 58} and j.seq == 58


_events = st.lists(st.tuples(st.sampled_from(["ike-updown", "child-updown", "ike-rekey", "child-rekey"]),
                             st.integers(1, 3), st.booleans(),
                             st.sampled_from(["ESTABLISHED", "DELETING", "REKEYED"]),
                             st.sampled_from(["alice@123456", "bob@123456", "carol"])),
                   max_size=40)


def _msg(name: str, uid: int, up: bool, state: str, ident: str) -> dict[str, object]:
    sa = {"uniqueid": str(uid).encode(), "state": state.encode(), "remote-eap-id": ident.encode(),
          "remote-vips": [f"10.1.0.{uid}".encode()]}
    if name == "ike-rekey":
        return {"kuins": {"old": dict(sa, state=b"REKEYED"), "new": dict(sa, uniqueid=str(uid + 10).encode())}}
    return ({"up": b"yes"} if up else {}) | {"kuins": sa}


@settings(max_examples=300, deadline=None)
@given(_events, st.integers(1, 8))
def test_parse_batch_leaves_the_engine_where_parsing_every_event_leaves_it(evs: list, cut: int) -> None:
    """parse_batch skips an up/down equal to the one before it (charon's child-updown after
    its ike-updown): the engine's index, kernel and decisions end the same either way."""
    from ikemgr.adapters.vici.codec import parse_batch

    batch = [(e[0], _msg(*e)) for e in evs]
    a, ka = engine(("alice", 123456), ("bob", 123456))
    b, kb = engine(("alice", 123456), ("bob", 123456))
    for start in range(0, len(batch), cut):  # the same batches for both
        part = batch[start:start + cut]
        a.events([u for name, msg in part for u in parse_event(name, msg)])
        b.events(parse_batch(part))
    assert a.sas == b.sas
    assert ka.kernel == kb.kernel
    assert a.owned == b.owned


def test_parse_batch_skips_the_repeated_child_updown_only() -> None:
    from ikemgr.adapters.vici.codec import parse_batch

    up = _msg("ike-updown", 1, True, "ESTABLISHED", "alice@123456")
    down = _msg("ike-updown", 1, False, "ESTABLISHED", "alice@123456")
    assert len(parse_batch([("ike-updown", up), ("child-updown", dict(up))])) == 1
    assert len(parse_batch([("ike-updown", up), ("child-updown", down)])) == 2
    # a rekey's equal message is parsed: its SA's state decides, not the up key
    assert len(parse_batch([("ike-updown", down), ("child-rekey", dict(down))])) == 2

"""Watcher._store_changed while the database is away: backoff, one warning, a re-read when back."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ikemgr.engine import watch as watch_mod
from ikemgr.engine.watch import Watcher
from ikemgr.errors import BackendUnavailable


class Listener:
    """A change listener whose database is down for the first ``down`` calls."""

    def __init__(self, down: int, clock: dict[str, float]) -> None:
        self.down = down
        self.clock = clock
        self.calls: list[float] = []

    def wait(self, timeout: float) -> bool:
        self.calls.append(self.clock["t"] - 1000.0)
        if len(self.calls) <= self.down:
            raise BackendUnavailable("db", "connection refused")
        return False

    def close(self) -> None:
        return None


def test_outage_backs_off_warns_once_and_rereads_when_back(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    clock = {"t": 1000.0}
    monkeypatch.setattr(watch_mod.time, "monotonic", lambda: clock["t"])
    lst = Listener(down=3, clock=clock)
    w = Watcher(engine=None, uri="unix:///nonexistent", changes=lst, backoff_max=8.0)  # type: ignore[arg-type]
    seen: list[Any] = []
    with caplog.at_level(logging.INFO, logger="ikemgr"):
        # ticks every 0.5 s for 20 s: attempts at 0, 1, 3 (backoff 1, 2, 4) fail; 7 succeeds
        for _ in range(40):
            seen.append((clock["t"] - 1000.0, w._store_changed()))
            clock["t"] += 0.5
    # while down, attempts back off (1, 2, 4 s) instead of one per 0.5 s tick
    assert [t for t in lst.calls if t <= 7.0] == [0.0, 1.0, 3.0, 7.0], lst.calls
    assert [t for t, changed in seen if changed] == [7.0]  # back: re-read once, then quiet
    warnings = [r for r in caplog.records if "change listener:" in r.getMessage()]
    assert len(warnings) == 1 and "connection refused" in warnings[0].getMessage()
    assert sum("listener is back" in r.getMessage() for r in caplog.records) == 1


def test_an_undecodable_event_is_answered_by_a_full_reconcile() -> None:
    """A VICI event that cannot be decoded may have been a "down": the loop reconciles
    everything at once instead of dropping it (and counts it)."""
    from types import SimpleNamespace

    fulls: list[int] = []
    errors: list[tuple[str, int]] = []
    engine = SimpleNamespace(
        cfg=SimpleNamespace(policy=SimpleNamespace(reconcile_interval=3600)),
        metrics=SimpleNamespace(error=lambda kind, n=1: errors.append((kind, n))),
        full=lambda sas, leases=None: fulls.append(len(sas)),
        refresh_allow=lambda: False, allow_next_change=lambda: None, owned={})
    w = Watcher(engine=engine, uri="unix:///nonexistent", allow_poll=3600)  # type: ignore[arg-type]

    class Ev:
        undecodable = 0
        calls = 0

        def batch(self, timeout: float) -> list[Any]:
            self.calls += 1
            if self.calls == 1:
                self.undecodable += 1  # what EventSession.batch does with a malformed event
            if self.calls == 3:
                w.stop = True
            return []

    cmd = SimpleNamespace(list_sas=lambda: [], leases=lambda: {})
    w._loop(Ev(), cmd)  # type: ignore[arg-type]
    assert fulls == [0] and errors == [("vici-undecodable", 1)]


def _timed_watcher(changes: Any, boundary_in: float | None, polls: list[float],
                   clock: dict[str, float]) -> Watcher:
    from types import SimpleNamespace

    def refresh() -> bool:
        polls.append(clock["t"] - 1000.0)
        return False

    engine = SimpleNamespace(cfg=SimpleNamespace(policy=SimpleNamespace(reconcile_interval=60)),
                             refresh_allow=refresh, allow_next_change=lambda: boundary_in)
    return Watcher(engine=engine, uri="unix:///nonexistent", changes=changes,  # type: ignore[arg-type]
                   allow_poll=5.0)


class Quiet:
    """A healthy change listener that hears nothing."""

    def wait(self, timeout: float) -> bool:
        return False

    def close(self) -> None:
        return None


def _run_ticks(w: Watcher, clock: dict[str, float], seconds: float) -> None:
    """The allow-list part of Watcher._loop, on idle 0.5 s ticks."""
    last = clock["t"]
    w._note_allow_boundary(last)
    end = clock["t"] + seconds
    while clock["t"] < end:
        clock["t"] += 0.5
        now = clock["t"]
        if w._store_changed() or now >= w._allow_read_at(last):
            last = now
            w._read_allow(now)


def test_with_a_healthy_listener_the_list_is_read_at_the_next_grant_boundary(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"t": 1000.0}
    monkeypatch.setattr(watch_mod.time, "monotonic", lambda: clock["t"])
    polls: list[float] = []
    w = _timed_watcher(Quiet(), 12.0, polls, clock)
    # the boundary moves with each read: 12 s after the start, then 12 s after that read
    _run_ticks(w, clock, 30)
    assert polls == [12.5, 25.0], polls


def test_with_a_healthy_listener_and_no_boundary_only_the_safety_read_remains(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"t": 1000.0}
    monkeypatch.setattr(watch_mod.time, "monotonic", lambda: clock["t"])
    polls: list[float] = []
    w = _timed_watcher(Quiet(), None, polls, clock)
    _run_ticks(w, clock, 130)
    assert polls == [60.0, 120.0], polls  # policy.reconcile_interval, not every 5 s


def test_without_a_listener_or_while_it_is_down_the_poll_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"t": 1000.0}
    monkeypatch.setattr(watch_mod.time, "monotonic", lambda: clock["t"])
    polls: list[float] = []
    w = _timed_watcher(None, None, polls, clock)
    _run_ticks(w, clock, 16)
    assert polls == [5.0, 10.0, 15.0], polls
    polls.clear()
    clock["t"] = 1000.0
    down = _timed_watcher(Listener(down=10**6, clock=clock), None, polls, clock)
    _run_ticks(down, clock, 11)
    assert polls == [5.0, 10.0], polls


def test_the_listener_is_asked_at_most_every_listen_every_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loop passes come once per event batch (thousands a second in a storm); the listener's
    question (an SQLite query, a PostgreSQL poll) is asked at most every LISTEN_EVERY s, and a
    change it heard is still reported at the next question."""
    clock = {"t": 1000.0}
    monkeypatch.setattr(watch_mod.time, "monotonic", lambda: clock["t"])

    class Heard:
        def __init__(self) -> None:
            self.calls: list[float] = []

        def wait(self, timeout: float) -> bool:
            self.calls.append(round(clock["t"] - 1000.0, 3))
            return len(self.calls) == 3  # a write happened before the third question

        def close(self) -> None:
            return None

    lst = Heard()
    w = Watcher(engine=None, uri="unix:///nonexistent", changes=lst)  # type: ignore[arg-type]
    changed_at = []
    for i in range(500):  # one loop pass per millisecond for half a second
        clock["t"] = 1000.0 + i / 1000
        if w._store_changed():
            changed_at.append(round(clock["t"] - 1000.0, 3))
    step = watch_mod.LISTEN_EVERY
    gaps = [b - a for a, b in zip(lst.calls, lst.calls[1:], strict=False)]
    assert lst.calls[0] == 0.0 and len(lst.calls) == 5, lst.calls  # 5 questions, not 500
    assert all(step - 1e-6 <= g <= step + 0.0015 for g in gaps), gaps  # the first pass past each step
    assert changed_at == [lst.calls[2]]

"""watch's garbage-collection policy: collections only at idle ticks, or after a long stream."""

from __future__ import annotations

import gc

import pytest

from ikemgr.engine import watch as watch_mod
from ikemgr.engine.watch import IdleCollector


@pytest.fixture
def collects(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = gc.collect
    monkeypatch.setattr(watch_mod.gc, "collect", lambda *a: calls.append(1) or real(*a))
    yield calls
    gc.unfreeze()
    gc.enable()


def test_start_collects_freezes_and_turns_automatic_collection_off(collects: list[int]) -> None:
    c = IdleCollector(clock=lambda: 0.0)
    assert gc.isenabled()
    c.start()
    assert collects == [1]
    assert not gc.isenabled()
    assert gc.get_freeze_count() > 0
    c.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_collects_at_an_idle_tick_at_most_once_per_idle_after(collects: list[int]) -> None:
    now = [0.0]
    c = IdleCollector(idle_after=1.0, at_most=30.0, clock=lambda: now[0])
    c.start()
    collects.clear()
    now[0] = 0.5
    c.tick(idle=True)  # idle, but the last collection is 0.5 s old
    assert collects == []
    now[0] = 1.2
    c.tick(idle=True)
    assert collects == [1] and c.collections == 1
    now[0] = 1.5
    c.tick(idle=True)
    assert collects == [1]
    c.stop()


def test_a_stream_that_never_idles_is_collected_after_at_most(collects: list[int]) -> None:
    now = [0.0]
    c = IdleCollector(idle_after=1.0, at_most=30.0, clock=lambda: now[0])
    c.start()
    collects.clear()
    for t in range(1, 30):
        now[0] = float(t)
        c.tick(idle=False)  # busy: no collection while events flow
    assert collects == []
    now[0] = 30.0
    c.tick(idle=False)
    assert collects == [1]
    c.stop()


def test_stop_leaves_collection_off_when_it_was_off_before(collects: list[int]) -> None:
    gc.disable()
    c = IdleCollector(clock=lambda: 0.0)
    c.start()
    c.stop()
    assert not gc.isenabled()

"""watch's garbage-collection policy: collections only at idle ticks, or after a long stream;
young ones, and a full one every ``full_every`` s."""

from __future__ import annotations

import gc

import pytest

from ikemgr.engine import watch as watch_mod
from ikemgr.engine.watch import IdleCollector


@pytest.fixture
def collects(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The generation of every collection watch_mod asks for (2: a full one)."""
    calls: list[int] = []
    real = gc.collect
    monkeypatch.setattr(watch_mod.gc, "collect", lambda *a: calls.append(a[0] if a else 2) or real(*a))
    yield calls
    gc.unfreeze()
    gc.enable()


def test_start_collects_freezes_and_turns_automatic_collection_off(collects: list[int]) -> None:
    c = IdleCollector(clock=lambda: 0.0)
    assert gc.isenabled()
    c.start()
    assert collects == [2]
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
    assert collects == [1] and c.collections == 1  # a young collection
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


def test_a_full_collection_runs_every_full_every_at_a_collection_tick(collects: list[int]) -> None:
    now = [0.0]
    c = IdleCollector(idle_after=1.0, at_most=30.0, full_every=600.0, clock=lambda: now[0])
    c.start()
    collects.clear()
    for t in range(1, 600, 2):
        now[0] = float(t)
        c.tick(idle=True)
    assert set(collects) == {1} and len(collects) == 300 and c.full_collections == 0
    now[0] = 600.5  # idle, and the last full collection (the start's) is 600 s old
    c.tick(idle=True)
    assert collects[-1] == 2 and c.full_collections == 1 and c.collections == 301
    now[0] = 602.0
    c.tick(idle=True)
    assert collects[-1] == 1  # the clock of the full ones starts again
    c.stop()


def test_a_young_collection_frees_a_new_cycle_and_leaves_the_old_generation_alone() -> None:
    """What the young collection is for: garbage cycles made since the last one are freed,
    survivors are moved to the old generation and not walked again until a full one."""
    import weakref

    class Node:
        other: object = None

    now = [0.0]
    c = IdleCollector(idle_after=1.0, full_every=600.0, clock=lambda: now[0])
    c.start()
    try:
        kept = [Node() for _ in range(1000)]
        now[0] = 2.0
        c.tick(idle=True)  # the survivors go to the old generation
        assert gc.get_count()[0] < 50
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # a cycle: reference counting alone does not free it
        now[0] = 4.0
        c.tick(idle=True)
        assert gone() is None and c.full_collections == 0
        assert len(kept) == 1000
    finally:
        c.stop()


def test_stop_leaves_collection_off_when_it_was_off_before(collects: list[int]) -> None:
    gc.disable()
    c = IdleCollector(clock=lambda: 0.0)
    c.start()
    c.stop()
    assert not gc.isenabled()

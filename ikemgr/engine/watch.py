"""``ikemgr watch``: the long-running loop on charon's VICI socket.

Events arrive in batches; idle ticks drive the periodic full reconcile and the
allow-list poll; a disconnect means reconnect with backoff, then a full reconcile —
the same path as a start after kill -9. When the allow-list loses a pair, the engine
names the revoked users' SAs and the loop terminates them (``sync.terminate_revoked``),
so every gateway on a shared database acts on a revocation.
"""

from __future__ import annotations

import gc
import logging
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Protocol

from ikemgr.adapters.vici.codec import parse_batch
from ikemgr.adapters.vici.session import CommandSession, EventSession, connect
from ikemgr.engine.engine import Engine, Report
from ikemgr.engine.oneshot import sas_and_leases
from ikemgr.errors import ApplyFailed, BackendUnavailable
from ikemgr.log import log_event

log = logging.getLogger("ikemgr.policy")

#: seconds between two questions to the allow-list change listener (``Watcher._store_changed``):
#: a grant written to the store takes effect at most this much later than it would otherwise
LISTEN_EVERY = 0.1


class ChangeWaiter(Protocol):
    """Something that says whether the allow-list store changed (ikemgr.allowlist.store.notify)."""

    def wait(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


class IdleCollector:
    """Python's cyclic garbage collector runs only where it cannot delay an event.

    A full collection walks every tracked object: with watch's start-up heap (modules,
    allow-list, SA index) that stalled the event loop for 30–100 ms (measured with
    ``gc.callbacks`` under bench/bench_events.py), the whole p99 of a paced run. So: one
    collection after the start-up reconcile, then ``gc.freeze()`` (what it built is never
    walked again), automatic collection off, and a collection at an idle tick (at most one
    per ``idle_after`` s), or after ``at_most`` s of a stream that never idles. Reference
    counting still frees everything without a cycle at once.

    Those collections are young ones (generations 0 and 1: what was allocated since the
    last one); their survivors go to the old generation, which a full collection walks
    only every ``full_every`` s. A full collection at every idle tick walked every user who
    connected after the start, again and again: with 10,000 of them 32–48 ms, a stall
    that an event arriving just then waited out, against 0.25–0.97 ms for the young one
    (``bench/idle_collect.py``). A cycle that reaches into the old generation waits for the
    next full collection.
    """

    def __init__(self, idle_after: float = 1.0, at_most: float = 30.0, full_every: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_after, self.at_most, self.full_every, self.clock = idle_after, at_most, full_every, clock
        self.last = self.last_full = clock()
        self.collections = 0
        self.full_collections = 0
        self._was_enabled = gc.isenabled()

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        gc.disable()
        self.last = self.last_full = self.clock()

    def tick(self, idle: bool) -> None:
        now = self.clock()
        if now - self.last >= (self.idle_after if idle else self.at_most):
            if now - self.last_full >= self.full_every:
                gc.collect()
                self.full_collections += 1
                self.last_full = now
            else:
                gc.collect(1)
            self.collections += 1
            self.last = now

    def stop(self) -> None:
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()


class Watcher:
    """The long-running loop: VICI events in batches, idle ticks, reconnect with backoff."""

    def __init__(self, engine: Engine, uri: str, *, tick: float = 0.5, allow_poll: float = 5.0,
                 backoff_max: float = 30.0, changes: ChangeWaiter | None = None) -> None:
        self.engine = engine
        self.uri = uri
        self.tick = tick
        self.allow_poll = allow_poll
        # a store change (PostgreSQL NOTIFY / SQLite data_version) re-reads the allow-list at
        # the next tick; the poll still runs for grants that expire without any write
        self.changes = changes
        self.backoff_max = backoff_max
        self.stop = False
        self.hup = False
        self.reconnects = 0
        # the change listener while the database is away: retry with backoff, log the
        # transitions (not every tick), and re-read the allow-list once it is back
        self._listener_down = False
        self._listener_retry_at = 0.0
        self._listener_backoff = 1.0
        # the listener is asked at most every LISTEN_EVERY s, not once per event batch
        self._listener_next = 0.0
        self.gc = IdleCollector()
        # with a healthy listener the clock alone changes the list: the next grant start/end
        self._allow_boundary = float("inf")

    def install_signals(self) -> None:
        def term(signum: int, frame: FrameType | None) -> None:
            self.stop = True

        def hup(signum: int, frame: FrameType | None) -> None:
            self.hup = True

        signal.signal(signal.SIGTERM, term)
        signal.signal(signal.SIGINT, term)
        signal.signal(signal.SIGHUP, hup)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stop and time.monotonic() < end:
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.gc.stop()

    def _run(self) -> None:
        backoff = 0.2
        while not self.stop:
            cmd = ev = None
            try:
                ev = EventSession(connect(self.uri))
                ev.register()  # before list-sas: nothing falls between the two
                cmd = CommandSession(connect(self.uri))
                self._full(cmd)
                self.gc.start()
                log_event("watching", event="connected", uri=self.uri, reconnects=self.reconnects)
                if self.engine.metrics is not None:
                    self.engine.metrics.vici_connected.set(1)
                backoff = 0.2
                self._loop(ev, cmd)
            except BackendUnavailable as e:
                if self.engine.metrics is not None:
                    self.engine.metrics.vici_connected.set(0)
                if self.stop:
                    break
                log.warning("%s; retrying in %.1f s", e.message, backoff,
                            extra={"fields": {"event": "backend-down", "backend": e.backend}})
                self._sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                self.reconnects += 1
            finally:
                for s in (ev, cmd):
                    if s is not None:
                        s.close()
        log_event("stopped", event="stopped", rules_left=len(self.engine.owned))

    def _terminate_revoked(self, cmd: CommandSession) -> None:
        doomed = self.engine.take_revoked()
        if not self.engine.cfg.sync.terminate_revoked:
            return
        for uid in doomed:
            try:
                cmd.terminate_ike(uid)
            except BackendUnavailable as e:  # already gone (another gateway's watch, the sync)
                log.warning("terminate of a revoked user's SA failed: %s", e.message,
                            extra={"fields": {"event": "terminate-failed", "uniqueid": uid}})
                continue
            log_event("revoked user terminated", event="terminate", uniqueid=uid)

    def _full(self, cmd: CommandSession) -> Report:
        sas, leases = sas_and_leases(cmd)
        return self.engine.full(sas, leases=leases)

    def _store_changed(self) -> bool:
        """Whether the allow-list store changed; the listener is asked at most every
        ``LISTEN_EVERY`` s. Once per loop pass it was asked at every event batch: SQLite's
        ``PRAGMA data_version`` is 7.7 µs a call here, and in a stream that is one call per
        VICI event (an up's ike-updown and child-updown wake the loop apart)."""
        if self.changes is None:
            return False
        now = time.monotonic()
        if now < self._listener_retry_at or now < self._listener_next:
            return False
        self._listener_next = now + LISTEN_EVERY
        try:
            changed = self.changes.wait(0)
        except BackendUnavailable as e:
            if not self._listener_down:
                log.warning("allow-list change listener: %s; retrying with backoff (up to %.0f s), "
                            "the allow-list poll keeps serving the last good list", e.message,
                            self.backoff_max,
                            extra={"fields": {"event": "backend-down", "backend": e.backend}})
            self._listener_down = True
            self._listener_retry_at = now + self._listener_backoff
            self._listener_backoff = min(self._listener_backoff * 2, self.backoff_max)
            return False
        if self._listener_down:
            log.info("allow-list change listener is back",
                     extra={"fields": {"event": "backend-up", "backend": "db"}})
            self._listener_down = False
            self._listener_backoff = 1.0
            return True  # notifications sent while it was away are lost: re-read now
        return changed

    def _allow_read_at(self, last: float) -> float:
        """When the allow-list is read again with no change heard.

        A healthy change listener (PostgreSQL NOTIFY, SQLite data_version) hears every
        write, so only the clock changes the list: it is read at the next grant start or
        end and, as a safety net, every ``policy.reconcile_interval`` s. Without a listener,
        or while it is down, every ``allow_poll`` s. (A read is the whole list: ~30 ms for
        10,000 pairs, a stall of the event loop that a 5 s poll repeated for nothing.)
        """
        if self.changes is None or self._listener_down:
            return last + self.allow_poll
        safety = max(self.allow_poll, float(self.engine.cfg.policy.reconcile_interval))
        return min(last + safety, self._allow_boundary)

    def _read_allow(self, now: float) -> bool:
        """Re-read the allow-list (True when it changed) and note when the clock changes it next."""
        changed = self.engine.refresh_allow()
        self._note_allow_boundary(now)
        return changed

    def _note_allow_boundary(self, now: float) -> None:
        left = self.engine.allow_next_change()
        self._allow_boundary = float("inf") if left is None else now + left + 0.01

    def _loop(self, ev: EventSession, cmd: CommandSession) -> None:
        interval = self.engine.cfg.policy.reconcile_interval
        last_full = last_allow = time.monotonic()
        self._note_allow_boundary(last_allow)  # the full reconcile before the loop read the list
        while not self.stop:
            lost = ev.undecodable
            batch = ev.batch(self.tick)
            received = time.monotonic()
            if ev.undecodable != lost:  # an event we could not read may have been a "down"
                if self.engine.metrics is not None:
                    self.engine.metrics.error("vici-undecodable", ev.undecodable - lost)
                last_full = float("-inf")  # a full reconcile at once
            if batch:
                updates = parse_batch(batch)
                try:
                    self.engine.events(updates, received)  # its lines go out in one write
                except ApplyFailed as e:
                    # the SA index is updated; the next full reconcile repairs the kernel
                    log.error("apply failed: %s", e.message, extra={"fields": {"event": "apply-failed"}})
                    self.engine.invalidate()
                    last_full = float("-inf")  # a full reconcile at once
            self.gc.tick(idle=not batch)
            now = time.monotonic()
            if self.hup:
                self.hup = False
                self._read_allow(now)
                self._full(cmd)
                self._terminate_revoked(cmd)
                last_full = last_allow = now
                continue
            if self._store_changed() or now >= self._allow_read_at(last_allow):
                last_allow = now
                if self._read_allow(now):
                    log_event("allow-list changed", event="allow-list")
                    self.engine.recompute()
                    self._terminate_revoked(cmd)
            if now - last_full >= interval:
                last_full = now
                self._full(cmd)

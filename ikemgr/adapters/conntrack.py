"""Flushing the conntrack entries of VIPs whose path changed, off the event path.

An established flow keeps its NAT binding; without the flush a user's open connections
would keep the old SNAT address after their rule changed. ``watch`` parses the dump in
a child process (``adapters.conntrack_child``); the one-shot commands do it in-thread.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

log = logging.getLogger("ikemgr.backend")


class InThread:
    """The flush in the flusher's own thread, which enters the gateway's namespace first."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._ct: Any = None

    def start(self) -> bool:
        if self.netns:
            from ikemgr.adapters.kernel.netns import enter

            try:
                enter(self.netns)
            except OSError as e:
                log.error("conntrack flusher cannot enter netns %s: %s", self.netns, e)
                return False
        return True

    def flush(self, vips: set[int]) -> tuple[int, int]:
        from ikemgr.adapters.kernel.ct_channel import CtChannel

        if self._ct is None:
            self._ct = CtChannel()
        deleted, failed = self._ct.flush(vips)
        return deleted, failed

    def close(self) -> None:
        if self._ct is not None:
            ct, self._ct = self._ct, None
            ct.close()


class InChild:
    """The flush by a child process in the gateway's namespace (adapters/conntrack_child.py)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self.child: subprocess.Popen[str] | None = None

    def start(self) -> bool:
        # start the child now, not at the first flush: its interpreter start (~0.3 s of
        # CPU) would otherwise compete with the event burst that caused that flush; a
        # failed start is retried at the first flush (and counted there if it fails again)
        try:
            self._spawn()
        except OSError as e:
            log.warning("conntrack flusher process did not start: %s", e)
        return True

    def _spawn(self) -> subprocess.Popen[str]:
        """The child process, started (again) if it is not running."""
        child = self.child
        if child is None or child.poll() is not None:
            prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
            child = self.child = subprocess.Popen(
                # -I: the child imports ikemgr from this interpreter's installation only,
                # never from the working directory (``-m`` would put it first on sys.path)
                [*prefix, sys.executable, "-I", "-m", "ikemgr.adapters.conntrack_child"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        return child

    def flush(self, vips: set[int]) -> tuple[int, int]:
        if not vips:
            return 0, 0  # an empty batch would be a bare empty line: one reply too many
        child = self._spawn()
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write("\n".join(map(str, vips)) + "\n\n")
            child.stdin.flush()
            reply = child.stdout.readline().strip()
        except OSError as e:
            self.close()
            raise RuntimeError(f"conntrack flusher process: {e}") from None
        if not reply:
            self.close()
            raise RuntimeError("conntrack flusher process ended")
        if reply.startswith("error "):
            raise RuntimeError(reply.removeprefix("error "))
        deleted, _, failed = reply.partition(" ")
        return int(deleted), int(failed or 0)

    def close(self) -> None:
        child, self.child = self.child, None
        if child is None:
            return
        try:
            if child.stdin is not None:
                child.stdin.close()  # end of input: the child exits
            child.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait(timeout=5)
        if child.stdout is not None:
            child.stdout.close()


class ConntrackFlusher:
    """Deletes conntrack entries of VIPs whose path changed, off the event path.

    An established flow keeps its NAT binding; without the flush a user's open
    connections would keep the old SNAT address after their rule changed.

    Any conntrack dump walks the kernel's whole (machine-wide) conntrack hash table:
    measured here ~15-35 ms per ``conntrack -D -s VIP`` and ~50 ms per netlink dump,
    whatever the number of matching entries. So VIPs queued while a flush runs are
    coalesced, and each run is ONE netlink dump of this namespace's table that deletes the
    entries whose original source is one of the VIPs. Runs are at least ``min_gap`` (1 s)
    apart so a burst costs one dump.

    ``out_of_process`` (``watch``): the dump is parsed in a long-lived child process
    (adapters/conntrack_child.py), so it never holds the interpreter lock the event thread needs;
    this thread only waits on a pipe. Short-lived commands (hook, reconcile, sync) have no
    event thread to protect and would pay an interpreter start per call for the child, so
    they parse the dump in this thread, inside the namespace.

    ``quiet`` (``watch``: 50 ms): a run waits until no VIP was queued for that long, at most
    ``max_defer`` after the first VIP of the run was queued. The dump's walk of the hash table
    is one stretch of kernel work that is not preempted (11 ms for 262,144 buckets here), and
    on a small machine a stretch in the middle of an event stream holds up the events queued
    behind it on that CPU; in a lull it costs nobody. A stream that never pauses gets its
    flush every ``max_defer`` (2 s) all the same.
    """

    def __init__(self, netns: str | None, enabled: bool = True, min_gap: float = 1.0,
                 out_of_process: bool = False,
                 on_error: Callable[[str, int], None] | None = None,
                 quiet: float = 0.0, max_defer: float = 2.0) -> None:
        self.enabled = enabled
        #: told of every failure ("flush" runs, "entry" refusals, "start"): the engine's metrics
        self.on_error = on_error
        self.errors = 0
        #: why the flusher cannot work at all (it could not enter the namespace), or None
        self.broken: str | None = None
        self._retry: set[int] = set()
        self.min_gap = min_gap
        self.quiet, self.max_defer = quiet, max_defer
        self._last_queued = 0.0  # time.monotonic() of the last flush() that queued VIPs
        self._first_queued = 0.0  # ... of the first VIP queued since the last run began
        self._way: InThread | InChild = InChild(netns) if out_of_process else InThread(netns)
        self._pending: set[IPv4Address] = set()
        self._cv = threading.Condition()
        self._stop = False
        self._stopping = threading.Event()
        self._busy = False
        self.flushed = 0
        self.deleted = 0
        self.runs = 0
        self._t: threading.Thread | None = None
        if enabled:
            self._t = threading.Thread(target=self._run, name="ikemgr-conntrack", daemon=True)
            self._t.start()

    def _error(self, kind: str, n: int = 1) -> None:
        self.errors += n
        if self.on_error is not None:
            self.on_error(kind, n)

    def flush(self, vips: frozenset[IPv4Address]) -> None:
        if not self.enabled or not vips:
            return
        if self.broken is not None:
            # nothing will ever flush these: say so (counted), instead of letting work pile up
            self._error("flush", len(vips))
            return
        with self._cv:
            now = time.monotonic()
            if not self._pending:
                self._first_queued = now
            self._last_queued = now
            self._pending |= vips
            self._cv.notify()

    def _delay(self) -> float:
        """Seconds until a run may start (0: now): when stopping, at once; else when the queue
        has been quiet for ``quiet`` or its first VIP has waited ``max_defer``. Under ``self._cv``."""
        if self._stop or self.quiet <= 0:
            return 0.0
        now = time.monotonic()
        return max(0.0, min(self._last_queued + self.quiet, self._first_queued + self.max_defer) - now)

    def _run(self) -> None:
        if not self._way.start():
            self.broken = "cannot enter the gateway's network namespace"
            log.error("conntrack flusher stopped: %s; the conntrack entries of users whose path "
                      "changes will not be flushed (their open flows keep the old SNAT address)",
                      self.broken, extra={"fields": {"event": "conntrack-broken"}})
            self._error("start")
            with self._cv:
                self._error("flush", len(self._pending))
                self._pending = set()
                self._cv.notify_all()
            return
        while True:
            with self._cv:
                while not self._pending and not self._stop:
                    self._cv.wait()
                if self._stop and not self._pending:
                    self._way.close()
                    return
                delay = self._delay()
                if delay <= 0:
                    # addresses as integers: cheap to build and to write while the event thread
                    # waits for the interpreter lock (str() of 4,000 VIPs took 2.7 ms)
                    batch, self._pending = {int(v) for v in self._pending}, set()
                    self._busy = True
            if delay > 0:
                # not a wait on the condition every queued batch notifies: the event thread
                # is not to share the interpreter with a thread woken per batch
                self._stopping.wait(delay)
                continue
            try:
                deleted, refused = self._way.flush(batch)
            except (OSError, RuntimeError, ValueError) as e:
                # netlink trouble must not kill the flusher: counted, and the batch is tried
                # once more with the next run; VIPs that fail twice are reported and dropped
                again = batch - self._retry
                log.warning("conntrack flush of %d VIPs failed: %s%s", len(batch), e,
                            f"; retrying {len(again)}" if again else "; giving up on them",
                            extra={"fields": {"event": "conntrack-failed"}})
                self._error("flush", len(batch))
                self._retry = again
                with self._cv:
                    self._pending |= {IPv4Address(v) for v in again}
            else:
                self.deleted += deleted
                self.flushed += len(batch)
                self._retry = set()
                if refused:
                    log.warning("conntrack: the kernel refused to delete %d entries of %d VIPs", refused,
                                len(batch), extra={"fields": {"event": "conntrack-refused"}})
                    self._error("entry", refused)
            self.runs += 1
            with self._cv:
                self._busy = False
                self._cv.notify_all()
            # let more VIPs gather (one dump per burst); a stop request ends the wait, the
            # batches queued meanwhile do not (they notify the condition, not this event)
            self._stopping.wait(self.min_gap)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """For tests and orderly exit: wait until everything queued has been flushed."""
        with self._cv:
            self._cv.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self) -> None:
        if self._t is not None:
            with self._cv:
                self._stop = True
                self._cv.notify_all()
            self._stopping.set()
            self._t.join(timeout=10)

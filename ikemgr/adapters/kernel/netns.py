"""Run kernel work inside a named network namespace without moving the whole process.

libnftables, libiptc and netlink sockets belong to the namespace of the thread that
opens them, and ``setns(2)`` is per thread. So for ``--netns NAME`` each call switches
its *calling thread* into NAME and back (two ``setns`` calls, ~3 µs together, measured
here) instead of handing the call to a worker thread that lives there (~24 µs per call on
an idle machine, and a wake-up that waits for a CPU on a busy one: the tail of watch's
event latency). The namespace is opened by name once, never created: a typo is an error
instead of a new, empty namespace.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from ikemgr.errors import BackendUnavailable, UsageError

NETNS_DIR = Path("/var/run/netns")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

T = TypeVar("T")


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


def check_netns(name: str) -> None:
    """A clear one-line error for a bad or missing namespace name; never creates one."""
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"--netns: {name!r} is not a network namespace name")
    if not (NETNS_DIR / name).exists():
        raise UsageError(f"--netns: network namespace {name} does not exist")


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def enter(name: str) -> None:
    """Move the calling thread into the named network namespace for good (a thread that
    lives there: the conntrack flusher). A missing namespace raises OSError; none is created."""
    fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
    except OSError as e:
        raise OSError(e.errno, f"setns {name}: {e.strerror}") from None
    finally:
        os.close(fd)


class _Thread(threading.local):
    home: int | None = None  # this thread's own namespace (an fd), opened at its first call
    depth = 0  # calls in progress on this thread (a nested call stays where it is)


class InNetns:
    """Call functions in the namespace (or inline when ``name`` is None). Use as a context."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self._fd: int | None = None
        self._threads = _Thread()
        self._homes: list[int] = []
        self._lock = threading.Lock()
        if name is not None:
            check_netns(name)
            try:
                self._fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise BackendUnavailable("netns", f"could not open network namespace {name}: "
                                         f"{e.strerror}") from None

    def call(self, fn: Callable[..., T], *args: object) -> T:
        if self._fd is None:
            if self.name is not None:
                raise BackendUnavailable("netns", f"network namespace {self.name}: closed")
            return fn(*args)
        t = self._threads
        if t.depth:
            return fn(*args)  # already inside
        if t.home is None:
            t.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            with self._lock:
                self._homes.append(t.home)
        try:
            _setns(self._fd)
        except OSError as e:
            raise BackendUnavailable("netns", f"could not enter network namespace {self.name}: "
                                     f"{e.strerror}") from None
        t.depth = 1
        try:
            return fn(*args)
        finally:
            t.depth = 0
            # a thread left in the wrong namespace would send the next host operation
            # into the lab's: not recoverable, so this one is allowed to raise
            _setns(t.home)

    def close(self) -> None:
        with self._lock:
            fds, self._homes = self._homes, []
            if self._fd is not None:
                fds.append(self._fd)
                self._fd = None
        for fd in fds:
            os.close(fd)
        self._threads = _Thread()

    def __enter__(self) -> InNetns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NsChannel(Generic[C]):
    """A socket channel opened inside ``ex``'s namespace at its first use, then used as is.

    A socket keeps the network namespace it was made in, whichever the thread that uses it
    is in: only opening one needs the thread inside (``InNetns.call``). Entering the
    namespace around every send (two ``setns``, 4.4 µs here) was a tenth of a lone
    connect's cost in ``watch --netns``. ``reset`` (after a socket error) closes it, and
    the next ``call`` opens another one inside the namespace."""

    def __init__(self, ex: InNetns, opener: Callable[[], C]) -> None:
        self.ex = ex
        self.opener = opener
        self.chan: C | None = None

    def call(self, fn: Callable[[C], T]) -> T:
        chan = self.chan
        if chan is not None:
            return fn(chan)
        return self.ex.call(self._open_then, fn)

    def _open_then(self, fn: Callable[[C], T]) -> T:
        if self.chan is None:
            self.chan = self.opener()
        return fn(self.chan)

    def reset(self) -> None:
        chan, self.chan = self.chan, None
        if chan is not None:
            chan.close()

    close = reset

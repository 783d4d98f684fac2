"""Run netfilter work inside a named network namespace without moving the whole process.

libnftables and libiptc open their sockets in the *calling thread's* namespace and
``setns(2)`` is per thread, so firewall calls for ``--netns NAME`` go through a
one-thread executor whose only thread entered NAME at start. ``enter`` opens the named
namespace and never creates one (a typo is an error, not a new, empty namespace); the
name is also checked first for a clear message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ikemgr.errors import BackendUnavailable, UsageError

NETNS_DIR = Path("/var/run/netns")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

T = TypeVar("T")


def check_netns(name: str) -> None:
    """A clear one-line error for a bad or missing namespace name; never creates one."""
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"--netns: {name!r} is not a network namespace name")
    if not (NETNS_DIR / name).exists():
        raise UsageError(f"--netns: network namespace {name} does not exist")


CLONE_NEWNET = 0x40000000


def enter(name: str) -> None:
    """Move the calling thread into the named network namespace (``ip netns``'s bind mount).

    ``setns(2)`` through libc (``os.setns`` is Python 3.12+), without importing pyroute2
    (~0.1 s of CPU) for it. A missing namespace raises OSError; none is ever created.
    """
    fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns = getattr(os, "setns", None)
        if setns is not None:
            setns(fd, CLONE_NEWNET)
            return
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _enter(name: str) -> None:
    enter(name)


class InNetns:
    """Call functions in the namespace (or inline when ``name`` is None). Use as a context."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self._pool: ThreadPoolExecutor | None = None
        if name is not None:
            check_netns(name)
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ikemgr-netns",
                                            initializer=_enter, initargs=(name,))

    def call(self, fn: Callable[..., T], *args: object) -> T:
        if self._pool is None:
            return fn(*args)
        try:
            return self._pool.submit(fn, *args).result()
        except BrokenExecutor:
            raise BackendUnavailable("netns", f"could not enter network namespace {self.name}") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> InNetns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

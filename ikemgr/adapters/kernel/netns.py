"""Run netfilter work inside a named network namespace without moving the whole process.

libnftables and libiptc open their sockets in the *calling thread's* namespace and
``setns(2)`` is per thread, so firewall calls for ``--netns NAME`` go through a
one-thread executor whose only thread entered NAME at start. pyroute2's ``setns``
creates a missing namespace unless ``flags=0`` is passed; we pass it, and also check
first so a typo is an error instead of a new, empty namespace.
"""

from __future__ import annotations

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


def _enter(name: str) -> None:
    from pyroute2 import netns

    netns.setns(name, flags=0)


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

"""A file lock (fcntl) that serialises syncs on one gateway, waiting a bounded time."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ikemgr.errors import BackendUnavailable, Refused

POLL = 0.05


@contextmanager
def held(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; wait up to ``timeout`` s, then Refused (exit 4)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise BackendUnavailable("lock", f"{path}: {e.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Refused(f"another sync holds {path} (waited {timeout:g} s); try again") from None
                time.sleep(POLL)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock

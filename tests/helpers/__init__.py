"""What every test folder shares: the checkout's ikemgr, running a command, a free port, waiting.

``IKEMGR`` is the ikemgr of the venv that runs the tests (this checkout's, installed by
scripts/setup.sh), never one found on PATH: a system copy must not answer for the code
under test. Fixtures live in the ``conftest.py`` of each folder; the builders they use
(the test gateway's config and links, the lab's rule reads) live here.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
IKEMGR = Path(sys.executable).parent / "ikemgr"


def sh(*argv: str | os.PathLike[str], check: bool = True, timeout: float = 60,
       **kw: Any) -> subprocess.CompletedProcess[str]:
    """A command's result as text (``kw`` goes to subprocess.run: env, input, cwd …).

    With ``check`` a non-zero exit fails the test with the command, its exit code and its
    output in the message.
    """
    cmd = [os.fspath(a) for a in argv]
    r: subprocess.CompletedProcess[str] = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                                         timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}): {(r.stdout + r.stderr).strip()}")
    return r


def free_port() -> int:
    """A loopback port free for both UDP and TCP (RADIUS listens on one, LDAP and SQL on the other).

    The kernel hands out a free UDP port; the same number may still be taken for TCP (a
    listener, or a connection of an earlier test), so another is tried then.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            try:
                t.bind(("127.0.0.1", port))
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
                continue
            return port
    raise AssertionError("no loopback port free for both UDP and TCP in 50 tries")


def until(pred: Callable[[], object], timeout: float, step: float = 0.02) -> float | None:
    """Seconds until pred() held, or None if it did not within ``timeout``."""
    start = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            return None
        time.sleep(step)


def wait_for(cond: Callable[[], Any], timeout: float, what: str | Callable[[], str],
             step: float = 0.05) -> Any:
    """``cond()``'s first true value within ``timeout``; else AssertionError naming ``what``.

    ``what`` may be a callable: it is called only on failure, so a log tail in the message
    is read after the wait, not before it.
    """
    box: list[Any] = []
    if until(lambda: box.append(cond()) or box[-1], timeout, step) is None:
        raise AssertionError(what() if callable(what) else what)
    return box[-1]

"""What every test folder shares: the checkout's ikemgr, running a command, waiting for a condition.

``IKEMGR`` is the ikemgr of the venv that runs the tests (this checkout's, installed by
scripts/setup.sh), never one found on PATH: a system copy must not answer for the code
under test. Fixtures live in the ``conftest.py`` of each folder; the builders they use
(the test gateway's config and links, the lab's rule reads) live here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
IKEMGR = Path(sys.executable).parent / "ikemgr"


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A command's result as text; raises on a non-zero exit when ``check``."""
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


def until(pred: Callable[[], object], timeout: float, step: float = 0.02) -> float | None:
    """Seconds until pred() held, or None if it did not within ``timeout``."""
    start = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            return None
        time.sleep(step)


def wait_for(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """``cond()``'s first true value within ``timeout``; else AssertionError naming ``what``."""
    box: list[Any] = []
    if until(lambda: box.append(cond()) or box[-1], timeout, step) is None:
        raise AssertionError(what)
    return box[-1]

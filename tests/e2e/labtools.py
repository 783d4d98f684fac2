"""Small helpers the end-to-end tests share: the gateway's rules for a VIP, waiting for a condition."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

from ikemgr_lab.runner import Lab


def rules_for(lab: Lab, vip: str) -> list[dict[str, Any]]:
    """The gateway's ip rules whose source is ``vip`` (the rules backend's per-user rules)."""
    r = subprocess.run(["ip", "-j", "-n", lab.ns("gw"), "rule", "show"], capture_output=True, text=True,
                       check=True)
    return [x for x in json.loads(r.stdout) if x.get("src") == vip]


def until(pred: Callable[[], object], timeout: float, step: float = 0.02) -> float | None:
    """Seconds until pred() held, or None if it did not within timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pred():
            return time.monotonic() - start
        time.sleep(step)
    return None

"""What the end-to-end tests read from the lab: the gateway's rules for a VIP."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from ikemgr_lab.runner import Lab


def rules_for(lab: Lab, vip: str) -> list[dict[str, Any]]:
    """The gateway's ip rules whose source is ``vip`` (the rules backend's per-user rules)."""
    r = subprocess.run(["ip", "-j", "-n", lab.ns("gw"), "rule", "show"], capture_output=True, text=True,
                       check=True)
    return [x for x in json.loads(r.stdout) if x.get("src") == vip]


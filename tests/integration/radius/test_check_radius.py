"""The RADIUS reachability probe of ``ikemgr check`` against a real FreeRADIUS (answers:
no finding); a port nothing listens on is interop/test_check_host.py (radius.unreachable)."""

from __future__ import annotations

import json
import subprocess

import pytest
from radius_support import RadiusEnv

from helpers import IKEMGR

pytestmark = pytest.mark.root


def test_answering_radius_gives_no_finding(radius_env: RadiusEnv) -> None:
    r = subprocess.run([str(IKEMGR), "check", "-c", str(radius_env.config_file), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    data = json.loads(r.stdout)["data"]
    assert "radius" in data["checked"]
    assert not [f for f in data["findings"] if f["id"].startswith("radius.")]
    # the probe really reached FreeRADIUS: it logged (and rejected) our random password
    assert "ikemgr-check-probe" in radius_env.radiusd.log_text()

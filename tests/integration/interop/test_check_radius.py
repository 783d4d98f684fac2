"""The RADIUS reachability probe of ``ikemgr check`` against a real FreeRADIUS (answers:
no finding) and a port nothing listens on (test_check_host.py: radius.unreachable)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# the radius tests' session fixtures: slapd + the rendered FreeRADIUS on loopback
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "radius"))
from ikc_support import IKEMGR  # noqa: E402
from radius_support import RadiusEnv, certs, radius_env, radius_tmp, slapd  # noqa: E402,F401

pytestmark = pytest.mark.root


def test_answering_radius_gives_no_finding(radius_env: RadiusEnv) -> None:  # noqa: F811
    r = subprocess.run([str(IKEMGR), "check", "-c", str(radius_env.config_file), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    data = json.loads(r.stdout)["data"]
    assert "radius" in data["checked"]
    assert not [f for f in data["findings"] if f["id"].startswith("radius.")]
    # the probe really reached FreeRADIUS: it logged (and rejected) our random password
    assert "ikemgr-check-probe" in radius_env.radiusd.log_text()

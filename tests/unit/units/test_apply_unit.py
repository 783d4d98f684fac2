"""ikemgr-apply.service: the base state at boot, before charon, and again after an nftables restart.

The ordering is the point of the unit (a gateway must not accept a client before its
routes and NAT exist), so the test pins the dependency lines, and lets systemd itself
(`systemd-analyze verify`) read the rendered file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ikemgr.config.load import load
from ikemgr.errors import ConfigError
from ikemgr.render.systemd import apply_unit_output

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "tests" / "golden" / "minimal.yaml"
IKEMGR = Path("/opt/ikemgr/venv/bin/ikemgr")


def test_apply_unit_orders_before_charon_and_follows_nftables() -> None:
    out = apply_unit_output(load(CONFIG), "hdr", Path("/etc/ikemgr/ikemgr.yaml"), IKEMGR)
    assert out.path == "systemd/system/ikemgr-apply.service"
    lines = out.text.splitlines()
    assert "ExecStart=/opt/ikemgr/venv/bin/ikemgr apply --config /etc/ikemgr/ikemgr.yaml" in lines
    assert "Before=strongswan.service strongswan-swanctl.service ikemgr-watch.service" in lines
    assert "After=network-online.target nftables.service" in lines
    assert "PartOf=nftables.service" in lines
    # a oneshot that stays "active": PartOf= propagates a restart only to an active unit
    assert {"Type=oneshot", "RemainAfterExit=yes", "WantedBy=multi-user.target"} <= set(lines)
    assert lines[0] == "# hdr"


@pytest.mark.parametrize("bad", ["/etc/ike mgr.yaml", "/etc/ikemgr/%h.yaml", "/etc/$x.yaml", "relative.yaml"])
def test_a_path_systemd_would_reinterpret_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="cannot be used in a systemd unit"):
        apply_unit_output(load(CONFIG), "hdr", Path(bad), IKEMGR)


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    exe = tmp_path / "ikemgr"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = tmp_path / "ikemgr-apply.service"
    unit.write_text(apply_unit_output(load(CONFIG), "hdr", CONFIG, exe).text)
    p = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "ikemgr-apply" not in p.stderr, p.stderr

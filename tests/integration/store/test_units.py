"""The periodic-sync systemd units: rendered from config and checked by systemd itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from store_support import IKEMGR, make_env

from ikemgr.config.load import load
from ikemgr.errors import ConfigError
from ikemgr.render.systemd import sync_unit_outputs


def test_units_render_and_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    env = make_env(tmp_path, db_url="postgresql+psycopg://ikemgr@127.0.0.1/ikemgr", interval=600)
    outs = sync_unit_outputs(load(env.config), "hdr", env.config, IKEMGR)
    assert [o.path for o in outs] == ["systemd/system/ikemgr-sync.service", "systemd/system/ikemgr-sync.timer"]
    service, timer = (o.text for o in outs)
    assert f"ExecStart={IKEMGR} sync --config {env.config}\n" in service
    assert f"ReadWritePaths=-{tmp_path} -{tmp_path / 'state'}\n" in service
    assert "After=network-online.target postgresql.service\n" in service
    assert "OnUnitActiveSec=600s\n" in timer and "RandomizedDelaySec=60s\n" in timer
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    units = tmp_path / "units"
    units.mkdir()
    for o in outs:
        (units / Path(o.path).name).write_text(o.text)
    p = subprocess.run(["systemd-analyze", "verify", str(units / "ikemgr-sync.service"),
                        str(units / "ikemgr-sync.timer")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "ikemgr-sync" not in p.stderr, p.stderr


def test_sqlite_directory_is_writable_and_odd_paths_are_refused(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    service = sync_unit_outputs(load(env.config), "hdr", env.config, IKEMGR)[0].text
    assert f" -{tmp_path / 'db'}" in service and "postgresql.service" not in service
    with pytest.raises(ConfigError, match="cannot be used in a systemd unit"):
        sync_unit_outputs(load(env.config), "hdr", Path("/etc/ike mgr.yaml"), IKEMGR)

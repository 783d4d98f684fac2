"""`ikemgr render` through the CLI: --diff, --dry-run, --json and the secret files."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ikemgr.cli import app


def _render(config: Path, out: Path, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, ["render", "-c", str(config), "--out", str(out), *args])
    return r.exit_code, r.output


def test_diff_shows_exactly_the_changed_lines(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "etc"
    code, _ = _render(config, out)
    assert code == 0
    config.write_text(config.read_text().replace("dpd_delay: 30", "dpd_delay: 45"))
    code, text = _render(config, out, "--diff")
    assert code == 0, text
    conf = out / "swanctl/conf.d/ikemgr.conf"
    assert f"--- {conf}" in text or "swanctl/conf.d/ikemgr.conf" in text, text
    minus = [ln for ln in text.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln for ln in text.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert [ln.split() for ln in minus] == [["-", "dpd_delay", "=", "30s"]], text
    assert [ln.split() for ln in plus] == [["+", "dpd_delay", "=", "45s"]], text
    assert "dpd_delay = 45s" in conf.read_text()


def test_dry_run_json_lists_changes_and_writes_nothing(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "etc"
    code, text = _render(config, out, "--dry-run", "--json")
    assert code == 0, text
    data = json.loads(text)["data"]
    paths = json.dumps(data)
    assert "swanctl/conf.d/ikemgr.conf" in paths and "strongswan.d/ikemgr-eap-radius.conf" in paths
    assert not out.exists()


def test_secret_diff_is_not_printed(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "etc"
    assert _render(config, out)[0] == 0
    secret = tmp_path / "radius.secret"
    secret.write_text("another-s3cret\n")
    code, text = _render(config, out, "--diff")
    assert code == 0, text
    assert "eap-radius.conf" in text
    assert "another-s3cret" not in text and "s3cret-for-tests" not in text
    assert "another-s3cret" in (out / "strongswan.d/ikemgr-eap-radius.conf").read_text()

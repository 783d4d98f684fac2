"""`ikemgr render` end to end: files on disk, then the swanctl config loaded by a real charon."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import IKEMGR
from ikemgr.checks.swanctl import check_swanctl
from ikemgr.cli import app
from ikemgr.errors import CheckFailed

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[3]


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {ln.split()[0] for ln in out.splitlines() if ln.strip()}


def test_render_check_loads_into_real_charon(config: Path, tmp_path: Path) -> None:
    before = _netns()
    out = tmp_path / "etc"
    r = CliRunner().invoke(app, ["render", "-c", str(config), "--out", str(out), "--check"])
    assert r.exit_code == 0, r.output
    assert "check: charon loaded connection kuins and pool kuins-pool" in r.output
    assert (out / "swanctl/conf.d/ikemgr.conf").is_file()
    assert oct((out / "strongswan.d/ikemgr-eap-radius.conf").stat().st_mode & 0o777) == "0o600"
    assert "s3cret-for-tests" in (out / "strongswan.d/ikemgr-eap-radius.conf").read_text()
    assert _netns() == before  # the check namespace is gone
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = CliRunner().invoke(app, ["render", "-c", str(config), "--out", str(out)])
    assert again.exit_code == 0 and "no changes" in again.output
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_render_check_json_lists_conn_and_pool(config: Path, tmp_path: Path) -> None:
    import json

    r = CliRunner().invoke(app, ["render", "-c", str(config), "--out", str(tmp_path / "o"), "--check",
                                 "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)["data"]
    assert "kuins: IKEv2" in data["check"]["list_conns"]
    assert "kuins-pool" in data["check"]["list_pools"] and "10.1.0.10" in data["check"]["list_pools"]
    assert not (tmp_path / "o").exists()  # dry run


def test_a_bad_proposal_is_caught_by_charon(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "etc"
    assert CliRunner().invoke(app, ["render", "-c", str(config), "--out", str(out)]).exit_code == 0
    conf = out / "swanctl/conf.d/ikemgr.conf"
    conf.write_text(conf.read_text().replace("aes256-sha256-x25519", "aes999-sha256-x25519"))
    with pytest.raises(CheckFailed, match="invalid value for: proposals"):
        check_swanctl(out, "kuins", "kuins-pool", Path("/nonexistent/gateway.crt"), Path("/nonexistent/gateway.key"),
                      "vpn.example.ac.jp")


def test_render_refuses_missing_secret_file(config: Path, tmp_path: Path) -> None:
    config.write_text(config.read_text().replace(str(tmp_path / "radius.secret"), "/nonexistent/radius.secret"))
    r = CliRunner().invoke(app, ["render", "-c", str(config), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert r.output.strip() == "error: radius.secret_file: /nonexistent/radius.secret: no such file"
    assert not os.path.exists(tmp_path / "o")


def test_rendered_units_pass_systemd_analyze(config: Path, tmp_path: Path) -> None:
    import shutil

    from ikemgr.commands._common import load_secrets
    from ikemgr.config.load import load
    from ikemgr.render.outputs import all_outputs

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    cfg = load(config)
    units = [o for o in all_outputs(cfg, load_secrets(cfg), str(config), IKEMGR) if o.path.startswith("systemd/")]
    assert sorted(Path(o.path).name for o in units) == ["ikemgr-apply.service", "ikemgr-sync.service",
                                                         "ikemgr-sync.timer", "ikemgr-watch.service"]
    for o in units:
        (tmp_path / Path(o.path).name).write_text(o.text)
    p = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / Path(o.path).name) for o in units)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert "ikemgr-" not in p.stderr, p.stderr


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode) for p in root.rglob("*") if p.is_file()}


def test_check_before_write_a_refused_render_leaves_the_tree_byte_identical(config: Path, tmp_path: Path) -> None:
    """A proposal the config grammar allows but charon refuses: render stages the tree, charon
    refuses it, render exits 2 naming the file and charon's message, and the live files
    (written by the previous good render) are byte-identical; no namespace is left."""
    before = _netns()
    out = tmp_path / "etc"
    r = CliRunner().invoke(app, ["render", "-c", str(config), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "check: charon loaded connection kuins" in r.output and "check: nft -c accepted" in r.output
    good = _tree(out)
    config.write_text(config.read_text().replace("strongswan:\n", "strongswan:\n  proposals: [aes999-sha256-x25519]\n"))
    r = CliRunner().invoke(app, ["render", "-c", str(config), "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: render refused, nothing written: swanctl/conf.d/ikemgr.conf: charon:")
    assert "aes999" in r.output or "proposal" in r.output
    assert _tree(out) == good
    assert _netns() == before
    # --no-check writes what charon would refuse: the operator's explicit choice
    r = CliRunner().invoke(app, ["render", "-c", str(config), "--out", str(out), "--no-check"])
    assert r.exit_code == 0 and "aes999" in (out / "swanctl/conf.d/ikemgr.conf").read_text()

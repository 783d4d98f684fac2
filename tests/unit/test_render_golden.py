"""Golden files: every rendered file of the example and of a minimal config, byte for byte.

Regenerate after an intended change with: UPDATE_GOLDEN=1 pytest tests/unit/test_render_golden.py
and review the diff like any other code change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ikemgr.config.load import load
from ikemgr.core.secrets import Secrets
from ikemgr.errors import UsageError
from ikemgr.render.outputs import all_outputs

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
CASES = {"campus": ROOT / "examples" / "campus.yaml", "minimal": GOLDEN / "minimal.yaml"}
SECRET = Secrets(radius="golden-secret")


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_matches_golden(case: str) -> None:
    cfg = load(CASES[case])
    outputs = all_outputs(cfg, SECRET, f"/etc/ikemgr/{case}.yaml")
    expected_dir = GOLDEN / case
    produced = {o.path for o in outputs}
    if os.environ.get("UPDATE_GOLDEN") == "1":
        for o in outputs:
            (expected_dir / o.path).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / o.path).write_text(o.text)
        for stale in expected_dir.rglob("*"):
            if stale.is_file() and str(stale.relative_to(expected_dir)) not in produced:
                stale.unlink()
    on_disk = {str(p.relative_to(expected_dir)) for p in expected_dir.rglob("*") if p.is_file()}
    assert produced == on_disk
    for o in outputs:
        assert o.text == (expected_dir / o.path).read_text(), o.path


def test_secret_files_are_private_and_others_public() -> None:
    outputs = all_outputs(load(CASES["campus"]), SECRET, "/etc/ikemgr/campus.yaml")
    modes = {o.path: o.mode for o in outputs}
    assert modes["strongswan.d/charon/eap-radius.conf"] == 0o600
    holders = [o for o in outputs if "golden-secret" in o.text]
    assert {o.path for o in holders} == {"strongswan.d/charon/eap-radius.conf", "freeradius/3.0/clients.conf"}
    for o in holders:  # 0600 root, or 0640 root:freerad for the RADIUS server's own file
        assert o.secret and (o.mode == 0o600 or (o.mode == 0o640 and o.group == "freerad")), o.path
    assert modes["swanctl/conf.d/ikemgr.conf"] == 0o644


def test_secret_that_would_break_the_syntax_is_refused() -> None:
    cfg = load(CASES["minimal"])
    for bad in ('a"b', "a\\b", "line\nbreak", "", "with space", "x" * 129):
        with pytest.raises(UsageError):
            all_outputs(cfg, Secrets(radius=bad), "/etc/ikemgr/x.yaml")


def test_kyoto_specifics_in_render() -> None:
    outputs = {o.path: o.text for o in all_outputs(load(CASES["campus"]), SECRET, "/etc/ikemgr/campus.yaml")}
    swanctl = outputs["swanctl/conf.d/ikemgr.conf"]
    assert "send_cert = always" in swanctl and "eap_id = %any" in swanctl
    assert "auth = eap-radius" in swanctl and "addrs = 10.1.0.10-10.1.0.250" in swanctl
    charon = outputs["strongswan.d/charon.conf"]
    assert "install_routes = no" in charon and "routing_table_prio = 30000" in charon
    routing = outputs["ikemgr/routing.ip"]
    assert "route replace 10.2.0.0/24 dev ens3.1 src 10.2.0.253 table 123456 proto 99" in routing
    assert "rule add priority 30001 from 10.1.0.0/24 to 10.0.0.0/8 lookup 200 protocol 99" in routing
    sysctl = outputs["sysctl.d/90-ikemgr.conf"]
    assert "net.ipv4.conf.ens3/1.rp_filter = 2" in sysctl  # '.' in a name is '/' in sysctl.d
    watch = outputs["systemd/system/ikemgr-watch.service"]
    assert "ExecStart=/usr/local/bin/ikemgr watch --config /etc/ikemgr/campus.yaml" in watch
    assert "ExecStart=/usr/local/bin/ikemgr sync --config /etc/ikemgr/campus.yaml" in \
        outputs["systemd/system/ikemgr-sync.service"]
    assert "OnUnitActiveSec=" in outputs["systemd/system/ikemgr-sync.timer"]


def test_rendering_from_another_path_changes_only_what_names_the_path() -> None:
    """No header carries a path, host or time: the same config rendered from two places
    differs only in the units' --config argument (a real change), so no daemon restarts."""
    cfg = load(CASES["campus"])
    a = {o.path: o.text for o in all_outputs(cfg, SECRET, "/etc/ikemgr/ikemgr.yaml")}
    b = {o.path: o.text for o in all_outputs(cfg, SECRET, "/srv/other/copy.yaml")}
    assert a.keys() == b.keys()
    differ = sorted(p for p in a if a[p] != b[p])
    assert differ and all(p.startswith("systemd/system/") for p in differ), differ
    assert all("/etc/ikemgr/ikemgr.yaml" not in t for p, t in a.items() if not p.startswith("systemd/"))

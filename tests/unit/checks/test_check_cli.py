"""`ikemgr check` as a command: exit codes, --json shape, one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ikemgr.cli import app


def write(tmp: Path, **strongswan: Any) -> Path:
    (tmp / "radius.secret").write_text("x\n")
    doc = {"gateway": {"fqdn": "vpn.example.test",
                       "outside": {"interface": "out0", "address": "192.0.2.1/24", "gateway": "192.0.2.254"},
                       "campus": {"interface": "campus0", "address": "10.1.0.251/24", "gateway": "10.1.0.254"}},
           "pool": {"first": "10.1.0.10", "last": "10.1.0.250"}, "campus_prefixes": ["10.0.0.0/8"],
           "radius": {"secret_file": str(tmp / "radius.secret")}, "strongswan": strongswan}
    p = tmp / "c.yaml"
    p.write_text(json.dumps(doc))
    return p


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["check", *args])


def test_default_config_exit_0_json(tmp_path: Path) -> None:
    r = run("-c", str(write(tmp_path)), "--config-only", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)["data"]
    assert data["checked"] == ["config"] and data["counts"]["error"] == 0
    f = data["findings"][0]
    assert set(f) == {"id", "severity", "message", "fix", "clients", "exchange", "subject"}


def test_pfs_config_exit_1(tmp_path: Path) -> None:
    r = run("-c", str(write(tmp_path, esp_proposals=["aes256-sha256-modp2048"])), "--config-only", "--json")
    assert r.exit_code == 1
    found = json.loads(r.output)["data"]["findings"]
    assert any(f["id"] == "proposals.pfs-required" and f["subject"] == "macos" for f in found)


def test_human_output_names_client_and_exchange(tmp_path: Path) -> None:
    r = run("-c", str(write(tmp_path, esp_proposals=["aes256-sha256-modp2048"])), "--config-only")
    assert r.exit_code == 1
    assert "proposals.pfs-required" in r.output and "CHILD_SA rekey" in r.output


@pytest.mark.parametrize("args,text", [
    (["--netns", "../x;rm -rf /"], "is not a network namespace name"),
    (["--netns", "ikc-does-not-exist"], "does not exist"),
    (["--path-mtu", "10"], "--path-mtu must be between 576 and 9000"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], text: str) -> None:
    r = run("-c", str(write(tmp_path)), "--no-radius", *args)
    assert r.exit_code == 2
    assert text in r.output


@pytest.mark.parametrize("subject", ['O=Evil" }\n connections { x', "O=a;rm -rf /", "O=../../etc", "O=" + "a" * 500])
def test_hostile_cert_auth_subject_is_refused(tmp_path: Path, subject: str) -> None:
    p = write(tmp_path)
    doc = json.loads(p.read_text())
    doc["strongswan_cert_auth"] = {"enabled": True, "subject": subject}
    p.write_text(json.dumps(doc))
    r = run("-c", str(p), "--config-only")
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "strongswan_cert_auth.subject" in lines[0], r.output

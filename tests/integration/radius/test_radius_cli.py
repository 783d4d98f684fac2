"""`ikemgr radius check` as an operator or a health probe runs it: a real process, real exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from radius_support import PASSWORDS, RadiusEnv

from helpers import IKEMGR, free_port

pytestmark = pytest.mark.root


def _ikemgr(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IKEMGR, *args], capture_output=True, text=True, input=stdin, timeout=60)


def _pwfile(tmp_path: Path, user: str, password: str) -> Path:
    p = tmp_path / f"{user}.pw"
    p.write_text(password + "\n")
    return p


def test_accept_exit_0_with_rtt(radius_env: RadiusEnv, tmp_path: Path) -> None:
    pw = _pwfile(tmp_path, "alice", PASSWORDS["alice"])
    r = _ikemgr("radius", "check", "-c", str(radius_env.config_file), "--user", "alice@123456",
                "--password-file", str(pw))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"accept from 127.0.0.1:{radius_env.cfg.radius.auth_port} for "
                               "'alice@123456' in ")
    assert r.stdout.rstrip().endswith("ms (pap)")


def test_json_output(radius_env: RadiusEnv, tmp_path: Path) -> None:
    pw = _pwfile(tmp_path, "alice", PASSWORDS["alice"])
    r = _ikemgr("radius", "check", "-c", str(radius_env.config_file), "--user", "alice",
                "--password-file", str(pw), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is True and out["exit_code"] == 0
    assert out["data"]["outcome"] == "accept" and out["data"]["user"] == "alice"
    assert 0 < out["data"]["rtt_ms"] < 2000


def test_reject_exit_1(radius_env: RadiusEnv, tmp_path: Path) -> None:
    pw = _pwfile(tmp_path, "dave", PASSWORDS["dave"])  # disabled account
    r = _ikemgr("radius", "check", "-c", str(radius_env.config_file), "--user", "dave",
                "--password-file", str(pw), "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["data"]["outcome"] == "reject"
    assert out["errors"] == ["expected accept, got reject"]


def test_password_from_stdin(radius_env: RadiusEnv) -> None:
    r = _ikemgr("radius", "check", "-c", str(radius_env.config_file), "--user", "erin@200001",
                "--password-file", "-", stdin=PASSWORDS["erin"] + "\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("accept ")


def test_liveness_probe_without_password(radius_env: RadiusEnv) -> None:
    """A random password: a reject proves the server answers and shares our secret."""
    r = _ikemgr("radius", "check", "-c", str(radius_env.config_file), "--user", "alice",
                "--expect", "reject")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("reject ")


def _config_with(radius_env: RadiusEnv, tmp_path: Path, **radius: object) -> Path:
    data = radius_env.cfg.model_dump(mode="json")
    data["radius"].update(radius)
    p = tmp_path / "other.yaml"
    p.write_text(json.dumps(data))
    return p


def test_unreachable_exit_3(radius_env: RadiusEnv, tmp_path: Path) -> None:
    cfg = _config_with(radius_env, tmp_path, auth_port=free_port(), timeout=0.5, retries=1)
    r = _ikemgr("radius", "check", "-c", str(cfg), "--user", "alice", "--expect", "reject")
    assert r.returncode == 3
    assert r.stderr.strip().startswith("error: radius unavailable: no valid reply from 127.0.0.1:")
    assert "Traceback" not in r.stderr


def test_wrong_secret_exit_3(radius_env: RadiusEnv, tmp_path: Path) -> None:
    bad = tmp_path / "bad.secret"
    bad.write_text("not-the-secret\n")
    cfg = _config_with(radius_env, tmp_path, secret_file=str(bad), timeout=0.5, retries=1)
    r = _ikemgr("radius", "check", "-c", str(cfg), "--user", "alice", "--json")
    assert r.returncode == 3
    assert json.loads(r.stdout)["error"]["code"] == "unavailable"


def test_missing_password_file_is_one_line_error(radius_env: RadiusEnv, tmp_path: Path) -> None:
    r = _ikemgr("radius", "check", "-c", str(radius_env.config_file), "--user", "alice",
                "--password-file", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: password file {tmp_path / 'nope'}: no such file"]


def test_unimplemented_method_is_usage_error(radius_env: RadiusEnv) -> None:
    r = _ikemgr("radius", "check", "-c", str(radius_env.config_file), "--user", "alice",
                "--method", "chap")
    assert r.returncode == 2
    assert r.stderr.startswith("error: --method chap")


def test_mschapv2_probe(radius_env: RadiusEnv, tmp_path: Path) -> None:
    good = _pwfile(tmp_path, "carol", PASSWORDS["carol"])
    r = _ikemgr("radius", "check", "-c", str(radius_env.config_file), "--user", "carol@123457",
                "--password-file", str(good), "--method", "mschapv2", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["data"]["method"] == "mschapv2"
    # alice has no NT hash in LDAP: the right password still cannot pass MS-CHAPv2
    alice = _pwfile(tmp_path, "alice", PASSWORDS["alice"])
    r = _ikemgr("radius", "check", "-c", str(radius_env.config_file), "--user", "alice",
                "--password-file", str(alice), "--method", "mschapv2")
    assert r.returncode == 1
    assert r.stdout.startswith("reject ")


def test_config_check_renders_and_runs_freeradius(radius_env: RadiusEnv) -> None:
    r = _ikemgr("radius", "config-check", "-c", str(radius_env.config_file), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert "sites-enabled/ikemgr-check-eap-tls" in out["data"]["files"]
    assert out["messages"][0].startswith("freeradius -XC: ok (7 rendered files")


def test_config_check_missing_certificate_fails(radius_env: RadiusEnv, tmp_path: Path) -> None:
    data = radius_env.cfg.model_dump(mode="json")
    data["eap"]["server_cert"] = str(tmp_path / "missing.pem")
    cfg = tmp_path / "broken.yaml"
    cfg.write_text(json.dumps(data))
    r = _ikemgr("radius", "config-check", "-c", str(cfg))
    assert r.returncode == 1
    assert r.stderr.startswith("error: freeradius config check failed")
    assert "missing.pem" in r.stderr

"""The product wheel on its own: built from the checkout, installed into a fresh venv elsewhere.

What a gateway installs must render from package data and must not carry the lab (its
namespace runner, slapd launcher, PKI and client charons live in ikemgr_lab, a separate
package of the repository).
"""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

def test_the_wheel_holds_the_product_and_its_templates_only(product_wheel: Path) -> None:
    names = zipfile.ZipFile(product_wheel).namelist()
    assert any(n.startswith("ikemgr/_templates/swanctl/") for n in names)
    assert "ikemgr/render/outputs.py" in names and "ikemgr/engine/engine.py" in names
    assert not [n for n in names if n.startswith("ikemgr_lab/") or "/lab/" in n or "slapd" in n
                or n.startswith("tests/")], names


def _outside_env() -> dict[str, str]:
    """The environment of a gateway: nothing points back into this checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "ikemgr"), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=_outside_env())


def test_installed_wheel_checks_and_renders_the_example(venv: Path, tmp_path: Path) -> None:
    secret = tmp_path / "radius.secret"
    secret.write_text("s3cret-for-the-wheel\n")
    secret.chmod(0o600)
    cfg = tmp_path / "campus.yaml"
    cfg.write_text((ROOT / "examples" / "campus.yaml").read_text()
                   .replace("/etc/ikemgr/radius.secret", str(secret)))
    check = _run(venv, "config", "check", "-c", str(cfg), cwd=tmp_path)
    assert check.returncode == 0 and "ok" in check.stdout, check.stderr
    out = tmp_path / "etc"
    render = _run(venv, "render", "-c", str(cfg), "--out", str(out), cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    conf = (out / "swanctl/conf.d/ikemgr.conf").read_text()
    assert "pools = kuins-pool" in conf or "kuins-pool" in conf
    assert (out / "strongswan.d/ikemgr-eap-radius.conf").stat().st_mode & 0o077 == 0
    # the module that ran is the installed one, not this checkout
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import ikemgr; print(ikemgr.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=_outside_env(), check=True).stdout
    assert str(venv) in where and str(ROOT) not in where


def test_installed_wheel_has_no_lab_command(venv: Path, tmp_path: Path) -> None:
    r = _run(venv, "lab", "up", cwd=tmp_path)
    assert r.returncode == 2 and "No such command 'lab'" in r.stderr, (r.stdout, r.stderr)
    lab_doc = _run(venv, "config", "check", "-c", str(ROOT / "examples" / "lab.yaml"), cwd=tmp_path)
    assert lab_doc.returncode == 2 and "lab" in lab_doc.stderr and "unknown key" in lab_doc.stderr

"""``ikemgr render --check`` still loads the rendered files into a real charon when the
certificate-only connection is on (its ``cacerts`` file gets a throw-away stand-in, like the
gateway certificate, when it is not on the rendering host)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from ikc_support import IKEMGR

from helpers.gateway import gateway_doc

pytestmark = pytest.mark.root


def test_render_check_with_cert_auth(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    (tmp_path / "radius.secret").write_text("x\n")
    (tmp_path / "radius.secret").chmod(0o600)  # render refuses a secret everyone can read
    doc = gateway_doc(radius={"secret_file": str(tmp_path / "radius.secret")},
                      routing={"rt_tables_file": str(tmp_path / "rt.conf")},
                      strongswan_cert_auth={"enabled": True, "subject": "C=JP, O=Example University"})
    doc["gateway"]["ca"] = str(tmp_path / "missing-ca.crt")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(doc))
    r = subprocess.run([str(IKEMGR), "render", "-c", str(cfg), "--out", str(tmp_path / "out"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "check: charon loaded connection ikemgr" in r.stdout
    text = (tmp_path / "out" / "swanctl" / "conf.d" / "ikemgr.conf").read_text()
    assert "cacerts = missing-ca.crt" in text and 'id = "C=JP, O=Example University, CN=*"' in text

"""Namespaces and a PKI for the client-profile tests against real charons.

Everything is prefixed ``ika-`` (namespaces) and lives under the test's tmp dir; the
finalizers remove namespaces and stop charons also when a test fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from clients_net import CLIENT_IP, GW_IP, config_dict, ikemgr

from helpers import sh


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    (tmp_path / "radius.secret").write_text("s3cret-for-tests\n")
    (tmp_path / "radius.secret").chmod(0o600)  # render refuses a secret others can read
    p = tmp_path / "ikemgr.yaml"
    p.write_text(json.dumps(config_dict(tmp_path)))
    return p


@pytest.fixture
def pki(cfg_file: Path, tmp_path: Path) -> Path:
    """CA, gateway certificate (DNS + IP SAN), alice's client certificate, bob revoked, CRL."""
    c = str(cfg_file)
    ikemgr("pki", "init", "-c", c)
    ikemgr("pki", "issue-server", "-c", c, "--outside-ip")
    for user in ("alice@123456", "bob@123456"):
        ikemgr("pki", "issue-client", "-c", c, "--user", user, "--p12-password-file", str(tmp_path / "p12pw"))
    ikemgr("pki", "revoke", "-c", c, "--name", "bob@123456", "--reason", "keyCompromise")
    ikemgr("pki", "crl", "-c", c)
    return tmp_path / "pki"


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str]]:
    """ika-gw and ika-cl joined by a veth (out0 192.0.2.1 ↔ eth0 192.0.2.100)."""
    gw, cl = "ika-gw", "ika-cl"
    for ns in (gw, cl):
        sh("ip", "netns", "del", ns, check=False)
    try:
        for ns in (gw, cl):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "name", "out0", "netns", gw, "type", "veth", "peer", "name", "eth0",
           "netns", cl)
        sh("ip", "-n", gw, "addr", "add", f"{GW_IP}/24", "dev", "out0")
        sh("ip", "-n", cl, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", gw, "link", "set", "out0", "up")
        sh("ip", "-n", cl, "link", "set", "eth0", "up")
        # a campus-side address inside the offered TS: kernel-libipsec routes the VIP from it
        sh("ip", "-n", gw, "addr", "add", "10.0.0.1/32", "dev", "lo")
        yield gw, cl
    finally:
        for ns in (cl, gw):
            sh("ip", "netns", "del", ns, check=False)

"""`ikemgr profile --format swanctl` through real RADIUS: EAP-MSCHAPv2 and EAP-TLS.

The client charon's swanctl directory is exactly what the profile wrote (the shared
``charon_pair`` gateway relays EAP to the rendered FreeRADIUS and slapd). The EAP-TLS
certificate comes from ``ikemgr pki issue-client`` with the session's test CA as the
operator's CA.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from charon_pair import GW_ID, GW_IP, Pair, charon_pair
from radius_support import ORG, PASSWORDS, Certs
from typer.testing import CliRunner

from ikemgr.cli import app
from ikemgr_lab.slapd import LdapUser, nt_hash

pytestmark = pytest.mark.root


def _ikemgr(*args: str) -> dict:
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def _config(work: Path) -> Path:
    (work / "radius.secret").write_text("unused-here\n")
    d = {
        "gateway": {"fqdn": GW_ID,
                    "outside": {"interface": "out0", "address": f"{GW_IP}/24", "gateway": "192.0.2.254"},
                    "campus": {"interface": "campus0", "address": "10.8.0.1/24", "gateway": "10.8.0.254"}},
        "pool": {"first": "10.8.0.100", "last": "10.8.0.199"},
        "campus_prefixes": ["10.0.0.0/8"],
        "radius": {"secret_file": str(work / "radius.secret")},
        "strongswan": {"kernel_ipsec": "libipsec", "encap": True},
        "eap": {"methods": ["mschapv2", "tls"], "tls_allowed_subject": f"C=JP, O={ORG}"},
        "pki": {"dir": str(work / "pki"), "organisation": ORG, "country": "JP"},
    }
    p = work / "ikemgr.yaml"
    p.write_text(json.dumps(d))
    return p


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("ika-profiles")
    cfg = str(_config(work))
    ca = ["--ca-cert", str(certs.ca), "--ca-key", str(certs.ca_key)]
    pw = work / "carol.pw"
    pw.write_text(PASSWORDS["carol"] + "\n")
    _ikemgr("profile", "-c", cfg, "--user", "carol@123457", "--format", "swanctl", "--tunnel", "split",
            "--connect-to", "ip", "--ca", str(certs.ca), "--password-file", str(pw),
            "--out", str(work / "carol"))
    _ikemgr("pki", "issue-client", "-c", cfg, *ca, "--user", "alice@123456",
            "--p12-password-file", str(work / "p12pw"))
    _ikemgr("profile", "-c", cfg, "--user", "alice@123456", "--format", "swanctl", "--tunnel", "split",
            "--connect-to", "ip", "--ca", str(certs.ca), "--auth", "tls",
            "--cert", str(work / "pki/p12/alice@123456.p12"), "--p12-password-file", str(work / "p12pw"),
            "--out", str(work / "alice"))
    return {"carol": work / "carol", "alice": work / "alice", "work": work}


@pytest.fixture(scope="module")
def pair(profiles: dict[str, Path], certs: Certs) -> Iterator[Pair]:
    users = [LdapUser("alice", PASSWORDS["alice"]),
             LdapUser("carol", PASSWORDS["carol"], nt_hash=nt_hash(PASSWORDS["carol"]))]
    with charon_pair(profiles["work"] / "pair", certs, prefix="ika-r-", users=users,
                     client_plugins="eap-tls eap-mschapv2",
                     client_swanctl=(profiles["carol"] / "swanctl.conf").read_text()) as p:
        yield p


def _use_profile(pair: Pair, profile: Path) -> None:
    """Replace the client's swanctl dir contents with the profile's, then reload."""
    for sub in ("x509", "x509ca", "private"):
        src = profile / sub
        if src.is_dir():
            for f in src.iterdir():
                shutil.copy2(f, pair.client.swanctl_dir / sub / f.name)
    shutil.copy2(profile / "swanctl.conf", pair.client.swanctl_dir / "swanctl.conf")
    pair.client.load_all()


def test_eap_mschapv2_profile_connects(pair: Pair, profiles: dict[str, Path]) -> None:
    _use_profile(pair, profiles["carol"])
    r = pair.initiate("ikemgr")
    try:
        assert r.returncode == 0, r.stdout[-3000:] + pair.gw.log_tail(30)
        sa = pair.gw_sa_for("carol@123457")
        assert sa is not None and sa["remote-vips"], pair.gw.sas()
        assert "EAP method EAP_MSCHAPV2 succeeded" in r.stdout
    finally:
        pair.terminate("ikemgr")


def test_eap_tls_profile_connects_with_an_ikemgr_certificate(pair: Pair, profiles: dict[str, Path]) -> None:
    _use_profile(pair, profiles["alice"])
    mark = len(pair.radiusd.log_text())
    r = pair.initiate("ikemgr")
    try:
        assert r.returncode == 0, r.stdout[-3000:] + pair.gw.log_tail(30)
        sa = pair.gw_sa_for("alice@123456")
        assert sa is not None and sa["remote-vips"], pair.gw.sas()
        log = pair.radiusd.log_text()[mark:]
        assert f'TLS-Client-Cert-Subject := "/C=JP/O={ORG}/CN=alice"' in log
    finally:
        pair.terminate("ikemgr")

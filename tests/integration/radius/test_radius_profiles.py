"""`ikemgr profile --format swanctl` through real RADIUS: EAP-MSCHAPv2 and EAP-TLS.

The client charon's swanctl directory is exactly what the profile wrote, and the profile
comes from the same config file the ``charon_pair`` gateway was rendered from (its
connection and eap-radius settings, relaying EAP to the rendered FreeRADIUS and slapd).
The EAP-TLS certificate comes from ``ikemgr pki issue-client`` with the session's test CA
as the operator's CA.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from charon_pair import Pair, charon_pair
from radius_support import ORG, PASSWORDS, Certs
from typer.testing import CliRunner

from ikemgr.cli import app
from ikemgr_lab.slapd import LdapUser, nt_hash

pytestmark = pytest.mark.root


def _ikemgr(*args: str) -> dict:
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


@pytest.fixture(scope="module")
def profile_pair(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("ika-profiles")
    users = [LdapUser("alice", PASSWORDS["alice"]),
             LdapUser("carol", PASSWORDS["carol"], nt_hash=nt_hash(PASSWORDS["carol"]))]
    pki = {"dir": str(work / "pki"), "organisation": ORG, "country": "JP"}
    # the client side comes from the profiles below; until then the client has no connection
    with charon_pair(work / "pair", certs, prefix="ika-r-", users=users,
                     client_plugins="eap-tls eap-mschapv2", client_swanctl="connections {\n}\n",
                     config={"pki": pki}) as p:
        yield p


@pytest.fixture(scope="module")
def profiles(profile_pair: Pair, certs: Certs) -> dict[str, Path]:
    """Profiles and a client certificate from the very config the gateway was rendered from."""
    work = profile_pair.config_file.parent
    cfg = str(profile_pair.config_file)
    ca = ["--ca-cert", str(certs.ca), "--ca-key", str(certs.ca_key)]
    pw = work / "carol.pw"
    pw.write_text(PASSWORDS["carol"] + "\n")
    _ikemgr("profile", "-c", cfg, "--user", "carol@123457", "--format", "swanctl", "--tunnel", "split",
            "--connect-to", "ip", "--ca", str(certs.ca), "--password-file", str(pw),
            "--out", str(work / "carol"))
    _ikemgr("pki", "issue-client", "-c", cfg, *ca, "--user", "alice@123456",
            "--p12-password-file", str(work / "p12pw"))
    p12 = profile_pair.cfg.pki.dir / "p12" / "alice@123456.p12"
    _ikemgr("profile", "-c", cfg, "--user", "alice@123456", "--format", "swanctl", "--tunnel", "split",
            "--connect-to", "ip", "--ca", str(certs.ca), "--auth", "tls",
            "--cert", str(p12), "--p12-password-file", str(work / "p12pw"),
            "--out", str(work / "alice"))
    return {"carol": work / "carol", "alice": work / "alice"}


def _use_profile(profile_pair: Pair, profile: Path) -> None:
    """Replace the client's swanctl dir contents with the profile's, then reload.

    The profile's one connection is named ``strongswan.connection``, as the gateway's is."""
    for sub in ("x509", "x509ca", "private"):
        src = profile / sub
        if src.is_dir():
            for f in src.iterdir():
                shutil.copy2(f, profile_pair.client.swanctl_dir / sub / f.name)
    shutil.copy2(profile / "swanctl.conf", profile_pair.client.swanctl_dir / "swanctl.conf")
    profile_pair.client.load_all()


def test_eap_mschapv2_profile_connects(profile_pair: Pair, profiles: dict[str, Path]) -> None:
    _use_profile(profile_pair, profiles["carol"])
    r = profile_pair.initiate(profile_pair.cfg.strongswan.connection)
    try:
        assert r.returncode == 0, r.stdout[-3000:] + profile_pair.gw.log_tail(30)
        sa = profile_pair.gw_sa_for("carol@123457")
        assert sa is not None and sa["remote-vips"], profile_pair.gw_sas()
        assert "EAP method EAP_MSCHAPV2 succeeded" in r.stdout
    finally:
        profile_pair.terminate(profile_pair.cfg.strongswan.connection)


def test_eap_tls_profile_connects_with_an_ikemgr_certificate(profile_pair: Pair, profiles: dict[str, Path]) -> None:
    _use_profile(profile_pair, profiles["alice"])
    mark = len(profile_pair.radiusd.log_text())
    r = profile_pair.initiate(profile_pair.cfg.strongswan.connection)
    try:
        assert r.returncode == 0, r.stdout[-3000:] + profile_pair.gw.log_tail(30)
        sa = profile_pair.gw_sa_for("alice@123456")
        assert sa is not None and sa["remote-vips"], profile_pair.gw_sas()
        log = profile_pair.radiusd.log_text()[mark:]
        assert f'TLS-Client-Cert-Subject := "/C=JP/O={ORG}/CN=alice"' in log
    finally:
        profile_pair.terminate(profile_pair.cfg.strongswan.connection)

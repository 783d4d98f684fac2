"""EAP through real charons: client charon → rendered gateway charon (eap-radius) → rendered FreeRADIUS → slapd.

Two network namespaces of our own (ikt-r-…), a veth between them; slapd and FreeRADIUS
run inside the gateway namespace on its loopback, and the gateway charon runs the
connection, pool and eap-radius settings ``ikemgr render`` wrote (``charon_pair``). The
EAP-TLS peer here is strongSwan's own eap-tls plugin, and EAP-MSCHAPv2 is the method native
clients use. Refusals are checked on both ends: the client's initiate fails and the gateway
holds no SA for the identity.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from charon_pair import RADIUS_ID, Pair, charon_pair, client_conn
from radius_support import ORG, PASSWORDS, Certs, pki

from ikemgr_lab.slapd import LdapUser, nt_hash

pytestmark = pytest.mark.root


def _secret(name: str, identity: str, password: str) -> str:
    return f'    eap-{name} {{\n        id = {identity}\n        secret = "{password}"\n    }}\n'


def _client_swanctl() -> str:
    # strongSwan's eap-tls picks the certificate by the EAP identity (a SAN of the cert),
    # so the two certificates of alice carry different VLAN identities
    def tls(eap_id: str) -> str:
        return f"            auth = eap-tls\n            eap_id = {eap_id}\n            aaa_id = {RADIUS_ID}"

    def mschap(eap_id: str) -> str:
        return f"            auth = eap-mschapv2\n            eap_id = {eap_id}"

    conns = [
        client_conn("tls-ok", tls("alice@123456")),
        client_conn("tls-other", tls("alice@123457")),
        client_conn("mschap", mschap("carol@123457")),
        client_conn("mschap-bad", mschap("erin@200001")),
        client_conn("mschap-disabled", mschap("dave@123456")),
        client_conn("mschap-unknown", mschap("nobody@123456")),
    ]
    return ("connections {\n" + "".join(conns) + "}\nsecrets {\n"
            + _secret("carol", "carol@123457", PASSWORDS["carol"])
            + _secret("erin", "erin@200001", "not-erins-password")
            # dave's own password, matching his NT hash: only the lock refuses him
            + _secret("dave", "dave@123456", PASSWORDS["dave"])
            + _secret("nobody", "nobody@123456", "some-password") + "}\n")


@pytest.fixture(scope="module")
def eap_pair(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("ikt-r-charon")
    # client certificates carry the EAP identity as SAN
    files: dict[str, Path] = {}
    for name, org, san in (("alice-ok", ORG, "alice@123456"),
                           ("alice-other", "Other University", "alice@123457")):
        key, crt = work / f"{name}.key", work / f"{name}.pem"
        pki("--gen", "--type", "ecdsa", "--size", "256", out=key)
        pki("--issue", "--cacert", str(certs.ca), "--cakey", str(certs.ca_key), "--type", "priv",
            "--in", str(key), "--dn", f"C=JP, O={org}, CN=alice", "--san", san,
            "--flag", "clientAuth", out=crt)
        files[f"x509/{name}.pem"], files[f"private/{name}.key"] = crt, key
    users = [LdapUser("alice", PASSWORDS["alice"]),
             LdapUser("carol", PASSWORDS["carol"], nt_hash=nt_hash(PASSWORDS["carol"])),
             LdapUser("erin", PASSWORDS["erin"], nt_hash=nt_hash(PASSWORDS["erin"])),
             LdapUser("dave", PASSWORDS["dave"], nt_hash=nt_hash(PASSWORDS["dave"]), disabled=True)]
    with charon_pair(work, certs, prefix="ikt-r-", users=users, client_plugins="eap-tls eap-mschapv2",
                     client_swanctl=_client_swanctl(), client_files=files) as p:
        yield p


def test_gateway_runs_the_rendered_connection(eap_pair: Pair) -> None:
    """The gateway's swanctl and eap-radius files are `ikemgr render`'s, byte for byte."""
    rendered = eap_pair.rendered / "swanctl" / "conf.d" / "ikemgr.conf"
    assert (eap_pair.gw.swanctl_dir / "conf.d" / "ikemgr.conf").read_bytes() == rendered.read_bytes()
    eap_radius = eap_pair.rendered / "strongswan.d" / "ikemgr-eap-radius.conf"
    assert f"include {eap_radius}" in eap_pair.gw.conf.read_text()
    assert f"auth_port = {eap_pair.cfg.radius.auth_port}" in eap_radius.read_text()
    conn, pool = eap_pair.cfg.strongswan.connection, eap_pair.cfg.pool.name
    conns = eap_pair.gw.swanctl("--list-conns").stdout
    assert f"{conn}: IKEv2" in conns and "remote EAP_RADIUS authentication" in conns, conns
    pools = eap_pair.gw.swanctl("--list-pools").stdout
    assert pool in pools and str(eap_pair.cfg.pool.first) in pools, pools


def test_eap_tls_allowed_organisation_through_charon(eap_pair: Pair) -> None:
    mark = len(eap_pair.radiusd.log_text())
    r = eap_pair.initiate("tls-ok")
    try:
        assert r.returncode == 0, r.stdout[-3000:] + (eap_pair.gw.log.read_text()[-3000:])
        sa = eap_pair.gw_sa_for("alice@123456")
        assert sa is not None, eap_pair.gw_sas()
        assert sa["name"] == eap_pair.cfg.strongswan.connection
        # the first address of the rendered pool
        assert sa["remote-vips"] == [str(eap_pair.cfg.pool.first)]
        log = eap_pair.radiusd.log_text()[mark:]
        assert f'TLS-Client-Cert-Subject := "/C=JP/O={ORG}/CN=alice"' in log
    finally:
        eap_pair.terminate("tls-ok")


def test_eap_tls_other_organisation_through_charon_rejected(eap_pair: Pair) -> None:
    mark = len(eap_pair.radiusd.log_text())
    r = eap_pair.initiate("tls-other")
    eap_pair.terminate("tls-other")
    assert r.returncode != 0
    log = eap_pair.radiusd.log_text()[mark:]
    assert 'TLS-Client-Cert-Subject := "/C=JP/O=Other University/CN=alice"' in log
    assert "lacks C=JP, O=Example University" in log
    assert eap_pair.gw_sa_for("alice@123457") is None


def test_eap_mschapv2_through_charon(eap_pair: Pair) -> None:
    r = eap_pair.initiate("mschap")
    try:
        assert r.returncode == 0, r.stdout[-3000:]
        sa = eap_pair.gw_sa_for("carol@123457")
        assert sa is not None
        assert sa["remote-vips"]
    finally:
        eap_pair.terminate("mschap")


def _refused(eap_pair: Pair, conn: str, identity: str) -> str:
    """Initiate ``conn``: it must fail and leave no SA on the gateway; the RADIUS log meanwhile."""
    mark = len(eap_pair.radiusd.log_text())
    r = eap_pair.initiate(conn)
    eap_pair.terminate(conn)
    assert r.returncode != 0, r.stdout[-3000:]
    assert "EAP method EAP_MSCHAPV2 succeeded" not in r.stdout
    assert eap_pair.gw_sa_for(identity) is None, eap_pair.gw_sas()
    assert all((sa.get("remote-eap-id") or sa.get("remote-id")) != identity for sa in eap_pair.gw_sas())
    return eap_pair.radiusd.log_text()[mark:]


def test_eap_mschapv2_wrong_password_through_charon_rejected(eap_pair: Pair) -> None:
    _refused(eap_pair, "mschap-bad", "erin@200001")


def test_disabled_account_through_charon_rejected(eap_pair: Pair) -> None:
    """dave's password and NT hash are right: only the lock in the directory refuses him."""
    log = _refused(eap_pair, "mschap-disabled", "dave@123456")
    assert 'filter "(&(uid=dave)(!(shadowExpire=1)))"' in log
    assert "Sent Access-Reject" in log and "Sent Access-Accept" not in log


def test_unknown_account_through_charon_rejected(eap_pair: Pair) -> None:
    log = _refused(eap_pair, "mschap-unknown", "nobody@123456")
    assert 'filter "(&(uid=nobody)(!(shadowExpire=1)))"' in log
    assert "Sent Access-Reject" in log and "Sent Access-Accept" not in log


def test_namespaces_are_ours(eap_pair: Pair) -> None:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert eap_pair.gw.netns in out and eap_pair.gw.netns.startswith("ikt-r-")
    assert Path(f"/run/netns/{eap_pair.client.netns}").exists()

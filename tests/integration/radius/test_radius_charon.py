"""EAP through real charons: client charon → gateway charon (eap-radius) → rendered FreeRADIUS → slapd.

Two network namespaces of our own (ikt-r-…), a veth between them; slapd and FreeRADIUS
run inside the gateway namespace on its loopback. The EAP-TLS peer here is strongSwan's
own eap-tls plugin, and EAP-MSCHAPv2 is the method native clients use.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from charon_pair import RADIUS_ID, Pair, charon_pair, client_conn
from radius_support import ORG, PASSWORDS, Certs, pki

from ikemgr_lab.slapd import LdapUser, nt_hash

pytestmark = pytest.mark.root


def _client_swanctl() -> str:
    # strongSwan's eap-tls picks the certificate by the EAP identity (a SAN of the cert),
    # so the two certificates of alice carry different VLAN identities
    def tls(eap_id: str) -> str:
        return f"            auth = eap-tls\n            eap_id = {eap_id}\n            aaa_id = {RADIUS_ID}"

    conns = [
        client_conn("tls-ok", tls("alice@123456")),
        client_conn("tls-other", tls("alice@123457")),
        client_conn("mschap", "            auth = eap-mschapv2\n            eap_id = carol@123457"),
        client_conn("mschap-bad", "            auth = eap-mschapv2\n            eap_id = erin@200001"),
    ]
    return ("connections {\n" + "".join(conns) + "}\nsecrets {\n"
            f'    eap-carol {{\n        id = carol@123457\n        secret = "{PASSWORDS["carol"]}"\n    }}\n'
            '    eap-erin {\n        id = erin@200001\n        secret = "not-erins-password"\n    }\n}\n')


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Pair]:
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
             LdapUser("erin", PASSWORDS["erin"], nt_hash=nt_hash(PASSWORDS["erin"]))]
    with charon_pair(work, certs, prefix="ikt-r-", users=users, client_plugins="eap-tls eap-mschapv2",
                     client_swanctl=_client_swanctl(), client_files=files) as p:
        yield p


def test_eap_tls_allowed_organisation_through_charon(pair: Pair) -> None:
    mark = len(pair.radiusd.log_text())
    r = pair.initiate("tls-ok")
    try:
        assert r.returncode == 0, r.stdout[-3000:] + (pair.gw.log.read_text()[-3000:])
        sa = pair.gw_sa_for("alice@123456")
        assert sa is not None, json.dumps([str(s) for s in pair.gw.sas()])
        assert [v.decode() for v in sa["remote-vips"]] == ["172.29.0.1"]
        log = pair.radiusd.log_text()[mark:]
        assert f'TLS-Client-Cert-Subject := "/C=JP/O={ORG}/CN=alice"' in log
    finally:
        pair.terminate("tls-ok")


def test_eap_tls_other_organisation_through_charon_rejected(pair: Pair) -> None:
    mark = len(pair.radiusd.log_text())
    r = pair.initiate("tls-other")
    pair.terminate("tls-other")
    assert r.returncode != 0
    log = pair.radiusd.log_text()[mark:]
    assert 'TLS-Client-Cert-Subject := "/C=JP/O=Other University/CN=alice"' in log
    assert "lacks C=JP, O=Example University" in log
    assert pair.gw_sa_for("alice@123457") is None


def test_eap_mschapv2_through_charon(pair: Pair) -> None:
    r = pair.initiate("mschap")
    try:
        assert r.returncode == 0, r.stdout[-3000:]
        sa = pair.gw_sa_for("carol@123457")
        assert sa is not None
        assert sa["remote-vips"]
    finally:
        pair.terminate("mschap")


def test_eap_mschapv2_wrong_password_through_charon_rejected(pair: Pair) -> None:
    r = pair.initiate("mschap-bad")
    pair.terminate("mschap-bad")
    assert r.returncode != 0
    assert pair.gw_sa_for("erin@200001") is None


def test_namespaces_are_ours(pair: Pair) -> None:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert pair.gw.netns in out and pair.gw.netns.startswith("ikt-r-")
    assert Path(f"/run/netns/{pair.client.netns}").exists()

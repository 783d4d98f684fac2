"""EAP through real charons: client charon → gateway charon (eap-radius) → rendered FreeRADIUS → slapd.

Two network namespaces of our own (ikt-r-…), a veth between them; slapd and FreeRADIUS
run inside the gateway namespace on its loopback. The EAP-TLS peer here is strongSwan's
own eap-tls plugin, and EAP-MSCHAPv2 is the method native clients use.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from charon_pair import Charon, netns_name, sh
from radius_support import (
    ORG,
    PASSWORDS,
    PEOPLE,
    SECRET,
    SUFFIX,
    Certs,
    free_port,
    make_config,
    pki,
)

from ikemgr.adapters.freeradius import RadiusdInstance, prepare_raddb
from ikemgr.adapters.slapd import LdapUser, SlapdInstance, nt_hash
from ikemgr.core.radius import RadiusSecrets, radius_outputs

pytestmark = pytest.mark.root
GW_IP, CLIENT_IP = "192.0.2.1", "192.0.2.100"
GW_ID, RADIUS_ID = "vpn.example.ac.jp", "radius.example.ac.jp"


@dataclass
class Pair:
    gw: Charon
    client: Charon
    radiusd: RadiusdInstance


def _gateway_swanctl() -> str:
    return f"""connections {{
    gw {{
        version = 2
        local_addrs = {GW_IP}
        pools = pool
        encap = yes
        unique = never
        send_certreq = no
        proposals = aes256-sha256-x25519,default
        local {{
            auth = pubkey
            certs = gw.pem
            id = {GW_ID}
        }}
        remote {{
            auth = eap-radius
            eap_id = %any
        }}
        children {{
            gw {{
                local_ts = 10.0.0.0/8
                esp_proposals = aes256-sha256,default
            }}
        }}
    }}
}}
pools {{
    pool {{
        addrs = 172.29.0.0/24
    }}
}}
"""


def _client_conn(name: str, local: str) -> str:
    return f"""    {name} {{
        version = 2
        remote_addrs = {GW_IP}
        vips = 0.0.0.0
        encap = yes
        proposals = aes256-sha256-x25519,default
        local {{
{local}
        }}
        remote {{
            auth = pubkey
            id = {GW_ID}
        }}
        children {{
            {name} {{
                remote_ts = 10.0.0.0/8
                esp_proposals = aes256-sha256,default
            }}
        }}
    }}
"""


def _client_swanctl() -> str:
    # strongSwan's eap-tls picks the certificate by the EAP identity (a SAN of the cert),
    # so the two certificates of alice carry different VLAN identities
    def tls(eap_id: str) -> str:
        return f"            auth = eap-tls\n            eap_id = {eap_id}\n            aaa_id = {RADIUS_ID}"

    conns = [
        _client_conn("tls-ok", tls("alice@123456")),
        _client_conn("tls-other", tls("alice@123457")),
        _client_conn("mschap", "            auth = eap-mschapv2\n            eap_id = carol@123457"),
        _client_conn("mschap-bad", "            auth = eap-mschapv2\n            eap_id = erin@200001"),
    ]
    return ("connections {\n" + "".join(conns) + "}\nsecrets {\n"
            f'    eap-carol {{\n        id = carol@123457\n        secret = "{PASSWORDS["carol"]}"\n    }}\n'
            '    eap-erin {\n        id = erin@200001\n        secret = "not-erins-password"\n    }\n}\n')


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("ikt-r-charon")
    ns_gw, ns_c = netns_name("g"), netns_name("c")
    started: list[object] = []
    try:
        for ns in (ns_gw, ns_c):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "name", "out0", "netns", ns_gw, "type", "veth",
           "peer", "name", "eth0", "netns", ns_c)
        sh("ip", "-n", ns_gw, "addr", "add", f"{GW_IP}/24", "dev", "out0")
        sh("ip", "-n", ns_c, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", ns_gw, "link", "set", "out0", "up")
        # a campus-side address: kernel-libipsec routes the VIP via ipsec0 from inside local_ts
        sh("ip", "-n", ns_gw, "addr", "add", "10.0.0.1/32", "dev", "lo")
        sh("ip", "-n", ns_c, "link", "set", "eth0", "up")

        slapd = SlapdInstance(work / "slapd", SUFFIX, free_port(), netns=ns_gw)
        slapd.start()
        started.append(slapd)
        slapd.add_ou("people")
        slapd.add_users([LdapUser("alice", PASSWORDS["alice"]),
                         LdapUser("carol", PASSWORDS["carol"], nt_hash=nt_hash(PASSWORDS["carol"])),
                         LdapUser("erin", PASSWORDS["erin"], nt_hash=nt_hash(PASSWORDS["erin"]))],
                        under=PEOPLE)
        rwork = work / "radius"
        rwork.mkdir()
        cfg = make_config(rwork, slapd, certs)
        raddb = prepare_raddb(rwork / "raddb", radius_outputs(cfg, RadiusSecrets(SECRET, slapd.root_password)))
        radiusd = RadiusdInstance(raddb, rwork, netns=ns_gw)
        radiusd.check_config()
        radiusd.start()
        started.append(radiusd)

        # gateway certificate for IKE; client certificates carry the EAP identity as SAN
        gw_key, gw_crt = work / "gw.key", work / "gw.pem"
        pki("--gen", "--type", "ecdsa", "--size", "256", out=gw_key)
        pki("--issue", "--cacert", str(certs.ca), "--cakey", str(certs.ca_key), "--type", "priv",
            "--in", str(gw_key), "--dn", f"C=JP, O={ORG}, CN={GW_ID}", "--san", GW_ID,
            "--flag", "serverAuth", "--flag", "ikeIntermediate", out=gw_crt)
        clients = {}
        for name, org, san in (("alice-ok", ORG, "alice@123456"),
                               ("alice-other", "Other University", "alice@123457")):
            key, crt = work / f"{name}.key", work / f"{name}.pem"
            pki("--gen", "--type", "ecdsa", "--size", "256", out=key)
            pki("--issue", "--cacert", str(certs.ca), "--cakey", str(certs.ca_key), "--type", "priv",
                "--in", str(key), "--dn", f"C=JP, O={org}, CN=alice", "--san", san,
                "--flag", "clientAuth", out=crt)
            clients[name] = (crt, key)

        eap_radius = f"""        eap-radius {{
            servers {{
                local {{
                    address = 127.0.0.1
                    secret = {SECRET}
                    auth_port = {cfg.radius.auth_port}
                }}
            }}
        }}"""
        gw = Charon(work / "gw", ns_gw, "eap-radius", eap_radius, _gateway_swanctl())
        (gw.swanctl_dir / "x509" / "gw.pem").write_bytes(gw_crt.read_bytes())
        (gw.swanctl_dir / "private" / "gw.key").write_bytes(gw_key.read_bytes())
        (gw.swanctl_dir / "x509ca" / "ca.pem").write_bytes(certs.ca.read_bytes())
        client = Charon(work / "client", ns_c, "eap-tls eap-mschapv2", "", _client_swanctl())
        (client.swanctl_dir / "x509ca" / "ca.pem").write_bytes(certs.ca.read_bytes())
        for name, (crt, key) in clients.items():
            (client.swanctl_dir / "x509" / f"{name}.pem").write_bytes(crt.read_bytes())
            (client.swanctl_dir / "private" / f"{name}.key").write_bytes(key.read_bytes())
        for c in (gw, client):
            c.start()
            started.append(c)
            c.load_all()
        yield Pair(gw, client, radiusd)
    finally:
        for obj in reversed(started):
            obj.stop()  # type: ignore[attr-defined]
        for ns in (ns_c, ns_gw):
            sh("ip", "netns", "del", ns, check=False)


def _gw_sa_for(pair: Pair, identity: str) -> dict | None:
    for entry in pair.gw.sas():
        for sa in entry.values():
            eap_id = (sa.get("remote-eap-id") or sa.get("remote-id") or b"").decode()
            if eap_id == identity and sa.get("state") == b"ESTABLISHED":
                return sa
    return None


def _initiate(pair: Pair, child: str) -> subprocess.CompletedProcess[str]:
    return pair.client.swanctl_cmd("--initiate", "--child", child, "--timeout", "20", timeout=40)


def _terminate(pair: Pair, ike: str) -> None:
    pair.client.swanctl_cmd("--terminate", "--ike", ike, "--timeout", "10", timeout=30)


def test_eap_tls_allowed_organisation_through_charon(pair: Pair) -> None:
    mark = len(pair.radiusd.log_text())
    r = _initiate(pair, "tls-ok")
    try:
        assert r.returncode == 0, r.stdout[-3000:] + (pair.gw.log.read_text()[-3000:])
        sa = _gw_sa_for(pair, "alice@123456")
        assert sa is not None, json.dumps([str(s) for s in pair.gw.sas()])
        assert [v.decode() for v in sa["remote-vips"]] == ["172.29.0.1"]
        log = pair.radiusd.log_text()[mark:]
        assert f'TLS-Client-Cert-Subject := "/C=JP/O={ORG}/CN=alice"' in log
    finally:
        _terminate(pair, "tls-ok")


def test_eap_tls_other_organisation_through_charon_rejected(pair: Pair) -> None:
    mark = len(pair.radiusd.log_text())
    r = _initiate(pair, "tls-other")
    _terminate(pair, "tls-other")
    assert r.returncode != 0
    log = pair.radiusd.log_text()[mark:]
    assert 'TLS-Client-Cert-Subject := "/C=JP/O=Other University/CN=alice"' in log
    assert "lacks C=JP, O=Example University" in log
    assert _gw_sa_for(pair, "alice@123457") is None


def test_eap_mschapv2_through_charon(pair: Pair) -> None:
    r = _initiate(pair, "mschap")
    try:
        assert r.returncode == 0, r.stdout[-3000:]
        sa = _gw_sa_for(pair, "carol@123457")
        assert sa is not None
        assert sa["remote-vips"]
    finally:
        _terminate(pair, "mschap")


def test_eap_mschapv2_wrong_password_through_charon_rejected(pair: Pair) -> None:
    r = _initiate(pair, "mschap-bad")
    _terminate(pair, "mschap-bad")
    assert r.returncode != 0
    assert _gw_sa_for(pair, "erin@200001") is None


def test_namespaces_are_ours(pair: Pair) -> None:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert pair.gw.netns in out and pair.gw.netns.startswith("ikt-r-")
    assert Path(f"/run/netns/{pair.client.netns}").exists()

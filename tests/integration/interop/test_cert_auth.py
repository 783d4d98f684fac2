"""The certificate-only connection against a real charon running the rendered config.

A client certificate of the configured CA and organisation authenticates with IKEv2
public-key auth on the ``ikemgr-cert`` connection and gets a VIP from the same pool as
the EAP connection; a certificate of the same CA but another organisation is refused.
What charon reports for such an SA (remote-id = the subject DN, no remote-eap-id) is
what the policy engine must read the identity from: the DN's CN.
"""

from __future__ import annotations

import ipaddress

import pytest
from ikc_support import ORG, Topology, client_conn, sas, wrap

from helpers import wait_for
from ikemgr.core.identity import account_from_dn

pytestmark = pytest.mark.root


def test_rendered_cert_connection_is_loaded(certauth_gateway) -> None:
    gw, cfg = certauth_gateway
    r = gw.swanctl("--list-conns")
    assert "ikemgr-cert: IKEv2" in r.stdout
    assert "remote public key authentication" in r.stdout
    assert f"id: C=JP, O={ORG}, CN=*" in r.stdout
    assert "cacerts" in r.stdout or "ca:" in r.stdout


def test_certificate_of_the_organisation_gets_a_vip(topo: Topology, certauth_gateway) -> None:
    gw, cfg = certauth_gateway
    cert = topo.pki.client("alice", "alice@123456")
    client = topo.client("alice", wrap(client_conn("c")), {"client": cert})
    try:
        r = client.swanctl("--initiate", "--child", "c", "--timeout", "20", check=False, timeout=40)
        assert r.returncode == 0, r.stdout + gw.log_tail(40)
        gsa = wait_for(lambda: [s for s in sas(gw) if s["name"] == "ikemgr-cert"
                                and s.get("state") == "ESTABLISHED"], 10, lambda: str(sas(gw)), step=0.3)
        assert len(gsa) == 1, sas(gw)
        sa = gsa[0]
        # what the policy engine sees for a pubkey client (written down in docs/check.md)
        assert sa["remote-id"] == f"C=JP, O={ORG}, CN=alice@123456"
        assert "remote-eap-id" not in sa
        vip = ipaddress.ip_address(sa["remote-vips"][0])
        assert int(cfg.pool.first) <= int(vip) <= int(cfg.pool.last)
        assert account_from_dn(sa["remote-id"]) == "alice@123456"
        child = next(iter(sa["child-sas"].values()))
        assert child["state"] == "INSTALLED" and child["name"] == "ikemgr-cert"
        text = gw.swanctl("--list-sas").stdout
        print(text)
        assert f"remote 'C=JP, O={ORG}, CN=alice@123456' @ 192.0.2.100[4500] [{vip}]" in text
        assert "EAP" not in text
        csa = [s for s in sas(client) if s["name"] == "c"][0]
        assert csa["local-vips"] == [str(vip)]
    finally:
        topo.stop(client)


def test_certificate_of_another_organisation_is_refused(topo: Topology, certauth_gateway) -> None:
    gw, _ = certauth_gateway
    cert = topo.pki.client("mallory", "mallory@123456", org="Other University")
    client = topo.client("mallory", wrap(client_conn("c")), {"client": cert})
    try:
        r = client.swanctl("--initiate", "--child", "c", "--timeout", "15", check=False, timeout=40)
        assert r.returncode != 0
        assert "AUTHENTICATION_FAILED" in client.log.read_text()
        assert not [s for s in sas(gw) if "Other University" in s.get("remote-id", "")]
        assert "no matching peer config found" in gw.log.read_text() or \
            "unacceptable" in gw.log.read_text()
    finally:
        topo.stop(client)

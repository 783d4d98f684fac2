"""EAP-TTLS and EAP-GTC through real charons, checked by an LDAP bind as the user.

client charon (strongSwan's eap-ttls / eap-gtc peers) → rendered gateway charon (eap-radius)
→ rendered FreeRADIUS → slapd, in two network namespaces of our own (ikt-tt-…). alice has
no NT hash in the directory: only a bind can check her password, so MSCHAPv2 cannot.

strongSwan's TTLS peer speaks only EAP inside the tunnel (the EAP-Message AVP; no inner
PAP): it answers the inner EAP method the server proposes, or NAKs it with the peer
methods it has loaded. The client here loads every password method a strongSwan client
ships (mschapv2, md5, gtc), so it would take an inner MSCHAPv2 if the server proposed one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import pytest
from charon_pair import RADIUS_ID, Pair, charon_pair, client_conn
from radius_support import PASSWORDS, PEOPLE, Certs

from ikemgr_lab.slapd import LdapUser

pytestmark = pytest.mark.root

CLIENT_PLUGINS = "eap-ttls eap-gtc eap-mschapv2 eap-md5"


def _client_swanctl() -> str:
    def ttls(eap_id: str, aaa_id: str = RADIUS_ID) -> str:
        return f"            auth = eap-ttls\n            eap_id = {eap_id}\n            aaa_id = {aaa_id}"

    def gtc(eap_id: str) -> str:
        return f"            auth = eap-gtc\n            eap_id = {eap_id}"

    conns = [
        client_conn("ttls-ok", ttls("alice@123456")),
        client_conn("ttls-bad", ttls("erin@200001")),
        # a RADIUS server other than ours: the client must not send the password to it
        client_conn("ttls-other-server", ttls("alice@123456", "radius.other.example")),
        client_conn("gtc-ok", gtc("alice@123456")),
        client_conn("gtc-bad", gtc("erin@200001")),
    ]
    return ("connections {\n" + "".join(conns) + "}\nsecrets {\n"
            f'    eap-alice {{\n        id = alice@123456\n        secret = "{PASSWORDS["alice"]}"\n    }}\n'
            '    eap-erin {\n        id = erin@200001\n        secret = "not-erins-password"\n    }\n}\n')


@pytest.fixture(scope="module")
def ttls_pair(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("ikt-tt-charon")
    users = [LdapUser("alice", PASSWORDS["alice"]), LdapUser("erin", PASSWORDS["erin"])]
    with charon_pair(work, certs, prefix="ikt-tt-", users=users, client_plugins=CLIENT_PLUGINS,
                     client_swanctl=_client_swanctl()) as p:
        yield p


def _bind_ok(uid: str) -> str:
    return f'Bind as user "uid={uid},{PEOPLE}" was successful'


@dataclass(frozen=True)
class Attempt:
    """One login from the client charon: swanctl's answer and what both logs said meanwhile."""

    rc: int
    out: str
    client_log: str
    radius_log: str


def _attempt(ttls_pair: Pair, name: str, *, keep: bool = False) -> Attempt:
    c_mark, r_mark = len(ttls_pair.client.log.read_text()), len(ttls_pair.radiusd.log_text())
    r = ttls_pair.initiate(name)
    if not keep:
        ttls_pair.terminate(name)
    return Attempt(r.returncode, r.stdout + r.stderr, ttls_pair.client.log.read_text()[c_mark:],
                   ttls_pair.radiusd.log_text()[r_mark:])


def _assert_established(ttls_pair: Pair, a: Attempt, identity: str) -> None:
    assert a.rc == 0, a.out[-3000:] + a.radius_log[-4000:]
    sa = ttls_pair.gw_sa_for(identity)
    assert sa is not None, json.dumps(ttls_pair.gw_sas())
    assert sa["remote-eap-id"] == identity
    vips = [ip_address(v) for v in sa["remote-vips"]]
    # from the rendered pool
    assert len(vips) == 1 and ttls_pair.cfg.pool.first <= vips[0] <= ttls_pair.cfg.pool.last


def test_eap_ttls_through_charon(ttls_pair: Pair) -> None:
    a = _attempt(ttls_pair, "ttls-ok", keep=True)
    try:
        _assert_established(ttls_pair, a, "alice@123456")
        # the client NAKs the outer MSCHAPv2 towards TTLS, then answers the inner GTC
        assert "requesting EAP_TTLS authentication, sending EAP_NAK" in a.client_log
        assert "received tunneled EAP-TTLS AVP [EAP/REQ/GTC]" in a.client_log
        assert "EAP method EAP_TTLS succeeded, MSK established" in a.client_log
        assert "Virtual server inner-tunnel received request" in a.radius_log
        assert _bind_ok("alice") in a.radius_log
    finally:
        ttls_pair.terminate("ttls-ok")


def test_eap_ttls_wrong_password_through_charon_rejected(ttls_pair: Pair) -> None:
    a = _attempt(ttls_pair, "ttls-bad")
    assert a.rc != 0
    assert ttls_pair.gw_sa_for("erin@200001") is None
    assert "received tunneled EAP-TTLS AVP [EAP/REQ/GTC]" in a.client_log
    assert "received EAP_FAILURE, EAP authentication failed" in a.client_log
    # refused by the directory, inside the tunnel
    assert "Virtual server inner-tunnel received request" in a.radius_log
    assert "ldap: ERROR: Bind credentials incorrect" in a.radius_log
    assert _bind_ok("erin") not in a.radius_log


def test_eap_ttls_server_certificate_must_name_aaa_id(ttls_pair: Pair) -> None:
    a = _attempt(ttls_pair, "ttls-other-server")
    assert a.rc != 0
    assert ttls_pair.gw_sa_for("alice@123456") is None
    assert "server certificate does not match to 'radius.other.example'" in a.client_log
    assert "sending tunneled EAP-TTLS AVP" not in a.client_log
    assert "Virtual server inner-tunnel received request" not in a.radius_log
    assert _bind_ok("alice") not in a.radius_log


def test_eap_gtc_through_charon(ttls_pair: Pair) -> None:
    a = _attempt(ttls_pair, "gtc-ok", keep=True)
    try:
        _assert_established(ttls_pair, a, "alice@123456")
        assert "requesting EAP_GTC authentication, sending EAP_NAK" in a.client_log
        assert "EAP method EAP_GTC succeeded, no MSK established" in a.client_log
        assert _bind_ok("alice") in a.radius_log
        assert "inner-tunnel" not in a.radius_log
    finally:
        ttls_pair.terminate("gtc-ok")


def test_eap_gtc_wrong_password_through_charon_rejected(ttls_pair: Pair) -> None:
    a = _attempt(ttls_pair, "gtc-bad")
    assert a.rc != 0
    assert ttls_pair.gw_sa_for("erin@200001") is None
    assert "received EAP_FAILURE, EAP authentication failed" in a.client_log
    assert "ldap: ERROR: Bind credentials incorrect" in a.radius_log
    assert _bind_ok("erin") not in a.radius_log


def test_namespaces_are_ours(ttls_pair: Pair) -> None:
    assert ttls_pair.gw.netns.startswith("ikt-tt-") and ttls_pair.client.netns.startswith("ikt-tt-")
    assert Path(f"/run/netns/{ttls_pair.gw.netns}").exists()

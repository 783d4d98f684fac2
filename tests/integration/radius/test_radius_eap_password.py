"""EAP password methods against the rendered config and real slapd: GTC and TTLS/PAP (LDAP bind)."""

from __future__ import annotations

import pytest
from eap_peer import eap_mschapv2, eap_ttls_pap, gtc
from pyrad.client import Client
from radius_support import PASSWORDS, SECRET, RadiusEnv

from ikemgr.adapters.radius import dictionary

pytestmark = pytest.mark.root
SERVER_NAME = "radius.example.ac.jp"


def _client(env: RadiusEnv) -> Client:
    return Client(server="127.0.0.1", authport=env.cfg.radius.auth_port, secret=SECRET.encode(),
                  dict=dictionary(), retries=1, timeout=3, enforce_ma=True)


def test_gtc_vlan_identity_accepted(radius_env: RadiusEnv) -> None:
    mark = radius_env.mark()
    res = gtc(_client(radius_env), "alice@123456", PASSWORDS["alice"])
    assert res.outcome == "accept", res
    assert "server proposed EAP type 26: NAK -> 6" in res.trace
    log = radius_env.log_since(mark)
    assert 'filter "(&(uid=alice)(!(shadowExpire=1)))"' in log
    assert "Bind as user \"uid=alice,ou=people,dc=example,dc=ac,dc=jp\" was successful" in log


@pytest.mark.parametrize("user,password", [
    ("alice@123456", "wrong"), ("dave@123456", PASSWORDS["dave"]), ("nobody", "x-pw"),
])
def test_gtc_bad_credentials_rejected(radius_env: RadiusEnv, user: str, password: str) -> None:
    assert gtc(_client(radius_env), user, password).outcome == "reject"


def test_gtc_malformed_identity_rejected_before_eap(radius_env: RadiusEnv) -> None:
    res = gtc(_client(radius_env), "alice@12x", PASSWORDS["alice"])
    assert res.outcome == "reject" and res.rounds == 1


def test_ttls_pap_accepted(radius_env: RadiusEnv) -> None:
    mark = radius_env.mark()
    res = eap_ttls_pap(_client(radius_env), "erin@200001", PASSWORDS["erin"], radius_env.certs.ca,
                       SERVER_NAME)
    assert res.outcome == "accept", (res, radius_env.log_since(mark)[-3000:])
    assert res.tls_established
    assert "Virtual server inner-tunnel received request" in radius_env.log_since(mark)


def test_ttls_pap_wrong_password_rejected(radius_env: RadiusEnv) -> None:
    res = eap_ttls_pap(_client(radius_env), "erin", "wrong-pw", radius_env.certs.ca, SERVER_NAME)
    assert res.tls_established and res.outcome == "reject"


def test_ttls_inner_identity_must_equal_outer(radius_env: RadiusEnv) -> None:
    """Outer erin@200001 (what charon reports) cannot be backed by alice's inner password."""
    mark = radius_env.mark()
    res = eap_ttls_pap(_client(radius_env), "erin@200001", PASSWORDS["alice"], radius_env.certs.ca,
                       SERVER_NAME, inner_identity="alice@200001")
    assert res.outcome == "reject"
    assert "ikemgr: inner identity differs from the outer identity" in radius_env.log_since(mark)


def test_eap_mschapv2_with_nt_hash_accepted_and_mutually_authenticated(radius_env: RadiusEnv) -> None:
    """The default method, proposed first: no NAK, and the server proves it knows the hash."""
    res = eap_mschapv2(_client(radius_env), "carol@123457", PASSWORDS["carol"])
    assert res.outcome == "accept", res
    assert "authenticator response verified" in res.trace
    assert not any("NAK" in t for t in res.trace)


@pytest.mark.parametrize("user,password", [
    ("carol@123457", "wrong-pw"),
    ("alice@123456", PASSWORDS["alice"]),   # no NT hash in LDAP: MSCHAPv2 cannot work for her
    ("dave", PASSWORDS["dave"]),            # disabled
])
def test_eap_mschapv2_rejected(radius_env: RadiusEnv, user: str, password: str) -> None:
    assert eap_mschapv2(_client(radius_env), user, password).outcome == "reject"

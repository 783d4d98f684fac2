"""EAP password methods against the rendered config and real slapd, from eapol_test.

GTC and TTLS/PAP are checked by an LDAP bind as the user; EAP-MSCHAPv2 by the NT hash the
bind DN reads. wpa_supplicant's eapol_test is the peer: it verifies the MSCHAPv2
authenticator response and compares its MSK with the MS-MPPE keys of the accept.
"""

from __future__ import annotations

import pytest
from radius_support import PASSWORDS, SERVER_NAME, RadiusEnv

pytestmark = pytest.mark.root


def test_gtc_vlan_identity_accepted(radius_env: RadiusEnv) -> None:
    mark = radius_env.mark()
    res = radius_env.peer().gtc("alice@123456", PASSWORDS["alice"])
    assert res.outcome == "accept", res
    assert res.naked("mschapv2")   # the default method is proposed first; the peer asks for GTC
    log = radius_env.log_since(mark)
    assert 'filter "(&(uid=alice)(!(shadowExpire=1)))"' in log
    assert "Bind as user \"uid=alice,ou=people,dc=example,dc=ac,dc=jp\" was successful" in log


@pytest.mark.parametrize("user,password", [
    ("alice@123456", "wrong"), ("dave@123456", PASSWORDS["dave"]), ("nobody", "x-pw"),
])
def test_gtc_bad_credentials_rejected(radius_env: RadiusEnv, user: str, password: str) -> None:
    res = radius_env.peer().gtc(user, password)
    assert res.outcome == "reject", res


def test_gtc_malformed_identity_rejected_before_eap(radius_env: RadiusEnv) -> None:
    res = radius_env.peer().gtc("alice@12x", PASSWORDS["alice"])
    assert res.outcome == "reject" and res.rounds == 1, res


def test_ttls_pap_accepted(radius_env: RadiusEnv) -> None:
    mark = radius_env.mark()
    res = radius_env.peer().ttls_pap("erin@200001", PASSWORDS["erin"], radius_env.certs.ca, SERVER_NAME)
    assert res.outcome == "accept", (res, radius_env.log_since(mark)[-3000:])
    assert res.tls_established
    assert "EAP-TTLS: Phase 2 PAP Request" in res.output
    assert "Virtual server inner-tunnel received request" in radius_env.log_since(mark)


def test_ttls_pap_wrong_password_rejected(radius_env: RadiusEnv) -> None:
    res = radius_env.peer().ttls_pap("erin", "wrong-pw", radius_env.certs.ca, SERVER_NAME)
    assert res.tls_established and res.outcome == "reject", res


def test_ttls_server_name_is_checked_by_the_peer(radius_env: RadiusEnv) -> None:
    """The control for the accept above: a peer expecting another server sends no password."""
    mark = radius_env.mark()
    res = radius_env.peer().ttls_pap("erin@200001", PASSWORDS["erin"], radius_env.certs.ca,
                                     "radius.other.example")
    assert res.outcome != "accept" and not res.tls_established, res
    assert "Phase 2 PAP Request" not in res.output
    assert "Virtual server inner-tunnel received request" not in radius_env.log_since(mark)


def test_ttls_inner_identity_must_equal_outer(radius_env: RadiusEnv) -> None:
    """Outer erin@200001 (what charon reports) cannot be backed by alice's inner password."""
    mark = radius_env.mark()
    res = radius_env.peer().ttls_pap("erin@200001", PASSWORDS["alice"], radius_env.certs.ca,
                                     SERVER_NAME, inner_identity="alice@200001")
    assert res.outcome == "reject", res
    assert "ikemgr: inner identity differs from the outer identity" in radius_env.log_since(mark)


def test_eap_mschapv2_with_nt_hash_accepted_and_mutually_authenticated(radius_env: RadiusEnv) -> None:
    """The default method, proposed first: no NAK, and the server proves it knows the hash."""
    res = radius_env.peer().mschapv2("carol@123457", PASSWORDS["carol"])
    assert res.outcome == "accept", res
    # wpa_supplicant says this only after the authenticator response verified
    assert "EAP-MSCHAPV2: Authentication succeeded" in res.output
    assert "MPPE keys OK: 1  mismatch: 0" in res.output
    assert "-> NAK" not in res.output


@pytest.mark.parametrize("user,password", [
    ("carol@123457", "wrong-pw"),
    ("alice@123456", PASSWORDS["alice"]),   # no NT hash in LDAP: MSCHAPv2 cannot work for her
    ("dave", PASSWORDS["dave"]),            # disabled
    ("nobody@123456", "x-pw"),              # unknown
])
def test_eap_mschapv2_rejected(radius_env: RadiusEnv, user: str, password: str) -> None:
    res = radius_env.peer().mschapv2(user, password)
    assert res.outcome == "reject", res

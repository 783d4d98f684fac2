"""FreeRADIUS on the rendered ldap module against a slapd that only talks TLS.

The slapd here has a server certificate from the test CA (subjectAltName IP 127.0.0.1),
listens on ldap:// (StartTLS) and ldaps://, and sets ``olcSecurity: tls=1``: on a
connection without TLS every operation, bind included, is refused. So an accepted
password proves FreeRADIUS talked TLS; a plain ldap:// config is the control that fails.
A second CA that did not sign slapd's certificate shows that ``tls_require_cert: demand``
really checks: the same config is refused with it and accepted with ``never``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from radius_support import PASSWORDS, SECRET, Radiusd, TlsDirectory

from ikemgr.adapters.radius import RadiusClient

pytestmark = pytest.mark.root


def test_start_tls_with_ca_authenticates(tls_radiusd: Callable[..., Radiusd], tls_directory: TlsDirectory) -> None:
    r = tls_radiusd(uri=tls_directory.slapd.uri, start_tls=True, tls_ca_file=str(tls_directory.ca), tls_require_cert="demand")
    ldap_conf = (r.inst.raddb_dir / "mods-enabled/ldap").read_text()
    assert "start_tls = yes" in ldap_conf and f'ca_file = "{tls_directory.ca}"' in ldap_conf
    assert r.pap("alice@123456", PASSWORDS["alice"]) == "accept"
    assert r.gtc("alice@123456", PASSWORDS["alice"]) == "accept"          # EAP-GTC: bind as the user
    assert r.pap("alice", "wrong-password") == "reject"
    assert r.pap("dave", PASSWORDS["dave"]) == "reject"                   # disabled, filter over TLS
    assert 'Bind as user "uid=alice,ou=people,dc=example,dc=ac,dc=jp" was successful' in r.log()


def test_ldaps_with_ca_authenticates(tls_radiusd: Callable[..., Radiusd], tls_directory: TlsDirectory) -> None:
    r = tls_radiusd(uri=tls_directory.slapd.ldaps_uri, start_tls=False, tls_ca_file=str(tls_directory.ca),
                tls_require_cert="demand")
    assert f'server = "{tls_directory.slapd.ldaps_uri}"' in (r.inst.raddb_dir / "mods-enabled/ldap").read_text()
    assert r.pap("alice@123456", PASSWORDS["alice"]) == "accept"
    assert r.gtc("alice", PASSWORDS["alice"]) == "accept"
    assert r.pap("alice", "wrong-password") == "reject"


def test_nt_hash_is_read_over_tls(tls_radiusd: Callable[..., Radiusd], tls_directory: TlsDirectory) -> None:
    """MSCHAPv2 needs sambaNTPassword read by the bind DN: that search goes over TLS too."""
    r = tls_radiusd(uri=tls_directory.slapd.ldaps_uri, tls_ca_file=str(tls_directory.ca))
    c = RadiusClient(r.cfg.radius.address, r.cfg.radius.auth_port, SECRET, timeout=3.0, retries=1)
    assert c.mschapv2("carol@123457", PASSWORDS["carol"]).outcome == "accept"
    assert c.mschapv2("carol@123457", "not-carols-pw").outcome == "reject"


def test_plain_ldap_is_refused_by_the_directory(tls_radiusd: Callable[..., Radiusd], tls_directory: TlsDirectory) -> None:
    """The control: without TLS slapd answers nothing, so the accepts above went over TLS."""
    r = tls_radiusd(uri=tls_directory.slapd.uri, start_tls=False)
    assert r.pap("alice", PASSWORDS["alice"]) == "reject"
    assert "onfidentiality required" in r.log()


@pytest.mark.parametrize("kind", ["start_tls", "ldaps"])
def test_ca_that_did_not_sign_the_directory_is_refused(tls_radiusd: Callable[..., Radiusd], tls_directory: TlsDirectory,
                                                       kind: str) -> None:
    uri = tls_directory.slapd.uri if kind == "start_tls" else tls_directory.slapd.ldaps_uri
    r = tls_radiusd(uri=uri, start_tls=kind == "start_tls", tls_ca_file=str(tls_directory.other_ca),
                tls_require_cert="demand")
    assert r.pap("alice", PASSWORDS["alice"]) == "reject"
    assert r.gtc("alice", PASSWORDS["alice"]) == "reject"
    log = r.log()
    # libldap only says the TLS handshake failed; the next test shows it is the certificate
    failed = "Could not start TLS: Connect error" if kind == "start_tls" else \
        f"to {uri} failed: Can't contact LDAP server"
    assert failed in log and "Opening connection failed" in log, log[-3000:]
    assert "[ldap] = fail" in log and "was successful" not in log


@pytest.mark.parametrize("kind", ["start_tls", "ldaps"])
def test_require_cert_never_skips_the_check(tls_radiusd: Callable[..., Radiusd], tls_directory: TlsDirectory,
                                            kind: str) -> None:
    """The same wrong CA with ``never``: accepted — so the refusal above is the certificate check."""
    uri = tls_directory.slapd.uri if kind == "start_tls" else tls_directory.slapd.ldaps_uri
    r = tls_radiusd(uri=uri, start_tls=kind == "start_tls", tls_ca_file=str(tls_directory.other_ca),
                tls_require_cert="never")
    assert r.pap("alice", PASSWORDS["alice"]) == "accept"

"""FreeRADIUS on the rendered ldap module against a slapd that only talks TLS.

The slapd here has a server certificate from the test CA (subjectAltName IP 127.0.0.1),
listens on ldap:// (StartTLS) and ldaps://, and sets ``olcSecurity: tls=1``: on a
connection without TLS every operation, bind included, is refused. So an accepted
password proves FreeRADIUS talked TLS; a plain ldap:// config is the control that fails.
A second CA that did not sign slapd's certificate shows that ``tls_require_cert: demand``
really checks: the same config is refused with it and accepted with ``never``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eapol_support import EapPeer
from radius_support import PASSWORDS, PEOPLE, SECRET, SUFFIX, Certs, make_config, pki

from helpers import free_port
from ikemgr.adapters.radius import RadiusClient
from ikemgr.checks.freeradius import RadiusdInstance, prepare_raddb
from ikemgr.config.schema import Config
from ikemgr.render.freeradius import RadiusSecrets, radius_outputs
from ikemgr_lab.slapd import LdapUser, SlapdInstance, SlapdTls, nt_hash

pytestmark = pytest.mark.root


@dataclass(frozen=True)
class TlsDirectory:
    slapd: SlapdInstance
    ca: Path          # signed slapd's certificate
    other_ca: Path    # did not


@pytest.fixture(scope="module")
def tls_dir(radius_tmp: Path, certs: Certs) -> Iterator[TlsDirectory]:
    d = radius_tmp / "ldap-tls"
    d.mkdir()
    key, crt = d / "slapd.key", d / "slapd.pem"
    pki("--gen", "--type", "ecdsa", "--size", "256", out=key)
    pki("--issue", "--cacert", str(certs.ca), "--cakey", str(certs.ca_key), "--type", "priv",
        "--in", str(key), "--dn", "C=JP, O=Example University, CN=ldap.example.ac.jp",
        "--san", "127.0.0.1", "--san", "ldap.example.ac.jp", "--flag", "serverAuth", out=crt)
    other_key, other_ca = d / "other-ca.key", d / "other-ca.pem"
    pki("--gen", "--type", "ecdsa", "--size", "256", out=other_key)
    pki("--self", "--ca", "--lifetime", "365", "--in", str(other_key), "--type", "ecdsa",
        "--dn", "C=JP, O=Some Other CA, CN=Other CA", out=other_ca)
    inst = SlapdInstance(d / "slapd", SUFFIX, free_port(),
                         tls=SlapdTls(crt, key, certs.ca, ldaps_port=free_port(), require=True))
    inst.start()
    try:
        inst.add_ou("people")
        inst.add_users([LdapUser("alice", PASSWORDS["alice"]),
                        LdapUser("carol", PASSWORDS["carol"], nt_hash=nt_hash(PASSWORDS["carol"])),
                        LdapUser("dave", PASSWORDS["dave"], disabled=True)], under=PEOPLE)
        yield TlsDirectory(inst, certs.ca, other_ca)
    finally:
        inst.stop()


@dataclass
class Radiusd:
    cfg: Config
    inst: RadiusdInstance

    def pap(self, user: str, password: str) -> str:
        return RadiusClient(self.cfg.radius.address, self.cfg.radius.auth_port, SECRET,
                            timeout=3.0, retries=1).pap(user, password).outcome

    def gtc(self, user: str, password: str) -> str:
        return EapPeer(self.cfg.radius.auth_port, SECRET).gtc(user, password).outcome

    def log(self) -> str:
        return self.inst.log_text()


@pytest.fixture
def radiusd(tls_dir: TlsDirectory, certs: Certs, tmp_path: Path) -> Iterator[Callable[..., Radiusd]]:
    """Start a FreeRADIUS rendered with the given ``ldap:`` settings; all are stopped at the end."""
    started: list[RadiusdInstance] = []

    def start(**ldap: Any) -> Radiusd:
        work = tmp_path / f"r{len(started)}"
        work.mkdir()
        base = make_config(work, tls_dir.slapd, certs).model_dump(mode="json")
        base["ldap"].update(ldap)
        cfg = Config.model_validate(base)
        outputs = radius_outputs(cfg, RadiusSecrets(SECRET, tls_dir.slapd.root_password))
        inst = RadiusdInstance(prepare_raddb(work / "raddb", outputs), work)
        started.append(inst)
        inst.start()
        return Radiusd(cfg, inst)

    yield start
    for inst in started:
        inst.stop()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_start_tls_with_ca_authenticates(radiusd: Callable[..., Radiusd], tls_dir: TlsDirectory) -> None:
    r = radiusd(uri=tls_dir.slapd.uri, start_tls=True, tls_ca_file=str(tls_dir.ca), tls_require_cert="demand")
    ldap_conf = (r.inst.raddb_dir / "mods-enabled/ldap").read_text()
    assert "start_tls = yes" in ldap_conf and f'ca_file = "{tls_dir.ca}"' in ldap_conf
    assert r.pap("alice@123456", PASSWORDS["alice"]) == "accept"
    assert r.gtc("alice@123456", PASSWORDS["alice"]) == "accept"          # EAP-GTC: bind as the user
    assert r.pap("alice", "wrong-password") == "reject"
    assert r.pap("dave", PASSWORDS["dave"]) == "reject"                   # disabled, filter over TLS
    assert 'Bind as user "uid=alice,ou=people,dc=example,dc=ac,dc=jp" was successful' in r.log()


def test_ldaps_with_ca_authenticates(radiusd: Callable[..., Radiusd], tls_dir: TlsDirectory) -> None:
    r = radiusd(uri=tls_dir.slapd.ldaps_uri, start_tls=False, tls_ca_file=str(tls_dir.ca),
                tls_require_cert="demand")
    assert f'server = "{tls_dir.slapd.ldaps_uri}"' in (r.inst.raddb_dir / "mods-enabled/ldap").read_text()
    assert r.pap("alice@123456", PASSWORDS["alice"]) == "accept"
    assert r.gtc("alice", PASSWORDS["alice"]) == "accept"
    assert r.pap("alice", "wrong-password") == "reject"


def test_nt_hash_is_read_over_tls(radiusd: Callable[..., Radiusd], tls_dir: TlsDirectory) -> None:
    """MSCHAPv2 needs sambaNTPassword read by the bind DN: that search goes over TLS too."""
    r = radiusd(uri=tls_dir.slapd.ldaps_uri, tls_ca_file=str(tls_dir.ca))
    c = RadiusClient(r.cfg.radius.address, r.cfg.radius.auth_port, SECRET, timeout=3.0, retries=1)
    assert c.mschapv2("carol@123457", PASSWORDS["carol"]).outcome == "accept"
    assert c.mschapv2("carol@123457", "not-carols-pw").outcome == "reject"


def test_plain_ldap_is_refused_by_the_directory(radiusd: Callable[..., Radiusd], tls_dir: TlsDirectory) -> None:
    """The control: without TLS slapd answers nothing, so the accepts above went over TLS."""
    r = radiusd(uri=tls_dir.slapd.uri, start_tls=False)
    assert r.pap("alice", PASSWORDS["alice"]) == "reject"
    assert "onfidentiality required" in r.log()


@pytest.mark.parametrize("kind", ["start_tls", "ldaps"])
def test_ca_that_did_not_sign_the_directory_is_refused(radiusd: Callable[..., Radiusd], tls_dir: TlsDirectory,
                                                       kind: str) -> None:
    uri = tls_dir.slapd.uri if kind == "start_tls" else tls_dir.slapd.ldaps_uri
    r = radiusd(uri=uri, start_tls=kind == "start_tls", tls_ca_file=str(tls_dir.other_ca),
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
def test_require_cert_never_skips_the_check(radiusd: Callable[..., Radiusd], tls_dir: TlsDirectory,
                                            kind: str) -> None:
    """The same wrong CA with ``never``: accepted — so the refusal above is the certificate check."""
    uri = tls_dir.slapd.uri if kind == "start_tls" else tls_dir.slapd.ldaps_uri
    r = radiusd(uri=uri, start_tls=kind == "start_tls", tls_ca_file=str(tls_dir.other_ca),
                tls_require_cert="never")
    assert r.pap("alice", PASSWORDS["alice"]) == "accept"

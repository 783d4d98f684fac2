"""Fixtures of the FreeRADIUS tests: the test CA, a real slapd (plain and TLS-only), FreeRADIUS on
the rendered config (the builders they use live in radius_support.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from radius_support import (
    CRL_RELOAD,
    ORG,
    PASSWORDS,
    PEOPLE,
    SECRET,
    SUFFIX,
    Certs,
    CrlEnv,
    Radiusd,
    RadiusEnv,
    TlsDirectory,
    make_config,
    pki,
    running_radiusd,
)

from helpers import free_port
from ikemgr.checks.freeradius import RadiusdInstance, prepare_raddb
from ikemgr.commands._common import crl_issuer_of
from ikemgr.config.schema import Config
from ikemgr.pki.names import client_cn, client_subject_rdns, user_identity
from ikemgr.pki.store import PkiStore
from ikemgr.render.freeradius import RadiusSecrets, radius_outputs
from ikemgr_lab.slapd import LdapUser, SlapdInstance, SlapdTls, nt_hash


@pytest.fixture(scope="session")
def radius_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ikt-radius")


@pytest.fixture(scope="session")
def certs(radius_tmp: Path) -> Certs:
    if shutil.which("pki") is None:
        pytest.fail("strongSwan pki is not installed (scripts/setup.sh)")
    d = radius_tmp / "certs"
    d.mkdir()
    c = Certs(d, d / "ca.pem", d / "ca.key", d / "server.pem", d / "server.key")
    pki("--gen", "--type", "ecdsa", "--size", "256", out=c.ca_key)
    pki("--self", "--ca", "--lifetime", "365", "--in", str(c.ca_key), "--type", "ecdsa",
        "--dn", "C=JP, O=Test National CA, CN=Test CA", out=c.ca)
    pki("--gen", "--type", "ecdsa", "--size", "256", out=c.server_key)
    pki("--issue", "--cacert", str(c.ca), "--cakey", str(c.ca_key), "--type", "priv",
        "--in", str(c.server_key), "--dn", f"C=JP, O={ORG}, CN=radius.example.ac.jp",
        "--san", "radius.example.ac.jp", "--flag", "serverAuth", out=c.server)
    return c


@pytest.fixture(scope="session")
def slapd(radius_tmp: Path) -> Iterator[SlapdInstance]:
    inst = SlapdInstance(radius_tmp / "slapd", SUFFIX, free_port())
    inst.start()
    try:
        inst.add_ou("people")
        inst.add_users([
            LdapUser("alice", PASSWORDS["alice"]),                                  # bind only
            LdapUser("carol", PASSWORDS["carol"], nt_hash=nt_hash(PASSWORDS["carol"])),  # + NT hash
            LdapUser("dave", PASSWORDS["dave"], disabled=True),                     # locked
            LdapUser("erin", PASSWORDS["erin"]),
        ], under=PEOPLE)
        yield inst
    finally:
        inst.stop()


@pytest.fixture(scope="session")
def radius_env(radius_tmp: Path, slapd: SlapdInstance, certs: Certs) -> Iterator[RadiusEnv]:
    work = radius_tmp / "radius"
    work.mkdir()
    cfg = make_config(work, slapd, certs)
    config_file = work / "ikemgr.yaml"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json"), indent=1))  # JSON is YAML
    with running_radiusd(work, cfg, RadiusSecrets(SECRET, slapd.root_password)) as (raddb, inst):
        yield RadiusEnv(cfg, config_file, raddb, inst, slapd, certs)


@pytest.fixture(scope="module")
def tls_directory(radius_tmp: Path, certs: Certs) -> Iterator[TlsDirectory]:
    """A slapd that only talks TLS (StartTLS and ldaps://, ``olcSecurity: tls=1``), certificate
    from the session CA, people alice, carol (NT hash) and dave (disabled); and a CA that did not sign it."""
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


@pytest.fixture
def tls_radiusd(tls_directory: TlsDirectory, certs: Certs, tmp_path: Path) -> Iterator[Callable[..., Radiusd]]:
    """Start a FreeRADIUS rendered against ``tls_directory`` with the given ``ldap:`` settings;
    all are stopped at the end."""
    started: list[RadiusdInstance] = []

    def start(**ldap: Any) -> Radiusd:
        work = tmp_path / f"r{len(started)}"
        work.mkdir()
        base = make_config(work, tls_directory.slapd, certs).model_dump(mode="json")
        base["ldap"].update(ldap)
        cfg = Config.model_validate(base)
        outputs = radius_outputs(cfg, RadiusSecrets(SECRET, tls_directory.slapd.root_password))
        inst = RadiusdInstance(prepare_raddb(work / "raddb", outputs), work)
        started.append(inst)
        inst.start()
        return Radiusd(cfg, inst)

    yield start
    for inst in started:
        inst.stop()
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="module")
def crl_env(radius_tmp: Path, slapd: SlapdInstance, certs: Certs) -> Iterator[CrlEnv]:
    """FreeRADIUS checking ``eap.crl_file``: client certificates for alice, erin and carol from a
    PkiStore on the session CA, alice's revoked (keyCompromise) and the CRL written."""
    work = radius_tmp / "crl"
    work.mkdir()
    base = make_config(work, slapd, certs)
    store = PkiStore(work / "pki", base.pki, certs.ca, certs.ca_key)
    issued = {}
    for user in ("alice@123456", "erin@123456", "carol@123456"):
        ident = user_identity(base, user)
        i = store.issue_client(str(ident), client_cn(base, ident), client_subject_rdns(base), None, ())
        issued[user] = (i.cert, i.key)
    store.revoke(name="alice@123456", reason="keyCompromise")
    store.write_crl()
    data = base.model_dump(mode="json")
    data["eap"].update(crl_file=str(store.crl_pem), crl_reload_interval=CRL_RELOAD)
    cfg = Config.model_validate(data)
    secrets = RadiusSecrets(SECRET, slapd.root_password, crl_issuer_hash=crl_issuer_of(cfg))
    with running_radiusd(work, cfg, secrets) as (raddb, inst):
        yield CrlEnv(cfg, store, inst, raddb, certs, issued)

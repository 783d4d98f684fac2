"""Session fixtures of the FreeRADIUS tests: the test CA, a real slapd, FreeRADIUS on the rendered
config (the builders they use live in radius_support.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from radius_support import (
    ORG,
    PASSWORDS,
    PEOPLE,
    SECRET,
    SUFFIX,
    Certs,
    RadiusEnv,
    make_config,
    pki,
    running_radiusd,
)

from helpers import free_port
from ikemgr.render.freeradius import RadiusSecrets
from ikemgr_lab.slapd import LdapUser, SlapdInstance, nt_hash


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

"""Helpers and session fixtures: a real slapd and a real FreeRADIUS on the rendered config.

Everything lives under one temp dir, listens on 127.0.0.1 on free ports, and is stopped
in teardown even when tests fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from eapol_support import EapPeer

from helpers import free_port
from ikemgr.adapters.radius import RadiusClient
from ikemgr.checks.freeradius import RadiusdInstance, prepare_raddb
from ikemgr.config.load import load
from ikemgr.config.schema import Config
from ikemgr.render.freeradius import RadiusSecrets, radius_outputs
from ikemgr_lab.slapd import LdapUser, SlapdInstance, nt_hash

ROOT = Path(__file__).resolve().parents[3]
SUFFIX = "dc=example,dc=ac,dc=jp"
PEOPLE = f"ou=people,{SUFFIX}"
SECRET = "gw-radius-s3cret"
ORG = "Example University"
PASSWORDS = {"alice": "alice-pw-1", "carol": "carol-nt-pw", "dave": "dave-pw-1", "erin": "erin-pw-1"}


def pki(*args: str, out: Path) -> None:
    r = subprocess.run(["pki", *args, "--outform", "pem"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    out.write_bytes(r.stdout)
    if "--gen" in args:  # a private key: 0600, as render demands of the files it names
        out.chmod(0o600)


@dataclass(frozen=True)
class Certs:
    dir: Path
    ca: Path
    ca_key: Path
    server: Path
    server_key: Path

    def client(self, name: str, dn: str) -> tuple[Path, Path]:
        """A client certificate (ECDSA, clientAuth) issued by the test CA."""
        key, crt = self.dir / f"{name}.key", self.dir / f"{name}.pem"
        pki("--gen", "--type", "ecdsa", "--size", "256", out=key)
        pki("--issue", "--cacert", str(self.ca), "--cakey", str(self.ca_key), "--type", "priv",
            "--in", str(key), "--dn", dn, "--flag", "clientAuth", out=crt)
        return crt, key


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


def make_config(tmp: Path, slapd: SlapdInstance, certs: Certs) -> Config:
    """The Kyoto example, pointed at the test directory, ports and certificates."""
    data = load(ROOT / "examples" / "campus.yaml").model_dump(mode="json")
    for name, text in (("radius.secret", SECRET), ("ldap.pw", slapd.root_password)):
        (tmp / name).write_text(text + "\n")
        (tmp / name).chmod(0o600)  # secrets: never world-readable
    data["radius"].update(address="127.0.0.1", auth_port=free_port(), acct_port=free_port(),
                          secret_file=str(tmp / "radius.secret"), accounting=True, timeout=2.0,
                          retries=1)
    data["ldap"].update(uri=slapd.uri, base_dn=PEOPLE, bind_dn=slapd.root_dn,
                        bind_password_file=str(tmp / "ldap.pw"))
    data["eap"] = {"methods": ["mschapv2", "gtc", "ttls", "tls"], "default_method": "mschapv2",
                   "server_cert": str(certs.server), "server_key": str(certs.server_key),
                   "ca_file": str(certs.ca), "tls_allowed_subject": f"C=JP, O={ORG}"}
    return Config.model_validate(data)


@dataclass
class RadiusEnv:
    cfg: Config
    config_file: Path
    raddb: Path
    radiusd: RadiusdInstance
    slapd: SlapdInstance
    certs: Certs

    def client(self, secret: str = SECRET) -> RadiusClient:
        return RadiusClient(self.cfg.radius.address, self.cfg.radius.auth_port, secret,
                            timeout=2.0, retries=1)

    def peer(self) -> EapPeer:
        """eapol_test, the independent EAP peer, towards this FreeRADIUS."""
        return EapPeer(self.cfg.radius.auth_port, SECRET)

    def log_since(self, mark: int) -> str:
        return self.radiusd.log_text()[mark:]

    def mark(self) -> int:
        return len(self.radiusd.log_text())


@pytest.fixture(scope="session")
def radius_env(radius_tmp: Path, slapd: SlapdInstance, certs: Certs) -> Iterator[RadiusEnv]:
    work = radius_tmp / "radius"
    work.mkdir()
    cfg = make_config(work, slapd, certs)
    config_file = work / "ikemgr.yaml"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json"), indent=1))  # JSON is YAML
    with running_radiusd(work, cfg, RadiusSecrets(SECRET, slapd.root_password)) as (raddb, inst):
        yield RadiusEnv(cfg, config_file, raddb, inst, slapd, certs)


@contextmanager
def running_radiusd(work: Path, cfg: Config, secrets: RadiusSecrets) -> Iterator[tuple[Path, RadiusdInstance]]:
    """FreeRADIUS on the files ikemgr renders from ``cfg``: checked (-XC), started, stopped."""
    raddb = prepare_raddb(work / "raddb", radius_outputs(cfg, secrets))
    inst = RadiusdInstance(raddb, work)
    inst.check_config()
    inst.start()
    try:
        yield raddb, inst
    finally:
        inst.stop()

"""Helpers of the FreeRADIUS tests: a real slapd and a real FreeRADIUS on the rendered config.

Everything lives under one temp dir, listens on 127.0.0.1 on free ports, and is stopped
in teardown even when tests fail (the session fixtures are in conftest.py).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from eapol_support import EapPeer

from helpers import free_port
from ikemgr.adapters.radius import RadiusClient
from ikemgr.checks.freeradius import RadiusdInstance, prepare_raddb
from ikemgr.config.load import load
from ikemgr.config.schema import Config
from ikemgr.pki.store import PkiStore
from ikemgr.render.freeradius import RadiusSecrets, radius_outputs
from ikemgr_lab.slapd import SlapdInstance

ROOT = Path(__file__).resolve().parents[3]
SUFFIX = "dc=example,dc=ac,dc=jp"
PEOPLE = f"ou=people,{SUFFIX}"
SECRET = "gw-radius-s3cret"
ORG = "Example University"
#: the name in the session's FreeRADIUS server certificate (conftest.py: certs), checked by EAP-TLS peers
SERVER_NAME = "radius.example.ac.jp"
#: eap.crl_reload_interval's minimum, FreeRADIUS's floor
CRL_RELOAD = 300
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


@dataclass(frozen=True)
class TlsDirectory:
    """A slapd that only talks TLS (conftest.py: tls_directory)."""

    slapd: SlapdInstance
    ca: Path          # signed slapd's certificate
    other_ca: Path    # did not


@dataclass
class Radiusd:
    """One FreeRADIUS started by conftest.py's tls_radiusd, and how to ask it."""

    cfg: Config
    inst: RadiusdInstance

    def pap(self, user: str, password: str) -> str:
        return RadiusClient(self.cfg.radius.address, self.cfg.radius.auth_port, SECRET,
                            timeout=3.0, retries=1).pap(user, password).outcome

    def gtc(self, user: str, password: str) -> str:
        return EapPeer(self.cfg.radius.auth_port, SECRET).gtc(user, password).outcome

    def log(self) -> str:
        return self.inst.log_text()


@dataclass
class CrlEnv:
    """FreeRADIUS with a CRL written by the PKI store (conftest.py: crl_env), and its client certificates."""

    cfg: Config
    store: PkiStore
    radiusd: RadiusdInstance
    raddb: Path
    certs: Certs
    issued: dict[str, tuple[Path, Path]]

    def tls(self, user: str) -> tuple[str, str]:
        """(outcome, FreeRADIUS log of this authentication) for ``user``'s own certificate."""
        mark = len(self.radiusd.log_text())
        cert, key = self.issued[user]
        res = EapPeer(self.cfg.radius.auth_port, SECRET).tls(user, cert, key, self.certs.ca, SERVER_NAME)
        return res.outcome, self.radiusd.log_text()[mark:]

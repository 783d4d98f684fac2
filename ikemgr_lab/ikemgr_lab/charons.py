"""The lab's charons: the gateway (rendered by ikemgr) and one initiator per client.

Both use ``CharonInstance`` (own strongswan.conf, /run, VICI socket, netns). The gateway's
connection and pool come from ``ikemgr render``; only the process settings that
belong to *this instance* (plugin list, log file, socket) are written here. Clients
look like the Linux strongSwan users of the service: kernel-libipsec, and a swanctl dir
that is the product's own Linux profile (``ikemgr profile --format swanctl``, full
tunnel, EAP-MSCHAPv2 with a password or EAP-TLS with a certificate), so the lab proves
the profile users are handed, not a lab-only copy of it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ikemgr.checks.charon import (
    BASE_PLUGINS,
    INITIATOR_PLUGINS,
    LIBIPSEC_PLUGINS,
    CharonInstance,
)
from ikemgr.client.ike import list_sas  # noqa: F401 - the lab reads charons as ikemgr client does
from ikemgr.commands.profile import profile_input
from ikemgr.config.schema import Config
from ikemgr.errors import ApplyFailed
from ikemgr.pki import pkcs12
from ikemgr.render import profiles
from ikemgr.render.profiles.common import ProfileFile
from ikemgr_lab.model import Client

RADIUS_ID = "radius.lab.test"
STOCK_STRONGSWAN_D = Path("/etc/strongswan.d")


def gateway_instance(cfg: Config, workdir: Path, netns: str, rendered: Path) -> CharonInstance:
    ss = cfg.strongswan
    env: dict[str, str] = {}
    if ss.updown is not None:
        # charon runs updown with nothing but PLUTO_* and its own PATH: scripts/ikemgr-updown
        # finds `ikemgr` there, so put this ikemgr (the venv's) first
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent),
                                       os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")])
    # the gateway loads its plugins as a Debian host does (the installed packages' own
    # strongswan.d/charon/*.conf, load_modular), then the rendered files, as the host's
    # /etc/strongswan.conf includes them (plugin loads such as kernel-libipsec and farp,
    # install_routes, routing table, DNS, threads, eap-radius and its secret); only what
    # belongs to this instance (log, socket, /run) is written here
    rendered_settings = [rendered / "strongswan.d" / "ikemgr.conf",
                         rendered / "strongswan.d" / "ikemgr-eap-radius.conf"]
    return CharonInstance(workdir, netns=netns, stock_layout=STOCK_STRONGSWAN_D,
                          settings_files=rendered_settings, threads=ss.threads, env=env)


def install_rendered_swanctl(inst: CharonInstance, rendered: Path) -> None:
    """The rendered conf.d goes into the instance's swanctl dir (certs are already there)."""
    src = rendered / "swanctl" / "conf.d"
    dst = inst.swanctl_dir / "conf.d"
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.conf"):
        shutil.copy2(f, dst / f.name)


def client_instance(workdir: Path, netns: str) -> CharonInstance:
    plugins = [*BASE_PLUGINS, *LIBIPSEC_PLUGINS, *INITIATOR_PLUGINS]
    return CharonInstance(workdir, netns=netns, plugins=plugins,
                          charon_settings="    install_routes = yes\n")


def client_conn(cfg: Config) -> str:
    """The connection (and child) the swanctl profile writes: named after the gateway's."""
    return cfg.strongswan.connection


def client_p12(cert: Path, key: Path, ca_pem: bytes) -> tuple[bytes, bytes, str]:
    """The lab's PEM pair as the PKCS#12 an operator hands a user (``ikemgr pki issue-client``).

    The password is random and lives only in memory: the bundle is unpacked again at once
    by the profile code, which checks that it is the identity's and the CA's.
    """
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ApplyFailed(f"{key}: not an ECDSA or RSA key")
    password = secrets.token_hex(16).encode()
    data = pkcs12.export(loaded, x509.load_pem_x509_certificate(cert.read_bytes()),
                         x509.load_pem_x509_certificate(ca_pem), cert.stem, password, "modern")
    return data, password, str(cert)


def client_profile(cfg: Config, c: Client, ca_pem: bytes,
                   p12: tuple[bytes, bytes, str] | None = None) -> list[ProfileFile]:
    """The client's swanctl dir: ``ikemgr profile --format swanctl`` for its identity.

    Full tunnel to the gateway's outside address (the clients route everything through
    it, like the seed's ``leftsubnet=0.0.0.0/0``); EAP-MSCHAPv2 with the password in the
    profile's secrets section, or EAP-TLS with the certificate from ``p12``.
    """
    tls = c.auth == "eap-tls"
    inp = profile_input(cfg, c.identity, x509.load_pem_x509_certificate(ca_pem),
                        auth="tls" if tls else "eap", tunnel="full", connect_to="ip",
                        p12=p12 if tls else None, password=None if tls else c.password)
    return profiles.build("swanctl", inp, Path())


def install_profile(inst: CharonInstance, files: list[ProfileFile]) -> None:
    """Make the instance's swanctl dir exactly the profile directory (modes as rendered)."""
    if inst.swanctl_dir.exists():
        shutil.rmtree(inst.swanctl_dir)
    for f in files:
        dst = inst.swanctl_dir / f.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.mode)
        with os.fdopen(fd, "wb") as out:
            out.write(f.data)
        os.chmod(dst, f.mode)



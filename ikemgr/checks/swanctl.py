"""Prove rendered configs by loading them into the real daemons.

``check_swanctl`` starts a throw-away charon in a throw-away network namespace (so its
IKE ports and routes touch nothing), loads the rendered swanctl tree with
``swanctl --load-all`` and reads back ``--list-conns`` and ``--list-pools``.
"""

from __future__ import annotations

import secrets as _secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ikemgr.checks.charon import BASE_PLUGINS, NETLINK_PLUGINS, RESPONDER_PLUGINS, CharonInstance
from ikemgr.errors import BackendUnavailable, CheckFailed


@dataclass(frozen=True)
class SwanctlCheck:
    connection: str
    pool: str
    conns_output: str
    pools_output: str
    temporary_cert: bool


def _make_temp_cert(swanctl_dir: Path, cert_name: str, key_name: str, fqdn: str) -> None:
    """A self-signed stand-in when the real certificate is not on this host (CI, a laptop)."""
    key = swanctl_dir / "private" / key_name
    cert = swanctl_dir / "x509" / cert_name
    gen = subprocess.run(["pki", "--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem"],
                         capture_output=True, check=False, timeout=30)
    if gen.returncode != 0:
        raise BackendUnavailable("pki", gen.stderr.decode(errors="replace").strip()[-200:])
    key.write_bytes(gen.stdout)
    key.chmod(0o600)
    self_signed = subprocess.run(
        ["pki", "--self", "--in", str(key), "--type", "ecdsa", "--dn", f"CN={fqdn}",
         "--san", fqdn, "--lifetime", "2", "--outform", "pem"],
        capture_output=True, check=False, timeout=30)
    if self_signed.returncode != 0:
        raise BackendUnavailable("pki", self_signed.stderr.decode(errors="replace").strip()[-200:])
    cert.write_bytes(self_signed.stdout)


def _stand_in_cacerts(swanctl_dir: Path) -> None:
    """Every ``cacerts = NAME`` of the rendered files that is not in x509ca gets a throw-away CA.

    The certificate-only connection (issue 13) names the client CA; like the gateway
    certificate, it is usually not on the host that renders, and the check proves only that
    charon loads the files.
    """
    for conf in (swanctl_dir / "conf.d").glob("*.conf"):
        for line in conf.read_text().splitlines():
            key, eq, value = line.strip().partition("=")
            name = value.strip()
            if key.strip() != "cacerts" or not eq or "/" in name or name in ("", ".", ".."):
                continue
            target = swanctl_dir / "x509ca" / name
            if target.exists():
                continue
            gen = subprocess.run(["pki", "--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem"],
                                 capture_output=True, check=False, timeout=30)
            ca = subprocess.run(["pki", "--self", "--ca", "--type", "ecdsa", "--dn", "CN=ikemgr check CA",
                                 "--lifetime", "2", "--outform", "pem"], input=gen.stdout,
                                capture_output=True, check=False, timeout=30)
            if gen.returncode != 0 or ca.returncode != 0:
                raise BackendUnavailable("pki", (gen.stderr + ca.stderr).decode(errors="replace")[-200:])
            target.write_bytes(ca.stdout)


def check_swanctl(rendered_root: Path, connection: str, pool: str, cert: Path, key: Path,
                  fqdn: str) -> SwanctlCheck:
    ns = f"ikm-check-{_secrets.token_hex(3)}"
    work = Path(tempfile.mkdtemp(prefix="ikemgr-check-"))
    charon = CharonInstance(work, netns=ns, plugins=[*BASE_PLUGINS, *NETLINK_PLUGINS, *RESPONDER_PLUGINS])
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
        charon.prepare()
        shutil.copytree(rendered_root / "swanctl" / "conf.d", charon.swanctl_dir / "conf.d",
                        dirs_exist_ok=True)
        temporary = False
        if cert.is_file() and key.is_file():
            shutil.copy(cert, charon.swanctl_dir / "x509" / cert.name)
            shutil.copy(key, charon.swanctl_dir / "private" / key.name)
        else:
            _make_temp_cert(charon.swanctl_dir, cert.name, key.name, fqdn)
            temporary = True
        _stand_in_cacerts(charon.swanctl_dir)
        charon.start()
        charon.load_all()
        conns = charon.swanctl("--list-conns").stdout
        pools = charon.swanctl("--list-pools").stdout
        if f"{connection}:" not in conns:
            raise CheckFailed(f"charon loaded the config but does not list connection {connection}: "
                              f"{conns.strip()[:300]}")
        if pool not in pools:
            raise CheckFailed(f"charon does not list pool {pool}: {pools.strip()[:300]}")
        return SwanctlCheck(connection, pool, conns, pools, temporary)
    except subprocess.CalledProcessError as e:
        raise BackendUnavailable("netns", f"ip netns add {ns}: {e.stderr.decode(errors='replace').strip()}") \
            from None
    finally:
        charon.stop()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=10)
        shutil.rmtree(work, ignore_errors=True)

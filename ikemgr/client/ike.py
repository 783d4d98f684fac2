"""The environment's own charon: a private copy of the profile, its process, its SAs.

The charon runs inside the environment's netns with its own strongswan.conf, /run and
VICI socket (``CharonInstance``). Routes are ikemgr's job (``install_routes = no``): the
environment's default route goes into the tunnel and a /32 keeps IKE on the uplink.
charon's resolve plugin writes the gateway's DNS servers into the instance's own file,
never the host's /etc/resolv.conf.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from ikemgr.adapters.vici.session import CommandSession, connect
from ikemgr.client.model import Profile
from ikemgr.client.runtime import (
    BASE_PLUGINS,
    INITIATOR_PLUGINS,
    LIBIPSEC_PLUGINS,
    NETLINK_PLUGINS,
    CharonInstance,
)
from ikemgr.errors import ApplyFailed, UsageError

PROFILE_DIRS = ("x509ca", "x509", "private")


# The DNS servers reach us through charon's updown plugin (dns_handler: PLUTO_DNS4_n in
# the script's environment), not the resolve plugin: strongSwan 5.9.8's resolve plugin
# runs /sbin/resolvconf whenever it exists (no setting turns that off before 5.9.9), and
# that would change the *host's* DNS (resolvconf, systemd-resolved).
DNS_SCRIPT = """#!/bin/sh
# ikemgr client: keep the DNS servers the gateway handed out (charon's updown, dns_handler)
case "$PLUTO_VERB" in
up-*) env | grep '^PLUTO_DNS[46]_[0-9]*=' > "$0.out.tmp"; mv -f "$0.out.tmp" "$0.out" ;;
esac
exit 0
"""


def instance(workdir: Path, netns: str, libipsec: bool) -> CharonInstance:
    plugins = [*BASE_PLUGINS, *(LIBIPSEC_PLUGINS if libipsec else NETLINK_PLUGINS),
               *(p for p in INITIATOR_PLUGINS if p != "resolve"), "updown"]
    settings = ("    install_routes = no\n"
                "    plugins {\n"
                "        updown {\n            dns_handler = yes\n        }\n"
                "    }\n")
    return CharonInstance(workdir, netns=netns, plugins=plugins, charon_settings=settings)


def dns_script(inst: CharonInstance) -> Path:
    return inst.workdir / "dns-updown"


def write_dns_script(inst: CharonInstance) -> Path:
    path = dns_script(inst)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    with os.fdopen(fd, "w") as f:
        f.write(DNS_SCRIPT)
    return path


def read_profile_files(profile_dir: Path) -> dict[str, bytes]:
    """Every file of the profile by relative path; only regular files, no symlinks."""
    if not profile_dir.is_dir():
        raise UsageError(f"--profile: {profile_dir} is not a directory")
    out: dict[str, bytes] = {}
    main = profile_dir / "swanctl.conf"
    if main.is_symlink() or not main.is_file():
        raise UsageError(f"--profile: {main} is missing (expected the /etc/swanctl layout)")
    out["swanctl.conf"] = main.read_bytes()
    for sub in PROFILE_DIRS:
        d = profile_dir / sub
        if not d.is_dir():
            continue
        for f in sorted(d.iterdir()):
            if f.is_symlink() or not f.is_file():
                raise UsageError(f"--profile: {f} is not a regular file")
            out[f"{sub}/{f.name}"] = f.read_bytes()
    if not any(k.startswith("x509ca/") for k in out):
        raise UsageError(f"--profile: {profile_dir}/x509ca/ holds no CA certificate")
    return out


def check_files(p: Profile, files: dict[str, bytes]) -> None:
    for c in p.certs:
        if f"x509/{c}" not in files:
            raise UsageError(f"--profile: certs = {c} but x509/{c} is not in the profile")
    if p.certs and not any(k.startswith("private/") for k in files):
        raise UsageError("--profile: a certificate profile needs its key in private/")


def install_profile(inst: CharonInstance, files: dict[str, bytes], additions: str) -> None:
    """The environment's private swanctl tree (root only; keys and secrets 0600)."""
    inst.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(inst.workdir, 0o700)
    if inst.swanctl_dir.exists():
        shutil.rmtree(inst.swanctl_dir)
    for rel, data in files.items():
        dst = inst.swanctl_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if rel == "swanctl.conf":
            data = data + b"\n" + additions.encode()
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def initiate(inst: CharonInstance, p: Profile, timeout: int = 30) -> None:
    inst.load_all()
    r = inst.swanctl("--initiate", "--child", p.child, "--timeout", str(timeout),
                     check=False, timeout=timeout + 10)
    if r.returncode != 0:
        raise ApplyFailed(f"the tunnel to {p.remote_id} did not come up: charon log: "
                          f"{inst.log_tail(6)}")


def list_sas(vici_path: Path) -> list[dict[str, Any]]:
    """Every IKE SA of this charon, decoded to text, the name under ``"name"`` (the product's
    VICI session: one client for everything that talks to charon)."""
    cmd = CommandSession(connect(f"unix://{vici_path}", timeout=10))
    try:
        return cmd.list_sas_text()
    finally:
        cmd.close()


def established(inst: CharonInstance, p: Profile, wait: float = 5.0) -> dict[str, Any]:
    """The profile's IKE SA once it is ESTABLISHED with a virtual IP.

    ``swanctl --initiate`` returns when the CHILD_SA is installed; on a loaded machine
    charon's SA list can lag that by a moment, so it is read again for up to ``wait``
    seconds before the SA is judged. The error names what charon listed.
    """
    deadline = time.monotonic() + wait
    while True:
        sas = list_sas(inst.vici_path)
        sa = summary(sas, p.connection)
        if sa["vip"] is not None:
            return sa
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    states = ", ".join(f"{s.get('name')}={s.get('state')}" for s in sas) or "no IKE SA"
    if sa["state"] == "ESTABLISHED":
        raise ApplyFailed(f"the gateway {p.remote_id} assigned no virtual IP")
    raise ApplyFailed(f"the tunnel to {p.remote_id} is not established after initiate ({states}): "
                      f"charon log: "
                      f"{inst.log_tail(6)}")


def summary(sas: list[dict[str, Any]], connection: str) -> dict[str, Any]:
    """Identity, VIP and byte counters of the profile's IKE SA (pure; fed by list_sas)."""
    for sa in sas:
        if sa.get("name") != connection or sa.get("state") != "ESTABLISHED":
            continue
        children = [c for c in (sa.get("child-sas") or {}).values() if c.get("state") == "INSTALLED"]
        vips = sa.get("local-vips") or []
        return {
            "state": "ESTABLISHED",
            "identity": sa.get("local-eap-id") or sa.get("local-id"),
            "gateway_id": sa.get("remote-id"),
            "vip": vips[0] if vips else None,
            "children": len(children),
            "bytes_in": sum(int(c.get("bytes-in", 0)) for c in children),
            "bytes_out": sum(int(c.get("bytes-out", 0)) for c in children),
        }
    return {"state": "DOWN", "identity": None, "gateway_id": None, "vip": None, "children": 0,
            "bytes_in": 0, "bytes_out": 0}

"""The lab's charons: the gateway (rendered by ikemgr) and one initiator per client.

Both use ``CharonInstance`` (own strongswan.conf, /run, VICI socket, netns). The gateway's
connection and pool come from ``ikemgr render``; only the process settings that
belong to *this instance* (plugin list, log file, socket) are written here. Clients
look like the Linux strongSwan users of the service: kernel-libipsec, UDP encapsulation,
a full tunnel, EAP-MSCHAPv2 with a password or EAP-TLS with a certificate.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import vici  # type: ignore[import-untyped]

from ikemgr.checks.charon import (
    BASE_PLUGINS,
    INITIATOR_PLUGINS,
    LIBIPSEC_PLUGINS,
    NETLINK_PLUGINS,
    RESPONDER_PLUGINS,
    CharonInstance,
)
from ikemgr.config.schema import Config
from ikemgr.render.strongswan import plugin_loads
from ikemgr_lab.model import Client

RADIUS_ID = "radius.lab.test"
CLIENT_CONN = "lab"


def gateway_instance(cfg: Config, workdir: Path, netns: str, rendered: Path) -> CharonInstance:
    ss = cfg.strongswan
    plugins = [*BASE_PLUGINS, *(LIBIPSEC_PLUGINS if ss.kernel_ipsec == "libipsec" else NETLINK_PLUGINS),
               *RESPONDER_PLUGINS]
    # every optional plugin the rendered plugin-load files switch on (farp; updown in hook mode)
    plugins += [name for name, load in plugin_loads(cfg).items() if load and name not in plugins]
    env: dict[str, str] = {}
    if ss.updown is not None:
        # charon runs updown with nothing but PLUTO_* and its own PATH: scripts/ikemgr-updown
        # finds `ikemgr` there, so put this ikemgr (the venv's) first
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent),
                                       os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")])
    r = cfg.routing
    install = "yes" if (r.install_routes or ss.kernel_ipsec == "libipsec") else "no"
    # the pool's DNS servers, as the rendered strongswan.d/charon.conf hands them out (attr)
    dns = "".join(f"    dns{i} = {d}\n" for i, d in enumerate(cfg.pool.dns, start=1))
    settings = (dns + f"    install_routes = {install}\n"
                f"    routing_table = {r.charon_table}\n"
                f"    routing_table_prio = {r.charon_priority}\n"
                "    plugins {\n"
                f"        include {rendered}/strongswan.d/charon/eap-radius.conf\n"
                "    }\n")
    return CharonInstance(workdir, netns=netns, plugins=plugins, charon_settings=settings,
                          threads=ss.threads, env=env)


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


def client_swanctl(cfg: Config, c: Client, cert_name: str | None) -> str:
    """One connection ``lab``: full tunnel to the gateway, EAP towards RADIUS."""
    if c.auth == "eap-tls":
        local = (f"            auth = eap-tls\n            eap_id = {c.identity}\n"
                 f"            certs = {cert_name}\n"
                 # the EAP server is RADIUS: its certificate identity, in *local* (lab recipe)
                 f"            aaa_id = {RADIUS_ID}\n")
        secrets = ""
    else:
        local = f"            auth = eap-mschapv2\n            eap_id = {c.identity}\n"
        secrets = (f"secrets {{\n    eap-{c.name} {{\n        id = {c.identity}\n"
                   f'        secret = "{c.password}"\n    }}\n}}\n')
    return (
        "connections {\n"
        f"    {CLIENT_CONN} {{\n"
        "        version = 2\n"
        f"        remote_addrs = {cfg.gateway.outside.address.ip}\n"
        "        vips = 0.0.0.0\n"
        # kernel-libipsec only does UDP-encapsulated ESP
        "        encap = yes\n"
        "        local {\n" + local + "        }\n"
        "        remote {\n"
        "            auth = pubkey\n"
        f"            id = {cfg.gateway.fqdn}\n"
        "        }\n"
        "        children {\n"
        f"            {CLIENT_CONN} {{\n"
        "                remote_ts = 0.0.0.0/0\n"
        "            }\n"
        "        }\n"
        "    }\n"
        "}\n" + secrets
    )


def _text(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, dict):
        return {_text(k): _text(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_text(x) for x in v]
    return v


def list_sas(vici_path: Path) -> list[dict[str, Any]]:
    """Every IKE SA as a plain dict (name under ``"name"``), decoded to text."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(vici_path))
    try:
        out = []
        for sa in vici.Session(s).list_sas():
            for name, body in _text(sa).items():
                out.append({"name": name, **body})
        return out
    finally:
        s.close()

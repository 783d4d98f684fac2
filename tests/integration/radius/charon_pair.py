"""Two real charons in two network namespaces of our own, for EAP through eap-radius.

The gateway charon (responder) relays EAP to the FreeRADIUS in its namespace; the client
charon (initiator) is the EAP peer. charon's pid file /var/run/charon.pid is compiled in,
so each charon gets a private mount namespace with its own directory over /run
(the lab recipe's approach). ESP is userspace (kernel-libipsec): this kernel has no ESP.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from pathlib import Path

import vici

from ikemgr.adapters.charon import BASE_PLUGINS, LIBIPSEC_PLUGINS, CharonInstance


def netns_name(role: str) -> str:
    return f"ikt-r-{secrets.token_hex(3)}{role}"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r


class Charon(CharonInstance):
    """The shared charon runner with a fixed swanctl.conf and a few test conveniences."""

    def __init__(self, workdir: Path, netns: str, extra_plugins: str, plugin_conf: str,
                 swanctl_conf: str) -> None:
        super().__init__(
            workdir, netns,
            plugins=[*BASE_PLUGINS, *LIBIPSEC_PLUGINS, "attr", "eap-identity", *extra_plugins.split()],
            charon_settings=f"    plugins {{\n{plugin_conf}\n    }}" if plugin_conf else "")
        self.prepare()
        (self.swanctl_dir / "swanctl.conf").write_text(swanctl_conf)

    def swanctl_cmd(self, command: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.swanctl(command, *args, check=False, timeout=timeout)

    def sas(self) -> list[dict[str, dict]]:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(str(self.vici_path))
        try:
            return list(vici.Session(s).list_sas())
        finally:
            s.close()

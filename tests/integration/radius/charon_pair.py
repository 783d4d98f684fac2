"""Two real charons in two network namespaces of our own, for EAP through eap-radius.

The gateway charon (responder) relays EAP to the FreeRADIUS in its namespace; the client
charon (initiator) is the EAP peer. charon's pid file /var/run/charon.pid is compiled in,
so each charon gets a private mount namespace with its own directory over /run
(the lab recipe's approach). ESP is userspace (kernel-libipsec): this kernel has no ESP.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import vici

PLUGINS = ("random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey curve25519 gmp "
           "hmac kdf sha1 sha2 aes gcm kernel-libipsec kernel-netlink socket-default vici attr "
           "eap-identity")


def netns_name(role: str) -> str:
    return f"ikt-r-{secrets.token_hex(3)}{role}"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r


class Charon:
    """One charon with its own strongswan.conf, swanctl dir, VICI socket and /run."""

    def __init__(self, workdir: Path, netns: str, extra_plugins: str, plugin_conf: str,
                 swanctl_conf: str, install_routes: bool = True) -> None:
        self.dir = workdir
        self.netns = netns
        self.run_dir = workdir / "run"
        self.swanctl = workdir / "swanctl"
        self.socket = workdir / "charon.vici"
        self.conf = workdir / "strongswan.conf"
        self.log = workdir / "charon.log"
        for sub in ("x509", "x509ca", "private", "conf.d"):
            (self.swanctl / sub).mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f"""charon {{
    load_modular = no
    load = {PLUGINS} {extra_plugins}
    install_routes = {"yes" if install_routes else "no"}
    threads = 16
    filelog {{
        main {{
            path = {self.log}
            default = 1
            ike = 2
            cfg = 2
            flush_line = yes
        }}
    }}
    syslog {{
        daemon {{
            default = -1
        }}
    }}
    plugins {{
        vici {{
            socket = unix://{self.socket}
        }}
        openssl {{
            load_legacy = yes
        }}
{plugin_conf}
    }}
}}
""")
        (self.swanctl / "swanctl.conf").write_text(swanctl_conf)
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "STRONGSWAN_CONF": str(self.conf), "SWANCTL_DIR": str(self.swanctl)}

    def start(self, timeout: float = 15.0) -> None:
        script = 'mount --bind "$1" /run && exec /usr/lib/ipsec/charon'
        out = open(self.dir / "charon.stdout", "wb")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation", "private",
                 "sh", "-c", script, "sh", str(self.run_dir)],
                env=self.env(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.exists():
                try:
                    self.session().version()
                    return
                except OSError:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"charon in {self.netns} did not start: "
                           f"{(self.dir / 'charon.stdout').read_text(errors='replace')[-2000:]}")

    def swanctl_cmd(self, command: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["swanctl", command, "--uri", f"unix://{self.socket}", *args],
                              env=self.env(), capture_output=True, text=True, timeout=timeout)

    def load_all(self) -> None:
        r = self.swanctl_cmd("--load-all", "--noprompt")
        if r.returncode != 0:
            raise RuntimeError(f"swanctl --load-all: {r.stdout}{r.stderr}")

    def session(self) -> vici.Session:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(str(self.socket))
        return vici.Session(s)

    def sas(self) -> list[dict[str, dict]]:
        return list(self.session().list_sas())

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

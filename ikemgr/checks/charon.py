"""Run a real charon with its own everything: strongswan.conf, VICI socket, /run, netns.

Several charons must coexist on one host (the check charon, the lab's gateway and
clients), but charon hard-codes ``/var/run/charon.pid`` and refuses to start while the
pid in it is alive. Each instance therefore runs in a private mount namespace with its
own directory bind-mounted over ``/run``, and (optionally) in a network namespace of
its own so that the IKE ports do not collide. STRONGSWAN_CONF points charon and
swanctl at the instance's strongswan.conf; swanctl is always given ``--uri``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ikemgr.errors import BackendUnavailable, CheckFailed

CHARON = Path("/usr/lib/ipsec/charon")
SWANCTL = "swanctl"

# random..gcm: crypto and encodings; curve25519 (extra plugins) for x25519 proposals.
BASE_PLUGINS = (
    "random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey curve25519 "
    "gmp hmac kdf sha1 sha2 aes gcm"
).split()
# kernel-libipsec must precede kernel-netlink so it provides the IPsec backend while
# kernel-netlink still handles addresses, routes and virtual IPs.
LIBIPSEC_PLUGINS = ["kernel-libipsec", "kernel-netlink", "socket-default", "vici"]
NETLINK_PLUGINS = ["kernel-netlink", "socket-default", "vici"]
RESPONDER_PLUGINS = ["attr", "eap-identity", "eap-radius"]
INITIATOR_PLUGINS = ["eap-identity", "eap-mschapv2", "eap-md5", "eap-gtc", "eap-ttls", "eap-tls", "resolve"]

SWANCTL_SUBDIRS = ("conf.d", "x509", "x509ca", "x509aa", "x509ocsp", "x509crl", "x509ac",
                   "pubkey", "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12")


def _env(conf: Path, swanctl_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["STRONGSWAN_CONF"] = str(conf)
    if swanctl_dir is not None:
        env["SWANCTL_DIR"] = str(swanctl_dir)
    return env


@dataclass
class CharonInstance:
    """One charon process. ``plugins`` is the explicit load list (load_modular = no), unless
    ``stock_layout`` names a Debian ``strongswan.d`` directory: then charon loads its plugins
    as a Debian host does (load_modular = yes, every ``charon/*.conf`` of the installed
    plugin packages, the stock ``*.conf``), and ``plugins`` is not used."""

    workdir: Path
    netns: str | None = None
    plugins: Sequence[str] = field(default_factory=lambda: [*BASE_PLUGINS, *LIBIPSEC_PLUGINS,
                                                          *RESPONDER_PLUGINS])
    charon_settings: str = ""  # extra text placed inside charon { } (install_routes, eap-radius …)
    threads: int = 16  # fewer than 16 leaves no worker for VICI: every request hangs (lab-recipe)
    # rendered strongswan.d files included first, as /etc/strongswan.conf includes them;
    # the instance's own block (plugin list, log, socket) follows and wins where both set a key
    settings_files: Sequence[Path] = ()
    # added to charon's environment; charon hands PATH on to updown scripts (hook mode)
    env: dict[str, str] = field(default_factory=dict)
    stock_layout: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)

    # ------------------------------------------------------------------ paths
    @property
    def conf(self) -> Path:
        return self.workdir / "strongswan.conf"

    @property
    def vici_path(self) -> Path:
        return self.workdir / "charon.vici"

    @property
    def uri(self) -> str:
        return f"unix://{self.vici_path}"

    @property
    def log(self) -> Path:
        return self.workdir / "charon.log"

    @property
    def rundir(self) -> Path:
        return self.workdir / "run"

    @property
    def swanctl_dir(self) -> Path:
        return self.workdir / "swanctl"

    @property
    def pidfile(self) -> Path:
        return self.workdir / "charon.pid"

    # ------------------------------------------------------------------ setup
    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rundir.mkdir(exist_ok=True)
        for sub in SWANCTL_SUBDIRS:
            (self.swanctl_dir / sub).mkdir(parents=True, exist_ok=True)
        main = self.swanctl_dir / "swanctl.conf"
        if not main.exists():
            main.write_text("include conf.d/*.conf\n")
        self.conf.write_text(self.strongswan_conf())

    def strongswan_conf(self) -> str:
        includes = "".join(f"include {f}\n" for f in self.settings_files)
        if self.stock_layout is not None:
            # Debian's /etc/strongswan.conf, with absolute paths: the plugin packages' own
            # files, then strongswan.d/*.conf; the rendered files come after those
            stock = self.stock_layout
            loading = ""
            includes = (f"charon {{\n    load_modular = yes\n    plugins {{\n"
                        f"        include {stock}/charon/*.conf\n    }}\n}}\n"
                        f"include {stock}/*.conf\n" + includes)
        else:
            loading = f"    load_modular = no\n    load = {' '.join(self.plugins)}\n"
        return f"""# generated for one charon instance ({self.workdir})
{includes}charon {{
{loading}    threads = {self.threads}
    filelog {{
        main {{
            path = {self.log}
            time_format = %F %T
            ike_name = yes
            append = no
            default = 1
            ike = 2
            cfg = 2
            knl = 1
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
            socket = {self.uri}
        }}
        openssl {{
            load_legacy = yes
        }}
    }}
{self.charon_settings}
}}
swanctl {{
    socket = {self.uri}
}}
"""

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 10.0) -> None:
        if not CHARON.exists():
            raise BackendUnavailable("charon", f"{CHARON} not found (install strongswan-charon)")
        self.prepare()
        self.vici_path.unlink(missing_ok=True)
        (self.rundir / "charon.pid").unlink(missing_ok=True)
        # charon's pid file is /var/run/charon.pid, so each instance gets a private /run (its
        # rundir, bound over /run in a mount namespace of its own). A workdir below /run
        # (ikemgr client's /run/ikemgr/client/NAME) would vanish under that mount with its
        # strongswan.conf, log and VICI socket: it is bound back in at its own path first
        # (rbind carries that mount along)
        back = ""
        try:
            back = str(self.workdir.resolve().relative_to("/run"))
        except ValueError:
            pass
        if back:
            (self.rundir / back).mkdir(parents=True, exist_ok=True)
        inner = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                 '{ [ -z "$4" ] || mount --bind "$5" "$1/$4"; } && mount --rbind "$1" /run '
                 '&& exec env STRONGSWAN_CONF="$2" "$3"',
                 "sh", str(self.rundir), str(self.conf), str(CHARON), back, str(self.workdir.resolve())]
        argv = ["ip", "netns", "exec", self.netns, *inner] if self.netns else inner
        out = open(self.workdir / "charon.stdout", "wb")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         env={**os.environ, **self.env} if self.env else None)
        finally:
            out.close()
        self.pidfile.write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BackendUnavailable("charon", f"exited with {self.proc.returncode}: "
                                         f"{self.log_tail()}")
            if self.vici_path.exists() and self._vici_answers():
                return
            time.sleep(0.05)
        self.stop()
        raise BackendUnavailable("charon", f"VICI socket did not come up in {timeout:.0f}s: "
                                 f"{self.log_tail()}")

    def _vici_answers(self) -> bool:
        r = subprocess.run([SWANCTL, "--stats", "--uri", self.uri], env=_env(self.conf),
                           capture_output=True, timeout=5, check=False)
        return r.returncode == 0 and b"uptime" in r.stdout

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self.proc = None
        self.pidfile.unlink(missing_ok=True)

    def __enter__(self) -> CharonInstance:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ swanctl
    def swanctl(self, command: str, *args: str, check: bool = True,
                timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``swanctl <command> --uri … args``; the command must come first (lab-recipe)."""
        argv = [SWANCTL, command, "--uri", self.uri, *args]
        r = subprocess.run(argv, env=_env(self.conf, self.swanctl_dir), capture_output=True,
                           text=True, timeout=timeout, check=False)
        if check and r.returncode != 0:
            raise CheckFailed(f"swanctl {command} failed ({r.returncode}): "
                              f"{_meaningful(r.stdout + r.stderr)}")
        return r

    def load_all(self) -> subprocess.CompletedProcess[str]:
        return self.swanctl("--load-all", "--noprompt")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            try:
                text = (self.workdir / "charon.stdout").read_text(errors="replace")
            except FileNotFoundError:
                return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def install_swanctl_tree(self, rendered_swanctl: Path) -> None:
        """Copy a rendered swanctl tree (conf.d, x509 …) into this instance's swanctl dir."""
        shutil.copytree(rendered_swanctl, self.swanctl_dir, dirs_exist_ok=True)


def _meaningful(text: str) -> str:
    """swanctl output minus the harmless TPM plugin noise of Debian's extra plugins."""
    keep = [ln for ln in text.splitlines()
            if ln.strip() and "TPM 2.0" not in ln and "plugin 'tpm'" not in ln]
    return " | ".join(keep[-12:]) or text.strip()

"""The client tests' world: the namespace lab (prefix ikn-) plus a client machine.

    ikn-cmlan 192.168.11.51 ("local") ── lan0 [ikn-cm] eth0 192.0.2.70 ── br0 [ikn-inet] ── ikn-gw …
                                                                   campus lab VLAN 123458:
                                                                   ikn-lab3 192.168.11.51 ("campus")

The client machine ``ikn-cm`` sits on the lab's Internet segment; its own LAN uses
192.168.11.0/24, exactly like the campus lab network behind the gateway (VLAN 123458,
allow-listed for ``alice@123458``). Each 192.168.11.51 runs an echo server that says which
one it is, and each side has its own DNS server (dnsmasq) answering ``svc.example.test``
differently; the gateway's pool hands out the campus one (10.5.0.10).

Everything lives under /tmp/ikemgr-ikn, /run/ikemgr/client (the product default) and in ikn-*
namespaces; teardown removes it all and
checks that nothing is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import IKEMGR, sh
from ikemgr.client.state import DEFAULT_STATE_DIR
from ikemgr_lab import procs
from ikemgr_lab.model import load_lab as load
from ikemgr_lab.runner import Lab

HERE = Path(__file__).parent
LAB_YAML = HERE / "lab.yaml"
STATE = Path("/tmp/ikemgr-ikn")
# the product's default (/run/ikemgr/client): below /run, where each client charon's own
# /run mount must not hide its workdir
CLIENT_STATE = DEFAULT_STATE_DIR
CM = "ikn-cm"
CM_LAN = "ikn-cmlan"
CAMPUS_HOST_NS = "ikn-lab3"
CAMPUS_DNS_NS = "ikn-csrv"
ECHO_PORT = 7171
OWNER = 61001  # numeric users without passwd entries: nothing is added to /etc/passwd
OTHER = 61002
DNS_NAME = "svc.example.test"



def as_user(uid: int) -> dict[str, str]:
    """The environment sudo gives a command run by ``uid`` (SUDO_UID/SUDO_GID)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUDO_")}
    env = {k: v for k, v in env.items() if k != "IKEMGR_CLIENT_STATE_DIR"}  # the default state dir
    env.update(SUDO_UID=str(uid), SUDO_GID=str(uid))
    return env


def ikemgr_cm(*args: str, uid: int = OWNER, check: bool = True, timeout: float = 90
              ) -> subprocess.CompletedProcess[str]:
    """``ip netns exec ikn-cm ikemgr …`` as the user ``uid`` would run it through sudo."""
    return sh("ip", "netns", "exec", CM, IKEMGR, *args, check=check, timeout=timeout, env=as_user(uid))


def swanctl_profile(directory: Path, identity: str, ca: Path, cert_p12: Path | None = None) -> Path:
    """The Linux profile as an operator makes it: ``ikemgr profile --format swanctl`` from the
    lab's own config (full tunnel, the gateway's outside address, the lab CA)."""
    args = ["profile", "--user", identity, "--format", "swanctl", "--out", str(directory), "--tunnel", "full",
            "--connect-to", "ip", "--ca", str(ca), "-c", str(LAB_YAML)]
    if cert_p12 is not None:
        args += ["--auth", "tls", "--cert", str(cert_p12), "--p12-password-file", str(cert_p12) + ".pass"]
    sh(IKEMGR, *args)
    return directory


def p12_of(cert: Path, key: Path, out: Path) -> Path:
    """A PKCS#12 of the lab's PEM certificate and key (what ``ikemgr pki issue-client`` hands out)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import (
        BestAvailableEncryption,
        load_pem_private_key,
        pkcs12,
    )

    password = Path(str(out) + ".pass")
    password.write_text("erin-p12\n")
    password.chmod(0o600)
    blob = pkcs12.serialize_key_and_certificates(
        b"erin", load_pem_private_key(key.read_bytes(), None),  # type: ignore[arg-type]
        x509.load_pem_x509_certificate(cert.read_bytes()), None, BestAvailableEncryption(b"erin-p12"))
    out.write_bytes(blob)
    out.chmod(0o600)
    return out


@dataclass
class World:
    lab: Lab
    bin: Path  # probe.py / echo.py, readable by the unprivileged test users
    alice_profile: Path
    alice_password: Path
    erin_profile: Path

    def probe(self, env: str | None, address: str, port: int = ECHO_PORT, uid: int = OWNER
              ) -> subprocess.CompletedProcess[str]:
        """A program on the client machine (env None) or in environment ``env``."""
        prog = ["/usr/bin/python3", str(self.bin / "probe.py"), address, str(port)]
        if env is None:
            return sh("ip", "netns", "exec", CM, "setpriv", "--reuid", str(uid), "--regid", str(uid),
                      "--clear-groups", "--", *prog, check=False, timeout=20)
        return ikemgr_cm("client", "exec", env, "--", *prog, uid=uid, check=False, timeout=20)


def _start(ns: str, argv: list[str], name: str, ready: str, log_dir: Path) -> int:
    log = log_dir / f"{name}.log"
    out = open(log, "wb")  # noqa: SIM115 - handed to the child
    p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    deadline = time.monotonic() + 10
    while ready.encode() not in log.read_bytes():
        if p.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{name} did not start: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    return p.pid


def _client_machine(lab: Lab) -> None:
    inet = lab.ns("inet")
    for argv in (
        ("ip", "netns", "add", CM), ("ip", "netns", "add", CM_LAN),
        ("ip", "link", "add", "eth0", "netns", CM, "type", "veth", "peer", "name", "p-cm", "netns", inet),
        ("ip", "-n", inet, "link", "set", "p-cm", "master", "br0", "up"),
        ("ip", "-n", CM, "addr", "add", "192.0.2.70/24", "dev", "eth0"),
        ("ip", "-n", CM, "link", "set", "eth0", "up"), ("ip", "-n", CM, "link", "set", "lo", "up"),
        ("ip", "-n", CM, "route", "add", "default", "via", "192.0.2.254"),
        ("ip", "link", "add", "lan0", "netns", CM, "type", "veth", "peer", "name", "eth0", "netns", CM_LAN),
        ("ip", "-n", CM, "addr", "add", "192.168.11.1/24", "dev", "lan0"),
        ("ip", "-n", CM, "link", "set", "lan0", "up"),
        ("ip", "-n", CM_LAN, "addr", "add", "192.168.11.51/24", "dev", "eth0"),
        ("ip", "-n", CM_LAN, "link", "set", "eth0", "up"), ("ip", "-n", CM_LAN, "link", "set", "lo", "up"),
        ("ip", "-n", CM_LAN, "route", "add", "default", "via", "192.168.11.1"),
    ):
        sh(*argv)
    # the client machine's own resolver: the DNS server on its LAN
    etc = Path("/etc/netns") / CM
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text("nameserver 192.168.11.51\n")


def _dnsmasq(ns: str, listen: str, answer: str, name: str, run: Path) -> int:
    return _start(ns, ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                       "--bind-interfaces", f"--listen-address={listen}", "--except-interface=lo",
                       f"--address=/{DNS_NAME}/{answer}", f"--pid-file={run / (name + '.pid')}",
                       "--log-facility=-", "--user=root", "--group=root"],
                  name, "started", run)


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    if os.geteuid() != 0:
        pytest.skip("the client tests need root")
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq (Debian dnsmasq-base) is not installed")
    the_lab = Lab(load(LAB_YAML), LAB_YAML)
    pids: list[int] = []
    try:
        the_lab.up(lambda _line: None)
        _client_machine(the_lab)
        run = STATE / "ikn-run"
        run.mkdir(parents=True, exist_ok=True)
        bindir = STATE / "bin"
        bindir.mkdir(exist_ok=True)
        for f in ("probe.py", "echo.py"):
            shutil.copy2(HERE / f, bindir / f)
            (bindir / f).chmod(0o644)
        py = "/usr/bin/python3"
        pids += [
            _start(CM_LAN, [py, str(bindir / "echo.py"), "192.168.11.51", str(ECHO_PORT), "local"],
                   "echo-local", "listening", run),
            _start(CAMPUS_HOST_NS, [py, str(bindir / "echo.py"), "192.168.11.51", str(ECHO_PORT),
                                    "campus"], "echo-campus", "listening", run),
            _dnsmasq(CM_LAN, "192.168.11.51", "192.168.11.51", "dns-local", run),
            _dnsmasq(CAMPUS_DNS_NS, "10.5.0.10", "10.5.0.10", "dns-campus", run),
        ]
        ca = the_lab.state / "pki" / "ca.crt"
        (STATE / "profiles").mkdir(parents=True, exist_ok=True)
        alice = swanctl_profile(STATE / "profiles" / "alice", "alice@123458", ca)
        pw = STATE / "profiles" / "alice.password"
        pw.write_text("alice-pass\n")
        pw.chmod(0o600)
        erin_cert = the_lab.pki_dir / "clients" / "erin.crt"  # as the lab issued it, key beside it
        erin = swanctl_profile(STATE / "profiles" / "erin", "erin@123457", ca,
                               cert_p12=p12_of(erin_cert, erin_cert.with_suffix(".key"),
                                               STATE / "profiles" / "erin.p12"))
        yield World(the_lab, bindir, alice, pw, erin)
    finally:
        problems = []
        for n in (os.listdir(CLIENT_STATE) if CLIENT_STATE.is_dir() else []):
            if n.endswith(".json"):  # a test failed half-way: root cleans up
                r = ikemgr_cm("client", "down", n[:-5], check=False, uid=0)
                if r.returncode != 0:
                    problems.append(r.stderr.strip())
        for pid in pids:  # ours, by pid (the lab's own `down` knows only its pid files)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for ns in (CM, CM_LAN):
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(Path("/etc/netns") / CM, ignore_errors=True)
        stray = sorted(str(p) for p in Path("/etc/netns").glob("ikn-*"))
        for p in stray:
            shutil.rmtree(p, ignore_errors=True)
        the_lab.down()
        assert problems == [], problems
        assert stray == [], f"`client down` left {stray}"
        left = [n for n in procs.namespaces("ikn-")]
        assert left == [], f"namespaces left behind: {left}"
        assert not STATE.exists(), f"{STATE} left behind"
        time.sleep(0.3)
        ps = sh("ps", "-eo", "args").stdout
        assert str(STATE) not in ps, "a test process survived teardown"

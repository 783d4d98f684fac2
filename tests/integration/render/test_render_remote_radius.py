"""The rendered eap-radius.conf with a primary and a secondary remote server, loaded by a real
charon: the plugin loads both servers, and at the first EAP exchange charon scores them
as rendered (the primary is the candidate, the secondary is skipped while both are reachable).

Two charons in namespaces of our own (``netns_pair``, conftest.py), joined by a veth pair on
198.18.0.0/24; the RADIUS servers are addresses nobody answers on: the proof ends at
charon's server choice, which is what the rendered file decides.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import wait_for
from ikemgr.checks.charon import (
    BASE_PLUGINS,
    INITIATOR_PLUGINS,
    LIBIPSEC_PLUGINS,
    RESPONDER_PLUGINS,
    CharonInstance,
)
from ikemgr.cli import app

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[3]
GW, CLIENT = "198.18.0.1", "198.18.0.100"
FQDN = "vpn.example.ac.jp"
PRIMARY, SECONDARY = "198.18.0.10", "198.18.0.20"  # the primary has no host: nobody answers

#: a stand-in for the secondary server's socket: it records the first datagram (hex) and
#: answers nothing; the test checks the address, port and secret charon used
LISTENER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.0.20", 11812))
data, _ = s.recvfrom(4096)
open(sys.argv[1] + ".tmp", "w").write(data.hex() + "\\n")
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
"""


def _message_authenticator_ok(packet: bytes, secret: bytes) -> bool:
    """RFC 3579 Message-Authenticator: HMAC-MD5 over the packet with the attribute zeroed."""
    pos, found = 20, None
    while pos + 2 <= len(packet):
        typ, length = packet[pos], packet[pos + 1]
        if typ == 80 and length == 18:
            found = pos + 2
        pos += max(length, 2)
    if found is None:
        return False
    zeroed = packet[:found] + bytes(16) + packet[found + 16:]
    return hmac.compare_digest(hmac.new(secret, zeroed, hashlib.md5).digest(), packet[found:found + 16])


def _initiate(cl: CharonInstance) -> None:
    """Start a login from the client without waiting for it (it cannot complete here)."""
    subprocess.Popen(["swanctl", "--initiate", "--uri", cl.uri, "--child", "home", "--timeout", "60"],
                     env={**os.environ, "STRONGSWAN_CONF": str(cl.conf)}, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def _private(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def _config(tmp: Path) -> Path:
    text = (ROOT / "examples" / "campus.yaml").read_text()
    local = "radius:\n  address: 127.0.0.1\n  secret_file: /etc/ikemgr/radius.secret\n"
    assert local in text
    a = _private(tmp / "primary.secret", "primary-s3cret")
    b = _private(tmp / "secondary.secret", "secondary-s3cret")
    remote = (f"radius:\n  servers:\n    - {{address: {PRIMARY}, secret_file: {a}}}\n"
              f"    - {{address: {SECONDARY}, auth_port: 11812, acct_port: 11813, secret_file: {b}}}\n")
    text = text.replace(local, remote).replace("address: 192.0.2.1/24", f"address: {GW}/24") \
        .replace("gateway: 192.0.2.254", "gateway: 198.18.0.254")
    cfg = tmp / "campus.yaml"
    cfg.write_text(text)
    return cfg


def _pki(*argv: str) -> bytes:
    return subprocess.run(["pki", *argv], check=True, capture_output=True, timeout=30).stdout


def _wait_for(pred, timeout: float, what: str, charon: CharonInstance) -> None:  # type: ignore[no-untyped-def]
    wait_for(pred, timeout, lambda: f"timed out waiting for {what}: {charon.log_tail(25)}", step=0.2)


def test_rendered_primary_and_secondary_load_into_charon(netns_pair: Callable[..., tuple[str, str]],
                                                         tmp_path: Path) -> None:
    gw_ns, cl_ns = netns_pair(f"{GW}/24", f"{CLIENT}/24", f"{SECONDARY}/32")
    out = tmp_path / "etc"
    r = CliRunner().invoke(app, ["render", "-c", str(_config(tmp_path)), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert not (out / "freeradius").exists()  # remote RADIUS: no FreeRADIUS is rendered
    eap_radius = out / "strongswan.d/ikemgr-eap-radius.conf"

    gw = CharonInstance(tmp_path / "gw", netns=gw_ns,
                        plugins=[*BASE_PLUGINS, *LIBIPSEC_PLUGINS, *RESPONDER_PLUGINS],
                        settings_files=[eap_radius])
    cl = CharonInstance(tmp_path / "cl", netns=cl_ns,
                        plugins=[*BASE_PLUGINS, *LIBIPSEC_PLUGINS, *INITIATOR_PLUGINS])
    gw.prepare()
    gw.install_swanctl_tree(out / "swanctl")
    ca_key = tmp_path / "ca.key"
    ca_key.write_bytes(_pki("--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem"))
    ca = tmp_path / "ca.crt"
    ca.write_bytes(_pki("--self", "--ca", "--in", str(ca_key), "--type", "ecdsa", "--dn", "CN=ikq test CA",
                        "--lifetime", "2", "--outform", "pem"))
    key = gw.swanctl_dir / "private" / "gateway.key"
    key.write_bytes(_pki("--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem"))
    key.chmod(0o600)
    pub = subprocess.run(["pki", "--pub", "--in", str(key), "--type", "ecdsa"], check=True,
                         capture_output=True, timeout=30).stdout
    cert = subprocess.run(["pki", "--issue", "--cacert", str(ca), "--cakey", str(ca_key), "--type", "pub",
                           "--dn", f"CN={FQDN}", "--san", FQDN, "--flag", "serverAuth", "--lifetime", "2",
                           "--outform", "pem"], input=pub, check=True, capture_output=True, timeout=30).stdout
    (gw.swanctl_dir / "x509" / "gateway.crt").write_bytes(cert)
    cl.prepare()
    (cl.swanctl_dir / "x509ca" / "ca.crt").write_bytes(ca.read_bytes())
    (cl.swanctl_dir / "swanctl.conf").write_text(f"""connections {{
    home {{
        version = 2
        remote_addrs = {GW}
        vips = 0.0.0.0
        local {{
            auth = eap-mschapv2
            eap_id = alice@123456
        }}
        remote {{
            auth = pubkey
            id = {FQDN}
        }}
        children {{
            home {{
                remote_ts = 10.0.0.0/8
            }}
        }}
    }}
}}
secrets {{
    eap-alice {{
        id = alice@123456
        secret = "alice-password"
    }}
}}
""")
    captured = tmp_path / "secondary.hex"
    listener = subprocess.Popen(["ip", "netns", "exec", gw_ns, sys.executable, "-c", LISTENER, str(captured)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        gw.start()
        cl.start()
        stats = gw.swanctl("--stats").stdout
        assert "eap-radius" in stats.split("loaded plugins:")[1], stats
        _wait_for(lambda: "loaded 2 RADIUS server configurations" in gw.log.read_text(), 10, "eap-radius load", gw)
        gw.load_all()
        cl.load_all()
        # the first EAP exchange makes charon choose a server: it names both, the primary wins
        # (boost 100 + 100 for free sockets + 110 for reachable, against 0 + 100 + 110)
        _initiate(cl)
        _wait_for(lambda: "RADIUS server 'secondary' skipped" in gw.log.read_text(errors="replace"), 20,
                  "charon's RADIUS server choice", gw)
        text = gw.log.read_text(errors="replace")
        assert "RADIUS server 'primary' is candidate: 310" in text, text[-3000:]
        assert "RADIUS server 'secondary' skipped: 210" in text, text[-3000:]
        assert "sending RADIUS Access-Request to server 'primary'" in text, text[-3000:]
        # nobody answers at the primary's address: charon gives up on it, and the next login
        # goes to the secondary, at the secondary's address and port, signed with its secret
        _wait_for(lambda: "RADIUS Access-Request timed out" in gw.log.read_text(errors="replace"),
                  60, "the primary's timeout", gw)
        _initiate(cl)
        _wait_for(lambda: captured.exists() and captured.stat().st_size > 0, 30,
                  "an Access-Request at the secondary", gw)
        text = gw.log.read_text(errors="replace")
        assert "RADIUS server 'secondary' is candidate: 210" in text, text[-3000:]
        assert "sending RADIUS Access-Request to server 'secondary'" in text, text[-3000:]
        packet = bytes.fromhex(captured.read_text().splitlines()[0])
        assert packet[0] == 1  # Access-Request
        assert _message_authenticator_ok(packet, b"secondary-s3cret")
        assert not _message_authenticator_ok(packet, b"primary-s3cret")
    finally:
        cl.stop()
        gw.stop()
        listener.kill()
        listener.wait(timeout=10)

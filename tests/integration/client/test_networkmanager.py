"""The NetworkManager profile (`ikemgr profile --format networkmanager`) connects in the lab.

A client machine ``ikn-nm`` on the lab's Internet segment runs the real NetworkManager
1.42 with network-manager-strongswan's ``charon-nm``: NetworkManager has a private D-Bus
system bus (its own ``dbus-daemon``), its own keyfile directory and state, and a mount
namespace in which /sys is read-only (NetworkManager then manages devices without udev,
as in a container) and /run/NetworkManager and /var/lib/NetworkManager are private. The
uplink is a keyfile of the test's; the VPN is the keyfile ikemgr generated, loaded by
NetworkManager's keyfile plugin as it is. The only change: the EAP password is stored in
the keyfile (``password-flags=0`` and ``[vpn-secrets]``), where a desktop's secret agent
would ask the user. The lab's kernel has no ESP, so ``charon-nm`` gets kernel-libipsec (a
strongswan.conf of the test's, through STRONGSWAN_CONF), as every charon in this lab.
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
from client_world import LAB_YAML, STATE, World

from helpers import IKEMGR, sh

pytestmark = pytest.mark.root
NS = "ikn-nm"
ADDRESS = "192.0.2.73/24"  # the lab's Internet segment (inside its namespaces only)
CONNECTION = "Example University VPN"
LAB_PORT = 7270
PLUGINS = ("ldap pkcs11 aesni aes rc2 sha2 sha1 md5 mgf1 rdrand random nonce x509 revocation constraints "
           "pkcs1 pkcs7 sshkey pem openssl gcrypt pkcs8 fips-prf gmp curve25519 agent chapoly xcbc cmac hmac "
           "kdf ctr ccm gcm drbg curl kernel-libipsec kernel-netlink socket-default eap-identity eap-md5 "
           "eap-gtc eap-mschapv2 eap-tls eap-ttls")
BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""
UPLINK = f"""[connection]
id=uplink
type=ethernet
interface-name=eth0
autoconnect=true

[ipv4]
method=manual
address1={ADDRESS},192.0.2.254

[ipv6]
method=disabled
"""


@dataclass
class Nm:
    work: Path
    bus: str
    keyfile: Path
    nm_log: Path
    charon_log: Path

    def nmcli(self, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus}
        r = subprocess.run(["nmcli", *args], capture_output=True, text=True, timeout=timeout, env=env)
        if check and r.returncode != 0:
            raise AssertionError(f"nmcli {' '.join(args)}: {r.stdout}{r.stderr}\ncharon-nm: "
                                 f"{self.charon_log.read_text(errors='replace')[-3000:] if self.charon_log.exists() else ''}")
        return r

    def field(self, name: str) -> list[str]:
        out = self.nmcli("-t", "-f", name, "connection", "show", CONNECTION).stdout
        return [ln.split(":", 1)[1] for ln in out.splitlines() if ":" in ln]


def _seen(address: str) -> str:
    r = sh("ip", "netns", "exec", NS, "timeout", "10", "bash", "-c",
           f"exec 3<>/dev/tcp/{address}/{LAB_PORT}; cat <&3", check=False, timeout=20)
    return r.stdout.strip()


@pytest.fixture(scope="module")
def nm(world: World) -> Iterator[Nm]:
    for tool in ("NetworkManager", "nmcli", "dbus-daemon"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (scripts/setup.sh installs network-manager)")
    if not Path("/usr/lib/ipsec/charon-nm").exists():
        pytest.fail("charon-nm is not installed (strongswan-nm, network-manager-strongswan)")
    work = STATE / "nm"
    shutil.rmtree(work, ignore_errors=True)
    (work / "connections").mkdir(parents=True)
    bus = work / "bus"
    (work / "bus.conf").write_text(BUS_CONF.format(socket=bus))
    (work / "NetworkManager.conf").write_text(
        "[main]\nplugins=keyfile\ndhcp=internal\nno-auto-default=*\nauth-polkit=false\ndns=none\n"
        f"rc-manager=unmanaged\n\n[keyfile]\npath={work / 'connections'}\n\n[logging]\nlevel=DEBUG\n")
    charon_log = work / "charon-nm.log"
    (work / "strongswan.conf").write_text(
        f"charon-nm {{\n    load_modular = no\n    load = {PLUGINS}\n    filelog {{\n        nm {{\n"
        f"            path = {charon_log}\n            default = 1\n            ike = 2\n"
        "            flush_line = yes\n        }\n    }\n}\n")
    uplink = work / "connections" / "uplink.nmconnection"
    uplink.write_text(UPLINK)
    uplink.chmod(0o600)
    # the VPN keyfile exactly as ikemgr writes it, from the lab's config and CA
    keyfile = work / "connections" / "alice.nmconnection"
    sh(IKEMGR, "profile", "--user", "alice@123458", "--format", "networkmanager", "--out", str(keyfile),
       "--connect-to", "ip", "--tunnel", "full", "--ca", str(world.lab.state / "pki" / "ca.crt"),
       "-c", str(LAB_YAML))
    made_run = not Path("/run/NetworkManager").exists()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(["dbus-daemon", "--nofork", f"--config-file={work / 'bus.conf'}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        sh("ip", "netns", "add", NS)
        sh("ip", "link", "add", "eth0", "netns", NS, "type", "veth", "peer", "name", "p-nm", "netns",
           world.lab.ns("inet"))
        sh("ip", "-n", world.lab.ns("inet"), "link", "set", "p-nm", "master", "br0", "up")
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        for d in ("/run/NetworkManager", "/var/lib/NetworkManager"):
            os.makedirs(d, exist_ok=True)  # mount points; the mounts are private to NetworkManager
        nm_log = work / "NetworkManager.log"
        script = ("mount -t tmpfs tmpfs /run/NetworkManager && mount -t tmpfs tmpfs /var/lib/NetworkManager "
                  "&& mount -o remount,ro /sys && exec /usr/sbin/NetworkManager --debug --config=\"$1\"")
        with nm_log.open("wb") as out:
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", NS, "unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                 "sh", str(work / "NetworkManager.conf")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus}",
                     "STRONGSWAN_CONF": str(work / "strongswan.conf")}))
        n = Nm(work, f"unix:path={bus}", keyfile, nm_log, charon_log)
        deadline = time.monotonic() + 30
        while "uplink" not in n.nmcli("-t", "-f", "NAME", "connection", "show", "--active", check=False).stdout:
            if time.monotonic() > deadline or procs[-1].poll() is not None:
                raise AssertionError(f"NetworkManager did not bring the uplink up: {nm_log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield n
    finally:
        subprocess.run(["pkill", "-TERM", "-f", "^/usr/lib/ipsec/charon-nm"], check=False)
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        subprocess.run(["pkill", "-KILL", "-f", "^/usr/lib/ipsec/charon-nm"], check=False)
        sh("ip", "netns", "del", NS, check=False)
        if made_run:
            shutil.rmtree("/run/NetworkManager", ignore_errors=True)


def test_the_generated_keyfile_is_what_networkmanager_loads(nm: Nm) -> None:
    assert (nm.keyfile.stat().st_mode & 0o777) == 0o600  # NetworkManager ignores others
    assert nm.field("vpn.service-type") == ["org.freedesktop.NetworkManager.strongswan"]
    data = dict(kv.split(" = ", 1) for kv in nm.field("vpn.data")[0].split(", "))
    assert data["method"] == "eap" and data["user"] == "alice@123458" and data["address"] == "192.0.2.1"
    assert data["remote-identity"] == "vpn.lab.test" and data["password-flags"] == "2"


def test_the_networkmanager_profile_connects_and_follows_the_policy(nm: Nm) -> None:
    # the secret a desktop agent would ask for, stored for this test only
    text = nm.keyfile.read_text().replace("password-flags=2", "password-flags=0")
    nm.keyfile.write_text(text + "\n[vpn-secrets]\npassword=alice-pass\n")
    nm.nmcli("connection", "reload")
    nm.nmcli("--wait", "60", "connection", "up", "id", CONNECTION)
    assert nm.field("GENERAL.STATE") == ["activated"]
    vip = nm.field("IP4.ADDRESS")[0].split("/")[0]
    assert vip.startswith("10.1.0.")  # the gateway's pool
    assert nm.field("IP4.DNS") == ["10.5.0.10"]  # the gateway's pool.dns, handed to NetworkManager
    # alice@123458 is on the allow-list: the lab host of VLAN 123458 sees the VLAN's SNAT address
    assert _seen("192.168.11.51") == "seen 192.168.11.253"
    nm.nmcli("connection", "down", "id", CONNECTION)
    assert CONNECTION not in nm.nmcli("-t", "-f", "NAME", "connection", "show", "--active").stdout
    # the tunnel is gone: the client machine's own default route does not reach the lab host
    assert _seen("192.168.11.51") == ""

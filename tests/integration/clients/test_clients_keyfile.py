"""The NetworkManager keyfile read back by GLib's GKeyFile, the parser NetworkManager uses.

NetworkManager itself is not run here (no system bus on this machine); Debian 12 has
``network-manager-strongswan`` 1.6.0 for a real client. GKeyFile comes from the system
Python's ``gi`` (python3-gi), called in a subprocess with argv only.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from clients_net import FQDN, GW_IP, ikemgr

SYSTEM_PYTHON = "/usr/bin/python3"
READER = """
import json, sys
import gi
gi.require_version("GLib", "2.0")
from gi.repository import GLib
kf = GLib.KeyFile()
kf.load_from_file(sys.argv[1], GLib.KeyFileFlags.NONE)
print(json.dumps({g: {k: kf.get_string(g, k) for k in kf.get_keys(g)[0]} for g in kf.get_groups()[0]}))
"""


def _have_gi() -> bool:
    try:
        r = subprocess.run([SYSTEM_PYTHON, "-c", "import gi"], capture_output=True, timeout=30, check=False)
    except FileNotFoundError:
        return False
    return r.returncode == 0


@pytest.mark.skipif(not _have_gi(), reason="no python3-gi for GLib's GKeyFile")
@pytest.mark.parametrize("user", ["alice@123456", "a.b-c_d@999999999"])
def test_keyfile_as_gkeyfile_reads_it(cfg_file: Path, pki: Path, tmp_path: Path, user: str) -> None:
    out = tmp_path / "nm" / "ikemgr.nmconnection"
    ikemgr("profile", "-c", str(cfg_file), "--user", user, "--format", "networkmanager", "--tunnel", "split",
           "--connect-to", "ip", "--out", str(out))
    r = subprocess.run([SYSTEM_PYTHON, "-c", READER, str(out)], capture_output=True, text=True, timeout=30,
                       check=False)
    assert r.returncode == 0, r.stderr
    kf = json.loads(r.stdout)
    assert kf["connection"]["type"] == "vpn"
    vpn = kf["vpn"]
    assert vpn["service-type"] == "org.freedesktop.NetworkManager.strongswan"
    assert vpn["address"] == GW_IP and vpn["remote-identity"] == FQDN and vpn["user"] == user
    assert vpn["method"] == "eap" and vpn["virtual"] == "yes" and vpn["encap"] == "yes"
    assert vpn["remote-ts"] == "10.0.0.0/8"
    assert vpn["ike"].startswith("aes256-sha256-x25519;") and "default" not in vpn["ike"]
    assert Path(vpn["certificate"]).read_bytes() == (pki / "ca.crt").read_bytes()
    assert oct(out.stat().st_mode & 0o777) == "0o600"

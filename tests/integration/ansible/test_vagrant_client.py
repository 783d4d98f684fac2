"""What of the Vagrant lab can be proven here (no nested virtualisation: the VMs never run).

The swanctl config vagrant/provision/client.sh writes on a client VM is loaded into a
real charon (in a throw-away namespace ``ikt-ans-<random>``); hostile arguments are
refused before anything is written; every provisioning script parses (``bash -n``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ikemgr.checks.charon import CharonInstance

REPO = Path(__file__).resolve().parents[3]
PROVISION = REPO / "vagrant" / "provision"
CLIENT = PROVISION / "client.sh"


def print_conf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CLIENT), "--print-conf", *args], capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.mark.parametrize("script", sorted(p.name for p in PROVISION.glob("*.sh")))
def test_provision_scripts_parse(script: str) -> None:
    p = subprocess.run(["bash", "-n", str(PROVISION / script)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("args, message", [
    (("alice", "alice@123456 }", "pw"), "bad identity"),
    (("alice", 'alice"@123456', "pw"), "bad identity"),
    (("alice", "*@123456", "pw"), "bad identity"),
    (("alice", "alice@12345", "pw"), "bad identity"),
    (("alice", "alice@123456", 'pw" }'), "bad password"),
    (("alice", "alice@123456", "pw\nsecret = x"), "bad password"),
    (("Alice;", "alice@123456", "pw"), "bad name"),
])
def test_client_conf_refuses_hostile_arguments(args: tuple[str, str, str], message: str) -> None:
    p = print_conf(*args)
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.strip() == f"client.sh: {message}"


@pytest.mark.root
@pytest.mark.parametrize("name, identity, password", [("alice", "alice@123456", "alice-pass"),
                                                      ("carol", "carol", "carol-pass")])
def test_client_conf_loads_into_a_real_charon(charon: CharonInstance, name: str, identity: str,
                                              password: str) -> None:
    p = print_conf(name, identity, password)
    assert p.returncode == 0, p.stderr
    (charon.swanctl_dir / "conf.d" / "ikemgr-lab.conf").write_text(p.stdout)
    charon.start()
    loaded = charon.load_all().stdout
    assert "loaded eap secret 'eap-" + name + "'" in loaded, loaded
    assert "loaded connection 'lab'" in loaded, loaded
    conns = charon.swanctl("--list-conns").stdout
    # the connection as charon understood it: IKEv2 to the gateway, EAP-MSCHAPv2 as the
    # identity, the gateway by its certificate, the campus through the tunnel
    assert "lab: IKEv2" in conns and "198.51.100.1" in conns, conns
    assert f"EAP_MSCHAPV2 authentication:\n    eap_id: {identity}" in conns, conns
    assert "public key authentication:\n    id: vpn.lab.test" in conns, conns
    assert "remote: 10.0.0.0/8" in conns, conns

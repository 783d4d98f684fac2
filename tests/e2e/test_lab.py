"""End to end on the namespace lab: real charons, FreeRADIUS, slapd, NAT, kernel policy routing.

Every assertion is about what really happened on the wire or in the kernel: the
source address a destination saw, the rules in the gateway's namespace, the SAs
charon reports, the RADIUS server's decision.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from helpers import IKEMGR, until
from helpers.lab import rules_for
from ikemgr_lab import charons, sourcelog
from ikemgr_lab.runner import Lab

pytestmark = pytest.mark.root


def _status(lab: Lab) -> dict:
    """ikemgr's own view of the gateway's per-user policy (the oracle for every backend)."""
    r = subprocess.run([str(IKEMGR), "status", "-c", str(lab.config_path), "--netns", lab.ns("gw"), "--json"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)["data"]  # type: ignore[no-any-return]


def _user(lab: Lab, vip: str) -> dict | None:
    return next((u for u in _status(lab)["users"] if u["vip"] == vip), None)




def _until(pred, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    return until(pred, timeout, 0.1) is not None


def _seen(lab: Lab, client: str, address: str) -> str | None:
    return sourcelog.probe(lab.ns(client), address, lab.lab.port)


def _lab_host(lab: Lab, vlan: int) -> str:
    return str(next(h.address for h in lab.lab.lab_hosts if h.vlan == vlan))


def _snat(lab: Lab, vlan: int) -> str:
    v = lab.cfg.vlan(vlan)
    assert v is not None
    return str(v.snat_address)


def _radius_log(lab: Lab) -> Path:
    return lab.radius_log


# --------------------------------------------------------------------------- bring-up


def test_up_within_time_budget_and_every_client_connected(lab: Lab, up_result: dict) -> None:
    assert up_result["total_seconds"] <= 60, up_result["phases"]
    connected = {r["client"] for r in up_result["proof"] if r["vip"]}
    assert connected == {c.name for c in lab.lab.clients if c.connect}


def test_every_vip_comes_from_the_pool(lab: Lab) -> None:
    pool = lab.cfg.pool
    vips = [lab.vip(c) for c in lab.lab.clients if c.connect]
    assert all(v is not None for v in vips)
    for v in vips:
        a = ipaddress.ip_address(v)
        assert int(pool.first) <= int(a) <= int(pool.last)
    assert len(set(vips)) == len(vips), "two clients share a VIP"


def test_ping_and_tcp_through_the_tunnel(lab: Lab) -> None:
    ns = lab.ns("carol")
    ping = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "2", "-W", "2", str(lab.lab.campus.server)],
                          capture_output=True, text=True, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # the packets went through ESP: the client's CHILD_SA counted them
    sas = charons.list_sas(lab.client_charon(lab.lab.client("carol")).vici_path)
    child = next(iter(sas[0]["child-sas"].values()))
    assert int(child["packets-out"]) >= 2 and int(child["packets-in"]) >= 2
    assert _seen(lab, "carol", str(lab.lab.campus.server)) is not None


def test_campus_server_sees_the_vip_of_a_plain_user(lab: Lab) -> None:
    for name in ("carol", "bob"):
        vip = lab.vip(lab.lab.client(name))
        assert _seen(lab, name, str(lab.lab.campus.server)) == vip
    log = (lab.state / "seen" / "csrv.log").read_text().split()
    assert lab.vip(lab.lab.client("carol")) in log


def test_internet_sees_the_gateways_global_address(lab: Lab) -> None:
    outside = str(lab.cfg.gateway.outside.address.ip)
    for c in lab.lab.clients:
        if c.connect:
            assert _seen(lab, c.name, str(lab.lab.internet.server)) == outside, c.name


def test_nat_traversal_for_the_client_behind_the_home_router(lab: Lab) -> None:
    alice = lab.lab.client("alice")
    vip = lab.vip(alice)
    gw_sa = next(sa for sa in lab.gateway_sas() if vip in sa.get("remote-vips", []))
    # the gateway sees the home router's address, not the client's private one
    assert gw_sa["remote-host"] == str(lab.lab.home.wan)
    assert gw_sa["remote-host"] != str(alice.address)
    assert gw_sa["local-port"] == "4500" and gw_sa["nat-remote"] == "yes"
    # the client itself detected the NAT (not just forced encapsulation)
    client_sa = charons.list_sas(lab.client_charon(alice).vici_path)[0]
    assert client_sa["nat-local"] == "yes"
    assert client_sa["local-port"] == "4500" and client_sa["remote-port"] == "4500"
    # a client without NAT in front of it sees no local NAT
    erin_sa = charons.list_sas(lab.client_charon(lab.lab.client("erin")).vici_path)[0]
    assert erin_sa.get("nat-local", "no") == "no"


# --------------------------------------------------------------------------- per-user policy


def test_alice_reaches_her_lab_vlan_as_broadcast_minus_2(lab: Lab) -> None:
    host, snat = _lab_host(lab, 123456), _snat(lab, 123456)
    assert _until(lambda: _seen(lab, "alice", host) == snat), _seen(lab, "alice", host)
    assert snat in (lab.state / "seen" / "lab1.log").read_text().split()
    # her campus traffic also leaves through the lab VLAN
    assert _seen(lab, "alice", str(lab.lab.campus.server)) == snat
    # and ikemgr's status shows her session as charon counts it: since when, bytes both ways
    vip = lab.vip(lab.lab.client("alice"))
    assert vip is not None
    me = _user(lab, vip)
    assert me is not None and me["identity"] == "alice@123456" and me["vlan"] == 123456, me
    assert me["in_kernel"] is True and me["bytes_in"] > 0 and me["bytes_out"] > 0, me
    since = datetime.fromisoformat(me["since"])
    assert timedelta(0) <= datetime.now(UTC) - since < timedelta(hours=1), me


def test_eap_tls_user_reaches_the_second_vlan(lab: Lab) -> None:
    host, snat = _lab_host(lab, 123457), _snat(lab, 123457)
    assert _until(lambda: _seen(lab, "erin", host) == snat), _seen(lab, "erin", host)


def test_bob_and_carol_never_reach_a_lab_vlan_with_its_snat_address(lab: Lab) -> None:
    snats = {str(v.snat_address) for v in lab.cfg.vlans}
    for name in ("bob", "carol"):
        vip = lab.vip(lab.lab.client(name))
        for h in lab.lab.lab_hosts:
            seen = _seen(lab, name, str(h.address))
            assert seen not in snats, f"{name} reached {h.address} as {seen}"
            assert seen == vip  # the general campus path: the VIP, unchanged
        assert rules_for(lab, vip) == []
        user = _user(lab, vip)
        assert user is not None and user["in_kernel"] is False
        assert user["outcome"] == ("not-on-list" if name == "bob" else "no-vlan")


def test_disconnect_removes_alices_rule_and_reconnect_restores_it(lab: Lab) -> None:
    alice = lab.lab.client("alice")
    vip = lab.vip(alice)
    assert _until(lambda: len(rules_for(lab, vip)) == 1)
    user = _user(lab, vip)
    assert user is not None and user["outcome"] == "allowed"
    assert user["in_kernel"] is True and user["kernel_vlan"] == 123456
    rule = rules_for(lab, vip)[0]
    assert rule["table"] == "gw123456"
    assert rule["dst"] == "10.0.0.0" and rule["dstlen"] == 8
    r = lab.disconnect(alice)
    assert r.returncode == 0, r.stdout
    assert _until(lambda: rules_for(lab, vip) == []), rules_for(lab, vip)
    assert lab.vip(alice) is None
    assert _user(lab, vip) is None and _status(lab)["out_of_sync"] == 0
    r = lab.connect(alice)
    assert r.returncode == 0, r.stdout
    new_vip = lab.vip(alice)
    assert new_vip is not None
    assert _until(lambda: len(rules_for(lab, new_vip)) == 1)
    assert _until(lambda: (_user(lab, new_vip) or {}).get("in_kernel") is True)
    host, snat = _lab_host(lab, 123456), _snat(lab, 123456)
    assert _until(lambda: _seen(lab, "alice", host) == snat)


# --------------------------------------------------------------------------- RADIUS says no


def test_wrong_password_is_rejected_by_radius(lab: Lab) -> None:
    mallory = lab.lab.client("mallory")
    before = _radius_log(lab).read_text(errors="replace")
    r = lab.connect(mallory, timeout=10)
    assert r.returncode != 0
    assert "EAP_FAILURE" in r.stdout
    after = _radius_log(lab).read_text(errors="replace")[len(before):]
    assert 'User-Name = "alice@123456"' in after
    # the account exists (LDAP found it and its NT hash): the password is what was wrong
    assert 'User object found at DN "uid=alice,ou=people,dc=lab,dc=test"' in after
    assert "MS-CHAP2-Response is incorrect" in after
    assert "Sent Access-Reject" in after
    assert lab.vip(mallory) is None
    assert not [sa for sa in lab.gateway_sas() if sa.get("remote-host") == str(lab.lab.home.wan)
                and sa.get("state") == "ESTABLISHED" and not sa.get("remote-vips")]


def test_certificate_of_another_organisation_is_rejected_by_radius(lab: Lab) -> None:
    frank = lab.lab.client("frank")
    before = _radius_log(lab).read_text(errors="replace")
    r = lab.connect(frank, timeout=10)
    assert r.returncode != 0
    assert "EAP_FAILURE" in r.stdout
    after = _radius_log(lab).read_text(errors="replace")[len(before):]
    assert "ikemgr: certificate subject /C=JP/O=Other University/CN=frank lacks C=JP, O=Lab University" in after
    assert "Sent Access-Reject" in after
    assert lab.vip(frank) is None


# --------------------------------------------------------------------------- client profiles


def _tree(d: Path) -> dict[str, tuple[bytes, int]]:
    return {str(f.relative_to(d)): (f.read_bytes(), f.stat().st_mode & 0o777)
            for f in sorted(d.rglob("*")) if f.is_file()}


def test_client_swanctl_dirs_are_what_ikemgr_profile_writes(lab: Lab, tmp_path: Path) -> None:
    """Each client charon runs the Linux profile a user is handed, byte for byte."""
    for name in ("alice", "carol", "mallory"):
        c = lab.lab.client(name)
        pw = tmp_path / f"{name}.pw"
        pw.write_text(f"{c.password}\n")
        out = tmp_path / name
        r = subprocess.run([str(IKEMGR), "profile", "-c", str(lab.config_path), "--user", c.identity,
                            "--format", "swanctl", "--connect-to", "ip", "--tunnel", "full",
                            "--password-file", str(pw), "--ca", str(lab.pki_dir / "ca.crt"),
                            "--out", str(out), "--json"], capture_output=True, text=True, timeout=60,
                           check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _tree(lab.client_charon(c).swanctl_dir) == _tree(out), name
    for name in ("erin", "frank"):
        c = lab.lab.client(name)
        files = {f.path: (f.data, f.mode) for f in lab.client_profile(c)}
        assert _tree(lab.client_charon(c).swanctl_dir) == files, name


def test_clients_run_the_profiles_connection_with_a_full_tunnel(lab: Lab) -> None:
    for name in ("alice", "erin"):
        sa = next(sa for sa in charons.list_sas(lab.client_charon(lab.lab.client(name)).vici_path)
                  if sa.get("state") == "ESTABLISHED")
        assert sa["name"] == lab.client_conn == lab.cfg.strongswan.connection
        (child,) = sa["child-sas"].values()
        assert child["name"] == lab.client_conn and child["remote-ts"] == ["0.0.0.0/0"]
        assert sa["remote-host"] == str(lab.cfg.gateway.outside.address.ip)


# --------------------------------------------------------------------------- the commands


def _cli(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(IKEMGR), "lab", *args, "-c", str(lab.config_path), "--json"],
                          capture_output=True, text=True, timeout=120, check=False)


def test_lab_status_and_test_commands(lab: Lab) -> None:
    r = _cli(lab, "status")
    assert r.returncode == 0, r.stdout + r.stderr
    st = json.loads(r.stdout)["data"]
    assert sorted(st["namespaces"]) == sorted(st["expected_namespaces"])
    assert all(d["alive"] for d in st["daemons"])
    ids = {s["identity"] for s in st["sas"] if s["state"] == "ESTABLISHED"}
    assert {"alice@123456", "bob@123456", "carol", "erin@123457"} <= ids
    r = _cli(lab, "test")
    out = json.loads(r.stdout)
    assert r.returncode == 0, out["data"]["problems"]
    assert out["data"]["problems"] == []
    assert len(out["data"]["proof"]) == 4

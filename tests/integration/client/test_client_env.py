"""`ikemgr client` in the namespace lab: real charons, FreeRADIUS, slapd, dnsmasq, the kernel.

The tests run in file order and share two environments: ``ikn-a`` (alice@123458,
EAP-MSCHAPv2, allow-listed for the campus lab network 192.168.11.0/24) and ``ikn-b``
(erin@123457, EAP-TLS). Both are made with ``ip netns exec ikn-cm ikemgr client up``,
so their uplinks are in the client machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from client_world import (
    CLIENT_STATE,
    CM,
    DNS_NAME,
    ECHO_PORT,
    OTHER,
    OWNER,
    World,
    as_user,
    ikemgr_cm,
)

from helpers import IKEMGR, sh

pytestmark = pytest.mark.root  # real lab, real daemons

POOL_PREFIX = "10.1.0."
LAB_PORT = 7270  # the lab's source-logging servers: "seen <source address>"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def host_snapshot() -> dict[str, str]:
    """What a VPN must not change on the client machine: routes, rules, nftables, DNS."""
    return {
        "routes": sh("ip", "-n", CM, "route", "show", "table", "all").stdout,
        "routes6": sh("ip", "-n", CM, "-6", "route", "show", "table", "all").stdout,
        "rules": sh("ip", "-n", CM, "rule").stdout,
        "rules6": sh("ip", "-n", CM, "-6", "rule").stdout,
        "nft": sh("ip", "netns", "exec", CM, "nft", "list", "ruleset").stdout,
        "links": " ".join(sorted(ln.split(":")[1].strip().split("@")[0] for ln in
                                 sh("ip", "-n", CM, "-o", "link").stdout.splitlines())),
        "ip_forward": sh("ip", "netns", "exec", CM, "sysctl", "-n", "net.ipv4.ip_forward").stdout,
        "resolv.conf": _sha(Path("/etc/resolv.conf")),
        "cm resolv.conf": _sha(Path("/etc/netns") / CM / "resolv.conf"),
    }


NOBODY = 65534  # a user with a passwd entry: exec takes the --init-groups path for it


def _up(name: str, profile: Path, password: Path | None = None, uid: int = OWNER) -> dict[str, Any]:
    args = ["client", "up", name, "--profile", str(profile), "--json"]
    if password is not None:
        args += ["--password-file", str(password)]
    r = ikemgr_cm(*args, uid=uid, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)["data"]  # type: ignore[no-any-return]


class Holder:
    """A TCP connection the client machine opened before `client up` (echoes lines)."""

    def __init__(self, world: World) -> None:
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", CM, "setpriv", "--reuid", str(OWNER), "--regid", str(OWNER),
             "--clear-groups", "--", "/usr/bin/python3", str(world.bin / "probe.py"), "--hold",
             "192.168.11.51", str(ECHO_PORT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.readline() == "local"

    def readline(self) -> str:
        assert self.p.stdout is not None
        return self.p.stdout.readline().strip()

    def echo(self, word: str) -> str:
        assert self.p.stdin is not None
        self.p.stdin.write(word + "\n")
        self.p.stdin.flush()
        return self.readline()

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(5)


@pytest.fixture(scope="module")
def scene(world: World) -> Any:
    before = host_snapshot()
    holder = Holder(world)
    assert holder.echo("before-up") == "before-up"
    state: dict[str, Any] = {"before": before, "holder": holder}
    yield state
    holder.close()


# --------------------------------------------------------------------------- hostile input

HOSTILE = ["a/b", "..", "../x", "a b", "a;id", "$(id)", "`id`", "a|b", "a&b", "a>b", "é", "x" * 12,
           "-a", "A", "a\nb", "a*", "", "a-"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_refused_before_anything(world: World, name: str) -> None:
    def ours(d: str) -> list[str]:
        # other test runs share /run/netns: compare our prefix and the name itself
        return sorted(n for n in os.listdir(d) if n.startswith("ikn-") or (name and name in n))

    before = (ours("/run/netns"), ours("/etc/netns"), host_snapshot()["links"],
              sorted(os.listdir(CLIENT_STATE)) if CLIENT_STATE.exists() else [])
    r = ikemgr_cm("client", "up", "--profile", str(world.alice_profile), "--password-file",
                  str(world.alice_password), "--", name, check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: environment name "), r.stderr
    assert "refused" in lines[0]
    after = (ours("/run/netns"), ours("/etc/netns"), host_snapshot()["links"],
             sorted(os.listdir(CLIENT_STATE)) if CLIENT_STATE.exists() else [])
    assert after == before


def test_non_utf8_name_refused(world: World) -> None:
    r = subprocess.run([b"ip", b"netns", b"exec", CM.encode(), os.fsencode(IKEMGR),
                        b"client", b"up", b"ab\xff", b"--profile", os.fsencode(world.alice_profile)],
                       capture_output=True, env=as_user(OWNER), timeout=30, check=False)
    assert r.returncode == 2, r
    assert len(r.stderr.strip().splitlines()) == 1
    assert not Path("/run/netns/ab\udcff").exists()


# --------------------------------------------------------------------------- the scenario


def _host_side(scene: dict[str, Any]) -> str:
    return str(IPv4Network(scene["a"]["uplink"]).network_address + 1)


def _connect_errno(env: str, address: str) -> str:
    """errno of a TCP connect from inside ``env`` to port 9 of ``address`` (None: timed out)."""
    r = ikemgr_cm("client", "exec", env, "--", "/usr/bin/python3", "-c",
                  "import socket\ns = socket.socket(); s.settimeout(3)\n"
                  f"try:\n    s.connect(('{address}', 9))\nexcept OSError as e:\n    print(e.errno)")
    return r.stdout.strip()


def test_wrong_password_fails_and_leaves_nothing(world: World, tmp_path: Path) -> None:
    before = host_snapshot()
    bad = tmp_path / "bad.password"
    bad.write_text("wrong-pass\n")
    r = ikemgr_cm("client", "up", "ikn-x", "--profile", str(world.alice_profile), "--password-file",
                  str(bad), "--timeout", "10", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.startswith("error: the tunnel to vpn.lab.test did not come up"), r.stderr
    assert host_snapshot() == before
    assert not Path("/run/netns/ikn-x").exists() and not Path("/etc/netns/ikn-x").exists()
    assert not (CLIENT_STATE / "ikn-x.json").exists() and not (CLIENT_STATE / "ikn-x").exists()


def test_ikemgr_killed_during_up_then_down(world: World) -> None:
    """SIGKILL of `client up` itself once its charon runs: `down` still removes everything."""
    before = host_snapshot()
    p = subprocess.Popen(["ip", "netns", "exec", CM, IKEMGR, "client", "up", "ikn-k", "--profile",
                          str(world.alice_profile), "--password-file", str(world.alice_password)],
                         env=as_user(OWNER), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rec = CLIENT_STATE / "ikn-k.json"
    deadline = time.monotonic() + 30
    while not (rec.exists() and "charon" in json.loads(rec.read_text() or "{}").get("pids", {})):
        assert p.poll() is None and time.monotonic() < deadline, "up ended before its charon ran"
        time.sleep(0.02)
    p.kill()  # ip netns exec execs in place: this is ikemgr itself
    p.wait(5)
    assert Path("/run/netns/ikn-k").exists()
    r = ikemgr_cm("client", "down", "ikn-k")
    assert "namespace ikn-k" in r.stdout
    assert host_snapshot() == before
    assert not Path("/run/netns/ikn-k").exists() and not rec.exists()
    assert str(CLIENT_STATE / "ikn-k") not in sh("ps", "-eo", "args").stdout


def test_up_reports_identity_and_vip(world: World, scene: dict[str, Any]) -> None:
    a = _up("ikn-a", world.alice_profile, world.alice_password)
    assert a["identity"] == "alice@123458"
    assert a["vip"].startswith(POOL_PREFIX)
    assert a["dns"] == ["10.5.0.10"]
    assert a["ipsec"] == "libipsec"  # this kernel has no ESP: detected, not configured
    assert a["state"] == "ESTABLISHED"
    rec = json.loads((CLIENT_STATE / "ikn-a.json").read_text())
    assert rec["owner_uid"] == OWNER and rec["vip"] == a["vip"]
    assert (CLIENT_STATE.stat().st_mode & 0o777) == 0o700
    # the password lives only in the environment's private swanctl.conf (0600)
    private = CLIENT_STATE / "ikn-a" / "swanctl" / "swanctl.conf"
    assert "alice-pass" in private.read_text() and (private.stat().st_mode & 0o777) == 0o600
    assert "alice-pass" not in json.dumps(a) and "alice-pass" not in json.dumps(rec)
    assert Path("/etc/netns/ikn-a/resolv.conf").read_text().splitlines()[-1] == "nameserver 10.5.0.10"
    scene["a"] = a
    assert scene["holder"].echo("after-up") == "after-up"
    again = ikemgr_cm("client", "up", "ikn-a", "--profile", str(world.alice_profile),
                      "--password-file", str(world.alice_password), check=False)
    assert again.returncode == 4 and "environment ikn-a exists" in again.stderr


def test_same_address_two_networks_at_once(world: World, scene: dict[str, Any]) -> None:
    """The client machine reaches its LAN's 192.168.11.51 while the environment reaches the campus one."""
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    barrier = threading.Barrier(2)

    def run(key: str, env: str | None) -> None:
        barrier.wait()
        results[key] = world.probe(env, "192.168.11.51")

    ts = [threading.Thread(target=run, args=("host", None)), threading.Thread(target=run, args=("env", "ikn-a"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert results["host"].stdout.strip() == "local", results["host"]
    assert results["env"].stdout.strip() == "campus", results["env"]


def test_dns_differs_inside_and_outside(world: World, scene: dict[str, Any]) -> None:
    inside = ikemgr_cm("client", "exec", "ikn-a", "--", "getent", "ahostsv4", DNS_NAME, check=False)
    outside = sh("ip", "netns", "exec", CM, "getent", "ahostsv4", DNS_NAME, check=False)
    assert inside.stdout.split()[0] == "10.5.0.10", inside
    assert outside.stdout.split()[0] == "192.168.11.51", outside
    assert _sha(Path("/etc/resolv.conf")) == scene["before"]["resolv.conf"]


def test_exec_runs_as_the_invoking_user(world: World, scene: dict[str, Any]) -> None:
    r = ikemgr_cm("client", "exec", "ikn-a", "--", "id", "-u")
    assert r.stdout.strip() == str(OWNER)
    r = ikemgr_cm("client", "exec", "ikn-a", "--", "sh", "-c", "exit 7", check=False)
    assert r.returncode == 7  # the program's own exit code
    # argv is passed as is: no shell ever sees it
    r = ikemgr_cm("client", "exec", "ikn-a", "--", "echo", "$(id)", ";", "|")
    assert r.stdout.strip() == "$(id) ; |"


def test_second_environment_other_identity(world: World, scene: dict[str, Any]) -> None:
    b = _up("ikn-b", world.erin_profile, uid=NOBODY)  # another user's environment
    assert b["identity"] == "erin@123457" and b["owner_uid"] == NOBODY
    assert b["vip"].startswith(POOL_PREFIX) and b["vip"] != scene["a"]["vip"]
    assert b["uplink"] != scene["a"]["uplink"]
    scene["b"] = b
    # each program is in exactly one environment: the campus server sees each one's path
    seen_a = world.probe("ikn-a", "10.5.0.10", LAB_PORT).stdout.strip()
    seen_b = world.probe("ikn-b", "10.5.0.10", LAB_PORT, uid=NOBODY).stdout.strip()
    assert seen_a == "seen 192.168.11.253"  # alice@123458: the VLAN 123458 SNAT address
    assert seen_b == "seen 10.2.1.253"  # erin@123457: the VLAN 123457 SNAT address
    host = world.probe(None, "10.5.0.10", LAB_PORT)
    assert host.returncode != 0  # the client machine itself has no way into the campus
    for env, uid in (("ikn-a", OWNER), ("ikn-b", NOBODY)):
        ino = os.stat(f"/run/netns/{env}").st_ino
        r = ikemgr_cm("client", "exec", env, "--", "stat", "-L", "-c", "%i", "/proc/self/ns/net", uid=uid)
        assert int(r.stdout) == ino
    # nobody runs with its passwd groups (setpriv --init-groups) and HOME
    r = ikemgr_cm("client", "exec", "ikn-b", "--", "sh", "-c", 'id -u; id -G; echo "$HOME"', uid=NOBODY)
    assert r.stdout.split() == [str(NOBODY), str(NOBODY), "/nonexistent"]
    # each environment is private to its owner, in both directions
    assert ikemgr_cm("client", "exec", "ikn-b", "--", "true", check=False).returncode == 4
    assert ikemgr_cm("client", "exec", "ikn-a", "--", "true", uid=NOBODY, check=False).returncode == 4
    assert os.stat("/run/netns/ikn-a").st_ino != os.stat("/run/netns/ikn-b").st_ino


def test_list_shows_both(world: World, scene: dict[str, Any]) -> None:
    r = ikemgr_cm("client", "list", "--json", uid=0)
    envs = {e["name"]: e for e in json.loads(r.stdout)["data"]["environments"]}
    assert set(envs) == {"ikn-a", "ikn-b"}
    assert envs["ikn-a"]["identity"] == "alice@123458" and envs["ikn-b"]["identity"] == "erin@123457"
    assert envs["ikn-a"]["vip"] == scene["a"]["vip"]
    assert all(e["state"] == "ESTABLISHED" and e["bytes_in"] > 0 and e["bytes_out"] > 0
               for e in envs.values())
    text = ikemgr_cm("client", "list", uid=0).stdout
    assert "alice@123458" in text and "erin@123457" in text


def test_other_user_refused(world: World, scene: dict[str, Any]) -> None:
    r = ikemgr_cm("client", "exec", "ikn-a", "--", "id", "-u", uid=OTHER, check=False)
    assert r.returncode == 4
    assert r.stderr.strip().splitlines() == [
        f"error: environment ikn-a belongs to uid {OWNER}; uid {OTHER} may not use it"]
    r = ikemgr_cm("client", "down", "ikn-a", uid=OTHER, check=False)
    assert r.returncode == 4
    # and no other way in: entering a netns needs CAP_SYS_ADMIN
    drop = ["setpriv", "--reuid", str(OTHER), "--regid", str(OTHER), "--clear-groups", "--"]
    r = sh("ip", "netns", "exec", CM, *drop, "nsenter", "--net=/run/netns/ikn-a", "true", check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
    r = sh("ip", "netns", "exec", CM, *drop, "ip", "netns", "exec", "ikn-a", "true", check=False)
    assert r.returncode != 0, r
    # nor through it: the environment forwards nothing and accepts nothing new from its uplink
    assert sh("ip", "netns", "exec", "ikn-a", "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"
    env_nft = sh("ip", "netns", "exec", "ikn-a", "nft", "list", "ruleset").stdout
    assert 'iifname "uplink0" drop' in env_nft
    # a program in the environment does not reach the client machine over the uplink: the
    # host-side address is routed into the tunnel (a refused connection, 111, would mean
    # the client machine answered)
    assert _connect_errno("ikn-a", _host_side(scene)) != "111"


def test_down_elsewhere_is_refused_and_touches_nothing(world: World, scene: dict[str, Any]) -> None:
    """`down` from another network namespace than `up` ran in: refused before anything is removed."""
    r = sh(IKEMGR, "client", "down", "ikn-a", env=as_user(OWNER), check=False)
    assert r.returncode == 4 and "made in another network namespace" in r.stderr, r
    assert world.probe("ikn-a", "192.168.11.51").stdout.strip() == "campus"  # still up


def test_down_and_crash_leave_the_host_as_before(world: World, scene: dict[str, Any]) -> None:
    r = ikemgr_cm("client", "down", "ikn-b", uid=NOBODY)
    assert "namespace ikn-b" in r.stdout
    # a crashed client: SIGKILL its charon, then `client down`
    pid = json.loads((CLIENT_STATE / "ikn-a.json").read_text())["pids"]["charon"]
    os.kill(pid, signal.SIGKILL)
    listed = json.loads(ikemgr_cm("client", "list", "--json", uid=0).stdout)["data"]["environments"]
    assert [e["state"] for e in listed] == ["CHARON GONE"]
    # the tunnel is gone, and so is every way out: nothing leaks around it via the uplink
    leak = world.probe("ikn-a", "203.0.113.10", LAB_PORT)
    assert leak.returncode != 0 and not leak.stdout.startswith("seen"), leak
    bound = ikemgr_cm("client", "exec", "ikn-a", "--", "/usr/bin/python3", "-c",
                      "import socket; s = socket.socket(); s.settimeout(3); "
                      "s.bind(('169.254.64.2', 0)); s.connect(('203.0.113.10', 7270))", check=False)
    assert bound.returncode != 0, bound
    # with the tunnel's routes gone the uplink's /30 is the only route left, and the
    # environment's nft output chain drops it: the SYN never reaches the client machine
    # (a timeout, None; 111 would be the client machine's RST)
    assert _connect_errno("ikn-a", _host_side(scene)) == "None"
    ikemgr_cm("client", "down", "ikn-a")
    assert scene["holder"].echo("after-down") == "after-down"
    assert host_snapshot() == scene["before"]
    assert not Path("/run/netns/ikn-a").exists() and not Path("/run/netns/ikn-b").exists()
    assert not Path("/etc/netns/ikn-a").exists() and not Path("/etc/netns/ikn-b").exists()
    assert [n for n in os.listdir(CLIENT_STATE) if n != ".lock"] == []
    ps = sh("ps", "-eo", "args").stdout
    assert str(CLIENT_STATE) not in ps
    # down again: nothing left to remove is an error that says so
    r = ikemgr_cm("client", "down", "ikn-a", check=False)
    assert r.returncode == 2 and r.stderr.strip() == "error: no environment ikn-a"

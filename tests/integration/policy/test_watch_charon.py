"""`ikemgr watch` against real charons: a gateway and a client in their own namespaces,
IKEv2 with PSK (EAP through FreeRADIUS is the e2e lab's business; the policy only needs
real SAs, real VICI events and real VIPs from charon's pool)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_for
from ikemgr.adapters import vici
from ikemgr.checks.charon import BASE_PLUGINS, CHARON, LIBIPSEC_PLUGINS, CharonInstance
from ikemgr.core.identity import shown

from .conftest import IKEMGR, Lab, sh

pytestmark = pytest.mark.root

GW_CONF = """connections {
  kuins {
    version = 2
    pools = pool
    encap = yes
    unique = never
    rekey_time = 0s
    proposals = aes256-sha256-x25519
    local { auth = psk
            id = vpn.example.test }
    remote { auth = psk
             id = %any }
    children { kuins { local_ts = 10.20.0.0/16
                       esp_proposals = aes256-sha256
                       rekey_time = 0s
                       %UPDOWN% } }
  }
}
pools { pool { addrs = 10.1.0.10-10.1.0.250 } }
secrets { ike-all { secret = "lab-psk-not-secret" } }
"""

CLIENT_CONN = """  {name} {{
    version = 2
    remote_addrs = {gw}
    vips = 0.0.0.0
    encap = yes
    rekey_time = {ike_rekey}
    reauth_time = {reauth}
    over_time = 60s
    proposals = aes256-sha256-x25519
    local {{ auth = psk
             id = {ident} }}
    remote {{ auth = psk
              id = vpn.example.test }}
    children {{ {name} {{ remote_ts = 10.20.0.0/16
                         esp_proposals = aes256-sha256
                         rekey_time = {child_rekey}
                         life_time = 60s }} }}
  }}
"""
USERS = {"alice": "alice@123456", "bob": "bob@123456", "carol": "carol@123457",
         # short lifetimes: frank's IKE_SA rekeys every ~3 s and his CHILD_SA every ~2 s,
         # gina reauthenticates (make-before-break) every ~3 s; the hard lifetimes stay long
         # (over_time, life_time), or charon would delete the old SA before its successor is up
         "frank": "frank@123457", "gina": "gina@123456"}
LIFETIMES = {"frank": {"ike_rekey": "3s", "child_rekey": "2s"}, "gina": {"reauth": "3s"}}


def client_conn(name: str, ident: str, gw: str) -> str:
    times = {"ike_rekey": "0s", "child_rekey": "0s", "reauth": "0s", **LIFETIMES.get(name, {})}
    return CLIENT_CONN.format(name=name, ident=ident, gw=gw, **times)
SECRETS = 'secrets { ike-all { secret = "lab-psk-not-secret" } }\n'


@dataclass
class Ike:
    lab: Lab
    gw: CharonInstance
    client: CharonInstance
    client2: CharonInstance  # alice's second device
    backend: str
    cfg: Path
    allow: Path
    watch_log: Path
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    store: bool = False  # the allow-list from the config's database, not the allow file

    def start_watch(self, env: dict[str, str] | None = None) -> None:
        self.watch_log.parent.mkdir(exist_ok=True)
        connected = len(self.log_events("connected")) if self.watch_log.exists() else 0
        out = open(self.watch_log, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [str(IKEMGR), "watch", "--config", str(self.cfg), "--netns", self.lab.ns,
                 *([] if self.store else ["--allow-file", str(self.allow)]), "--log-format", "json",
                 "--tick", "0.1", *(["--metrics-port", str(self.metrics_port)] if self.metrics_port else [])],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, **env} if env else None)
        finally:
            out.close()
        wait_for(lambda: len(self.log_events("connected")) > connected, 20, "watch did not connect")

    def kill_watch(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=10)
        self.proc = None
        return rc

    def log_events(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == event]

    def records(self) -> list[dict[str, Any]]:
        """Every JSON record watch logged, in order."""
        out = []
        for line in self.watch_log.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def metric(self, name: str) -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in the metrics")

    def reconfigure(self, name: str, **extra: Any) -> None:
        """Rewrite the config (same backend, gateway socket and state) with ``extra`` merged in."""
        self.cfg = self.lab.config(self.backend, name=name, strongswan={"vici_socket": self.gw.uri}, **extra)

    def enable_hook(self) -> None:
        """Hook mode: charon runs the shipped updown wrapper, which runs `ikemgr hook`."""
        wrapper = IKEMGR.parents[2] / "scripts" / "ikemgr-updown"
        line = f"updown = {wrapper} --config {self.cfg} --allow-file {self.allow}"
        (self.gw.swanctl_dir / "conf.d" / "test.conf").write_text(GW_CONF.replace("%UPDOWN%", line))
        self.gw.load_all()

    def _inst(self, name: str) -> CharonInstance:
        return self.client2 if name == "alice2" else self.client

    def initiate(self, name: str) -> None:
        self._inst(name).swanctl("--initiate", "--child", name, "--timeout", "20")

    def terminate(self, name: str) -> None:
        self._inst(name).swanctl("--terminate", "--ike", name, "--timeout", "20")

    def command(self, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """``ikemgr NAME`` on this gateway's config, namespace and allow file, with --json."""
        return self.lab.ikemgr(name, "--config", str(self.cfg), "--netns", self.lab.ns, "--allow-file",
                               str(self.allow), *extra, "--json")

    def vips(self) -> dict[str, str]:
        """identity → VIP, as the gateway's charon sees it (list-sas, waiting for busy SAs)."""
        s = vici.CommandSession(vici.connect(self.gw.uri))
        try:
            out: dict[str, str] = {}
            for sa in s.list_sas(wait=True):
                ident = sa.identity_raw.decode() if isinstance(sa.identity_raw, bytes) else str(sa.identity_raw)
                for v in sa.vips:
                    out.setdefault(f"{ident}#{sa.uniqueid}", str(v))
            return out
        finally:
            s.close()



@pytest.fixture(params=["marks", "rules"])
def ike(tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ike]:
    # charon hands its PATH to updown scripts: let the wrapper find this checkout's ikemgr
    monkeypatch.setenv("PATH", f"{IKEMGR.parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}")
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if not Path("/usr/lib/ipsec/charon").exists():
        pytest.skip("charon is not installed")
    ns = "ikt-p-" + secrets.token_hex(3)
    cns, c2ns = ns + "c", ns + "d"
    gw = client = client2 = None
    lab = Lab(ns, tmp_path)
    try:
        for n in (ns, cns, c2ns):
            sh("ip", "netns", "add", n)
            sh("ip", "-n", n, "link", "set", "lo", "up")
        for i, (peer, gw_addr, c_addr) in enumerate(((cns, "192.0.2.1/24", "192.0.2.100/24"),
                                                     (c2ns, "198.18.5.1/24", "198.18.5.100/24"))):
            sh("ip", "link", "add", f"o-{peer[-7:]}", "type", "veth", "peer", "name", f"c-{peer[-7:]}")
            sh("ip", "link", "set", f"o-{peer[-7:]}", "netns", ns, "name", f"out{i}")
            sh("ip", "link", "set", f"c-{peer[-7:]}", "netns", peer, "name", "eth0")
            sh("ip", "-n", ns, "addr", "add", gw_addr, "dev", f"out{i}")
            sh("ip", "-n", peer, "addr", "add", c_addr, "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", f"out{i}", "up")
            sh("ip", "-n", peer, "link", "set", "eth0", "up")
        # kernel-libipsec routes the VIP via ipsec0 with a source inside local_ts
        sh("ip", "-n", ns, "addr", "add", "10.20.0.1/32", "dev", "lo")
        plugins = [*BASE_PLUGINS, *LIBIPSEC_PLUGINS]
        gw = CharonInstance(tmp_path / "gw", netns=ns, plugins=[*plugins, "updown"])
        client = CharonInstance(tmp_path / "client", netns=cns, plugins=plugins,
                                charon_settings="    make_before_break = yes\n")
        client2 = CharonInstance(tmp_path / "client2", netns=c2ns, plugins=plugins)
        conns = "".join(client_conn(n, i, "192.0.2.1") for n, i in USERS.items())
        conn2 = client_conn("alice2", "alice@123456", "198.18.5.1")
        for inst, text in ((gw, GW_CONF.replace("%UPDOWN%", "")), (client, "connections {\n" + conns + "}\n" + SECRETS),
                           (client2, "connections {\n" + conn2 + "}\n" + SECRETS)):
            inst.prepare()
            (inst.swanctl_dir / "conf.d" / "test.conf").write_text(text)
            inst.start()
            inst.load_all()
        allow = tmp_path / "allow.txt"
        allow.write_text("alice@123456\ncarol@123457\nfrank@123457\ngina@123456\n")
        cfg = lab.config(request.param, strongswan={"vici_socket": gw.uri})
        yield Ike(lab, gw, client, client2, request.param, cfg, allow, tmp_path / "watch.log")
    finally:
        for inst in (client, client2, gw):
            if inst is not None:
                inst.stop()
        for n in (ns, cns, c2ns):
            sh("ip", "netns", "del", n, check=False)


def _vip_of(ike: Ike, ident: str, exclude: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    def find() -> str | None:
        for k, v in ike.vips().items():
            if k.startswith(ident + "#") and v not in exclude:
                return v
        return None

    return wait_for(find, 10, f"no SA for {ident}")


def _both_devices(ike: Ike) -> set[str] | None:
    """The VIPs of alice's two IKE_SAs, read from one list-sas; None until both are up."""
    mine = {k: v for k, v in ike.vips().items() if k.startswith("alice@123456#")}
    return set(mine.values()) if len(mine) == 2 else None


def test_watch_follows_real_charon(ike: Ike) -> None:
    lab = ike.lab
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        ike.metrics_port = s.getsockname()[1]
    try:
        ike.start_watch()
        ike.initiate("alice")
        va = _vip_of(ike, "alice@123456")
        wait_for(lambda: lab.routed(ike.backend) == {va: 123456}, 5, "alice's rule did not appear")
        ike.initiate("bob")
        vb = _vip_of(ike, "bob@123456")
        ike.initiate("alice2")  # alice's second device (charon's pool may give it the same VIP)
        alice_vips = wait_for(lambda: _both_devices(ike), 10, "second device did not connect")
        assert va in alice_vips
        wait_for(lambda: lab.routed(ike.backend) == dict.fromkeys(alice_vips, 123456), 5, "second device")
        assert vb not in lab.routed(ike.backend)
        ike.terminate("alice2")
        wait_for(lambda: len([k for k in ike.vips() if k.startswith("alice@123456#")]) == 1, 10, "down")
        time.sleep(0.3)
        assert lab.routed(ike.backend) == {va: 123456}  # the first device keeps its rule

        # IKE rekey: a new IKE_SA takes over the VIP; the rule must not change at all
        changes = len(ike.log_events("rule-add")) + len(ike.log_events("rule-remove"))
        ike.client.swanctl("--rekey", "--ike", "alice")
        wait_for(lambda: [k for k in ike.vips() if k.startswith("alice@123456#")] != ["alice@123456#1"],
                 5, "rekey did not happen")
        time.sleep(0.5)
        assert lab.routed(ike.backend) == {va: 123456}
        assert len(ike.log_events("rule-add")) + len(ike.log_events("rule-remove")) == changes
        # reauth, make-before-break: charon's pool may hand out another of alice's leases;
        # the new VIP's rule comes before the old one goes (never a gap)
        # the kernel is sampled all through the reauth: at no moment is alice without her
        # lab VLAN (whether or not charon hands the new SA another VIP)
        samples: list[dict[str, int]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(lab.routed(ike.backend))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            ike.client.swanctl("--rekey", "--ike", "alice", "--reauth")
            time.sleep(1.0)
        finally:
            done.set()
            sampler.join(10)
        # make-before-break: the old IKE_SA goes after the new one is up; read the VIP then
        wait_for(lambda: len([k for k in ike.vips() if k.startswith("alice@123456#")]) == 1, 10,
                 "the reauthenticated SA's predecessor stayed")
        va = _vip_of(ike, "alice@123456")
        assert lab.routed(ike.backend) == {va: 123456}
        assert len(samples) >= 5 and all(123456 in s.values() for s in samples), samples
        log = [(r["event"], r["vip"], r["batch"]) for r in
               (json.loads(x) for x in ike.watch_log.read_text().splitlines()) if r.get("event") in
               ("rule-add", "rule-remove")]
        new_events = log[changes:]
        assert len(new_events) <= 2
        # a new VIP's policy is in before the old one goes: an earlier batch, or the same
        # batch (one atomic kernel change); the same VIP kept means no change at all
        add_b = [b for ev, vip, b in new_events if ev == "rule-add" and vip == va]
        rm_b = [b for ev, _vip, b in new_events if ev == "rule-remove"]
        assert (not new_events) or (add_b and all(add_b[0] <= b for b in rm_b)), new_events

        # Prometheus metrics on 127.0.0.1
        body = urllib.request.urlopen(f"http://127.0.0.1:{ike.metrics_port}/metrics", timeout=5).read().decode()
        assert 'ikemgr_active_sessions{vlan="123456"} 1.0' in body
        assert 'ikemgr_decisions_total{outcome="not-on-list"}' in body
        assert "ikemgr_event_to_rule_seconds_count" in body

        # status and dry-run agree with the kernel
        p = ike.command("status")
        assert p.returncode == 0, p.stderr
        users = {u["vip"]: u for u in json.loads(p.stdout)["data"]["users"]}
        assert users[va]["vlan"] == 123456 and users[va]["in_kernel"] is True
        assert users[vb]["outcome"] == "not-on-list" and users[vb]["in_kernel"] is False
        assert users[va]["outer"] == "192.0.2.100"  # the client's outer address, as charon sees it

        # kill -9 while users come and go; the restart repairs the kernel
        assert ike.kill_watch() == -signal.SIGKILL
        ike.terminate("alice")
        ike.initiate("carol")
        vc = _vip_of(ike, "carol@123457")
        assert lab.routed(ike.backend) == {va: 123456}  # nobody watched: stale
        p = ike.command("reconcile", "--dry-run")
        assert p.returncode == 0, p.stderr
        dry = json.loads(p.stdout)["data"]
        assert [r["vip"] for r in dry["add"]] == [vc] and [r["vip"] for r in dry["remove"]] == [va]
        assert lab.routed(ike.backend) == {va: 123456}  # a dry run changes nothing
        # status is that same dry run: carol's rule is missing, the reconcile would change 2
        p = ike.command("status")
        st = json.loads(p.stdout)["data"]
        carol = next(u for u in st["users"] if u["vip"] == vc)
        assert carol["rule"] is True and carol["in_kernel"] is False and st["out_of_sync"] == 2
        assert sorted(st["would_change"]) == sorted(
            [f"+ {vc} vlan 123457 table 123457 priority 29000", f"- {va} vlan 123456 table 123456 priority 29000"])
        ike.start_watch()
        wait_for(lambda: lab.routed(ike.backend) == {vc: 123457}, 5, "restart did not reconcile")

        # charon dies by SIGKILL: no down event can reach watch, so only its reconnect and the
        # full reconcile that follows can remove carol's rule (her SA died with charon).
        # The Popen child is charon itself: ip netns exec, unshare and sh -c all exec.
        assert ike.gw.proc is not None
        pid = ike.gw.proc.pid
        assert Path(f"/proc/{pid}/exe").resolve() == CHARON
        ike.gw.proc.kill()
        ike.gw.proc.wait(timeout=5)
        assert not Path(f"/proc/{pid}").exists()
        wait_for(lambda: ike.log_events("backend-down"), 10, "watch did not notice charon going")
        end = time.monotonic() + 0.5
        while time.monotonic() < end:  # charon is gone and nobody else touches the policy
            assert lab.routed(ike.backend) == {vc: 123457}
            time.sleep(0.1)
        seen = len(ike.records())
        ike.gw.start()  # removes the stale VICI socket and pid file the killed charon left
        ike.gw.load_all()
        wait_for(lambda: len(ike.log_events("connected")) >= 3, 20, "watch did not reconnect")
        wait_for(lambda: lab.routed(ike.backend) == {}, 5, "stale rule after charon restart")
        # in the log: the removal, then the full reconcile counting it, then "connected"
        after = [r for r in ike.records()[seen:] if r.get("event") in ("rule-remove", "reconcile", "connected")]
        assert [r["event"] for r in after[:3]] == ["rule-remove", "reconcile", "connected"], after
        assert after[0]["vip"] == vc and after[1]["removed"] >= 1 and after[1]["sas"] == 0, after
        ike.initiate("alice")
        va = _vip_of(ike, "alice@123456")
        wait_for(lambda: lab.routed(ike.backend) == {va: 123456}, 5, "no rule after reconnect")

        # SIGTERM: clean exit, rules stay for the next start
        assert ike.kill_watch(signal.SIGTERM) == 0
        assert lab.routed(ike.backend) == {va: 123456}
        assert ike.log_events("stopped")
    finally:
        if ike.proc is not None:
            ike.kill_watch()


def test_hook_mode_with_real_charon(ike: Ike) -> None:
    """The same scenario through charon's updown → scripts/ikemgr-updown → ikemgr hook."""
    lab = ike.lab
    ike.enable_hook()
    ike.initiate("alice")
    va = _vip_of(ike, "alice@123456")
    wait_for(lambda: lab.routed(ike.backend) == {va: 123456}, 10, "alice's rule did not appear")
    ike.initiate("bob")
    vb = _vip_of(ike, "bob@123456")
    ike.initiate("alice2")
    alice = wait_for(lambda: _both_devices(ike), 10, "second device did not connect")
    wait_for(lambda: lab.routed(ike.backend) == dict.fromkeys(alice, 123456), 10, "second device")
    assert vb not in lab.routed(ike.backend)
    ike.terminate("alice2")
    wait_for(lambda: len([k for k in ike.vips() if k.startswith("alice@123456#")]) == 1, 10, "down")
    time.sleep(1.5)  # the down hook runs after the SA is gone from list-sas
    assert lab.routed(ike.backend) == {va: 123456}
    ike.terminate("alice")
    wait_for(lambda: lab.routed(ike.backend) == {}, 10, "alice's rule stayed after logout")
    log = ike.gw.log.read_text(errors="replace")
    assert "rule added" in log and "rule removed" in log  # the hook's own lines, via charon's log


SLOW_UPDOWN = """#!/bin/sh
# charon runs updown with the IKE_SA checked out: while this sleeps, the SA is busy
if [ "$PLUTO_VERB" = down-client ] && [ -e {gate} ]; then
    rm -f {gate}; touch {busy}; sleep 3
fi
exit 0
"""


def test_a_reconcile_keeps_the_rule_of_an_sa_charon_has_checked_out(ike: Ike, tmp_path: Path) -> None:
    """charon leaves a checked-out IKE_SA out of a non-waiting list-sas. Alice closes her
    CHILD_SA (her IKE_SA and its VIP stay) and the gateway's updown holds her IKE_SA for
    3 s; a reconcile in that window still sees her (her online pool lease sends it back
    to a waiting list-sas) and keeps her rule."""
    lab = ike.lab
    gate, busy, script = tmp_path / "gate", tmp_path / "busy", tmp_path / "slow-updown"
    script.write_text(SLOW_UPDOWN.format(gate=gate, busy=busy))
    script.chmod(0o755)
    (ike.gw.swanctl_dir / "conf.d" / "test.conf").write_text(GW_CONF.replace("%UPDOWN%", f"updown = {script}"))
    ike.gw.load_all()

    def reconcile() -> dict[str, Any]:
        p = ike.command("reconcile")
        assert p.returncode == 0, p.stderr
        data: dict[str, Any] = json.loads(p.stdout)["data"]
        return data

    ike.initiate("alice")
    va = _vip_of(ike, "alice@123456")
    assert [r["vip"] for r in reconcile()["add"]] == [va]
    assert lab.routed(ike.backend) == {va: 123456}

    gate.touch()
    closing = threading.Thread(target=ike.client.swanctl, args=("--terminate", "--child", "alice"))
    closing.start()
    try:
        wait_for(busy.exists, 10, "the gateway's updown did not run for the closed CHILD_SA")
        assert closing.is_alive()  # the updown still sleeps: alice's IKE_SA is checked out
        done = reconcile()
        assert done["remove"] == [] and done["add"] == [], done
        assert lab.routed(ike.backend) == {va: 123456}
    finally:
        closing.join(30)
    assert [k for k in ike.vips() if k.startswith("alice@123456#")], "alice's IKE_SA went with its CHILD_SA"


def test_short_lifetimes_do_not_flap(ike: Ike) -> None:
    """Rekeys and make-before-break reauths every few seconds: the policy never changes."""
    lab = ike.lab
    try:
        ike.start_watch()
        ike.initiate("frank")
        ike.initiate("gina")
        vf, vg = _vip_of(ike, "frank@123457"), _vip_of(ike, "gina@123456")
        want = {vf: 123457, vg: 123456}
        wait_for(lambda: lab.routed(ike.backend) == want, 5, "rules did not appear")
        adds = len(ike.log_events("rule-add"))
        assert adds == 2 and not ike.log_events("rule-remove")
        uids = set(ike.vips())
        end = time.monotonic() + 9
        while time.monotonic() < end:  # the policy holds at every look, not only at the end
            assert lab.routed(ike.backend) == want
            time.sleep(0.2)
        assert not set(ike.vips()) & uids, "no rekey/reauth happened: every SA should be new"
        assert len(ike.log_events("rule-add")) == adds and not ike.log_events("rule-remove")
    finally:
        if ike.proc is not None:
            ike.kill_watch()


# --------------------------------------------------------------------------- proofs of the engine's promises

def _marker() -> Path:
    return Path(f"/tmp/ikt-pg-{secrets.token_hex(4)}")


def _hostile(marker: Path) -> dict[str, tuple[str, str, str]]:
    """client connection → (IKE identity, outcome, reason) as watch must log it.

    ``@123456`` is an FQDN identity to charon: it sends (and the gateway reports) ``123456``,
    a plain account, which names no lab VLAN. The ``touch`` payloads would create files
    named after ``marker`` if anything ever ran an identity through a shell; ``reboot``
    is shadowed on watch's PATH by a script that does the same.
    """
    grammar = "does not match the identity grammar"
    return {
        "h-rm": ("a;rm -rf /@123456", "rejected-identity", grammar),
        "h-regex": (".*@123456", "rejected-identity", grammar),
        "h-zero": ("alice@0123456", "rejected-identity", "VLAN number has leading zeros"),
        "h-at": ("a@1@2", "rejected-identity", "must contain exactly one '@'"),
        "h-fqdn": ("@123456", "no-vlan", "identity names no lab VLAN"),
        "h-long": ("a" * 65 + "@123456", "rejected-identity", grammar),
        "h-reboot": ("$(reboot)@123456", "rejected-identity", grammar),
        "h-space": ("alice smith@123456", "rejected-identity", grammar),
        "h-semi": (f"x;touch {marker}-semi@123456", "rejected-identity", grammar),
        "h-subst": (f"$(touch {marker}-subst)@123456", "rejected-identity", grammar),
        "h-tick": (f"`touch {marker}-tick`@123456", "rejected-identity", grammar),
    }


def test_hostile_identities_through_real_charon(ike: Ike, tmp_path: Path) -> None:
    """Hostile IKE identities come up through charon and get no rule, one decision line each,
    with a periodic reconcile every second re-deciding them; nothing is ever executed."""
    lab = ike.lab
    marker = _marker()
    hostile = _hostile(marker)
    conns = "".join(client_conn(name, f'"{ident}"', "192.0.2.1") for name, (ident, _o, _r) in hostile.items())
    (ike.client.swanctl_dir / "conf.d" / "hostile.conf").write_text("connections {\n" + conns + "}\n")
    ike.client.load_all()
    # the allow-list even names the hostile strings literally: each line is refused, not matched
    ike.allow.write_text("alice@123456\n" + "".join(i + "\n" for i, _o, _r in hostile.values()))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "reboot").write_text(f"#!/bin/sh\ntouch {marker}-reboot\n")
    (fake / "reboot").chmod(0o755)
    ike.reconfigure("-fast", policy={"reconcile_interval": 1})
    try:
        ike.start_watch(env={"PATH": f"{fake}:{os.environ.get('PATH', '/usr/bin:/bin')}"})
        ike.initiate("alice")
        ike.initiate("bob")
        va = _vip_of(ike, "alice@123456")
        refused = {}
        for name in hostile:
            p = ike.client.swanctl("--initiate", "--child", name, "--timeout", "20", check=False)
            if p.returncode != 0:
                refused[name] = p.stdout[-300:] + p.stderr[-300:]
        assert not refused, f"charon could not carry: {refused}"
        # charon's view: every hostile SA is up with a VIP; gateway identity → (uniqueid, VIP)
        sas = {}
        for key, vip in ike.vips().items():
            ident, _, uid = key.rpartition("#")
            sas[ident] = (uid, vip)
        want = {("123456" if i == "@123456" else i): (o, r) for i, o, r in hostile.values()}
        assert set(want) <= set(sas), set(want) - set(sas)
        time.sleep(2.5)  # two periodic full reconciles decide every SA again
        assert len(ike.log_events("reconcile")) >= 3
        assert lab.routed(ike.backend) == {va: 123456}  # alice only
        decisions = ike.log_events("decision")
        for ident, (outcome, reason) in want.items():
            uid, vip = sas[ident]
            mine = [d for d in decisions if d["uniqueid"] == shown(uid, 24)]
            assert len(mine) == 1, (ident, mine)
            assert mine[0]["outcome"] == outcome and mine[0]["reason"] == reason, (ident, mine[0])
            assert mine[0]["vips"] == [vip]
            assert mine[0]["level"] == ("warning" if outcome == "rejected-identity" else "info")
        # ".*@123456" on the list is not a pattern: bob stays off
        bob = [d for d in decisions if d["identity"] == "bob@123456"]
        assert [d["outcome"] for d in bob] == ["not-on-list"]
        assert lab.routed(ike.backend) == {va: 123456}
        assert not list(marker.parent.glob(marker.name + "*")), "an identity was executed"
    finally:
        if ike.proc is not None:
            ike.kill_watch()
        for f in marker.parent.glob(marker.name + "*"):
            f.unlink()


def _delete_by_hand(ike: Ike, vip: str) -> None:
    """Remove one user's policy behind watch's back, in the backend's own terms."""
    ns = ike.lab.ns
    if ike.backend == "marks":
        sh("ip", "netns", "exec", ns, "nft", "delete", "element", "ip", "ikemgr_policy", "users", f"{{ {vip} }}")
        return
    for src, dst, table in ike.lab.user_rules():
        if src == vip:
            sh("ip", "-n", ns, "rule", "del", "from", src, "to", dst, "table", table)  # at any priority


def test_periodic_reconcile_repairs_drift(ike: Ike) -> None:
    """policy.reconcile_interval: 1 — a rule deleted by hand comes back with no event at all."""
    lab = ike.lab
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        ike.metrics_port = s.getsockname()[1]
    ike.reconfigure("-fast", policy={"reconcile_interval": 1})
    try:
        ike.start_watch()
        ike.initiate("alice")
        va = _vip_of(ike, "alice@123456")
        wait_for(lambda: lab.routed(ike.backend) == {va: 123456}, 5, "alice's rule did not appear")
        time.sleep(1.2)  # a periodic reconcile with nothing to correct
        before = ike.metric("ikemgr_reconcile_corrections_total")
        seen = len(ike.records())
        t0 = time.monotonic()
        _delete_by_hand(ike, va)
        assert lab.routed(ike.backend) == {}
        wait_for(lambda: lab.routed(ike.backend) == {va: 123456}, 4, "the periodic reconcile did not repair")
        assert time.monotonic() - t0 < 3.0
        after = ike.records()[seen:]
        adds = [r for r in after if r.get("event") == "rule-add"]
        assert [r["vip"] for r in adds] == [va]
        fixes = [r for r in after if r.get("event") == "reconcile" and r["added"] >= 1]
        assert fixes and fixes[0]["sas"] == 1, after
        assert not [r for r in after if r.get("event") in ("decision", "rule-remove", "allow-list")], after
        assert ike.metric("ikemgr_reconcile_corrections_total") >= before + 1
    finally:
        if ike.proc is not None:
            ike.kill_watch()


@pytest.mark.parametrize("ike", ["marks"], indirect=True)
def test_sighup_rereads_the_allow_list(ike: Ike) -> None:
    """reconcile_interval: 3600 — SIGHUP alone brings a connected user's new grant in."""
    lab = ike.lab
    ike.reconfigure("-slow", policy={"reconcile_interval": 3600})
    try:
        ike.start_watch()
        ike.initiate("bob")
        vb = _vip_of(ike, "bob@123456")
        wait_for(lambda: ike.log_events("decision"), 5, "no decision for bob")
        assert lab.routed(ike.backend) == {}
        seen = len(ike.records())
        ike.allow.write_text(ike.allow.read_text() + "bob@123456\n")
        assert ike.proc is not None
        t0 = time.monotonic()
        ike.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lab.routed(ike.backend) == {vb: 123456}, 3, "SIGHUP did not bring bob's rule")
        assert time.monotonic() - t0 < 1.0
        # through SIGHUP's full reconcile, not the allow-list poll (which logs "allow-list")
        after = [r for r in ike.records()[seen:] if r.get("event") in ("allow-list", "rule-add", "reconcile")]
        assert [r["event"] for r in after[:2]] == ["rule-add", "reconcile"], after
        assert after[1]["added"] == 1
        assert ike.proc.poll() is None  # SIGHUP does not stop watch
    finally:
        if ike.proc is not None:
            ike.kill_watch()


@pytest.mark.parametrize("ike", ["marks"], indirect=True)
def test_grant_expiry_reaches_a_connected_user(ike: Ike, tmp_path: Path) -> None:
    """SQLite store: a grant's valid_until passes while alice is connected; her rule goes
    within watch's allow-list poll (5 s), with no sync and no write to the store."""
    lab = ike.lab
    ike.reconfigure("-store", database={"url": f"sqlite:///{tmp_path / 'ikemgr.db'}"},
                    policy={"reconcile_interval": 3600})
    ike.store = True
    until = datetime.now(UTC) + timedelta(seconds=4)
    p = lab.ikemgr("grant", "add", "alice@123456", "--until", until.isoformat(timespec="milliseconds"),
                   "--config", str(ike.cfg), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["data"]["grant"]["valid_until"] is not None
    try:
        ike.start_watch()
        ike.initiate("alice")
        va = _vip_of(ike, "alice@123456")
        wait_for(lambda: lab.routed(ike.backend) == {va: 123456}, 5, "alice's rule did not appear")
        while (until - datetime.now(UTC)).total_seconds() > 0.3:  # in force until the end
            assert lab.routed(ike.backend) == {va: 123456}
            time.sleep(0.1)
        wait_for(lambda: datetime.now(UTC) >= until, 2, "clock")
        expired = time.monotonic()
        wait_for(lambda: lab.routed(ike.backend) == {}, 8, "the expired grant's rule stayed")
        assert time.monotonic() - expired < 5.5  # the 5 s allow-list poll, plus one tick
        ev = [r["event"] for r in ike.records() if r.get("event") in ("allow-list", "rule-remove")]
        assert ev == ["allow-list", "rule-remove"], ev
        assert ike.vips()  # alice is still connected: only her lab VLAN went
    finally:
        if ike.proc is not None:
            ike.kill_watch()


def test_a_peer_that_vanishes_loses_its_policy_when_charon_declares_it_dead(ike: Ike) -> None:
    """The client's charon is SIGKILLed (no DELETE): the gateway's DPD gives up and charon
    sends ike-updown/child-updown *without* ``up`` and still in state ESTABLISHED. The
    ``up`` key decides, so the rule goes at that event, not at the next full reconcile
    (an hour away here) — a VIP handed to the next user must not carry the lab VLAN."""
    lab = ike.lab
    # fast DPD on the gateway only for this test: settings reloaded, the connection re-read
    ike.gw.charon_settings += ("    retransmit_tries = 1\n    retransmit_timeout = 1.0\n"
                               "    retransmit_base = 1.0\n")
    ike.gw.conf.write_text(ike.gw.strongswan_conf())
    ike.gw.swanctl("--reload-settings")
    (ike.gw.swanctl_dir / "conf.d" / "test.conf").write_text(
        GW_CONF.replace("%UPDOWN%", "").replace("unique = never", "unique = never\n    dpd_delay = 1s"))
    ike.gw.load_all()
    ike.reconfigure("-slow", policy={"reconcile_interval": 3600})
    ike.start_watch()
    try:
        ike.initiate("alice")
        va = _vip_of(ike, "alice@123456")
        wait_for(lambda: lab.routed(ike.backend) == {va: 123456}, 10, "alice's rule did not appear")
        assert ike.client.proc is not None
        ike.client.proc.kill()  # no DELETE: the laptop lid closed
        ike.client.proc.wait(timeout=10)
        ike.client.proc = None
        wait_for(lambda: not ike.vips(), 30, "the gateway never declared alice's SA dead")
        wait_for(lambda: lab.routed(ike.backend) == {}, 3, "the dead peer's rule stayed")
        assert not [r for r in ike.records() if r.get("event") == "reconcile" and r.get("removed")], \
            "a full reconcile removed it, not the down event"
    finally:
        ike.kill_watch()


def test_terminate_one_user_and_the_metrics_an_operator_watches(ike: Ike) -> None:
    """`ikemgr terminate --user` closes exactly that user's sessions (their policy goes with
    charon's down events); a hostile user name is refused before charon is asked anything.
    The metrics show VICI connected, the last full reconcile and the process itself."""
    lab = ike.lab
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        ike.metrics_port = s.getsockname()[1]
    ike.start_watch()
    try:
        assert ike.metric("ikemgr_vici_connected") == 1
        assert ike.metric("ikemgr_last_full_reconcile_success") == 1
        assert ike.metric("ikemgr_last_full_reconcile_timestamp_seconds") > time.time() - 60
        assert ike.metric("process_resident_memory_bytes") > 0
        ike.initiate("alice")
        ike.initiate("carol")
        va, vc = _vip_of(ike, "alice@123456"), _vip_of(ike, "carol@123457")
        wait_for(lambda: lab.routed(ike.backend) == {va: 123456, vc: 123457}, 10, "rules did not appear")
        for hostile in ("a;reboot@123456", ".*@123456", "alice@123456\n"):
            p = lab.ikemgr("terminate", "--user", hostile, "--config", str(ike.cfg), "--json")
            assert p.returncode == 2, (hostile, p.stdout, p.stderr)
        assert lab.routed(ike.backend) == {va: 123456, vc: 123457}
        p = lab.ikemgr("terminate", "--user", "alice@123456", "--config", str(ike.cfg), "--json")
        assert p.returncode == 0, p.stderr
        assert len(json.loads(p.stdout)["data"]["terminated"]) == 1
        wait_for(lambda: lab.routed(ike.backend) == {vc: 123457}, 10, "alice's rule stayed")
        assert [k for k in ike.vips() if k.startswith("carol@123457#")]  # carol untouched
        p = lab.ikemgr("terminate", "--user", "alice@123456", "--config", str(ike.cfg), "--json")
        assert p.returncode == 1 and "no live session" in p.stdout
    finally:
        ike.kill_watch()

"""Hook mode on the lab: charon's own updown runs `ikemgr hook`, with no `watch` at all.

The gateway is rendered with ``strongswan.updown`` = the shipped ``scripts/ikemgr-updown``
(plus ``--config``), so charon loads the ``updown`` plugin and runs the wrapper for every
CHILD_SA. The clients log in over EAP-MSCHAPv2 through FreeRADIUS, so the user's name
reaches the hook only as ``PLUTO_XAUTH_ID`` (the EAP identity): their IKE identity, and
so ``PLUTO_PEER_ID``, is the client's own address. The hook's log lines arrive in the
gateway charon's log (charon logs what its updown prints).
"""

from __future__ import annotations

import re
import subprocess

import pytest

from helpers import until
from helpers.lab import rules_for
from ikemgr_lab import procs, sourcelog
from ikemgr_lab.model import load_lab as load
from ikemgr_lab.runner import REPO, Lab

pytestmark = pytest.mark.root

WRAPPER = REPO / "scripts" / "ikemgr-updown"
UPDOWN_RE = re.compile(r"(<[^>]+\|\d+>) updown: (.*)$")
UPDOWN_PIECE = 127


def _hook_lines(lab: Lab) -> list[str]:
    """What `ikemgr hook` printed, as charon logged it (``<conn|N> updown: <text>``).

    charon reads the script's output in pieces of 127 characters and logs each piece; a
    piece of exactly that length is continued by the next one of the same IKE_SA.
    """
    text = lab.gateway().log.read_text(errors="replace")
    lines: dict[str, list[str]] = {}
    order: list[tuple[str, int]] = []
    for ln in text.splitlines():
        m = UPDOWN_RE.search(ln)
        if m is None:
            continue
        sa, piece = m.group(1), m.group(2)
        got = lines.setdefault(sa, [])
        if got and len(got[-1]) % UPDOWN_PIECE == 0:
            got[-1] += piece
        else:
            got.append(piece)
            order.append((sa, len(got) - 1))
    return [lines[sa][i] for sa, i in order]


def _decisions(lab: Lab) -> list[dict[str, str]]:
    out = []
    for ln in _hook_lines(lab):
        if " decision " in f" {ln} ":
            out.append(dict(re.findall(r'(\w+)="([^"]*)"', ln)))
    return out


def _watch_running(lab: Lab) -> bool:
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True).stdout
    return any(" watch " in f" {ln} " and str(lab.config_path) in ln for ln in ps.splitlines())


def test_hook_mode_over_eap_follows_alice_and_nobody_else(lab_variant) -> None:  # type: ignore[no-untyped-def]
    v = lab_variant({"  farp: true\n": f"  farp: true\n  updown: {WRAPPER} --config %CONFIG%\n",
                     "  prefix: ikt-l-": "  policy_engine: hook\n  prefix: ikt-l-"})
    v.config.write_text(v.config.read_text().replace("%CONFIG%", str(v.config)))
    lab = Lab(load(v.config), v.config)
    assert lab.lab.policy_engine == "hook" and lab.cfg.policy.backend == "rules"
    try:
        out = lab.up(lambda _line: None)
        # the rendered files: updown in the connection, the plugin switched on, and that
        # plugin loaded by the gateway charon
        swanctl = (lab.rendered / "swanctl" / "conf.d").glob("*.conf")
        assert any(f"updown = {WRAPPER} --config {v.config}" in f.read_text() for f in swanctl)
        assert "updown {\n            load = yes" in (lab.rendered / "strongswan.d" / "ikemgr.conf").read_text()
        # the running gateway charon (Debian's plugin layout plus the rendered files) has it
        stats = lab.gateway().swanctl("--stats").stdout
        assert "updown" in stats.split("loaded plugins:", 1)[1].split(), stats
        # no watch: the phase says so, there is no pid file and no such process
        watch = next(p for p in out["phases"] if p["phase"] == "watch")
        assert watch["detail"].startswith("none: hook mode"), watch
        assert not (procs.pid_dir(lab.state) / "watch.pid").exists()
        assert not (lab.state / "watch.log").exists()
        assert not _watch_running(lab)

        rows = {row["client"]: row for row in out["proof"]}
        assert lab.expectations(out["proof"]) == []
        alice_vip = rows["alice"]["vip"]
        assert rows["alice"]["lab_host_saw"] == "10.2.0.253", rows["alice"]
        assert rows["alice"]["path"].startswith("ens3.1 ")
        for name in ("bob", "carol"):
            assert rows[name]["lab_host_saw"] == rows[name]["vip"], rows[name]
            assert rows[name]["path"].startswith("ens2 ")
            assert rules_for(lab, rows[name]["vip"]) == []
        assert [r["table"] for r in rules_for(lab, alice_vip)] == ["gw123456"]

        # the identity the hook used is the EAP one (PLUTO_XAUTH_ID): charon's IKE identity
        # of alice, which would be PLUTO_PEER_ID, is her client's address
        sas = {s.get("remote-eap-id"): s for s in lab.gateway_sas()}
        alice_sa = sas["alice@123456"]
        assert alice_sa["remote-id"] == str(lab.lab.client("alice").address), alice_sa
        decided = {d["identity"]: d for d in _decisions(lab)}
        assert "alice@123456" in decided and "bob@123456" in decided and "carol" in decided, decided
        assert str(lab.lab.client("alice").address) not in decided
        assert decided["alice@123456"]["outcome"] == "allowed"
        assert decided["bob@123456"]["outcome"] == "not-on-list"
        assert decided["carol"]["outcome"] == "no-vlan"
        assert alice_vip in " ".join(ln for ln in _hook_lines(lab) if "rule added" in ln)

        # alice logs out: charon's down-client → hook removes her rule; back in → back again
        alice = lab.lab.client("alice")
        r = lab.disconnect(alice)
        assert r.returncode == 0, r.stdout + r.stderr
        assert until(lambda: rules_for(lab, alice_vip) == [], 10.0) is not None, "rule stayed"
        # charon logs the hook's output as it reads it, possibly just after the kernel change
        assert until(lambda: any("rule removed" in ln and alice_vip in ln for ln in _hook_lines(lab)),
                      5.0) is not None
        r = lab.connect(alice)
        assert r.returncode == 0, r.stdout + r.stderr
        vip = lab.vip(alice)
        assert vip is not None
        assert until(lambda: len(rules_for(lab, vip)) == 1, 10.0) is not None, "no rule after reconnect"
        lab_host = lab.lab_host_for(alice)[2]
        assert sourcelog.probe(lab.ns("alice"), lab_host, lab.lab.port) == "10.2.0.253"
        assert not _watch_running(lab)
    finally:
        lab.down()
        assert procs.namespaces(v.prefix) == []
        assert not v.state.exists()
        assert not _watch_running(lab)

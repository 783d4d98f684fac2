"""A gateway whose ESP proposals require PFS: flagged by ``ikemgr check`` and shown to break
the macOS-like client (no KE payload on rekey) at its first CHILD_SA rekey — the seed's
"macOS drops every 8 minutes" (§5), here in seconds.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from ikc_replay import poll
from ikc_support import IKEMGR, Topology, client_conn, sas, wrap

from ikemgr.checks.client_proposals import MACOS

pytestmark = pytest.mark.root

CHILD_REKEY, CHILD_LIFE = 4, 8
PFS_ONLY = {"esp_proposals": ["aes256-sha256-modp2048", "aes256gcm16-modp2048"]}


def test_check_flags_the_pfs_trap(topo: Topology) -> None:
    cfg = topo.config("pfs", strongswan=PFS_ONLY)
    r = subprocess.run([str(IKEMGR), "check", "-c", str(cfg), "--config-only", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    found = json.loads(r.stdout)["data"]["findings"]
    pfs = {f["subject"]: f for f in found if f["id"] == "proposals.pfs-required"}
    assert pfs["macos"]["severity"] == "error"
    assert pfs["macos"]["exchange"] == "CREATE_CHILD_SA (CHILD_SA rekey)"
    assert {"macos", "android", "ios"} <= set(pfs)  # iOS rekeys with its IKE group ecp256, not modp2048
    # Windows' defaults (aes256-sha1) fail earlier, at the CHILD_SA inside IKE_AUTH
    esp = {f["subject"]: f for f in found if f["id"] == "proposals.esp-no-match"}
    assert esp["windows"]["exchange"] == "IKE_AUTH (first CHILD_SA)"


def test_macos_like_client_breaks_at_first_child_rekey(topo: Topology) -> None:
    gw = topo.gateway(topo.config("pfs", strongswan=PFS_ONLY))
    cert = topo.pki.client("macos", "macos@123456")
    conf = wrap(client_conn("macos", cert="macos", ike=",".join(MACOS.ike), esp=",".join(MACOS.esp),
                            child_rekey=CHILD_REKEY, child_life=CHILD_LIFE))
    client = topo.client("pfs-macos", conf, {"macos": cert})
    try:
        start = time.monotonic()
        r = client.swanctl("--initiate", "--child", "macos", "--timeout", "20", check=False, timeout=40)
        # IKE_AUTH's CHILD_SA needs no KE: the first connection works
        assert r.returncode == 0, r.stdout[-2000:]
        first = [s for s in sas(client) if s["name"] == "macos"][0]
        assert any(c["state"] == "INSTALLED" for c in first["child-sas"].values())
        assert ping(topo, 2).returncode == 0  # the tunnel carries traffic before the rekey
        # watch past the rekey (4 s) and the hard lifetime (8 s)
        w = poll(client, ["macos"], CHILD_LIFE + 4 - (time.monotonic() - start))["macos"]
        after = [s for s in sas(client) if s["name"] == "macos"]
        dead = ping(topo, 3)
        log = client.log.read_text(errors="replace")
        gw_log = gw.log.read_text(errors="replace")
    finally:
        topo.stop(client)
        topo.stop(gw)
    assert "received NO_PROPOSAL_CHOSEN notify" in log
    assert "no acceptable proposal found" in gw_log or "NO_PROPOSAL_CHOSEN" in gw_log
    # the rekey never produced a second CHILD_SA and the first one expired: the client is cut off
    assert len(w.child_ids) == 1, w
    assert w.gaps > 0
    assert not any(c.get("state") == "INSTALLED" for s in after for c in (s.get("child-sas") or {}).values())
    # the CHILD_SA (and with it the route through the tunnel) is gone
    assert dead.returncode != 0 and (" 0 received" in dead.stdout or "unreachable" in dead.stderr), dead


def ping(topo: Topology, count: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", topo.client_ns, "ping", "-n", "-q", "-c", str(count),
                           "-W", "1", "10.0.0.1"], capture_output=True, text=True, timeout=30)

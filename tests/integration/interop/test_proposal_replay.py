"""Apple, Windows and Android default proposal sets against the rendered gateway, rekeying.

Each client of ``ikemgr/checks/client_proposals.py`` is replayed by a strongSwan initiator
(certificate auth on the rendered ``ikemgr-cert`` connection, so no RADIUS) with lifetimes
of a few seconds: over the watch window every client goes through several CHILD_SA rekeys
and at least one IKE_SA rekey and must stay connected the whole time. The algorithms
charon negotiates must be the ones the linter's model predicts, and a ping through every
tunnel loses nothing while the SAs are rekeyed under it.
"""

from __future__ import annotations

import subprocess

import pytest
from ikc_replay import DH_NAMES, poll, replay_esp
from ikc_support import IKEMGR, Topology, client_conn, wrap

from helpers import sh
from ikemgr.checks.client_proposals import CLIENTS
from ikemgr.checks.interop import verdict
from ikemgr.config.load import load

pytestmark = pytest.mark.root

WATCH_S = 26
IKE_REKEY, CHILD_REKEY, CHILD_LIFE = 10, 4, 7


def test_default_gateway_keeps_every_client_through_rekeys(topo: Topology) -> None:
    cfg_path = topo.config("defaults")
    cfg = load(cfg_path)
    # the linter finds nothing that breaks these clients on this config
    r = subprocess.run([str(IKEMGR), "check", "-c", str(cfg_path), "--config-only", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    gw = topo.gateway(cfg_path)
    conns, certs, verdicts = [], {}, {}
    for i, c in enumerate(CLIENTS):
        v = verdict(cfg, c)
        assert v.failed_at is None, (c.key, v)
        verdicts[c.key] = v
        certs[c.key] = topo.pki.client(c.key, f"{c.key}@123456")
        # kernel-libipsec routes a CHILD_SA from a local address inside its local TS
        sh("ip", "-n", topo.gw_ns, "addr", "add", f"10.{10 + i}.0.1/32", "dev", "lo")
        conns.append(client_conn(c.key, cert=c.key, remote_ts=f"10.{10 + i}.0.0/16",
                                 ike=",".join(c.ike), esp=replay_esp(c, v), ike_rekey=IKE_REKEY,
                                 child_rekey=CHILD_REKEY, child_life=CHILD_LIFE))
    client = topo.client("replay", wrap(*conns), certs)
    try:
        for c in CLIENTS:
            r2 = client.swanctl("--initiate", "--child", c.key, "--timeout", "20", check=False, timeout=40)
            assert r2.returncode == 0, (c.key, r2.stdout[-3000:], gw.log_tail(20))
        # traffic through every tunnel during the whole window (rekeys included)
        pings = {c.key: subprocess.Popen(
            ["ip", "netns", "exec", topo.client_ns, "ping", "-n", "-q", "-c", str(WATCH_S - 2), "-i", "1",
             "-W", "1", f"10.{10 + i}.0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i, c in enumerate(CLIENTS)}
        watches = poll(client, [c.key for c in CLIENTS], WATCH_S)
        ping_out = {k: p.communicate(timeout=30)[0] for k, p in pings.items()}
    finally:
        log = client.log.read_text(errors="replace")
        topo.stop(client)
        topo.stop(gw)
    summary = {k: (len(w.ike_ids), len(w.child_ids), w.gaps, w.samples) for k, w in watches.items()}
    print("rekeys per client (IKE SAs, CHILD SAs, gaps, samples):", summary)
    for k, out in ping_out.items():
        print(k, out.strip().splitlines()[-2])
    for c in CLIENTS:
        w, v = watches[c.key], verdicts[c.key]
        assert w.first_ike is not None and w.first_child is not None, c.key
        # the model's prediction is what charon negotiated
        assert w.first_ike["dh-group"] == DH_NAMES[v.ike.dh], (c.key, w.first_ike)
        assert w.gaps == 0, (c.key, summary[c.key])
        assert len(w.ike_ids) >= 2, (c.key, summary[c.key])  # at least one IKE_SA rekey
        assert len(w.child_ids) >= 4, (c.key, summary[c.key])  # at least three CHILD_SA rekeys
        assert " 0% packet loss" in ping_out[c.key], (c.key, ping_out[c.key])
        assert w.packets_in >= WATCH_S - 4, (c.key, w.packets_in)  # the replies came through ESP
    assert "NO_PROPOSAL_CHOSEN" not in log

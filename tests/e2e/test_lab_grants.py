"""Allow-list changes reach connected users at once: grant add/remove and `ikemgr sync`.

bob@123456 is connected but not on the allow-list. A grant for him must put his rule in
the kernel within a second (watch wakes on the store change; sync also reconciles the
live sessions itself), and taking it away must remove the rule as fast. The lab is shared
by the whole session, so every test leaves bob without a grant again.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from helpers import IKEMGR, until
from helpers.lab import rules_for
from ikemgr.allowlist.snapshot import SnapshotAllowList
from ikemgr.config.load import load
from ikemgr.errors import BackendUnavailable
from ikemgr_lab.runner import Lab


class _Down:
    """The allow-list database, gone."""

    def active_pairs(self, now: datetime) -> frozenset[tuple[str, int]]:
        raise BackendUnavailable("db", "connection refused")

    def pair_ends(self, now: datetime) -> dict[tuple[str, int], datetime]:
        raise BackendUnavailable("db", "connection refused")

    def next_change(self, now: datetime) -> datetime | None:
        raise BackendUnavailable("db", "connection refused")


def _ikemgr(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(IKEMGR), *args, "-c", str(config), "--json"], capture_output=True, text=True,
                          timeout=60, check=False)


def test_grant_add_and_remove_reach_a_connected_user_within_a_second(lab: Lab) -> None:
    bob = lab.lab.client("bob")
    vip = lab.vip(bob)
    assert vip is not None, "bob is connected by `lab up`"
    assert rules_for(lab, vip) == []
    try:
        r = _ikemgr(lab.config_path, "grant", "add", "bob@123456", "--note", "e2e")
        assert r.returncode == 0, r.stdout + r.stderr
        took = until(lambda: len(rules_for(lab, vip)) == 1, timeout=3.0)
        assert took is not None and took <= 1.0, f"rule after {took}s"
        assert rules_for(lab, vip)[0]["table"] == "gw123456"
    finally:
        r = _ikemgr(lab.config_path, "grant", "remove", "bob@123456")
    assert r.returncode == 0, r.stdout + r.stderr
    took = until(lambda: rules_for(lab, vip) == [], timeout=3.0)
    assert took is not None and took <= 1.0, f"rule still there after {took}s"


def test_sync_applies_a_new_and_a_revoked_grant_to_live_sessions(lab: Lab, tmp_path: Path) -> None:
    bob = lab.lab.client("bob")
    vip = lab.vip(bob)
    assert vip is not None and rules_for(lab, vip) == []
    listing = tmp_path / "userlist.txt"
    config = tmp_path / "lab-sync.yaml"
    config.write_text(lab.config_path.read_text() + f"""
sync:
  sources:
    - {{kind: file, name: regdb, path: {listing}}}
""")
    listing.write_text("bob@123456\n")
    r = _ikemgr(config, "sync", "--netns", lab.ns("gw"))
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)["data"]
    assert out["reconciled"] is True and out["summary"]["added"] == 1
    # sync's own reconcile has put the rule in place by the time it returns
    assert len(rules_for(lab, vip)) == 1
    listing.write_text("nobody@123457\n")  # bob revoked; removing 1 of few grants needs --force
    refused = _ikemgr(config, "sync", "--netns", lab.ns("gw"))
    assert refused.returncode == 4, refused.stdout
    assert len(rules_for(lab, vip)) == 1  # refused: nothing changed
    r = _ikemgr(config, "sync", "--netns", lab.ns("gw"), "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["data"]["reconciled"] is True
    assert rules_for(lab, vip) == []
    # sync read only the live SAs' pairs; what a database outage would serve now (the
    # snapshot, with the revocation journal beside it) does not bring bob back
    outage = SnapshotAllowList(_Down(), load(config, ignore=frozenset({"lab"})).policy.state_dir)
    served = outage.active_pairs(datetime.now(UTC))
    assert outage.stale and ("bob", 123456) not in served and ("alice", 123456) in served
    # leave the shared lab as it was: no file-sourced grants
    r = _ikemgr(lab.config_path, "grant", "remove", "nobody@123457", "--source", "regdb")
    assert r.returncode == 0, r.stdout + r.stderr


def test_full_reconcile_agrees_with_charons_pool_leases(lab: Lab) -> None:
    """list-sas and the pool's leases name the same users: a full reconcile changes nothing."""
    alice = lab.lab.client("alice")
    vip = lab.vip(alice)
    assert vip is not None
    pools = lab.gateway().swanctl("--list-pools", "--leases").stdout
    # the pool's header line names its base address, which may be this VIP: match lease lines only
    lease = next((ln for ln in pools.splitlines() if ln.split()[:2] == [vip, "online"]), "")
    assert "alice@123456" in lease and "online" in lease, pools
    r = _ikemgr(lab.config_path, "reconcile", "--dry-run", "--netns", lab.ns("gw"))
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)["data"]
    assert out["add"] == [] and out["remove"] == [] and out["rules"] >= 2


def test_sync_terminates_a_revoked_users_session_when_configured(lab: Lab, tmp_path: Path) -> None:
    """sync.terminate_revoked: a revoked user is not only re-routed but disconnected."""
    bob = lab.lab.client("bob")
    assert lab.vip(bob) is not None
    listing = tmp_path / "userlist.txt"
    config = tmp_path / "lab-terminate.yaml"
    config.write_text(lab.config_path.read_text() + f"""
sync:
  terminate_revoked: true
  max_removal_share: 1.0
  sources:
    - {{kind: file, name: regdb, path: {listing}}}
""")
    try:
        listing.write_text("bob@123456\n")
        r = _ikemgr(config, "sync", "--netns", lab.ns("gw"))
        assert r.returncode == 0, r.stdout + r.stderr
        vip = lab.vip(bob)
        assert vip is not None and len(rules_for(lab, vip)) == 1
        listing.write_text("nobody@123457\n")
        r = _ikemgr(config, "sync", "--netns", lab.ns("gw"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout)["data"]["reconciled"] is True
        # charon sends the DELETE; bob's client loses its SA, the gateway its rule
        assert until(lambda: lab.vip(bob) is None, timeout=10.0) is not None
        assert until(lambda: rules_for(lab, vip) == [], timeout=3.0) is not None
        ids = {s.get("remote-eap-id") or s.get("remote-id") for s in lab.gateway_sas()}
        assert "bob@123456" not in ids
        assert "alice@123456" in ids  # nobody else was touched
    finally:
        _ikemgr(lab.config_path, "grant", "remove", "nobody@123457", "--source", "regdb")
        _ikemgr(lab.config_path, "grant", "remove", "bob@123456", "--source", "regdb")
        if lab.vip(bob) is None:  # the shared lab goes on with bob connected
            r = lab.connect(bob)
            assert r.returncode == 0, r.stdout

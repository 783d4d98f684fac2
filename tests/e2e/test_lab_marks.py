"""The lab on the production default policy backend (nft map VIP→mark + one fwmark rule per VLAN)."""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers import IKEMGR
from ikemgr_lab import procs
from ikemgr_lab.model import load_lab as load
from ikemgr_lab.runner import Lab

pytestmark = pytest.mark.root



def test_marks_backend_steers_alice_and_erin_to_their_vlans(lab_variant) -> None:  # type: ignore[no-untyped-def]
    v = lab_variant({"  backend: rules\n": "  backend: marks\n"})
    lab = Lab(load(v.config), v.config)
    assert lab.cfg.policy.backend == "marks"
    try:
        out = lab.up(lambda _line: None)
        assert lab.expectations(out["proof"]) == []
        rows = {row["client"]: row for row in out["proof"]}
        assert rows["alice"]["path"].startswith("ens3.1 ") and rows["alice"]["lab_host_saw"] == "10.2.0.253"
        assert rows["erin"]["path"].startswith("ens3.2 ") and rows["erin"]["lab_host_saw"] == "10.2.1.253"
        assert rows["bob"]["path"].startswith("ens2 ") and rows["bob"]["lab_host_saw"] == rows["bob"]["vip"]
        # no per-user ip rules with this backend: one fwmark rule per VLAN
        rules = json.loads(subprocess.run(["ip", "-j", "-n", lab.ns("gw"), "rule", "show"], capture_output=True,
                                          text=True, check=True).stdout)
        assert not [r for r in rules if r.get("src") in {rows[n]["vip"] for n in rows}]
        assert {r.get("table") for r in rules if "fwmark" in r} >= {"gw123456", "gw123457"}
        st = subprocess.run([IKEMGR, "status", "-c", str(v.config), "--netns", lab.ns("gw"), "--json"],
                            capture_output=True, text=True, timeout=60, check=False)
        data = json.loads(st.stdout)["data"]
        assert data["backend"] == "marks" and data["out_of_sync"] == 0
        alice = next(u for u in data["users"] if u["identity"] == "alice@123456")
        assert alice["in_kernel"] is True and alice["kernel_vlan"] == 123456
    finally:
        lab.down()
        assert procs.namespaces(v.prefix) == []

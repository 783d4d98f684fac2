"""A lab phase that fails says which one, with the daemon's log tail; `lab down` still cleans up.

Each case is a second lab (own prefix, state dir, rt_tables file) with one deliberately
broken piece that only the real daemon refuses: the config itself is valid, so `ikemgr
config check` and `render` pass and the failure comes from charon or FreeRADIUS.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers import IKEMGR
from ikemgr_lab import procs
from ikemgr_lab.runner import teardown

pytestmark = pytest.mark.root


CASES = {
    # a well-formed proposal with an algorithm charon does not know: `ikemgr render` stages
    # the tree and its check charon refuses it, so nothing is written and no gateway starts
    "esp-proposal": (
        "render",
        {"  farp: true\n": "  farp: true\n  esp_proposals: [aes256-foo512-modp2048]\n"},
        ["render refused, nothing written: swanctl/conf.d/ikemgr.conf: charon: ",
         "invalid value for: esp_proposals"],
        "] gateway charon …"),
    # FreeRADIUS told to listen on an address the gateway does not have: radiusd exits
    "radius-address": (
        "radius",
        {"radius:\n  address: 127.0.0.1\n": "radius:\n  address: 10.9.9.9\n"},
        ["Failed binding to auth address 10.9.9.9 port 1812", "FreeRADIUS log: {state}/radius/radiusd.out"],
        "] registration db …"),
}


def _lab_processes(marker: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [ln for ln in ps.splitlines() if marker in ln and "pytest" not in ln]


@pytest.mark.parametrize("case", sorted(CASES))
def test_failed_phase_is_named_with_log_tail_and_down_cleans_up(lab_variant, case: str) -> None:  # type: ignore[no-untyped-def]
    phase, broken, want, never = CASES[case]
    v = lab_variant(broken)
    try:
        check = subprocess.run([IKEMGR, "config", "check", "-c", str(v.config)], capture_output=True,
                               text=True, timeout=60, check=False)
        assert check.returncode == 0, check.stdout + check.stderr  # only the daemon can tell

        up = subprocess.run([IKEMGR, "lab", "up", "-c", str(v.config)], capture_output=True, text=True,
                            timeout=120, check=False)
        assert up.returncode == 1, up.stdout + up.stderr
        errors = [ln for ln in up.stderr.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1 and errors[0].startswith(f"error: lab up: phase '{phase}' failed: "), up.stderr
        told = up.stderr[up.stderr.index("error: "):]
        for text in want:
            assert text.format(state=v.state) in told, told
        # the progress stops at the failed phase: it started, nothing after it did
        assert f"] {phase} …" in up.stderr and f"] {phase}: " not in up.stderr
        assert never not in up.stderr
        assert "proof" not in up.stdout

        # the half-built lab is still there until `down`
        assert len(procs.namespaces(v.prefix)) == 14
        down = subprocess.run([IKEMGR, "lab", "down", "-c", str(v.config), "--json"], capture_output=True,
                              text=True, timeout=60, check=False)
        assert down.returncode == 0, down.stdout + down.stderr
        data = json.loads(down.stdout)["data"]
        assert data["namespaces"] == 14 and data["processes"] >= 1, data
        assert procs.namespaces(v.prefix) == []
        assert _lab_processes(str(v.state)) == []
        assert not v.state.exists()
        assert not v.rt_tables.exists()
    finally:
        teardown(v.prefix, v.state, v.rt_tables)

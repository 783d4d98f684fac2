"""`lab down` after `lab up` was killed with SIGKILL half-way: nothing may be left behind.

Runs a second, independent lab (own prefix, state dir and rt_tables file, derived from
the example config) so it never touches the session lab of the other tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from helpers import IKEMGR
from ikemgr_lab import procs
from ikemgr_lab.runner import teardown

pytestmark = pytest.mark.root



def _lab_processes(marker: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [ln for ln in ps.splitlines() if marker in ln and "pytest" not in ln]


def test_down_cleans_up_after_up_was_killed(lab_variant) -> None:  # type: ignore[no-untyped-def]
    v = lab_variant()
    prefix, state, rt, cfg = v.prefix, v.state, v.rt_tables, v.config
    up = subprocess.Popen([IKEMGR, "lab", "up", "-c", str(cfg)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    try:
        assert up.stderr is not None
        seen = []
        deadline = time.monotonic() + 60
        for line in up.stderr:  # progress lines, one per phase start/end
            seen.append(line)
            if "client charons …" in line or time.monotonic() > deadline:
                break
        assert any("client charons …" in ln for ln in seen), "".join(seen)
        os.kill(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
        # the crash left a half-built lab: namespaces with daemons in them
        nss = procs.namespaces(prefix)
        assert len(nss) == 14
        assert sum(len(procs.netns_pids(ns)) for ns in nss) >= 5
        assert _lab_processes(str(state))

        r = subprocess.run([IKEMGR, "lab", "down", "-c", str(cfg), "--json"], capture_output=True, text=True,
                           timeout=60, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        data = json.loads(r.stdout)["data"]
        assert data["namespaces"] == 14 and data["processes"] >= 5
        assert procs.namespaces(prefix) == []
        assert _lab_processes(str(state)) == []
        assert not state.exists()
        assert not rt.exists()

        again = subprocess.run([IKEMGR, "lab", "down", "-c", str(cfg), "--json"], capture_output=True,
                               text=True, timeout=60, check=False)
        assert again.returncode == 0
        assert json.loads(again.stdout)["data"] == {"processes": 0, "namespaces": 0, "files": []}
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        teardown(prefix, state, rt)

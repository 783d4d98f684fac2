"""The lab's hook mode (lab.policy_engine: hook): what it requires and what the gateway charon gets."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from ikemgr.core.secrets import Secrets
from ikemgr.errors import ConfigError, UsageError
from ikemgr.render.strongswan import strongswan_outputs
from ikemgr_lab import charons
from ikemgr_lab.model import load_lab_text as load_text
from ikemgr_lab.runner import DEFAULT_LAB_CONFIG, REPO, Lab

TEXT = DEFAULT_LAB_CONFIG.read_text()
UPDOWN = f"  farp: true\n  updown: {REPO}/scripts/ikemgr-updown --config /tmp/ikemgr-lab.yaml\n"
HOOK = "  prefix: ikl-\n  policy_engine: hook\n"


def _lab(text: str) -> Lab:
    return Lab(load_text(text, "lab.yaml"), Path("lab.yaml"))


def _loads(lab: Lab) -> dict[str, str]:
    """plugin → load value, as the rendered strongswan.d/ikemgr.conf sets it."""
    text = {o.path: o.text for o in strongswan_outputs(lab.cfg, Secrets("s"), "h")}["strongswan.d/ikemgr.conf"]
    return dict(re.findall(r"(?m)^\s+([a-z0-9-]+) \{\n\s+load = (yes|no)$", text))


def test_default_lab_runs_watch_and_its_charon_has_no_updown() -> None:
    lab = _lab(TEXT)
    assert lab.lab.policy_engine == "watch"
    inst = charons.gateway_instance(lab.cfg, Path("/tmp/x"), "ikl-gw", Path("/tmp/x/etc"))
    assert inst.env == {} and inst.stock_layout == Path("/etc/strongswan.d")
    # the optional plugins come from the rendered plugin-load file, as on a host
    loads = _loads(lab)
    assert loads["kernel-libipsec"] == "yes" and loads["farp"] == "yes" and loads.get("updown") != "yes"


def test_hook_mode_needs_strongswan_updown() -> None:
    with pytest.raises(UsageError, match="strongswan.updown"):
        _lab(TEXT.replace("  prefix: ikl-\n", HOOK))


def test_hook_mode_loads_updown_and_lets_the_wrapper_find_this_ikemgr() -> None:
    lab = _lab(TEXT.replace("  farp: true\n", UPDOWN).replace("  prefix: ikl-\n", HOOK))
    assert lab.lab.policy_engine == "hook"
    inst = charons.gateway_instance(lab.cfg, Path("/tmp/x"), "ikl-gw", Path("/tmp/x/etc"))
    assert _loads(lab)["updown"] == "yes"
    # charon gives updown scripts its PATH and nothing else: the venv's ikemgr comes first
    first = inst.env["PATH"].split(os.pathsep)[0]
    assert first == str(Path(sys.executable).parent)


def test_unknown_policy_engine_is_refused() -> None:
    with pytest.raises(ConfigError):
        load_text(TEXT.replace("  prefix: ikl-\n", "  prefix: ikl-\n  policy_engine: cron\n"), "lab.yaml")

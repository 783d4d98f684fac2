"""The lab's hook mode (lab.policy_engine: hook): what it requires and what the gateway charon gets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ikemgr.errors import ConfigError, UsageError
from ikemgr_lab import charons
from ikemgr_lab.model import load_lab_text as load_text
from ikemgr_lab.runner import DEFAULT_LAB_CONFIG, REPO, Lab

TEXT = DEFAULT_LAB_CONFIG.read_text()
UPDOWN = f"  farp: true\n  updown: {REPO}/scripts/ikemgr-updown --config /tmp/ikemgr-lab.yaml\n"
HOOK = "  prefix: ikl-\n  policy_engine: hook\n"


def _lab(text: str) -> Lab:
    return Lab(load_text(text, "lab.yaml"), Path("lab.yaml"))


def test_default_lab_runs_watch_and_its_charon_has_no_updown() -> None:
    lab = _lab(TEXT)
    assert lab.lab.policy_engine == "watch"
    inst = charons.gateway_instance(lab.cfg, Path("/tmp/x"), "ikl-gw", Path("/tmp/x/etc"))
    assert "updown" not in inst.plugins and inst.env == {}
    # the optional plugins the rendered plugin-load files switch on, each once
    assert inst.plugins.count("farp") == 1 and inst.plugins.count("kernel-libipsec") == 1
    assert inst.plugins.index("kernel-libipsec") < inst.plugins.index("kernel-netlink")


def test_hook_mode_needs_strongswan_updown() -> None:
    with pytest.raises(UsageError, match="strongswan.updown"):
        _lab(TEXT.replace("  prefix: ikl-\n", HOOK))


def test_hook_mode_loads_updown_and_lets_the_wrapper_find_this_ikemgr() -> None:
    lab = _lab(TEXT.replace("  farp: true\n", UPDOWN).replace("  prefix: ikl-\n", HOOK))
    assert lab.lab.policy_engine == "hook"
    inst = charons.gateway_instance(lab.cfg, Path("/tmp/x"), "ikl-gw", Path("/tmp/x/etc"))
    assert inst.plugins[-1] == "updown" and inst.plugins.count("updown") == 1
    assert "load = " in inst.strongswan_conf() and " updown\n" in inst.strongswan_conf()
    # charon gives updown scripts its PATH and nothing else: the venv's ikemgr comes first
    first = inst.env["PATH"].split(os.pathsep)[0]
    assert first == str(Path(sys.executable).parent)


def test_unknown_policy_engine_is_refused() -> None:
    with pytest.raises(ConfigError):
        load_text(TEXT.replace("  prefix: ikl-\n", "  prefix: ikl-\n  policy_engine: cron\n"), "lab.yaml")

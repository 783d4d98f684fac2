"""`ikemgr hook` as charon's updown would run it (the real CLI, PLUTO_* environment), and the
engine's event path, both against the scenario table in the real kernel."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from ikemgr.adapters.vici import SaUpdate
from ikemgr.config.load import load
from ikemgr.core.model import Sa
from ikemgr.reconcile import build_engine, close_engine

from .conftest import Lab
from .scenarios import ALLOWED, SCENARIO

pytestmark = pytest.mark.root
BACKENDS = ["marks", "rules"]


def env(verb: str, uid: str, vip: str, ident: str) -> dict[str, str]:
    return {"PLUTO_VERB": f"{verb}-client", "PLUTO_UNIQUEID": uid, "PLUTO_PEER_SOURCEIP": vip,
            "PLUTO_XAUTH_ID": ident, "PLUTO_PEER_ID": "192.0.2.100", "PLUTO_CONNECTION": "kuins"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_hook_cli_scenario(lab: Lab, backend: str) -> None:
    cfg = lab.config(backend)
    allow = lab.tmp / "allow.txt"
    allow.write_text("\n".join(ALLOWED) + "\n")
    for i, (verb, uid, vip, ident, want) in enumerate(SCENARIO):
        p = lab.ikemgr("hook", "--config", str(cfg), "--netns", lab.ns, "--allow-file", str(allow),
                       env=env(verb, uid, vip, ident))
        assert p.returncode == 0, (i, p.stderr)
        assert lab.routed(backend) == want, (i, verb, uid, ident)
    # the hook logs one decision line per SA it decided on, with the identity made safe
    p = lab.ikemgr("hook", "--config", str(cfg), "--netns", lab.ns, "--allow-file", str(allow),
                   "--log-format", "json", env=env("up", "9", "10.1.0.30", "a\nb;`x`@123456"))
    assert p.returncode == 0
    lines = [ln for ln in p.stderr.splitlines() if '"decision"' in ln]
    assert len(lines) == 1 and '"outcome": "rejected-identity"' in lines[0]
    assert lab.routed(backend) == {}


def test_hook_ignores_other_verbs_and_rejects_bad_env(lab: Lab) -> None:
    cfg = lab.config("marks")
    p = lab.ikemgr("hook", "--config", str(cfg), env={"PLUTO_VERB": "prepare-host"})
    assert p.returncode == 0 and "nothing to do" in p.stdout
    p = lab.ikemgr("hook", "--config", str(cfg), "--netns", lab.ns,
                   env=env("up", "1; reboot", "10.1.0.10", "alice@123456"))
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["error: PLUTO_UNIQUEID '1; reboot' is not a unique id"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_event_path_scenario(lab: Lab, backend: str) -> None:
    """The same table through Engine.events, the path watch takes for each VICI batch."""
    allow = lab.tmp / "allow.txt"
    allow.write_text("\n".join(ALLOWED) + "\n")
    e = build_engine(load(lab.config(backend)), netns=lab.ns, allow_file=allow)
    try:
        e.full([])
        for i, (verb, uid, vip, ident, want) in enumerate(SCENARIO):
            state = "ESTABLISHED" if verb == "up" else "DELETING"
            sa = Sa(uid, ident, (IPv4Address(vip),), state)
            e.events([SaUpdate("ike-updown", sa, sa.live)])
            assert lab.routed(backend) == want, (i, verb, uid, ident)
    finally:
        close_engine(e)


def test_hook_down_removes_policy_even_without_its_record(lab: Lab) -> None:
    """The SA file lost (or the up ran before an upgrade): the down still cleans up."""
    cfg = lab.config("rules")
    allow = lab.tmp / "allow.txt"
    allow.write_text("alice@123456\n")
    args = ("hook", "--config", str(cfg), "--netns", lab.ns, "--allow-file", str(allow))
    assert lab.ikemgr(*args, env=env("up", "1", "10.1.0.10", "alice@123456")).returncode == 0
    assert lab.routed("rules") == {"10.1.0.10": 123456}
    (lab.tmp / "state" / "hook-sas.json").unlink()
    p = lab.ikemgr(*args, env=env("down", "1", "10.1.0.10", "alice@123456"))
    assert p.returncode == 0, p.stderr
    assert lab.routed("rules") == {}

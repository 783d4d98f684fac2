"""SIGKILL at exact points inside one kernel change, then a restart: no stale, no missing rule.

A child process (killpoint_child.py) runs the real engine and backend against the kernel
of a fresh namespace and kills itself at one point of an apply: between the marks
backend's fwmark rule and its nft transaction, between the nft transaction and the removal
of a VLAN rule nobody uses any more, after the kernel committed the nft transaction whose
answers were never read, between two rtnetlink chunks of the rules backend
(one user's two rules half applied), and after the kernel applied a batch whose ACKs were
never read. The test first checks the kernel really is in that half state, then starts a
new engine as ``watch`` starts (a full reconcile against the SA list of the moment: the
SA still up, or gone while nobody watched) and checks the kernel is exactly what that SA
list calls for, and that a second reconcile has nothing to do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from ikemgr.config.load import load
from ikemgr.core.model import Sa
from ikemgr.engine.wiring import build_engine, close_engine

from .conftest import Lab

pytestmark = pytest.mark.root
CHILD = Path(__file__).with_name("killpoint_child.py")
A, B = "10.1.0.10", "10.1.0.11"


def _sa(uid: str, ident: str, vip: str, state: str = "ESTABLISHED") -> dict[str, Any]:
    return {"uid": uid, "id": ident, "vips": [vip], "state": state}


def _crash(lab: Lab, backend: str, point: str, allowed: list[str], start: list[dict[str, Any]],
           **change: Any) -> tuple[Path, Path]:
    allow = lab.tmp / "allow.txt"
    allow.write_text("\n".join(allowed) + "\n")
    config = lab.config(backend)
    spec = lab.tmp / f"spec-{point}.json"
    spec.write_text(json.dumps({"config": str(config), "netns": lab.ns, "allow_file": str(allow),
                                "start": start, "point": point, **change}))
    r = subprocess.run([sys.executable, str(CHILD), str(spec)], capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, f"the kill point {point} was not reached (rc {r.returncode}): {r.stderr[-2000:]}"
    return config, allow


def _restart(lab: Lab, config: Path, allow: Path, sas: list[dict[str, Any]]) -> None:
    """watch's start: one full reconcile against charon's SA list, then one more (idempotent)."""
    e = build_engine(load(config), netns=lab.ns, allow_file=allow)
    try:
        now = [Sa(d["uid"], d["id"], tuple(IPv4Address(v) for v in d["vips"]), d["state"]) for d in sas]
        e.full(now)
        second = e.full(now)
        assert second.plan.empty and second.stray == 0, second
    finally:
        close_engine(e)


@pytest.mark.parametrize("alice_still_up", [True, False], ids=["sa-up", "sa-gone"])
def test_marks_killed_between_the_vlan_rule_and_the_nft_transaction(lab: Lab, alice_still_up: bool) -> None:
    alice = _sa("1", "alice@123456", A)
    config, allow = _crash(lab, "marks", "marks-after-vlan-rule", ["alice@123456"], [], events=[alice])
    assert lab.fwmark_tables() == {"123456"} and lab.map_elements() == {}  # the half state
    _restart(lab, config, allow, [alice] if alice_still_up else [])
    if alice_still_up:
        assert lab.routed("marks") == {A: 123456} and lab.fwmark_tables() == {"123456"}
    else:  # a VLAN rule nobody uses is not left behind
        assert lab.routed("marks") == {} and lab.fwmark_tables() == set() and lab.map_elements() == {}


def test_marks_killed_between_the_nft_transaction_and_the_vlan_rule_removal(lab: Lab) -> None:
    alice, carol = _sa("1", "alice@123456", A), _sa("2", "carol@123457", B)
    config, allow = _crash(lab, "marks", "marks-after-nft", ["alice@123456", "carol@123457"],
                           [alice, carol], events=[{**carol, "state": "DELETING"}])
    assert lab.map_elements() == {A: 123456} and lab.fwmark_tables() == {"123456", "123457"}
    _restart(lab, config, allow, [alice])
    assert lab.routed("marks") == {A: 123456} and lab.fwmark_tables() == {"123456"}


def _many(n: int) -> list[dict[str, Any]]:
    return [_sa(str(100 + i), f"u{i}@123456", str(IPv4Address("10.1.1.0") + i)) for i in range(n)]


@pytest.mark.parametrize("users_still_up", [True, False], ids=["sas-up", "sas-gone"])
def test_rules_killed_between_two_rtnetlink_chunks(lab: Lab, users_still_up: bool) -> None:
    users = _many(257)  # 514 rules: more than one 512-message chunk
    allowed = [u["id"] for u in users]
    # added after the start, so the full reconcile's read finds them: one of the first user's
    # two rules (a partial user: that rule is deleted first and re-added with its twin, so
    # the first chunk ends inside a user) and a stray rule in ikemgr's band (deleted after
    # the adds: make before break, so it is still there when the process dies)
    first = IPv4Address("10.1.1.0")
    partial = ["ip", "-n", lab.ns, "rule", "add", "priority", str(29000 + int(first) % 1000), "from", str(first),
               "to", "10.20.0.0/16", "lookup", "123456", "protocol", "99"]
    stray = ["ip", "-n", lab.ns, "rule", "add", "priority", "29000", "from", "10.1.9.9", "to", "10.20.0.0/16",
             "lookup", "123456", "protocol", "99"]
    config, allow = _crash(lab, "rules", "rules-between-chunks", allowed, [], full=users,
                           before_change=[partial, stray])
    rules = lab.user_rules()
    assert len(rules) == 512 and ("10.1.9.9", "10.20.0.0/16", "123456") in rules
    per_vip: dict[str, int] = {}
    for vip, _, _ in rules:
        per_vip[vip] = per_vip.get(vip, 0) + 1
    per_vip.pop("10.1.9.9")
    # 255 users whole, one with one of its two rules (half applied), the last not yet
    assert sorted(per_vip.values()) == [1] + [2] * 255
    _restart(lab, config, allow, users if users_still_up else [])
    if users_still_up:
        want = {str(IPv4Address("10.1.1.0") + i): 123456 for i in range(257)}
        assert lab.routed("rules") == want and len(lab.user_rules()) == 514
    else:
        assert lab.user_rules() == set() and lab.owned_rules() == []


@pytest.mark.parametrize("backend", ["marks", "rules"])
@pytest.mark.parametrize("alice_still_up", [True, False], ids=["sa-up", "sa-gone"])
def test_killed_after_the_kernel_applied_before_the_answers_were_read(lab: Lab, backend: str,
                                                                      alice_still_up: bool) -> None:
    """marks: the nft transaction committed; rules: the rtnetlink batch applied. ikemgr read
    none of the kernel's answers before it died."""
    alice, carol = _sa("1", "alice@123456", A), _sa("2", "carol@123457", B)
    config, allow = _crash(lab, backend, f"{backend}-before-acks", ["alice@123456", "carol@123457"], [],
                           events=[alice, carol])
    assert lab.routed(backend) == {A: 123456, B: 123457}  # the kernel did it; ikemgr never knew
    _restart(lab, config, allow, [alice] if alice_still_up else [])
    assert lab.routed(backend) == ({A: 123456} if alice_still_up else {})
    if backend == "marks":
        assert lab.map_elements() == ({A: 123456} if alice_still_up else {})
        assert lab.fwmark_tables() == ({"123456"} if alice_still_up else set())
    else:
        assert len(lab.user_rules()) == (2 if alice_still_up else 0)

"""The lab's pure parts: the lab section, the topology plan, generated configs, the promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikemgr.errors import ConfigError, UsageError
from ikemgr_lab.model import load_lab as load
from ikemgr_lab.model import load_lab_text as load_text
from ikemgr_lab.runner import DEFAULT_LAB_CONFIG, Lab
from ikemgr_lab.topology import plan

TEXT = DEFAULT_LAB_CONFIG.read_text()


def _cfg(text: str = TEXT):  # type: ignore[no-untyped-def]
    return load_text(text, "lab.yaml")


def test_example_lab_config_loads() -> None:
    cfg = load(DEFAULT_LAB_CONFIG)
    assert cfg.lab is not None
    assert [c.name for c in cfg.lab.clients if c.connect] == ["alice", "bob", "carol", "erin"]
    assert cfg.lab.client("frank").organisation == "Other University"


def test_every_namespace_carries_the_prefix_and_is_made_first() -> None:
    topo = plan(_cfg())
    assert len(topo.namespaces) == 6 + 2 + 6
    assert all(ns.startswith("ikl-") for ns in topo.namespaces)
    adds = [s for s in topo.steps if s.argv[:3] == ("ip", "netns", "add")]
    assert [s.argv[3] for s in adds] == list(topo.namespaces)
    first_link = next(i for i, s in enumerate(topo.steps) if "veth" in s.argv)
    assert all(topo.steps.index(a) < first_link for a in adds)


def test_steps_are_argv_lists_never_shell_text() -> None:
    for step in plan(_cfg()).steps:
        assert isinstance(step.argv, tuple) and all(isinstance(a, str) for a in step.argv)
        assert "sh" not in step.argv and "-c" not in step.argv


def test_gateway_lab_addresses_are_broadcast_minus_2_without_prefix_route() -> None:
    topo = plan(_cfg())
    gw = topo.ns("gw")
    vlan_addrs = [s.argv for s in topo.steps
                  if s.argv[:4] == ("ip", "-n", gw, "addr") and "noprefixroute" in s.argv]
    assert vlan_addrs == [
        ("ip", "-n", gw, "addr", "add", "10.2.0.253/24", "dev", "ens3.1", "noprefixroute"),
        ("ip", "-n", gw, "addr", "add", "10.2.1.253/24", "dev", "ens3.2", "noprefixroute"),
    ]


def test_internet_next_hop_and_home_masquerade() -> None:
    topo = plan(_cfg())
    inet = topo.ns("inet")
    assert ("ip", "-n", inet, "addr", "add", "192.0.2.254/24", "dev", "br0") in [s.argv for s in topo.steps]
    nat = [s for s in topo.steps if s.stdin is not None]
    assert len(nat) == 1 and nat[0].argv[3] == topo.ns("home")
    assert 'oifname "wan0" masquerade' in (nat[0].stdin or "")


def test_home_clients_route_via_the_home_router_others_via_the_internet() -> None:
    topo = plan(_cfg())
    routes = {s.argv[2]: s.argv[-1] for s in topo.steps if s.argv[3:6] == ("route", "add", "default")}
    assert routes[topo.ns("alice")] == "192.168.77.1"
    assert routes[topo.ns("erin")] == "192.0.2.254"
    assert routes[topo.ns("lab1")] == "10.2.0.254"
    assert routes[topo.ns("gw")] == "192.0.2.254"


def test_client_named_like_a_lab_node_is_refused() -> None:
    text = TEXT.replace("{name: carol,", "{name: campus,")
    with pytest.raises(UsageError, match="campus is already a lab node"):
        plan(_cfg(text))


def test_lab_host_outside_its_vlan_is_refused() -> None:
    with pytest.raises(UsageError, match=r"lab_hosts\[0\].address: 10.9.9.9"):
        plan(_cfg(TEXT.replace("{vlan: 123456, address: 10.2.0.10}", "{vlan: 123456, address: 10.9.9.9}")))


def test_lab_section_errors_name_field_and_line() -> None:
    text = TEXT.replace("{name: bob, identity: bob@123456, password: bob-pass,",
                        "{name: bob, identity: bob@123456,")
    with pytest.raises(ConfigError) as e:
        _cfg(text)
    (problem,) = e.value.problems
    assert problem.path == "lab.clients[1].password"
    assert problem.message == "required with auth eap-mschapv2"
    assert problem.line is not None and "name: bob" in text.splitlines()[problem.line - 1]


@pytest.mark.parametrize("bad", ["/etc", "/tmp", "/run/netns", "/tmp/x/ikemgr-lab", "/home/ikemgr-lab"])
def test_state_dir_must_be_disposable(bad: str) -> None:
    with pytest.raises(ConfigError, match="state_dir"):
        _cfg(TEXT.replace("  state_dir: /tmp/ikemgr-lab\n", f"  state_dir: {bad}\n"))


def test_hostile_identity_in_lab_section_is_refused() -> None:
    with pytest.raises(ConfigError, match="identity"):
        _cfg(TEXT.replace("identity: carol,", "identity: 'carol\" }; x',"))


def _row(client: str, identity: str, vip: str, lab_saw: str, campus_saw: str | None = None,
         path: str | None = None) -> dict:
    return {"client": client, "identity": identity, "vip": vip, "lab_host": "", "path": path,
            "campus_server_saw": campus_saw or vip, "lab_host_saw": lab_saw, "internet_saw": "192.0.2.1"}


def test_expectations_catch_a_missing_snat_and_a_leak() -> None:
    lab = Lab(_cfg(), Path("lab.yaml"))
    ok = [_row("alice", "alice@123456", "10.1.0.10", "10.2.0.253", "10.2.0.253"),
          _row("bob", "bob@123456", "10.1.0.11", "10.1.0.11")]
    assert lab.expectations(ok) == []
    bad = [_row("alice", "alice@123456", "10.1.0.10", "10.1.0.10"),
           _row("bob", "bob@123456", "10.1.0.11", "10.2.0.253")]
    problems = lab.expectations(bad)
    assert any("alice: lab host saw 10.1.0.10, want 10.2.0.253" in p for p in problems)
    assert any("bob: not on the allow-list but reached the lab host as 10.2.0.253" in p for p in problems)


def test_expectations_check_the_measured_interface() -> None:
    lab = Lab(_cfg(), Path("lab.yaml"))
    good = _row("alice", "alice@123456", "10.1.0.10", "10.2.0.253", "10.2.0.253",
                path="ens3.1 (lab VLAN 123456, gw123456)")
    assert lab.expectations([good]) == []
    wrong = _row("bob", "bob@123456", "10.1.0.11", "10.1.0.11", path="ens3.1 (lab VLAN 123456, gw123456)")
    assert lab.expectations([wrong]) == ["bob: left the gateway by ens3.1 (lab VLAN 123456, gw123456), want ens2"]

"""core.base_diff: desired base state vs. observed owned state → plan, by tables of cases."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from helpers.gateway import gateway_doc
from ikemgr.config.schema import Config
from ikemgr.core.base_diff import (
    Observed,
    Plan,
    address_fields,
    interface_fields,
    owned_tables,
    parse_rt_tables,
    plan,
    route_key,
)
from ikemgr.core.base_state import RouteSpec, base_state
from ikemgr.core.model import Rule

N = ip_network
A = ip_address
DEFAULT = N("0.0.0.0/0")


def make_cfg(vlans: list[dict[str, Any]] | None = None, **extra: Any) -> Config:
    doc = gateway_doc(vlans=vlans, **extra)
    return Config.model_validate(doc)


CFG = make_cfg()
STATE = base_state(CFG)


def simulate(observed: Observed, p: Plan) -> Observed:
    """What the kernel holds after the plan, keyed the way the kernel keys routes and rules."""
    routes = {route_key(r): r for r in observed.routes}
    for r in p.routes_remove:
        routes.pop(route_key(r), None)
    for r in (*p.routes_add, *p.routes_replace):
        routes[route_key(r)] = r
    rules = list(observed.rules)
    for rule in p.rules_remove:
        rules.remove(rule)
    rules += p.rules_add
    return Observed(rules=tuple(sorted(rules)), routes=tuple(routes.values()))


LINK_123457 = RouteSpec(123457, N("10.2.1.0/24"), "lab2", prefsrc=A("10.2.1.253"))
GW_123457 = RouteSpec(123457, DEFAULT, "lab2", gateway=A("10.2.1.254"))
CAMPUS_DEFAULT = RouteSpec(200, DEFAULT, "ens2", gateway=A("10.1.0.254"))
RULE_10 = Rule(30001, 200, src=N("10.1.0.0/24"), dst=N("10.0.0.0/8"))
RULE_198 = Rule(30001, 200, src=N("10.1.0.0/24"), dst=N("198.51.100.0/24"))

CASES = [
    # (id, observed, expected plan)
    ("converged", Observed(STATE.rules, STATE.routes), Plan()),
    ("fresh", Observed(), Plan(
        routes_add=(
            RouteSpec(200, N("10.1.0.0/24"), "ens2", prefsrc=A("10.1.0.251")),
            CAMPUS_DEFAULT,
            RouteSpec(123456, N("10.2.0.0/24"), "lab1", prefsrc=A("10.2.0.253")),
            RouteSpec(123456, DEFAULT, "lab1", gateway=A("10.2.0.254")),
            LINK_123457,
            GW_123457,
        ),
        rules_add=(RULE_10, RULE_198))),
    ("gateway changed -> replace, not add",
     Observed(STATE.rules, tuple(r if r != CAMPUS_DEFAULT else replace(r, gateway=A("10.1.0.253"))
                                 for r in STATE.routes)),
     Plan(routes_replace=(CAMPUS_DEFAULT,))),
    ("device changed -> replace",
     Observed(STATE.rules, tuple(r if r != LINK_123457 else replace(r, dev="#7") for r in STATE.routes)),
     Plan(routes_replace=(LINK_123457,))),
    ("stale table 4000000000 removed, gateway route before link route",
     Observed(STATE.rules, (*STATE.routes,
                            RouteSpec(4000000000, N("10.9.0.0/24"), "lab9", prefsrc=A("10.9.0.253")),
                            RouteSpec(4000000000, DEFAULT, "lab9", gateway=A("10.9.0.254")))),
     Plan(routes_remove=(RouteSpec(4000000000, DEFAULT, "lab9", gateway=A("10.9.0.254")),
                         RouteSpec(4000000000, N("10.9.0.0/24"), "lab9", prefsrc=A("10.9.0.253"))))),
    ("extra owned route in a kept table removed",
     Observed(STATE.rules, (*STATE.routes, RouteSpec(123456, N("10.50.0.0/16"), "lab1",
                                                     gateway=A("10.2.0.254")))),
     Plan(routes_remove=(RouteSpec(123456, N("10.50.0.0/16"), "lab1", gateway=A("10.2.0.254")),))),
    ("stale rule removed", Observed((RULE_10, RULE_198, Rule(30001, 200, src=N("10.1.0.0/24"),
                                                                 dst=N("172.16.0.0/12"))), STATE.routes),
     Plan(rules_remove=(Rule(30001, 200, src=N("10.1.0.0/24"), dst=N("172.16.0.0/12")),))),
    ("duplicate rule: one copy removed", Observed((RULE_10, RULE_10, RULE_198), STATE.routes),
     Plan(rules_remove=(RULE_10,))),
    ("rule pointing at another table: remove old, add new",
     Observed((replace(RULE_10, table=201), RULE_198), STATE.routes),
     Plan(rules_add=(RULE_10,), rules_remove=(replace(RULE_10, table=201),))),
]


@pytest.mark.parametrize(("observed", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_plan_table(observed: Observed, expected: Plan) -> None:
    got = plan(STATE, observed)
    assert got == expected
    assert got.empty == expected.empty
    # applying the plan converges: the next plan is empty
    assert plan(STATE, simulate(observed, got)).empty


def test_vlan_removed_removes_exactly_its_routes() -> None:
    one = base_state(make_cfg(vlans=[
        {"number": 123456, "interface": "lab1", "subnet": "10.2.0.0/24", "gateway": "10.2.0.254"}]))
    got = plan(one, Observed(STATE.rules, STATE.routes))
    assert got == Plan(routes_remove=(GW_123457, LINK_123457))
    assert got.lines({123457: "gw123457"}) == [
        "- route default via 10.2.1.254 dev lab2 table gw123457",
        "- route 10.2.1.0/24 dev lab2 src 10.2.1.253 table gw123457",
    ]


def test_table_ids_above_255_end_to_end() -> None:
    cfg = make_cfg(vlans=[{"number": 999999999, "interface": "lab1", "subnet": "10.2.0.0/24",
                           "gateway": "10.2.0.254"},
                          {"number": 7, "table": 4294967294, "table_name": "big",
                           "interface": "lab2", "subnet": "10.3.0.0/24", "gateway": "10.3.0.254"}])
    st = base_state(cfg)
    assert {t.id for t in st.tables} == {200, 999999999, 4294967294}
    p = plan(st, Observed())
    assert {r.table for r in p.routes_add} == {200, 999999999, 4294967294}
    lines = p.lines({4294967294: "big"})
    assert "+ route default via 10.3.0.254 dev lab2 table big" in lines
    assert "+ route 10.2.0.0/24 dev lab1 src 10.2.0.253 table 999999999" in lines
    assert plan(st, simulate(Observed(), p)).empty
    assert owned_tables(st, [123456]) == (200, 123456, 999999999, 4294967294)


def test_plan_lines_order_matches_apply_order() -> None:
    p = Plan(routes_add=(LINK_123457,), routes_replace=(CAMPUS_DEFAULT,), rules_add=(RULE_10,),
             rules_remove=(RULE_198,), routes_remove=(GW_123457,))
    assert p.lines({200: "gwk3"}) == [
        "+ route 10.2.1.0/24 dev lab2 src 10.2.1.253 table 123457",
        "~ route default via 10.1.0.254 dev ens2 table gwk3",
        "+ rule priority 30001 from 10.1.0.0/24 to 10.0.0.0/8 lookup gwk3",
        "- rule priority 30001 from 10.1.0.0/24 to 198.51.100.0/24 lookup gwk3",
        "- route default via 10.2.1.254 dev lab2 table 123457",
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("", {}),
    ("200 gwk3\n123456 gw123456\n", {200: "gwk3", 123456: "gw123456"}),
    ("# comment\n\n4294967295 top # trailing\n", {4294967295: "top"}),
    ("0x10 hex\n", {16: "hex"}),
    ("junk\n1 2 3\nabc name\n0 zero\n4294967296 toobig\n", {}),
])
def test_parse_rt_tables(text: str, expected: dict[int, str]) -> None:
    assert parse_rt_tables(text) == expected


def test_field_maps_name_config_fields() -> None:
    assert interface_fields(CFG) == {
        "ens1": "gateway.outside.interface", "ens2": "gateway.campus.interface",
        "lab1": "vlans[0].interface", "lab2": "vlans[1].interface"}
    assert address_fields(CFG) == {
        "10.1.0.251": "gateway.campus.address", "10.2.0.253": "vlans[0].snat", "10.2.1.253": "vlans[1].snat"}

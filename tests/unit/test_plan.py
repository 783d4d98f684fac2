"""plan.diff / plan.apply: the smallest change set, as properties."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from ikemgr.core.model import UserRule
from ikemgr.core.policy_diff import Plan, apply, apply_counted, diff, tables_after, vlans_in_use

rules = st.builds(
    lambda n, v: UserRule(IPv4Address(f"10.1.0.{n}"), v, v, 29000),
    st.integers(1, 30), st.sampled_from([123456, 123457, 300]))
states = st.lists(rules, max_size=30).map(lambda rs: {r.vip: r for r in rs})


@settings(max_examples=400, deadline=None)
@given(states, states)
def test_apply_of_diff_reaches_desired(d: dict, a: dict) -> None:
    assert apply(diff(d, a), a) == d


@settings(max_examples=300, deadline=None)
@given(states, states)
def test_diff_is_idempotent(d: dict, a: dict) -> None:
    assert diff(d, apply(diff(d, a), a)).empty
    assert diff(d, d).empty


@settings(max_examples=300, deadline=None)
@given(states, states)
def test_diff_is_minimal(d: dict, a: dict) -> None:
    p = diff(d, a)
    assert all(a.get(r.vip) != r for r in p.add)
    assert all(d.get(r.vip) != r for r in p.remove)
    assert len(p.add) + len(p.remove) <= 2 * len(set(d) | set(a))


@settings(max_examples=300, deadline=None)
@given(states, states, st.frozensets(st.integers(1, 30).map(lambda n: IPv4Address(f"10.1.0.{n}"))))
def test_scoped_diff_touches_only_the_scope(d: dict, a: dict, scope: frozenset) -> None:
    p = diff(d, a, scope)
    assert p.changed_vips <= scope
    after = apply(p, a)
    for vip in scope:
        assert after.get(vip) == d.get(vip)
    for vip in set(a) - scope:
        assert after[vip] == a[vip]


def test_moving_a_vip_between_vlans_is_remove_plus_add() -> None:
    vip = IPv4Address("10.1.0.5")
    old, new = UserRule(vip, 1, 1, 29000), UserRule(vip, 2, 2, 29000)
    p = diff({vip: new}, {vip: old})
    assert p == Plan(add=(new,), remove=(old,))
    assert p.changed_vips == {vip}
    assert p.lines() == ["- 10.1.0.5 vlan 1 table 1 priority 29000", "+ 10.1.0.5 vlan 2 table 2 priority 29000"]


def test_vlans_in_use_counts_users() -> None:
    rs = {IPv4Address(f"10.1.0.{i}"): UserRule(IPv4Address(f"10.1.0.{i}"), t, t, 1)
          for i, t in ((1, 7), (2, 7), (3, 9))}
    assert vlans_in_use(rs) == {7: 2, 9: 1}


plans = st.builds(lambda add, rem: Plan(tuple({r.vip: r for r in add}.values()),
                                        tuple({r.vip: r for r in rem}.values())),
                  st.lists(rules, max_size=8), st.lists(rules, max_size=8))


@settings(max_examples=500, deadline=None)
@given(states, states, st.integers(0, 30))
def test_in_place_apply_and_its_table_counts_equal_the_copying_apply(d: dict, a: dict, scope_n: int) -> None:
    """The engine's per-batch path (apply_counted, tables_after: O(batch)) gives exactly
    what apply + vlans_in_use (O(users)) give, for diffs and scoped diffs."""
    scope = frozenset(IPv4Address(f"10.1.0.{n}") for n in range(1, scope_n + 1))
    for plan in (diff(d, a), diff(d, a, scope)):
        owned, use = dict(a), vlans_in_use(a)
        tables = tables_after(plan, owned, use)
        assert owned == a  # tables_after changes nothing
        apply_counted(plan, owned, use)
        assert owned == apply(plan, a)
        assert use == vlans_in_use(owned)
        assert tables == set(use)


@settings(max_examples=500, deadline=None)
@given(states, plans)
def test_in_place_apply_matches_for_any_plan(a: dict, plan: Plan) -> None:
    """Also for plans no diff would make (removals of rules not held, adds over held VIPs)."""
    owned, use = dict(a), vlans_in_use(a)
    tables = tables_after(plan, owned, use)
    apply_counted(plan, owned, use)
    assert owned == apply(plan, a)
    assert use == vlans_in_use(owned) and tables == set(use)

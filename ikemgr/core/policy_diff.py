"""desired vs actual → the smallest change set (pure).

A plan is a set of element changes keyed by VIP: adding a rule, removing one, or moving a
VIP to another VLAN (remove + add in the same atomic batch). It also says which lab
VLANs gain their first user or lose their last one, because the ``marks`` backend keeps
one fwmark rule per VLAN that currently has users.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from ikemgr.core.model import UserRule


@dataclass(frozen=True)
class Plan:
    add: tuple[UserRule, ...] = ()
    remove: tuple[UserRule, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.add and not self.remove

    @property
    def changed_vips(self) -> frozenset[IPv4Address]:
        """VIPs whose path changes: their conntrack entries must go so SNAT follows."""
        return frozenset([r.vip for r in self.add] + [r.vip for r in self.remove])

    def lines(self) -> list[str]:
        out = [f"- {r.vip} vlan {r.vlan} table {r.table_id} priority {r.priority}" for r in self.remove]
        out += [f"+ {r.vip} vlan {r.vlan} table {r.table_id} priority {r.priority}" for r in self.add]
        return out


def diff(desired: Mapping[IPv4Address, UserRule], actual: Mapping[IPv4Address, UserRule],
         scope: frozenset[IPv4Address] | None = None) -> Plan:
    """Changes that turn ``actual`` into ``desired``; with ``scope``, only for those VIPs."""
    vips = (set(desired) | set(actual)) if scope is None else scope
    add: list[UserRule] = []
    remove: list[UserRule] = []
    for vip in vips:
        want, have = desired.get(vip), actual.get(vip)
        if want == have:
            continue
        if have is not None:
            remove.append(have)
        if want is not None:
            add.append(want)
    # each list holds a VIP at most once, so ordering by VIP is the rules' own order, and
    # the integer key is ten times cheaper than the dataclass comparison
    return Plan(tuple(sorted(add, key=_vip_int)), tuple(sorted(remove, key=_vip_int)))


def _vip_int(r: UserRule) -> int:
    return int(r.vip)


def apply(plan: Plan, actual: Mapping[IPv4Address, UserRule]) -> dict[IPv4Address, UserRule]:
    """What ``actual`` becomes once the plan is applied (used for the in-memory index)."""
    out = dict(actual)
    for r in plan.remove:
        if out.get(r.vip) == r:
            del out[r.vip]
    for r in plan.add:
        out[r.vip] = r
    return out


def apply_counted(plan: Plan, owned: dict[IPv4Address, UserRule], use: dict[int, int]) -> None:
    """Apply ``plan`` to ``owned`` in place, keeping ``use`` (table id → VIPs in it) equal to
    ``vlans_in_use(owned)``: the same result as ``apply``, in O(plan) instead of O(owned)."""
    for r in plan.remove:
        if owned.get(r.vip) == r:
            del owned[r.vip]
            _count(use, r.table_id, -1)
    for r in plan.add:
        old = owned.get(r.vip)
        if old is not None:
            _count(use, old.table_id, -1)
        owned[r.vip] = r
        _count(use, r.table_id, 1)


def tables_after(plan: Plan, owned: Mapping[IPv4Address, UserRule], use: Mapping[int, int]) -> frozenset[int]:
    """The tables that hold a VIP once ``plan`` is applied (``use`` counts ``owned``), in
    O(plan + VLANs): the ``marks`` backend keeps one fwmark rule per such table."""
    touched = {}
    for r in (*plan.remove, *plan.add):
        have = owned.get(r.vip)
        if have is not None:
            touched[r.vip] = have
    counts = dict(use)
    apply_counted(plan, touched, counts)
    return frozenset(t for t, n in counts.items() if n > 0)


def _count(use: dict[int, int], table: int, by: int) -> None:
    n = use.get(table, 0) + by
    if n:
        use[table] = n
    else:
        use.pop(table, None)


def vlans_in_use(rules: Mapping[IPv4Address, UserRule]) -> dict[int, int]:
    """table id → number of VIPs routed into it."""
    out: dict[int, int] = {}
    for r in rules.values():
        out[r.table_id] = out.get(r.table_id, 0) + 1
    return out

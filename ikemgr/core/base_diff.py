"""Desired base state vs. what the kernel holds → the smallest plan that converges (pure).

``ikemgr apply`` owns exactly this much kernel state, and nothing else:

* rules whose rtnetlink protocol is ``routing.rule_protocol`` (99) **and** whose priority is
  ``routing.base_priority``. Rules in the per-user band (``user_priority`` up to
  ``base_priority - 1``) belong to the policy engine and are never observed here;
* routes carrying that protocol in the tables it owns: the tables of the current config
  plus the tables listed in the rt_tables file it wrote last time (so a removed VLAN's
  table is still cleaned up).

The adapter reduces the kernel's view to the same frozen ``Rule``/``RouteSpec`` values
that ``core.base_state.base_state`` produces, so "is it converged?" is plain value equality,
and a second plan computed after applying the first is empty.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ikemgr.config.schema import Config
from ikemgr.core.base_state import BaseState, RouteSpec
from ikemgr.core.model import Rule

RouteKey = tuple[int, object]


def route_key(r: RouteSpec) -> RouteKey:
    """The kernel identifies a (metric 0, tos 0) IPv4 route by its table and destination."""
    return (r.table, r.dst)


def _route_order(r: RouteSpec) -> tuple[int, int, str, int]:
    # link routes first: the kernel resolves a gateway through the table's own link route
    return (r.table, 0 if r.gateway is None else 1, str(r.dst), r.dst.prefixlen)


@dataclass(frozen=True)
class Observed:
    """The kernel state ikemgr owns, already reduced to spec values by the adapter."""

    rules: tuple[Rule, ...] = ()
    routes: tuple[RouteSpec, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What to change, in the order it must happen.

    ``routes_add`` are new (table, destination) keys and are added exclusively, so a route
    ikemgr does not own is never overwritten; ``routes_replace`` are keys ikemgr already
    owns whose next hop, device or source changed.
    """

    routes_add: tuple[RouteSpec, ...] = ()
    routes_replace: tuple[RouteSpec, ...] = ()
    routes_remove: tuple[RouteSpec, ...] = ()
    rules_add: tuple[Rule, ...] = ()
    rules_remove: tuple[Rule, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.routes_add or self.routes_replace or self.routes_remove
                    or self.rules_add or self.rules_remove)

    def lines(self, names: dict[int, str] | None = None) -> list[str]:
        """One line per change, iproute2 syntax, in apply order: ``+``, ``~`` or ``-``."""
        n = names or {}
        out = [f"+ route {r.ip_args(n.get(r.table))}" for r in self.routes_add]
        out += [f"~ route {r.ip_args(n.get(r.table))}" for r in self.routes_replace]
        out += [f"+ rule {r.ip_args(n.get(r.table))}" for r in self.rules_add]
        out += [f"- rule {r.ip_args(n.get(r.table))}" for r in self.rules_remove]
        out += [f"- route {r.ip_args(n.get(r.table))}" for r in self.routes_remove]
        return out


def owned_tables(state: BaseState, previously: Iterable[int] = ()) -> tuple[int, ...]:
    """Tables whose protocol-stamped routes apply may touch: configured now or before."""
    return tuple(sorted({t.id for t in state.tables} | set(previously)))


def plan(desired: BaseState, observed: Observed) -> Plan:
    """The diff. Observed values must already be limited to what ikemgr owns."""
    want_routes = {route_key(r): r for r in desired.routes}
    have_routes: dict[RouteKey, RouteSpec] = {}
    remove_routes: list[RouteSpec] = []
    for r in observed.routes:
        k = route_key(r)
        if k not in want_routes or k in have_routes:
            remove_routes.append(r)
        else:
            have_routes[k] = r
    add_routes = [r for k, r in want_routes.items() if k not in have_routes]
    replace_routes = [r for k, r in want_routes.items() if k in have_routes and have_routes[k] != r]

    want_rules = Counter(desired.rules)
    have_rules = Counter(observed.rules)
    add_rules = sorted((want_rules - have_rules).elements())
    remove_rules = sorted((have_rules - want_rules).elements())

    return Plan(
        routes_add=tuple(sorted(add_routes, key=_route_order)),
        routes_replace=tuple(sorted(replace_routes, key=_route_order)),
        # gateway routes go before the link routes they resolve through
        routes_remove=tuple(sorted(remove_routes, key=_route_order, reverse=True)),
        rules_add=tuple(add_rules),
        rules_remove=tuple(remove_rules),
    )


def interface_fields(cfg: Config) -> dict[str, str]:
    """Interface name → the config field that names it, for errors an operator can act on."""
    out = {
        cfg.gateway.outside.interface: "gateway.outside.interface",
        cfg.gateway.campus.interface: "gateway.campus.interface",
    }
    for i, v in enumerate(cfg.vlans):
        out.setdefault(v.interface, f"vlans[{i}].interface")
    return out


def address_fields(cfg: Config) -> dict[str, str]:
    """Preferred source address → its config field (a route's ``src`` must be local)."""
    out = {str(cfg.gateway.campus.address.ip): "gateway.campus.address"}
    for i, v in enumerate(cfg.vlans):
        out.setdefault(str(v.snat_address), f"vlans[{i}].snat")
    return out


def parse_rt_tables(text: str) -> dict[int, str]:
    """``<id> <name>`` lines of an rt_tables file; comments and junk lines are skipped."""
    out: dict[int, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        parts = line.split()
        if len(parts) != 2:
            continue
        ident, name = parts
        try:
            value = int(ident, 0)
        except ValueError:
            continue
        if 0 < value < 2**32:
            out[value] = name
    return out

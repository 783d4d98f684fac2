"""The ``rules`` backend: the seed's design, one ``ip rule`` per user and campus prefix.

``ip rule from VIP/32 to <campus prefix> lookup <VLAN table>``. The kernel walks the
rule list linearly for every routed packet, so forwarding slows down in proportion to
the number of users (docs/policy-engine.md has the figures). Rules are read and written
on one rtnetlink socket (``adapters.kernel.rule_channel``).
"""

from __future__ import annotations

import logging
from collections.abc import Set as AbstractSet
from ipaddress import IPv4Address, IPv4Network

from ikemgr.adapters.kernel.netns import InNetns
from ikemgr.adapters.kernel.rule_channel import RuleSocket
from ikemgr.adapters.policy.base import KernelView, owned_band
from ikemgr.config.schema import Config
from ikemgr.core.model import Rule, UserRule
from ikemgr.core.policy_diff import Plan

log = logging.getLogger("ikemgr.backend")


class RulesBackend:
    """One ip rule per (VIP, campus prefix): the seed's design."""

    name = "rules"

    def __init__(self, cfg: Config, ex: InNetns) -> None:
        self.cfg = cfg
        self.prefixes = tuple(p for p in cfg.campus_prefixes if isinstance(p, IPv4Network))
        self.nl = RuleSocket(ex, cfg.routing.rule_protocol)
        self._stray: list[Rule] = []
        self._by_table = {v.table_id: v.number for v in cfg.vlans}

    def kernel_rules(self, r: UserRule) -> list[Rule]:
        # from the integer: the text round trip ip_network(f"{vip}/32") was most of the
        # cost of building 10,000 users' rules for a reconcile
        src = IPv4Network((int(r.vip), 32))
        return [Rule(r.priority, r.table_id, src, p) for p in self.prefixes]

    def ensure(self) -> None:
        return None

    def read(self) -> KernelView:
        lo, hi = owned_band(self.cfg)
        rules = self.nl.dump(lo, hi)
        by_vip: dict[IPv4Address, list[Rule]] = {}
        stray: list[Rule] = []
        for k in rules:
            if (k.action != "lookup" or k.src is None or k.src.prefixlen != 32 or k.fwmark is not None
                    or k.table not in self._by_table):
                stray.append(k)
                continue
            by_vip.setdefault(k.src.network_address, []).append(k)  # type: ignore[arg-type]
        out: dict[IPv4Address, UserRule] = {}
        prio, want_dsts, n = self.cfg.routing.user_priority, set(self.prefixes), len(self.prefixes)
        for vip, ks in by_vip.items():
            table = ks[0].table
            # exactly kernel_rules(r) in any order, compared field by field (building the
            # expected Rule values was a fifth of a 10,000-user reconcile)
            if (len(ks) == n and {k.dst for k in ks} == want_dsts
                    and all(k.table == table and k.priority == prio and k.fwmask is None and k.goto is None
                            for k in ks)):
                out[vip] = UserRule(vip, self._by_table[table], table, prio)
            else:
                stray.extend(ks)  # partial or odd: remove, the plan re-adds it whole
        self._stray = stray
        return KernelView(out, list(stray))

    def apply(self, plan: Plan, tables: AbstractSet[int], *, fresh: bool = False) -> None:
        """One batch of rule changes; right after a ``read`` (``fresh``) the adds skip the
        kernel's duplicate check, a third of the cost of 10,000 adds (``rule_channel.encode``)."""
        delete = list(self._stray)
        for r in plan.remove:
            delete.extend(self.kernel_rules(r))
        add: list[Rule] = []
        for r in plan.add:
            add.extend(self.kernel_rules(r))
        self.nl.change(add, delete, exclusive=not fresh)
        self._stray = []

    def close(self) -> None:
        self.nl.close()
        self.nl.ex.close()

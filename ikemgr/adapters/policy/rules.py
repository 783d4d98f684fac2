"""The ``rules`` backend: the seed's design, one ``ip rule`` per user and campus prefix.

``ip rule from VIP/32 to <campus prefix> lookup <VLAN table>``. The kernel walks the
rule list linearly for every routed packet, so forwarding slows down in proportion to
the number of users (docs/policy-engine.md has the figures). Rules are read and written
on one rtnetlink socket (``adapters.kernel.rule_channel``).

A user's rules sit at a priority of their own VIP, spread over the band below the next
priority ikemgr or charon uses (``spread_priority``): rules of different VIPs never match
the same packet, so their order is free, and the kernel's duplicate check and its
insertion walk step over a rule of another priority after one comparison. With one
priority for everyone both compared every rule field by field: 4,000 users' adds cost
the kernel 1.24 s at one priority and 0.48 s spread over 1,000 (docs/policy-engine.md).
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

def spread_priority(cfg: Config, vip: IPv4Address) -> int:
    """The priority of ``vip``'s rules (``routing.user_span`` wide from ``user_priority``):
    a function of the VIP alone, so a restarted watch, the hook and a reconcile all agree
    on it without any state."""
    return cfg.routing.user_priority + int(vip) % cfg.routing.user_span


class RulesBackend:
    """One ip rule per (VIP, campus prefix): the seed's design."""

    name = "rules"
    needs_tables = False  # one rule per user and prefix: nothing per VLAN

    def __init__(self, cfg: Config, ex: InNetns) -> None:
        self.cfg = cfg
        self.prefixes = tuple(p for p in cfg.campus_prefixes if isinstance(p, IPv4Network))
        self.nl = RuleSocket(ex, cfg.routing.rule_protocol)
        self._stray: list[Rule] = []
        self._by_table = {v.table_id: v.number for v in cfg.vlans}
        self._base, self._span = cfg.routing.user_priority, cfg.routing.user_span

    def kernel_rules(self, r: UserRule) -> tuple[Rule, ...]:
        """The rules of ``r``'s VIP into its table, built from the integer: the text round
        trip ip_network(f"{vip}/32") was most of the cost of building 10,000 users' rules
        for a reconcile.

        Built at each use (3.5 µs), not kept: a cache of the VIPs seen last left ~8 objects
        per VIP for the garbage collector to walk, and watch's first idle collection after
        a burst of 4,000 users walked them all at once (a 9-15 ms pause in the event loop)."""
        vip = int(r.vip)
        src = IPv4Network((vip, 32))
        prio = self._priority(vip)
        return tuple(Rule(prio, r.table_id, src, p) for p in self.prefixes)

    def _priority(self, vip: int) -> int:
        """``spread_priority`` with the config's band read once (called per rule built or read)."""
        return self._base + vip % self._span

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
        want_dsts, n = set(self.prefixes), len(self.prefixes)
        for vip, ks in by_vip.items():
            table = ks[0].table
            prio = self._priority(int(vip))
            # exactly kernel_rules(r) in any order, compared field by field (building the
            # expected Rule values was a fifth of a 10,000-user reconcile); a rule at
            # another priority of the band (an older ikemgr's) is stray and replaced
            if (len(ks) == n and {k.dst for k in ks} == want_dsts
                    and all(k.table == table and k.priority == prio and k.fwmask is None and k.goto is None
                            for k in ks)):
                out[vip] = UserRule(vip, self._by_table[table], table, self._base)
            else:
                stray.extend(ks)  # partial or odd: remove, the plan re-adds it whole
        self._stray = stray
        return KernelView(out, list(stray))

    def apply(self, plan: Plan, tables: AbstractSet[int]) -> None:
        """One batch of rule changes. The adds skip the kernel's duplicate check (NLM_F_EXCL),
        which walks every rule the kernel holds: 4,000 users' connects cost it 0.59-0.65 s of
        kernel time with the check and 0.36-0.37 s without (``rule_channel.encode``).

        What an add puts in is absent by the engine's index: a full pass has just read the
        kernel under the policy lock, and every other ikemgr process that changes it stamps
        the generation, which makes the next pass read it again. Only a rule written by
        something else behind the index can be doubled; the next full reconcile finds the
        VIP's rules odd, removes them and adds them back once, as it repairs any other
        foreign change to this band (``routing.priority-collision`` in ``ikemgr check``).

        Make before break: a delete goes after the adds, so a VIP whose rule moves (another
        VLAN, another priority) is never without one; only a delete of a rule the batch
        adds back unchanged (a partial user re-added whole) must go first."""
        delete = list(self._stray)
        for r in plan.remove:
            delete.extend(self.kernel_rules(r))
        add: list[Rule] = []
        for r in plan.add:
            add.extend(self.kernel_rules(r))
        if delete and add:
            again = set(add)
            first = [d for d in delete if d in again]
            after = [d for d in delete if d not in again] if first else delete
        else:
            first, after = [], delete
        self.nl.change(add, first, exclusive=False, after=after)
        self._stray = []

    def close(self) -> None:
        self.nl.close()
        self.nl.ex.close()

"""The ``marks`` backend (default): the rule list as long as the number of VLANs in use.

An nftables map VIP → mark (= the VLAN's table id) sets ``meta mark`` in prerouting for
traffic to the campus prefixes, and one ``fwmark T lookup T`` rule per VLAN that has
users now. A ``fwmark 0 goto`` rule in front jumps unmarked packets over the VLAN rules
to a ``nop`` landing rule, so they never walk them. A user change is one map element;
a batch's element changes are one nfnetlink transaction (``adapters.kernel.nft_channel``),
the table, map and chain are set up and read through libnftables.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Set as AbstractSet
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import Any

from ikemgr.adapters.kernel.netns import InNetns, NsChannel
from ikemgr.adapters.kernel.nft_channel import NftError, SetElemChannel
from ikemgr.adapters.kernel.rule_channel import RuleSocket
from ikemgr.adapters.policy.base import KernelView, owned_band
from ikemgr.config.schema import Config
from ikemgr.core.model import ALL_ONES, Rule, UserRule
from ikemgr.core.policy_diff import Plan
from ikemgr.errors import ApplyFailed, BackendUnavailable, ConfigError, ConfigProblem

log = logging.getLogger("ikemgr.backend")


NFT_TABLE = "ikemgr_policy"


NFT_MAP = "users"


NFT_CHAIN = "prerouting"


class MarksBackend:
    """nftables map VIP → mark plus one fwmark rule per VLAN in use."""

    name = "marks"
    needs_tables = True  # one fwmark rule per VLAN that holds a user

    def __init__(self, cfg: Config, ex: InNetns) -> None:
        self.cfg = cfg
        self.ex = ex
        self.prio = cfg.routing.user_priority
        lo, hi = owned_band(cfg)
        if not (lo + 2 < hi) or lo <= cfg.routing.charon_priority <= lo + 2:
            raise ConfigError([ConfigProblem(
                "routing.user_priority", None,
                f"the marks backend needs priorities {lo}..{lo + 2} free and below base_priority")])
        self.prefixes = tuple(p for p in cfg.campus_prefixes if isinstance(p, IPv4Network))
        self.nl = RuleSocket(ex, cfg.routing.rule_protocol)
        self._nft: Any = None
        self._elems: NsChannel[SetElemChannel] = NsChannel(ex, SetElemChannel)
        self._by_table = {v.table_id: v.number for v in cfg.vlans}
        self._vlan_rules: set[int] = set()
        self._stray_rules: list[Rule] = []
        self._stray_elems: list[tuple[IPv4Address, int]] = []

    # ---------------------------------------------------------------- fixed rules
    @property
    def goto_rule(self) -> Rule:
        return Rule(self.prio, 0, fwmark=0, fwmask=ALL_ONES, action="goto", goto=self.prio + 2)

    @property
    def nop_rule(self) -> Rule:
        return Rule(self.prio + 2, action="nop")

    def vlan_rule(self, table_id: int) -> Rule:
        return Rule(self.prio + 1, table_id, fwmark=table_id, fwmask=ALL_ONES)

    # ---------------------------------------------------------------- nft
    def _cmd(self, text: str) -> Any:
        """Run nft commands in the namespace (its context opens its socket there); one call =
        one atomic transaction."""

        def run() -> Any:
            if self._nft is None:
                import nftables

                nft = nftables.Nftables()
                nft.set_json_output(True)
                nft.set_handle_output(False)
                self._nft = nft
            rc, out, err = self._nft.cmd(text)
            if rc != 0:
                raise ApplyFailed(f"nft: {err.strip().splitlines()[0] if err.strip() else rc}")
            return json.loads(out) if out.strip() else None

        return self.ex.call(run)

    def _change_elements(self, delete: list[tuple[IPv4Address, int]],
                         add: list[tuple[IPv4Address, int]]) -> None:
        """Deletes then adds of map elements, one transaction, on a socket opened inside the
        namespace once (``NsChannel``); a socket error closes it, and the next batch opens
        another one there."""
        try:
            self._elems.call(lambda chan: chan.change(NFT_TABLE, NFT_MAP, delete, add))
        except NftError as e:
            raise ApplyFailed(str(e)) from None
        except OSError as e:
            self._elems.reset()
            raise ApplyFailed(f"nfnetlink: {e.strerror or e}") from None

    def _table_exists(self) -> bool:
        tables = self._cmd("list tables ip") or {"nftables": []}
        return any(i.get("table", {}).get("name") == NFT_TABLE for i in tables["nftables"])

    def chain_comment(self) -> str:
        return "ikemgr policy " + ",".join(str(p) for p in self.prefixes)

    def ensure(self) -> None:
        comment = self.chain_comment()
        self._cmd(
            f"add table ip {NFT_TABLE}\n"
            f"add map ip {NFT_TABLE} {NFT_MAP} {{ type ipv4_addr : mark; }}\n"
            f"add chain ip {NFT_TABLE} {NFT_CHAIN} "
            "{ type filter hook prerouting priority mangle; policy accept; }")
        chain = self._cmd(f"list chain ip {NFT_TABLE} {NFT_CHAIN}") or {"nftables": []}
        rules = [i["rule"] for i in chain["nftables"] if "rule" in i]
        if len(rules) != 1 or rules[0].get("comment") != comment:
            dsts = ", ".join(str(p) for p in self.prefixes)
            self._cmd(f"flush chain ip {NFT_TABLE} {NFT_CHAIN}\n"
                      f"add rule ip {NFT_TABLE} {NFT_CHAIN} ip daddr {{ {dsts} }} "
                      f"meta mark set ip saddr map @{NFT_MAP} comment \"{comment}\"")
        self.nl.change([self.goto_rule, self.nop_rule], [])

    def read(self) -> KernelView:
        lo, hi = owned_band(self.cfg)
        fixed = {self.goto_rule, self.nop_rule}
        vlan_rules: set[int] = set()
        stray_rules: list[Rule] = []
        for k in self.nl.dump(lo, hi):
            if k in fixed:
                continue
            if k == self.vlan_rule(k.table) and k.table in self._by_table:
                vlan_rules.add(k.table)
            else:
                stray_rules.append(k)
        out: dict[IPv4Address, UserRule] = {}
        stray_elems: list[tuple[IPv4Address, int]] = []
        try:
            m = self._cmd(f"list map ip {NFT_TABLE} {NFT_MAP}") or {"nftables": []}
        except ApplyFailed as e:
            # only "there is no table yet" means nothing is owned; any other failure is a
            # failed read, and a failed read must never look like an empty map (its stale
            # elements would stay forever): the caller retries with a full reconcile
            if self._table_exists():
                raise BackendUnavailable("nftables", f"cannot read map {NFT_TABLE} {NFT_MAP}: "
                                         f"{e.message}") from None
            m = {"nftables": []}
        for item in m["nftables"]:
            for vip_s, mark in (item.get("map", {}).get("elem") or []):
                vip = ip_address(vip_s)
                assert isinstance(vip, IPv4Address)
                if isinstance(mark, int) and mark in self._by_table:
                    out[vip] = UserRule(vip, self._by_table[mark], mark, self.prio)
                else:
                    stray_elems.append((vip, int(mark) if isinstance(mark, int) else 0))
        self._vlan_rules = vlan_rules
        self._stray_rules = stray_rules
        self._stray_elems = stray_elems
        # a VLAN rule no element uses (a crash between the nft transaction and the rule's
        # removal, or before the first element went in) is stray too: reported, so the
        # engine applies, and removed by apply (it is not in ``need``)
        unused = [self.vlan_rule(t) for t in sorted(vlan_rules - {r.table_id for r in out.values()})]
        return KernelView(out, [*stray_rules, *stray_elems, *unused], {t: True for t in vlan_rules})

    def apply(self, plan: Plan, tables: AbstractSet[int]) -> None:
        need = set(tables)
        new_rules = sorted(need - self._vlan_rules)
        if new_rules:  # the VLAN's rule first, so marked packets never miss it
            self.nl.change([self.vlan_rule(t) for t in new_rules], [])
            self._vlan_rules |= set(new_rules)
        dels = [(r.vip, r.table_id) for r in plan.remove] + self._stray_elems
        adds = [(r.vip, r.table_id) for r in plan.add]
        if dels or adds:
            self._change_elements(dels, adds)
        self._stray_elems = []
        old_rules = sorted(self._vlan_rules - need)
        if old_rules or self._stray_rules:
            self.nl.change([], [self.vlan_rule(t) for t in old_rules] + self._stray_rules)
            self._vlan_rules -= set(old_rules)
            self._stray_rules = []

    def close(self) -> None:
        self._elems.close()
        self.nl.close()
        self.ex.close()

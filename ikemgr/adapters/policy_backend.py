"""The two kernel policy backends behind one interface (config: ``policy.backend``).

``rules`` is the seed's design, for compatibility: per connected lab user one
``ip rule from VIP/32 to <campus prefix> lookup <VLAN table>`` per campus prefix. The
kernel walks the rule list linearly for every routed packet, so forwarding slows down in
proportion to the number of users (docs/policy-engine.md has the figures).

``marks`` (default) keeps the rule list as long as the number of VLANs in use: an nftables
map VIP → mark (= the VLAN's table id) sets ``meta mark`` in prerouting for traffic to the
campus prefixes, and one ``fwmark T lookup T`` rule per VLAN that has users now. A
``fwmark 0 goto`` rule in front jumps unmarked packets (everyone outside the lab lists,
every packet from outside the pool) over the VLAN rules to a ``nop`` landing rule, so they
never walk them. A user change is one map element, applied atomically by libnftables.

Both own only what they can recognise: rules with protocol ``routing.rule_protocol`` and a
priority in [user_priority, base_priority), and the table ``ip ikemgr_policy``. Kernel
work runs in one thread that has entered the target network namespace (setns is per
thread; libnftables and netlink sockets open in the calling thread's namespace).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any, Protocol

from ikemgr.adapters.netns import InNetns
from ikemgr.adapters.rtnl import RuleChannel, RuleError, RuleMsg
from ikemgr.config.schema import Config
from ikemgr.core.model import UserRule
from ikemgr.core.plan import Plan
from ikemgr.errors import ApplyFailed, BackendUnavailable, ConfigError, ConfigProblem

log = logging.getLogger("ikemgr.backend")

NFT_TABLE = "ikemgr_policy"
NFT_MAP = "users"
NFT_CHAIN = "prerouting"
ALL_ONES = 0xFFFFFFFF


@dataclass(frozen=True, order=True)
class KernelRule:
    """One ip rule as ikemgr sees it (the part ikemgr sets)."""

    priority: int
    table: int = 0
    src: IPv4Network | None = None
    dst: IPv4Network | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    action: str = "lookup"  # lookup | goto | nop
    goto: int | None = None

    def ip_args(self, protocol: int) -> str:
        """iproute2 ``ip rule`` arguments (for ``ip -batch``), from typed values only."""
        out = f"priority {int(self.priority)}"
        if self.src is not None:
            out += f" from {IPv4Network(self.src)}"
        if self.dst is not None:
            out += f" to {IPv4Network(self.dst)}"
        if self.fwmark is not None:
            mask = self.fwmask if self.fwmask is not None else ALL_ONES
            out += f" fwmark {int(self.fwmark):#x}/{int(mask):#x}"
        if self.action == "goto":
            out += f" goto {int(self.goto or 0)}"
        elif self.action == "nop":
            out += " nop"
        else:
            out += f" lookup {int(self.table)}"
        return out + f" protocol {int(protocol)}"

    def msg(self, protocol: int) -> RuleMsg:
        """The rtnetlink request fields (adapters.rtnl encodes them)."""
        return RuleMsg(self.priority, self.action, self.table, self.src, self.dst, self.fwmark,
                       self.fwmask, self.goto, protocol)


def parse_ip_rules(items: list[dict[str, Any]], protocol: int, lo: int, hi: int) -> list[KernelRule]:
    """``ip -N -j rule show`` → the rules ikemgr owns in [lo, hi) (pure)."""
    out: list[KernelRule] = []
    for r in items:
        prio = int(r.get("priority", -1))
        if not (lo <= prio < hi) or str(r.get("protocol")) != str(protocol):
            continue
        src = dst = None
        if r.get("src", "all") != "all":
            src = ip_network(f"{r['src']}/{r.get('srclen', 32)}", strict=False)
        if r.get("dst", "all") != "all":
            dst = ip_network(f"{r['dst']}/{r.get('dstlen', 32)}", strict=False)
        fwmark = int(r["fwmark"], 0) if "fwmark" in r else None
        fwmask = int(r["fwmask"], 0) if "fwmask" in r else (ALL_ONES if fwmark is not None else None)
        if "goto" in r:
            action, goto, table = "goto", int(r["goto"]), 0
        elif "nop" in r:
            action, goto, table = "nop", None, 0
        else:
            action, goto = "lookup", None
            table = int(r.get("table", 0)) if str(r.get("table", "0")).isdigit() else -1
        if r.get("not") is not None or (src is not None and src.version != 4):
            action = "foreign"  # a shape ikemgr never makes: remove it as stray
        out.append(KernelRule(prio, table, src, dst, fwmark, fwmask, action, goto))  # type: ignore[arg-type]
    return out


class _Netlink:
    """Rule changes through one rtnetlink socket opened in the executor thread (its netns)."""

    def __init__(self, ex: InNetns, protocol: int) -> None:
        self.ex = ex
        self.protocol = protocol
        self._chan: RuleChannel | None = None

    def dump(self, lo: int, hi: int) -> list[KernelRule]:
        def run() -> list[KernelRule]:
            p = subprocess.run(["ip", "-N", "-j", "rule", "show"], capture_output=True, text=True,
                               check=False)
            if p.returncode != 0:
                raise BackendUnavailable("netlink", f"ip rule show: {p.stderr.strip()}")
            return parse_ip_rules(json.loads(p.stdout or "[]"), self.protocol, lo, hi)

        return self.ex.call(run)

    def change(self, add: list[KernelRule], delete: list[KernelRule]) -> None:
        """Deletes, then adds, in as few sends as the batch allows; exists/not-found are done."""
        if not add and not delete:
            return

        def run() -> None:
            try:
                if self._chan is None:
                    self._chan = RuleChannel()
                self._chan.apply([r.msg(self.protocol) for r in delete],
                                 [r.msg(self.protocol) for r in add])
            except RuleError as e:
                raise ApplyFailed(str(e)) from None
            except OSError as e:
                chan, self._chan = self._chan, None  # a fresh socket next time
                if chan is not None:
                    chan.close()
                raise ApplyFailed(f"rtnetlink: {e.strerror or e}") from None

        self.ex.call(run)

    def close(self) -> None:
        if self._chan is not None:
            chan, self._chan = self._chan, None
            self.ex.call(chan.close)


@dataclass
class KernelView:
    """What the kernel holds that ikemgr owns: complete user rules, plus strays to delete."""

    rules: dict[IPv4Address, UserRule]
    stray: list[Any] = field(default_factory=list)
    vlan_rules: dict[int, bool] = field(default_factory=dict)


class PolicyBackend(Protocol):
    name: str

    def ensure(self) -> None: ...
    def read(self) -> KernelView: ...
    def apply(self, plan: Plan, after: Mapping[IPv4Address, UserRule]) -> None: ...
    def close(self) -> None: ...


def _band(cfg: Config) -> tuple[int, int]:
    return cfg.routing.user_priority, cfg.routing.base_priority


class RulesBackend:
    """One ip rule per (VIP, campus prefix): the seed's design."""

    name = "rules"

    def __init__(self, cfg: Config, ex: InNetns) -> None:
        self.cfg = cfg
        self.prefixes = tuple(p for p in cfg.campus_prefixes if isinstance(p, IPv4Network))
        self.nl = _Netlink(ex, cfg.routing.rule_protocol)
        self._stray: list[KernelRule] = []
        self._by_table = {v.table_id: v.number for v in cfg.vlans}

    def kernel_rules(self, r: UserRule) -> list[KernelRule]:
        src = ip_network(f"{r.vip}/32")
        return [KernelRule(r.priority, r.table_id, src, p) for p in self.prefixes]  # type: ignore[arg-type]

    def ensure(self) -> None:
        return None

    def read(self) -> KernelView:
        lo, hi = _band(self.cfg)
        rules = self.nl.dump(lo, hi)
        by_vip: dict[IPv4Address, list[KernelRule]] = {}
        stray: list[KernelRule] = []
        for k in rules:
            if (k.action != "lookup" or k.src is None or k.src.prefixlen != 32 or k.fwmark is not None
                    or k.table not in self._by_table):
                stray.append(k)
                continue
            by_vip.setdefault(IPv4Address(k.src.network_address), []).append(k)
        out: dict[IPv4Address, UserRule] = {}
        for vip, ks in by_vip.items():
            r = UserRule(vip, self._by_table[ks[0].table], ks[0].table, self.cfg.routing.user_priority)
            if sorted(ks) == sorted(self.kernel_rules(r)):
                out[vip] = r
            else:
                stray.extend(ks)  # partial or odd: remove, the plan re-adds it whole
        self._stray = stray
        return KernelView(out, list(stray))

    def apply(self, plan: Plan, after: Mapping[IPv4Address, UserRule]) -> None:
        delete = list(self._stray)
        for r in plan.remove:
            delete.extend(self.kernel_rules(r))
        add: list[KernelRule] = []
        for r in plan.add:
            add.extend(self.kernel_rules(r))
        self.nl.change(add, delete)
        self._stray = []

    def close(self) -> None:
        self.nl.close()
        self.nl.ex.close()


class MarksBackend:
    """nftables map VIP → mark plus one fwmark rule per VLAN in use."""

    name = "marks"

    def __init__(self, cfg: Config, ex: InNetns) -> None:
        self.cfg = cfg
        self.ex = ex
        self.prio = cfg.routing.user_priority
        lo, hi = _band(cfg)
        if not (lo + 2 < hi) or lo <= cfg.routing.charon_priority <= lo + 2:
            raise ConfigError([ConfigProblem(
                "routing.user_priority", None,
                f"the marks backend needs priorities {lo}..{lo + 2} free and below base_priority")])
        self.prefixes = tuple(p for p in cfg.campus_prefixes if isinstance(p, IPv4Network))
        self.nl = _Netlink(ex, cfg.routing.rule_protocol)
        self._nft: Any = None
        self._by_table = {v.table_id: v.number for v in cfg.vlans}
        self._vlan_rules: set[int] = set()
        self._stray_rules: list[KernelRule] = []
        self._stray_elems: list[tuple[IPv4Address, int]] = []

    # ---------------------------------------------------------------- fixed rules
    @property
    def goto_rule(self) -> KernelRule:
        return KernelRule(self.prio, 0, fwmark=0, fwmask=ALL_ONES, action="goto", goto=self.prio + 2)

    @property
    def nop_rule(self) -> KernelRule:
        return KernelRule(self.prio + 2, action="nop")

    def vlan_rule(self, table_id: int) -> KernelRule:
        return KernelRule(self.prio + 1, table_id, fwmark=table_id, fwmask=ALL_ONES)

    # ---------------------------------------------------------------- nft
    def _cmd(self, text: str) -> Any:
        """Run nft commands in the executor thread; one call = one atomic transaction."""

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
        lo, hi = _band(self.cfg)
        fixed = {self.goto_rule, self.nop_rule}
        vlan_rules: set[int] = set()
        stray_rules: list[KernelRule] = []
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
        except ApplyFailed:
            m = {"nftables": []}  # no table yet: nothing is owned
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
        return KernelView(out, [*stray_rules, *stray_elems], {t: True for t in vlan_rules})

    def apply(self, plan: Plan, after: Mapping[IPv4Address, UserRule]) -> None:
        need = {r.table_id for r in after.values()}
        new_rules = sorted(need - self._vlan_rules)
        if new_rules:  # the VLAN's rule first, so marked packets never miss it
            self.nl.change([self.vlan_rule(t) for t in new_rules], [])
            self._vlan_rules |= set(new_rules)
        lines: list[str] = []
        dels = [(r.vip, r.table_id) for r in plan.remove] + self._stray_elems
        if dels:
            lines.append(f"delete element ip {NFT_TABLE} {NFT_MAP} {{ "
                         + ", ".join(f"{vip} : {m}" for vip, m in dels) + " }")
        if plan.add:
            lines.append(f"add element ip {NFT_TABLE} {NFT_MAP} {{ "
                         + ", ".join(f"{r.vip} : {r.table_id}" for r in plan.add) + " }")
        if lines:
            self._cmd("\n".join(lines))
        self._stray_elems = []
        old_rules = sorted(self._vlan_rules - need)
        if old_rules or self._stray_rules:
            self.nl.change([], [self.vlan_rule(t) for t in old_rules] + self._stray_rules)
            self._vlan_rules -= set(old_rules)
            self._stray_rules = []

    def close(self) -> None:
        self.nl.close()
        self.ex.close()


class _InThread:
    """The flush in the flusher's own thread, which enters the gateway's namespace first."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._ct: Any = None

    def start(self) -> bool:
        if self.netns:
            from pyroute2 import netns as pr_netns

            try:
                pr_netns.setns(self.netns, flags=0)
            except OSError as e:
                log.error("conntrack flusher cannot enter netns %s: %s", self.netns, e)
                return False
        return True

    def flush(self, vips: set[str]) -> int:
        from ikemgr.adapters import ctflush

        if self._ct is None:
            from pyroute2 import Conntrack

            self._ct = Conntrack()
        return ctflush.flush(self._ct, vips)

    def close(self) -> None:
        if self._ct is not None:
            ct, self._ct = self._ct, None
            ct.close()


class _InChild:
    """The flush by a child process in the gateway's namespace (adapters/ctflush.py)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self.child: subprocess.Popen[str] | None = None

    def start(self) -> bool:
        # start the child now, not at the first flush: its interpreter start (~0.3 s of
        # CPU) would otherwise compete with the event burst that caused that flush
        try:
            self._spawn()
        except OSError as e:
            log.warning("conntrack flusher process did not start: %s", e)
        return True

    def _spawn(self) -> subprocess.Popen[str]:
        """The child process, started (again) if it is not running."""
        child = self.child
        if child is None or child.poll() is not None:
            prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
            child = self.child = subprocess.Popen(
                [*prefix, sys.executable, "-m", "ikemgr.adapters.ctflush"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, bufsize=1)
        return child

    def flush(self, vips: set[str]) -> int:
        child = self._spawn()
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write("".join(f"{v}\n" for v in sorted(vips)) + "\n")
            child.stdin.flush()
            reply = child.stdout.readline().strip()
        except OSError as e:
            self.close()
            raise RuntimeError(f"conntrack flusher process: {e}") from None
        if not reply:
            self.close()
            raise RuntimeError("conntrack flusher process ended")
        if reply.startswith("error "):
            raise RuntimeError(reply.removeprefix("error "))
        return int(reply)

    def close(self) -> None:
        child, self.child = self.child, None
        if child is None:
            return
        try:
            if child.stdin is not None:
                child.stdin.close()  # end of input: the child exits
            child.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait(timeout=5)
        if child.stdout is not None:
            child.stdout.close()


class ConntrackFlusher:
    """Deletes conntrack entries of VIPs whose path changed, off the event path.

    An established flow keeps its NAT binding; without the flush a user's open
    connections would keep the old SNAT address after their rule changed.

    Any conntrack dump walks the kernel's whole (machine-wide) conntrack hash table:
    measured here ~15-35 ms per ``conntrack -D -s VIP`` and ~50 ms per netlink dump,
    whatever the number of matching entries. So VIPs queued while a flush runs are
    coalesced, and each run is ONE netlink dump of this namespace's table that deletes the
    entries whose original source is one of the VIPs. Runs are at least ``min_gap`` (1 s)
    apart so a burst costs one dump.

    ``out_of_process`` (``watch``): the dump is parsed in a long-lived child process
    (adapters/ctflush.py), so it never holds the interpreter lock the event thread needs;
    this thread only waits on a pipe. Short-lived commands (hook, reconcile, sync) have no
    event thread to protect and would pay an interpreter start per call for the child, so
    they parse the dump in this thread, inside the namespace.
    """

    def __init__(self, netns: str | None, enabled: bool = True, min_gap: float = 1.0,
                 out_of_process: bool = False) -> None:
        self.enabled = enabled
        self.min_gap = min_gap
        self._way: _InThread | _InChild = _InChild(netns) if out_of_process else _InThread(netns)
        self._pending: set[IPv4Address] = set()
        self._cv = threading.Condition()
        self._stop = False
        self._busy = False
        self.flushed = 0
        self.deleted = 0
        self.runs = 0
        self._t: threading.Thread | None = None
        if enabled:
            self._t = threading.Thread(target=self._run, name="ikemgr-conntrack", daemon=True)
            self._t.start()

    def flush(self, vips: frozenset[IPv4Address]) -> None:
        if not self.enabled or not vips:
            return
        with self._cv:
            self._pending |= vips
            self._cv.notify()

    def _run(self) -> None:
        if not self._way.start():
            return
        while True:
            with self._cv:
                while not self._pending and not self._stop:
                    self._cv.wait()
                if self._stop and not self._pending:
                    self._way.close()
                    return
                batch, self._pending = {str(v) for v in self._pending}, set()
                self._busy = True
            try:
                self.deleted += self._way.flush(batch)
            except Exception as e:  # netlink errors must not kill the flusher
                log.warning("conntrack flush of %d VIPs failed: %s", len(batch), e)
            self.flushed += len(batch)
            self.runs += 1
            with self._cv:
                self._busy = False
                self._cv.notify_all()
                # let more VIPs gather (one dump per burst); a stop request ends the wait
                self._cv.wait_for(lambda: self._stop, timeout=self.min_gap)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """For tests and orderly exit: wait until everything queued has been flushed."""
        with self._cv:
            self._cv.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self) -> None:
        if self._t is not None:
            with self._cv:
                self._stop = True
                self._cv.notify_all()
            self._t.join(timeout=10)

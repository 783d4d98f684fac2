"""rtnetlink through pyroute2: observe the rules/routes ikemgr owns, apply a Plan, write rt_tables.

One long-lived ``IPRoute`` per namespace (``IPRoute(netns=NAME)`` for ``--netns``).
Everything crosses this edge as ``Rule``/``RouteSpec`` values; kernel messages never
leak into the core. Every rule and route created here carries the ownership protocol,
deletes name that protocol too, so the kernel itself refuses to delete anything else."""

from __future__ import annotations

import errno
import os
from ipaddress import ip_address, ip_network
from socket import AF_INET
from typing import Any

from ikemgr.core.base_diff import Observed, Plan
from ikemgr.core.base_state import RouteSpec
from ikemgr.core.model import Rule
from ikemgr.errors import ApplyFailed, BackendUnavailable

RT_SCOPE_UNIVERSE = 0


RT_SCOPE_LINK = 253


RT_SCOPE_NOWHERE = 255


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


def _net(addr: str | None, plen: int) -> Any:
    return ip_network(f"{addr or '0.0.0.0'}/{plen}", strict=False)


def _scope(r: RouteSpec) -> int:
    return RT_SCOPE_LINK if r.gateway is None else RT_SCOPE_UNIVERSE


class Netlink:
    """A pyroute2 IPRoute bound to one namespace (None = the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        self.netns = netns
        self._err = NetlinkError
        try:
            # flags=0: pyroute2 would otherwise create a missing namespace
            self.ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
        except (OSError, NetlinkError) as e:
            raise BackendUnavailable("netlink", f"cannot open rtnetlink{self._where()}: {e}") from None
        self._names: dict[int, str] | None = None

    def _where(self) -> str:
        return f" in netns {self.netns}" if self.netns else ""

    def close(self) -> None:
        self.ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ interfaces
    def links(self) -> dict[int, str]:
        if self._names is None:
            self._names = {int(m["index"]): str(_attr(m, "IFLA_IFNAME")) for m in self.ipr.get_links()}
        return self._names

    def ifindex(self, name: str) -> int | None:
        for idx, n in self.links().items():
            if n == name:
                return idx
        return None

    def require_interfaces(self, fields: dict[str, str]) -> dict[str, int]:
        """name → index for every configured interface, or ApplyFailed naming the first missing one."""
        out: dict[str, int] = {}
        for name, field in fields.items():
            idx = self.ifindex(name)
            if idx is None:
                raise ApplyFailed(f"interface {name} ({field}) does not exist{self._where()}")
            out[name] = idx
        return out

    def require_addresses(self, wanted: dict[str, tuple[str, str]]) -> None:
        """Every route ``src`` must be local (the kernel refuses it otherwise): check before changing.

        ``wanted`` maps address → (device it belongs on, config field).
        """
        have = {str(_attr(m, "IFA_LOCAL") or _attr(m, "IFA_ADDRESS"))
                for m in self.ipr.get_addr(family=AF_INET)}
        for addr, (dev, field) in wanted.items():
            if addr not in have:
                raise ApplyFailed(f"{addr} ({field}) is not an address of this host{self._where()}; "
                                  f"add it to {dev} (with noprefixroute)")

    # ------------------------------------------------------------------ observe
    def observe(self, protocol: int, priority: int, tables: tuple[int, ...]) -> Observed:
        """Only what ikemgr owns: protocol-stamped rules at ``priority``, routes in ``tables``."""
        try:
            rules = tuple(sorted(self._rules(protocol, priority)))
            routes = tuple(self._routes(protocol, set(tables)))
        except self._err as e:
            raise BackendUnavailable("netlink", f"dump failed{self._where()}: {e}") from None
        return Observed(rules=rules, routes=routes)

    def _rules(self, protocol: int, priority: int) -> list[Rule]:
        out = []
        for m in self.ipr.get_rules(family=AF_INET):
            if _attr(m, "FRA_PROTOCOL") != protocol or (_attr(m, "FRA_PRIORITY") or 0) != priority:
                continue
            table = _attr(m, "FRA_TABLE") or m["table"]
            src = _net(_attr(m, "FRA_SRC"), m["src_len"]) if m["src_len"] or _attr(m, "FRA_SRC") else None
            dst = _net(_attr(m, "FRA_DST"), m["dst_len"]) if m["dst_len"] or _attr(m, "FRA_DST") else None
            out.append(Rule(priority, int(table), src=src, dst=dst, fwmark=_attr(m, "FRA_FWMARK")))
        return out

    def _routes(self, protocol: int, tables: set[int]) -> list[RouteSpec]:
        names = self.links()
        out = []
        for table in sorted(tables):
            for m in self.ipr.get_routes(family=AF_INET, table=table):
                t = _attr(m, "RTA_TABLE") or m["table"]
                if int(t) != table or m["proto"] != protocol:
                    continue
                oif = _attr(m, "RTA_OIF")
                gw = _attr(m, "RTA_GATEWAY")
                src = _attr(m, "RTA_PREFSRC")
                out.append(RouteSpec(
                    table=table,
                    dst=_net(_attr(m, "RTA_DST"), m["dst_len"]),
                    # a multipath or device-less route never equals a desired one: it gets replaced
                    dev=names.get(oif, f"#{oif}") if oif is not None else "",
                    gateway=ip_address(gw) if gw else None,
                    prefsrc=ip_address(src) if src else None,
                ))
        return out

    def foreign_conflicts(self, plan: Plan, protocol: int) -> list[tuple[RouteSpec, int]]:
        """Routes to add whose (table, destination) is already held by a route ikemgr does not own.

        Checked before anything changes, so such a conflict fails the apply cleanly.
        """
        out = []
        for r in plan.routes_add:
            for m in self.ipr.get_routes(family=AF_INET, table=r.table):
                t = _attr(m, "RTA_TABLE") or m["table"]
                if (int(t) == r.table and m["proto"] != protocol and m["tos"] == 0
                        and not _attr(m, "RTA_PRIORITY")
                        and _net(_attr(m, "RTA_DST"), m["dst_len"]) == r.dst):
                    out.append((r, int(m["proto"])))
        return out

    # ------------------------------------------------------------------ apply
    def apply(self, plan: Plan, protocol: int, ifindex: dict[str, int],
              names: dict[int, str], src_fields: dict[str, str]) -> None:
        """Routes before the rules that use them; rules removed before the routes they used."""
        for r in plan.routes_add:
            self._route("add", r, protocol, ifindex, names, src_fields)
        for r in plan.routes_replace:
            self._route("replace", r, protocol, ifindex, names, src_fields)
        for rule in plan.rules_add:
            self._rule("add", rule, protocol, names)
        for rule in plan.rules_remove:
            self._rule("del", rule, protocol, names)
        for r in plan.routes_remove:
            self._route_del(r, protocol, names)
        self._names = None

    def _route(self, cmd: str, r: RouteSpec, protocol: int, ifindex: dict[str, int],
               names: dict[int, str], src_fields: dict[str, str]) -> None:
        kw: dict[str, Any] = {
            "family": AF_INET, "table": r.table, "dst": str(r.dst.network_address),
            "dst_len": r.dst.prefixlen, "oif": ifindex[r.dev], "proto": protocol,
            "scope": _scope(r),
        }
        if r.gateway is not None:
            kw["gateway"] = str(r.gateway)
        if r.prefsrc is not None:
            kw["prefsrc"] = str(r.prefsrc)
        try:
            self.ipr.route(cmd, **kw)
        except self._err as e:
            text = r.ip_args(names.get(r.table))
            if e.code == errno.EEXIST:
                raise ApplyFailed(f"route {text}: the table already holds a route to {r.dst} that "
                                  f"ikemgr does not own; remove it or use another table") from None
            if e.code == errno.EINVAL and r.prefsrc is not None:
                field = src_fields.get(str(r.prefsrc), "its config field")
                raise ApplyFailed(f"route {text}: kernel refused it (is {r.prefsrc} an address of "
                                  f"{r.dev}? see {field})") from None
            if e.code == errno.ENETDOWN:
                raise ApplyFailed(f"route {text}: interface {r.dev} is down") from None
            if e.code == errno.ENETUNREACH:
                raise ApplyFailed(f"route {text}: gateway {r.gateway} is not on a link of {r.dev}") from None
            raise ApplyFailed(f"route {text}: {os.strerror(e.code)}{self._where()}") from None

    def _route_del(self, r: RouteSpec, protocol: int, names: dict[int, str]) -> None:
        try:
            # the kernel matches the protocol on delete, so a foreign route is never hit;
            # scope "nowhere" matches any scope (as `ip route del` does)
            self.ipr.route("del", family=AF_INET, table=r.table, dst=str(r.dst.network_address),
                           dst_len=r.dst.prefixlen, proto=protocol, scope=RT_SCOPE_NOWHERE)
        except self._err as e:
            if e.code == errno.ESRCH:  # already gone: the goal is reached
                return
            raise ApplyFailed(f"delete route {r.ip_args(names.get(r.table))}: "
                              f"{os.strerror(e.code)}{self._where()}") from None

    def _rule(self, cmd: str, rule: Rule, protocol: int, names: dict[int, str]) -> None:
        kw: dict[str, Any] = {"family": AF_INET, "priority": rule.priority, "table": rule.table,
                              "protocol": protocol, "action": "to_tbl"}
        if rule.src is not None:
            kw.update(src=str(rule.src.network_address), src_len=rule.src.prefixlen)
        if rule.dst is not None:
            kw.update(dst=str(rule.dst.network_address), dst_len=rule.dst.prefixlen)
        if rule.fwmark is not None:
            kw["fwmark"] = rule.fwmark
        try:
            self.ipr.rule(cmd, **kw)
        except self._err as e:
            if cmd == "del" and e.code == errno.ENOENT:
                return
            verb = "add" if cmd == "add" else "delete"
            raise ApplyFailed(f"{verb} rule {rule.ip_args(names.get(rule.table))}: "
                              f"{os.strerror(e.code)}{self._where()}") from None

"""Config → the base state of the gateway, as frozen values (pure).

The base state is what exists whether or not anyone is connected: routing tables and
their routes, the base policy rules (``from <pool> to <campus> lookup <campus table>``),
SNAT and MSS clamping. ``ikemgr render`` prints it, ``ikemgr apply`` installs it, and
both read it from here, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from ikemgr.config.schema import Config
from ikemgr.core.model import Rule

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

DEFAULT_V4 = ip_network("0.0.0.0/0")


@dataclass(frozen=True)
class TableSpec:
    id: int
    name: str
    owner: str  # "campus" or "vlan <number>"


@dataclass(frozen=True)
class RouteSpec:
    table: int
    dst: Network
    dev: str
    gateway: Address | None = None
    prefsrc: Address | None = None

    @property
    def scope(self) -> str:
        return "global" if self.gateway is not None else "link"

    def ip_args(self, table_name: str | None = None) -> str:
        """iproute2 syntax, for the rendered description and for humans."""
        dst = "default" if self.dst.prefixlen == 0 else str(self.dst)
        out = f"{dst}"
        if self.gateway is not None:
            out += f" via {self.gateway}"
        out += f" dev {self.dev}"
        if self.prefsrc is not None:
            out += f" src {self.prefsrc}"
        out += f" table {table_name or self.table}"
        return out


@dataclass(frozen=True)
class SnatSpec:
    oif: str
    src: Network
    to: Address
    why: str


@dataclass(frozen=True)
class BaseState:
    tables: tuple[TableSpec, ...]
    routes: tuple[RouteSpec, ...]
    rules: tuple[Rule, ...]
    snat: tuple[SnatSpec, ...]
    pool: Network
    mss: int | str
    protocol: int

    def table_name(self, table_id: int) -> str | None:
        for t in self.tables:
            if t.id == table_id:
                return t.name
        return None


def base_state(cfg: Config) -> BaseState:
    gw = cfg.gateway
    campus = gw.campus
    tables = [TableSpec(campus.table.id, campus.table.name, "campus")]
    routes = [
        RouteSpec(campus.table.id, campus.address.network, campus.interface,
                  prefsrc=campus.address.ip),
        RouteSpec(campus.table.id, DEFAULT_V4, campus.interface, gateway=campus.gateway),
    ]
    pool = cfg.pool_network
    rules = [Rule(cfg.routing.base_priority, campus.table.id, src=pool, dst=prefix)
             for prefix in cfg.campus_prefixes]
    snat = [SnatSpec(gw.outside.interface, pool, gw.outside.address.ip,
                     "pool to the Internet via the global address")]
    for v in cfg.vlans:
        tables.append(TableSpec(v.table_id, v.table_label, f"vlan {v.number}"))
        routes.append(RouteSpec(v.table_id, v.subnet, v.interface, prefsrc=v.snat_address))
        routes.append(RouteSpec(v.table_id, DEFAULT_V4, v.interface, gateway=v.gateway))
        snat.append(SnatSpec(v.interface, pool, v.snat_address,
                             f"pool to lab VLAN {v.number}: broadcast - 2"))
    return BaseState(
        tables=tuple(tables),
        routes=tuple(routes),
        rules=tuple(sorted(rules)),
        snat=tuple(snat),
        pool=pool,
        mss=cfg.firewall.mss_clamp,
        protocol=cfg.routing.rule_protocol,
    )

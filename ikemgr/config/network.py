"""The gateway's network: uplinks, the pool, lab VLANs (derived SNAT address and table), routing.

Derived values are computed properties here, so templates and the kernel adapters read
them instead of recomputing them."""

from __future__ import annotations

from ipaddress import (
    IPv4Address,
    IPv6Address,
)
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from ikemgr.config.problems import Problems
from ikemgr.config.types import (
    RESERVED_TABLES,
    AbsPath,
    Hostname,
    IfName,
    IPAddress,
    IPInterface,
    IPNetwork,
    Priority,
    Strict,
    TableId,
    TableName,
    Token,
    _table_name,
    _v4_only,
)


class RoutingTable(Strict):
    id: TableId
    name: TableName

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, v: int) -> int:
        if v in RESERVED_TABLES:
            raise ValueError(f"table id {v} is reserved by the kernel (0, 253, 254, 255)")
        return v


class Uplink(Strict):
    """One interface of the gateway with its own address and next hop."""

    interface: IfName
    address: IPInterface = Field(description="the gateway's address with prefix, e.g. 192.0.2.1/24")
    gateway: IPAddress = Field(description="next hop on this segment")

    @model_validator(mode="after")
    def _gateway_on_link(self) -> Uplink:
        _v4_only(self.address, "address")
        if self.gateway not in self.address.network:
            raise ValueError(f"gateway: {self.gateway} is not inside {self.address.network}")
        if self.gateway == self.address.ip:
            raise ValueError(f"gateway: {self.gateway} equals the interface address")
        return self


class Outside(Uplink):
    """KUINS-II side (ens1): IKE is served here; the Internet is SNATed to this address."""


class CampusSide(Uplink):
    """KUINS-III client segment (ens2): the pool lives here; campus traffic leaves here."""

    table: RoutingTable = RoutingTable(id=200, name="gwk3")


class Gateway(Strict):
    fqdn: Hostname
    cert: AbsPath = Path("/etc/swanctl/x509/gateway.crt")
    key: AbsPath = Path("/etc/swanctl/private/gateway.key")
    ca: AbsPath = Path("/etc/swanctl/x509ca/ca.crt")
    outside: Outside
    campus: CampusSide

    @model_validator(mode="after")
    def _two_sides(self) -> Gateway:
        """One interface for both sides would put the pool's segment and the uplink on one
        link: the campus table's default route and the SNAT to the outside address collide."""
        problems = Problems("Gateway")
        if self.campus.interface == self.outside.interface:
            problems.add(("campus", "interface"), f"{self.campus.interface} is also "
                         "gateway.outside.interface (outside and campus need an interface each)")
        if self.campus.address.network.overlaps(self.outside.address.network):
            problems.add(("campus", "address"), f"{self.campus.address} overlaps the outside segment "
                         f"{self.outside.address.network} (gateway.outside.address)")
        problems.raise_any()
        return self


class Pool(Strict):
    """Virtual IPs handed out to every client: a range inside the campus client segment."""

    name: Token = "ikemgr-pool"
    first: IPAddress
    last: IPAddress
    network: IPNetwork | None = Field(
        None, description="segment the range lives in; default: the campus-side segment. "
        "Base rules and SNAT match this network (as the seed does with -s 10.1.0.0/24)")
    dns: list[IPAddress] = Field(default_factory=list, max_length=2)

    @model_validator(mode="after")
    def _order(self) -> Pool:
        _v4_only(self.first, "first")
        if self.first.version != self.last.version:
            raise ValueError("last: first and last must be of the same address family")
        if int(self.last) < int(self.first):
            raise ValueError(f"last: {self.last} is below first {self.first}")
        return self

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    @property
    def range_text(self) -> str:
        return f"{self.first}-{self.last}"


class Vlan(Strict):
    """A lab VLAN the gateway is attached to (Kyoto's ens3.N), named by its management number."""

    number: Annotated[int, Field(ge=1, le=999_999_999, description="VLAN management number")]
    interface: IfName
    subnet: IPNetwork
    gateway: IPAddress
    snat: IPAddress | None = Field(None, description="default: broadcast − 2")
    table: TableId | None = Field(None, description="routing table id; default: the number")
    table_name: TableName | None = Field(None, description="default: gw<number>")
    description: str = Field("", max_length=200)

    @field_validator("number", mode="before")
    @classmethod
    def _number_text(cls, v: object) -> object:
        if isinstance(v, str):
            if not (v.isascii() and v.isdigit()) or len(v) > 9 or (len(v) > 1 and v[0] == "0"):
                raise ValueError(f"{v!r} is not a management number (1-9 digits, no leading 0)")
            return int(v)
        if isinstance(v, bool):
            raise ValueError("must be a number")
        return v

    @model_validator(mode="after")
    def _derive_and_check(self) -> Vlan:
        _v4_only(self.subnet, "subnet")
        net = self.subnet
        if net.num_addresses < 8:
            raise ValueError(f"subnet: {net} is too small (needs at least a /29)")
        if self.gateway not in net:
            raise ValueError(f"gateway: {self.gateway} is not inside subnet {net}")
        if self.gateway in (net.network_address, net.broadcast_address):
            raise ValueError(f"gateway: {self.gateway} is the network or broadcast address")
        snat = self.snat if self.snat is not None else net.broadcast_address - 2
        if snat not in net:
            raise ValueError(f"snat: {snat} is not inside subnet {net}")
        if snat in (net.network_address, net.broadcast_address):
            raise ValueError(f"snat: {snat} is the network or broadcast address of {net}")
        if snat == self.gateway:
            raise ValueError(f"snat: {snat} equals the VLAN gateway")
        table = self.table if self.table is not None else self.number
        if table in RESERVED_TABLES:
            raise ValueError(f"table: id {table} is reserved by the kernel (0, 253, 254, 255)")
        name = self.table_name if self.table_name is not None else f"gw{self.number}"
        _table_name(name)
        object.__setattr__(self, "snat", snat)
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "table_name", name)
        return self

    # after validation these are never None; typed accessors for callers
    @property
    def snat_address(self) -> IPv4Address | IPv6Address:
        assert self.snat is not None
        return self.snat

    @property
    def table_id(self) -> int:
        assert self.table is not None
        return self.table

    @property
    def table_label(self) -> str:
        assert self.table_name is not None
        return self.table_name


class Routing(Strict):
    base_priority: Priority = Field(30001, description="from <pool> to <campus> lookup <campus table>")
    user_priority: Priority = Field(
        29000, description="per-user rules / per-VLAN fwmark rules (must be below base_priority)")
    charon_table: TableId = 220
    charon_priority: Priority = 30000
    install_routes: bool = Field(
        False, description="charon.install_routes; needed with kernel-libipsec (TUN device)")
    rule_protocol: Annotated[int, Field(ge=1, le=255)] = Field(
        99, description="rtnetlink protocol stamped on every rule/route ikemgr owns")
    rp_filter: Literal[0, 2] = Field(
        2, description="reverse-path filter: 2 = loose (needed: lab VLANs have no route in main), 0 = off")
    rt_tables_file: AbsPath = Field(
        Path("/etc/iproute2/rt_tables.d/ikemgr.conf"),
        description="names for ikemgr's tables, so `ip rule` shows lookup gw123456")

    @property
    def user_span(self) -> int:
        """How many priorities the ``rules`` backend's per-user rules spread over, from
        ``user_priority`` up to the next priority charon's rule or the base rule takes."""
        return min(p for p in (self.charon_priority, self.base_priority) if p > self.user_priority) \
            - self.user_priority

    @model_validator(mode="after")
    def _bands(self) -> Routing:
        if self.user_priority >= self.base_priority:
            raise ValueError("user_priority: must be below base_priority so user rules win")
        if self.charon_table in RESERVED_TABLES:
            raise ValueError(f"charon_table: {self.charon_table} is reserved by the kernel")
        return self

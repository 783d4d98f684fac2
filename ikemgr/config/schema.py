"""The declarative config: one YAML file describes the whole gateway.

Addresses and prefixes are typed (``ipaddress`` objects, v4 or v6) so that IPv6 pools,
campus prefixes and VLANs can be added later by lifting the "IPv4 only for now" checks,
not by rewriting the model. Derived values (SNAT address = broadcast − 2, table id and
name of a VLAN) are filled in here, once, and never recomputed in templates.

The models live by subject: ``types`` (scalar validators), ``network`` (gateway, pool,
VLANs, routing), ``services`` (strongSwan, RADIUS, EAP, LDAP, firewall, policy,
database) and ``sync`` (allow-list sources); this module holds ``Config`` and the
checks that span several of them.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ikemgr.config.clients import CertAuth
from ikemgr.config.network import Gateway, Pool, Routing, Vlan
from ikemgr.config.observability import Observability
from ikemgr.config.pki import Pki
from ikemgr.config.problems import Problems
from ikemgr.config.services import Database, Eap, Firewall, Ldap, Policy, Radius, Strongswan
from ikemgr.config.sync import Sync
from ikemgr.config.types import IPNetwork, Strict


class Config(Strict):
    gateway: Gateway
    pool: Pool
    campus_prefixes: list[IPNetwork] = Field(min_length=1, description="the paper's 全学内 list")
    vlans: list[Vlan] = Field(default_factory=list)
    routing: Routing = Routing()
    strongswan: Strongswan = Strongswan()
    radius: Radius = Radius()
    firewall: Firewall = Firewall()
    policy: Policy = Policy()
    database: Database = Database()
    ldap: Ldap = Ldap()
    eap: Eap = Eap()
    sync: Sync = Sync()
    pki: Pki = Pki()
    strongswan_cert_auth: CertAuth = CertAuth()
    observability: Observability = Observability()

    # Each check runs on the fields it needs as soon as those validated (``info.data``
    # holds the fields before this one that passed), so a duplicate VLAN number is
    # reported even when, say, strongswan.dpd_delay is wrong in the same file; and each
    # reports all its problems at once (config.problems).

    @field_validator("pool")
    @classmethod
    def _pool_in_segment(cls, pool: Pool, info: ValidationInfo) -> Pool:
        gateway = info.data.get("gateway")
        if gateway is None:
            return pool
        campus = gateway.campus
        seg = pool.network if pool.network is not None else campus.address.network
        problems = Problems("Pool")
        for name, end in (("first", pool.first), ("last", pool.last)):
            if end not in seg:
                problems.add((name,), f"{end} is outside the client segment {seg}")
        for reserved in (campus.address.ip, campus.gateway):
            if not problems and int(pool.first) <= int(reserved) <= int(pool.last):
                problems.add((), f"range {pool.range_text} contains {reserved}")
        problems.raise_any(pool)
        object.__setattr__(pool, "network", seg)
        return pool

    @field_validator("campus_prefixes")
    @classmethod
    def _campus_v4(cls, prefixes: list[IPv4Network | IPv6Network]) -> list[IPv4Network | IPv6Network]:
        if any(p.version != 4 for p in prefixes):
            raise ValueError("IPv6 is not supported yet")
        return prefixes

    @field_validator("vlans")
    @classmethod
    def _vlans_apart(cls, vlans: list[Vlan], info: ValidationInfo) -> list[Vlan]:
        """Numbers, tables, interfaces and subnets of the lab VLANs: each one once, and apart
        from the gateway's own segments (an overlap means two interfaces own one SNAT address,
        or a lab VLAN route that swallows the client segment)."""
        gateway: Gateway | None = info.data.get("gateway")
        pool: Pool | None = info.data.get("pool")
        problems = Problems("Vlans")
        seen_tables: dict[int, str] = {}
        seen_names: dict[str, str] = {}
        seen_ifs: dict[str, str] = {}
        segments: list[tuple[IPv4Network | IPv6Network, str]] = []
        if gateway is not None:
            seen_tables[gateway.campus.table.id] = "gateway.campus.table"
            seen_names[gateway.campus.table.name] = "gateway.campus.table"
            seen_ifs[gateway.outside.interface] = "gateway.outside"
            seen_ifs[gateway.campus.interface] = "gateway.campus"
            client = pool.network if pool is not None and pool.network is not None \
                else gateway.campus.address.network
            segments.append((client, "the client segment"))
            segments.append((gateway.outside.address.network, "the outside segment"))
        seen_numbers: set[int] = set()
        seen_subnets: list[tuple[Vlan, int]] = []
        for i, v in enumerate(vlans):
            twice = v.number in seen_numbers
            if twice:
                problems.add((i, "number"), f"{v.number} appears twice")
            seen_numbers.add(v.number)
            # a table (name) derived from a duplicate number is that same problem, not another
            if v.table_id in seen_tables and not (twice and "table" not in v.model_fields_set):
                problems.add((i, "table"), f"id {v.table_id} already used by {seen_tables[v.table_id]}")
            seen_tables.setdefault(v.table_id, f"vlans[{i}]")
            if v.table_label in seen_names and not (twice and "table_name" not in v.model_fields_set):
                problems.add((i, "table_name"),
                             f"{v.table_label} already used by {seen_names[v.table_label]}")
            seen_names.setdefault(v.table_label, f"vlans[{i}]")
            if v.interface in seen_ifs:
                problems.add((i, "interface"), f"{v.interface} already used by {seen_ifs[v.interface]}")
            seen_ifs.setdefault(v.interface, f"vlans[{i}]")
            for other, j in seen_subnets:
                if v.subnet.overlaps(other.subnet):
                    what = "equals" if v.subnet == other.subnet else "overlaps"
                    snat = f" (both would own SNAT {v.snat_address})" \
                        if v.snat_address == other.snat_address else ""
                    problems.add((i, "subnet"), f"{v.subnet} {what} vlans[{j}].subnet {other.subnet}{snat}")
                    break
            seen_subnets.append((v, i))
            for seg, name in segments:
                if v.subnet == seg:
                    problems.add((i, "subnet"), f"{v.subnet} equals {name} {seg}")
                elif v.subnet.subnet_of(seg):  # type: ignore[arg-type]
                    problems.add((i, "subnet"), f"{v.subnet} is inside {name} {seg}")
                elif v.subnet.overlaps(seg):
                    problems.add((i, "subnet"), f"{v.subnet} overlaps {name} {seg}")
        problems.raise_any(vlans)
        return vlans

    @model_validator(mode="after")
    def _cross(self) -> Config:
        """Checks over sections that come after ``vlans`` (routing, strongswan, ldap, eap)."""
        problems = Problems("Config")
        # EAP-MSCHAPv2/MD5 need a readable NT hash or cleartext; an LDAP bind cannot do them
        # (only where ikemgr renders FreeRADIUS: a remote RADIUS server keeps its own store)
        has_nt = self.ldap.nt_hash_attribute is not None or self.ldap.cleartext_attribute is not None
        if self.radius.local and "mschapv2" in self.eap.methods and not has_nt:
            problems.add(("eap", "methods"), "mschapv2 needs ldap.nt_hash_attribute or "
                         "ldap.cleartext_attribute")
        if self.radius.local and "md5" in self.eap.methods and self.ldap.cleartext_attribute is None:
            problems.add(("eap", "methods"), "md5 needs ldap.cleartext_attribute")
        campus = self.gateway.campus
        if campus.table.id == self.routing.charon_table:
            problems.add(("gateway", "campus", "table", "id"), "equals routing.charon_table")
        for i, v in enumerate(self.vlans):
            if v.table_id == self.routing.charon_table:
                problems.add(("vlans", i, "table"), f"id {v.table_id} already used by routing.charon_table")
        if self.strongswan.kernel_ipsec == "libipsec" and not self.strongswan.encap:
            problems.add(("strongswan", "encap"), "must be true with kernel_ipsec: libipsec "
                         "(kernel-libipsec only does UDP-encapsulated ESP)")
        problems.raise_any()
        return self

    # ------------------------------------------------------------------ helpers
    @property
    def pool_network(self) -> IPv4Network | IPv6Network:
        assert self.pool.network is not None
        return self.pool.network

    def vlan(self, number: int) -> Vlan | None:
        for v in self.vlans:
            if v.number == number:
                return v
        return None

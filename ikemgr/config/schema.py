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

from pydantic import Field, model_validator

from ikemgr.config.clients import CertAuth
from ikemgr.config.network import Gateway, Pool, Routing, Vlan
from ikemgr.config.observability import Observability
from ikemgr.config.pki import Pki
from ikemgr.config.services import Database, Eap, Firewall, Ldap, Policy, Radius, Strongswan
from ikemgr.config.sync import Sync
from ikemgr.config.types import IPNetwork, Strict, _v4_only


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

    @model_validator(mode="after")
    def _password_store(self) -> Config:
        """EAP-MSCHAPv2/MD5 need a readable NT hash or cleartext; an LDAP bind cannot do them."""
        has_nt = self.ldap.nt_hash_attribute is not None or self.ldap.cleartext_attribute is not None
        if "mschapv2" in self.eap.methods and not has_nt:
            raise ValueError("eap.methods: mschapv2 needs ldap.nt_hash_attribute or "
                             "ldap.cleartext_attribute")
        if "md5" in self.eap.methods and self.ldap.cleartext_attribute is None:
            raise ValueError("eap.methods: md5 needs ldap.cleartext_attribute")
        return self

    @model_validator(mode="after")
    def _cross(self) -> Config:
        campus = self.gateway.campus
        seg = self.pool.network if self.pool.network is not None else campus.address.network
        for name, end in (("first", self.pool.first), ("last", self.pool.last)):
            if end not in seg:
                raise ValueError(f"pool.{name}: {end} is outside the client segment {seg}")
        for reserved in (campus.address.ip, campus.gateway):
            if int(self.pool.first) <= int(reserved) <= int(self.pool.last):
                raise ValueError(f"pool: range {self.pool.range_text} contains {reserved}")
        object.__setattr__(self.pool, "network", seg)
        for p in self.campus_prefixes:
            _v4_only(p, "campus_prefixes")
        seen_tables: dict[int, str] = {
            campus.table.id: "gateway.campus.table",
            self.routing.charon_table: "routing.charon_table",
        }
        if campus.table.id == self.routing.charon_table:
            raise ValueError("gateway.campus.table.id: equals routing.charon_table")
        seen_names = {campus.table.name: "gateway.campus.table"}
        seen_numbers: set[int] = set()
        seen_ifs: dict[str, str] = {
            self.gateway.outside.interface: "gateway.outside",
            campus.interface: "gateway.campus",
        }
        for i, v in enumerate(self.vlans):
            where = f"vlans[{i}]"
            if v.number in seen_numbers:
                raise ValueError(f"{where}.number: {v.number} appears twice")
            seen_numbers.add(v.number)
            if v.table_id in seen_tables:
                raise ValueError(f"{where}.table: id {v.table_id} already used by "
                                 f"{seen_tables[v.table_id]}")
            seen_tables[v.table_id] = where
            if v.table_label in seen_names:
                raise ValueError(f"{where}.table_name: {v.table_label} already used by "
                                 f"{seen_names[v.table_label]}")
            seen_names[v.table_label] = where
            if v.interface in seen_ifs:
                raise ValueError(f"{where}.interface: {v.interface} already used by "
                                 f"{seen_ifs[v.interface]}")
            seen_ifs[v.interface] = where
        if self.strongswan.kernel_ipsec == "libipsec" and not self.strongswan.encap:
            raise ValueError("strongswan.encap: must be true with kernel_ipsec: libipsec "
                             "(kernel-libipsec only does UDP-encapsulated ESP)")
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

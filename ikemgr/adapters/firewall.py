"""The base firewall, loaded atomically (nftables or iptables-legacy).

``render.firewall`` makes the text ``ikemgr render`` writes, and the nftables backend
loads exactly that text (the caller hands it over), so render and apply cannot drift. The nftables
backend owns one table (``table ip <firewall.table>``) and replaces it in one libnftables
transaction; the iptables backend owns two chains (nat ``<T>-POSTROUTING``, mangle
``<T>-FORWARD``) plus one jump to each, replaced in one libiptc commit per table.
Nothing else is ever read for changing or deleted — in particular not the policy
engine's ``table ip <firewall.table>_policy``.

The libraries open their sockets in the calling thread's namespace: every call here runs
through ``adapters.kernel.netns.InNetns``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ikemgr.adapters.kernel.netns import InNetns
from ikemgr.config.schema import Config
from ikemgr.core.firewall import FirewallSpec, firewall_spec
from ikemgr.errors import ApplyFailed, BackendUnavailable


@dataclass(frozen=True)
class FirewallChange:
    """What a backend found: ``changes`` are human lines; empty means converged."""

    changes: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.changes


def _nft() -> Any:
    import nftables

    nft = nftables.Nftables()
    nft.set_json_output(False)
    nft.set_handle_output(False)
    return nft


def _nft_list(table: str) -> str | None:
    rc, out, err = _nft().cmd(f"list table ip {table}")
    if rc == 0:
        return str(out)
    if "No such file or directory" in err:
        return None
    raise BackendUnavailable("nftables", err.strip().splitlines()[0] if err.strip() else f"rc {rc}")


def _nft_run(text: str) -> None:
    rc, _out, err = _nft().cmd(text)
    if rc != 0:
        first = next((ln for ln in err.splitlines() if ln.strip()), f"rc {rc}")
        raise ApplyFailed(f"nftables rejected the ruleset: {first.strip()}")


class NftablesBackend:
    def __init__(self, spec: FirewallSpec, ns: InNetns, file_text: str, table_text: str) -> None:
        self.spec = spec
        self.ns = ns
        # render.firewall's nft_file_text / nft_table_text of ``spec``: what render writes
        self.file_text = file_text
        self.table_text = table_text

    def _table_change(self) -> list[str]:
        current = self.ns.call(_nft_list, self.spec.table)
        if current is None:
            return [f"+ nftables table ip {self.spec.table} ({len(self.spec.snat)} SNAT "
                    f"rules, MSS clamp {self.spec.mss_text})"]
        if current.strip() == self.table_text.strip():
            return []
        return [f"~ nftables table ip {self.spec.table} (replaced as a whole)"]

    def diff(self) -> FirewallChange:
        return FirewallChange(tuple(self._table_change() + self.ns.call(_ipt_remove, self.spec, False)))

    def apply(self) -> FirewallChange:
        changes = self._table_change()
        if changes:
            self.ns.call(_nft_run, self.file_text)
        # legacy NAT next to nft NAT misbehaves: drop the chains an iptables backend left
        changes += self.ns.call(_ipt_remove, self.spec, True)
        return FirewallChange(tuple(changes))


def _ipt_rules(spec: FirewallSpec) -> tuple[list[Any], list[Any]]:
    import iptc

    snat = []
    for s in spec.snat:
        r = iptc.Rule()
        r.src = str(s.src)
        r.out_interface = s.oif
        m = r.create_match("comment")
        m.comment = s.why
        t = r.create_target("SNAT")
        t.to_source = str(s.to)
        snat.append(r)
    clamps = []
    for c in spec.clamps:
        r = iptc.Rule()
        if c.match == "saddr":
            r.src = spec.pool
        else:
            r.dst = spec.pool
        r.protocol = "tcp"
        m = r.create_match("tcp")
        m.tcp_flags = ["SYN,RST", "SYN"]
        t = r.create_target("TCPMSS")
        if c.mss is None:
            t.clamp_mss_to_pmtu = ""
        else:
            t.set_mss = str(c.mss)
        clamps.append(r)
    return snat, clamps


def _ipt_key(rule: Any) -> tuple[Any, ...]:
    """What a rule means, as iptables-save would print it (libiptc's raw bytes differ in padding)."""
    def params(x: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple(sorted((k, tuple(v)) for k, v in x.get_all_parameters().items()))

    return (rule.src, rule.dst, rule.in_interface, rule.out_interface, rule.protocol,
            tuple((m.name, params(m)) for m in rule.matches),
            rule.target.name if rule.target else None, params(rule.target) if rule.target else ())


def _ipt_sync(spec: FirewallSpec, write: bool) -> list[str]:
    """Compare (and with ``write`` replace) ikemgr's two chains and their jumps."""
    import iptc

    snat, clamps = _ipt_rules(spec)
    changes: list[str] = []
    try:
        for tname, chain_name, hook, want in (
            (iptc.Table.NAT, spec.ipt_postrouting, "POSTROUTING", snat),
            (iptc.Table.MANGLE, spec.ipt_forward, "FORWARD", clamps),
        ):
            table = _ipt_open(iptc, tname)
            exists = table.is_chain(chain_name)
            have = iptc.Chain(table, chain_name).rules if exists else []
            hook_chain = iptc.Chain(table, hook)
            jumps = [r for r in hook_chain.rules if r.target.name == chain_name]
            if exists and [_ipt_key(r) for r in have] == [_ipt_key(r) for r in want] and len(jumps) == 1:
                continue
            verb = "~" if exists else "+"
            changes.append(f"{verb} iptables -t {tname} chain {chain_name} ({len(want)} rules)")
            if not write:
                continue
            chain = iptc.Chain(table, chain_name) if exists else table.create_chain(chain_name)
            chain.flush()
            for r in want:
                chain.append_rule(r)
            for r in jumps[1:]:
                hook_chain.delete_rule(r)
            if not jumps:
                jump = iptc.Rule()
                jump.create_target(chain_name)
                hook_chain.insert_rule(jump)
            _ipt_commit(table)
    except iptc.IPTCError as e:
        raise ApplyFailed(f"iptables (legacy): {e}") from None
    return changes


def _ipt_open(iptc: Any, name: str) -> Any:
    """A legacy table opened for one batch: nothing reaches the kernel until _ipt_commit."""
    table = iptc.Table(name)
    table.autocommit = False
    table.refresh()
    return table


def _ipt_commit(table: Any) -> None:
    table.commit()
    table.refresh()
    table.autocommit = True


def _legacy_tables() -> set[str]:
    """Legacy tables that exist in *this thread's* namespace; opening one via libiptc would create it."""
    try:
        return set(Path("/proc/thread-self/net/ip_tables_names").read_text().split())
    except OSError:
        return set()


def _ipt_remove(spec: FirewallSpec, write: bool) -> list[str]:
    """Drop ikemgr's legacy chains and their jumps (the backend is nftables now)."""
    present = _legacy_tables()
    if not present & {"nat", "mangle"}:
        return []
    import iptc

    changes: list[str] = []
    try:
        for tname, chain_name, hook in ((iptc.Table.NAT, spec.ipt_postrouting, "POSTROUTING"),
                                        (iptc.Table.MANGLE, spec.ipt_forward, "FORWARD")):
            if tname not in present:
                continue
            table = _ipt_open(iptc, tname)
            if not table.is_chain(chain_name):
                continue
            changes.append(f"- iptables -t {tname} chain {chain_name} (backend is nftables now)")
            if not write:
                continue
            hook_chain = iptc.Chain(table, hook)
            for r in [r for r in hook_chain.rules if r.target.name == chain_name]:
                hook_chain.delete_rule(r)
            chain = iptc.Chain(table, chain_name)
            chain.flush()
            table.delete_chain(chain)
            _ipt_commit(table)
    except iptc.IPTCError as e:
        raise ApplyFailed(f"iptables (legacy): {e}") from None
    return changes


def _nft_drop_table(table: str) -> bool:
    if _nft_list(table) is None:
        return False
    _nft_run(f"delete table ip {table}")
    return True


class IptablesBackend:
    def __init__(self, spec: FirewallSpec, ns: InNetns) -> None:
        self.spec = spec
        self.ns = ns

    def diff(self) -> FirewallChange:
        changes = self.ns.call(_ipt_sync, self.spec, False)
        if self.ns.call(_nft_list, self.spec.table) is not None:
            changes.append(f"- nftables table ip {self.spec.table} (backend is iptables now)")
        return FirewallChange(tuple(changes))

    def apply(self) -> FirewallChange:
        changes = self.ns.call(_ipt_sync, self.spec, True)
        # mixing nft and legacy NAT in one namespace misbehaves: drop our own nft table
        if self.ns.call(_nft_drop_table, self.spec.table):
            changes.append(f"- nftables table ip {self.spec.table} (backend is iptables now)")
        return FirewallChange(tuple(changes))


def backend_for(cfg: Config, ns: InNetns, nft_file: str, nft_table: str) -> NftablesBackend | IptablesBackend:
    """The configured backend; the nftables one loads the rendered text the caller hands over."""
    spec = firewall_spec(cfg)
    if cfg.firewall.backend == "nftables":
        return NftablesBackend(spec, ns, nft_file, nft_table)
    return IptablesBackend(spec, ns)

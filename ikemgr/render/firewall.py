"""The base firewall as text: the nftables table and the iptables-restore file.

``ikemgr render`` writes these, and the firewall adapter loads exactly this text, so
render and apply cannot drift."""

from __future__ import annotations

from ikemgr.config.schema import Config
from ikemgr.core.firewall import FirewallSpec, firewall_spec
from ikemgr.render.templates import Output, render_template


def nft_context(spec: FirewallSpec) -> dict[str, object]:
    """Everything the nftables template prints, already formatted."""
    snat = [{"oif": s.oif, "src": str(s.src), "to": str(s.to), "comment": s.why} for s in spec.snat]
    clamps = []
    for c in spec.clamps:
        if c.mss is None:
            stmt = "tcp option maxseg size set rt mtu"
        else:
            # like iptables TCPMSS --set-mss: only ever lower the MSS, never raise it
            stmt = f"tcp option maxseg size > {c.mss} tcp option maxseg size set {c.mss}"
        clamps.append({"match": f"ip {c.match} {spec.pool}", "stmt": stmt})
    return {"table": spec.table, "snat": snat, "clamps": clamps}


def ipt_context(spec: FirewallSpec) -> dict[str, object]:
    """The same rules in iptables-restore syntax (render output and operator reference)."""
    snat = [f"-s {s.src} -o {s.oif} -m comment --comment \"{s.why}\" -j SNAT --to-source {s.to}"
            for s in spec.snat]
    clamps = []
    for c in spec.clamps:
        flag = "-s" if c.match == "saddr" else "-d"
        target = "--clamp-mss-to-pmtu" if c.mss is None else f"--set-mss {c.mss}"
        clamps.append(f"{flag} {spec.pool} -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS {target}")
    return {"postrouting": spec.ipt_postrouting, "forward": spec.ipt_forward,
            "snat": snat, "clamps": clamps}


NFT_PATH = "nftables/ikemgr.nft"


IPT_PATH = "iptables/ikemgr.rules"


def nft_table_text(spec: FirewallSpec) -> str:
    """The table exactly as ``nft list table`` prints it back, so a listing compares equal."""
    return render_template("nftables/ikemgr-table.nft.j2", **nft_context(spec))


def nft_file_text(spec: FirewallSpec) -> str:
    return render_template("nftables/ikemgr.nft.j2", **nft_context(spec))


def ipt_file_text(spec: FirewallSpec) -> str:
    return render_template("iptables/ikemgr.rules.j2", **ipt_context(spec))


def firewall_outputs(cfg: Config) -> list[Output]:
    """The ruleset file for the configured backend (what apply loads, byte for byte for nft)."""
    spec = firewall_spec(cfg)
    if cfg.firewall.backend == "nftables":
        return [Output(NFT_PATH, nft_file_text(spec))]
    return [Output(IPT_PATH, ipt_file_text(spec))]

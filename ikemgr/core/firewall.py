"""Base state → what the firewall must hold: SNAT and TCP MSS clamping (pure).

Both backends are fed from the same ``FirewallSpec``: the nftables template, the
iptables-restore template and the python-iptables rules. Names that end up in a
ruleset are checked here, once, so the templates only print validated values."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ikemgr.config.schema import Config
from ikemgr.core.base_state import BaseState, SnatSpec, base_state
from ikemgr.errors import ConfigError, ConfigProblem

#: nft identifiers: a letter or '_' first (the config's Token also allows a leading digit)
_NFT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


#: iptables chain names are at most 28 characters (XT_EXTENSION_MAXNAMELEN - 1 - 2)
IPT_CHAIN_MAX = 28


_COMMENT_DROP = re.compile(r"[^A-Za-z0-9 .,:/_+()-]")


#: the policy engine's own nftables table (adapters/policy/marks.py); never ours to replace
POLICY_TABLE = "ikemgr_policy"


POSTROUTING_SUFFIX = "POSTROUTING"


FORWARD_SUFFIX = "FORWARD"


@dataclass(frozen=True)
class MssClamp:
    """Clamp forwarded SYNs in one direction: ``match`` is ``saddr`` or ``daddr`` of the pool."""

    match: str
    mss: int | None  # None = clamp to the route's path MTU


@dataclass(frozen=True)
class FirewallSpec:
    table: str  # nftables table name (family ip)
    pool: str
    snat: tuple[SnatSpec, ...]
    clamps: tuple[MssClamp, ...]
    ipt_postrouting: str  # iptables chain in nat, jumped to from POSTROUTING
    ipt_forward: str  # iptables chain in mangle, jumped to from FORWARD

    @property
    def mss_text(self) -> str:
        c = self.clamps[0]
        return "pmtu" if c.mss is None else str(c.mss)


def _comment(text: str) -> str:
    """Keep only characters that need no quoting in nft, iptables-restore and libiptc."""
    return _COMMENT_DROP.sub("", text)[:200]


def firewall_spec(cfg: Config, state: BaseState | None = None) -> FirewallSpec:
    st = state or base_state(cfg)
    name = cfg.firewall.table
    problems = []
    if not _NFT_NAME.fullmatch(name):
        problems.append(ConfigProblem("firewall.table", None,
                                      f"{name!r} must start with a letter or '_' (nftables table name)"))
    if name == POLICY_TABLE:
        problems.append(ConfigProblem("firewall.table", None,
                                      f"{name!r} is the policy engine's table; pick another name"))
    chain_base = name.upper().replace(".", "-")
    post = f"{chain_base}-{POSTROUTING_SUFFIX}"
    fwd = f"{chain_base}-{FORWARD_SUFFIX}"
    if len(post) > IPT_CHAIN_MAX:
        problems.append(ConfigProblem(
            "firewall.table", None,
            f"{name!r} is too long: the iptables chain {post} exceeds {IPT_CHAIN_MAX} characters"))
    if problems:
        raise ConfigError(problems)
    mss = st.mss
    clamp_value = None if mss == "pmtu" else int(mss)
    snat = tuple(SnatSpec(s.oif, s.src, s.to, _comment(s.why)) for s in st.snat)
    return FirewallSpec(
        table=name,
        pool=str(st.pool),
        snat=snat,
        clamps=(MssClamp("saddr", clamp_value), MssClamp("daddr", clamp_value)),
        ipt_postrouting=post,
        ipt_forward=fwd,
    )

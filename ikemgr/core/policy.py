"""THE decision: live SAs ⋈ allow-list ⋈ config → the rule each VIP must have (pure).

Every path that changes policy (VICI events, the updown hook, allow-list changes, the
periodic and start-up reconcile) ends here with the same inputs, so they cannot
disagree. Identities are parsed by the compiled grammar and compared as values; they are
never used as a pattern or a shell argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from ipaddress import IPv4Address

from ikemgr.config.schema import Config
from ikemgr.core.identity import Identity, IdentityGrammar, account_from_dn, shown
from ikemgr.core.model import LIVE_STATES, Decision, DesiredState, Outcome, Sa, UserRule
from ikemgr.errors import IdentityRejected


def identity_of(sa: Sa, cfg: Config, grammar: IdentityGrammar) -> Identity:
    """The identity of an SA as the policy sees it; raises IdentityRejected.

    A certificate client's identity is its subject DN: on the certificate connection the
    account is the DN's single, last CN. Everyone else is the EAP (or IKE) identity.
    """
    raw = sa.identity_raw
    if on_cert_connection(sa, cfg):
        raw = account_from_dn(raw)
        if raw is None:
            raise IdentityRejected("certificate subject has no single, last CN", shown(sa.identity_raw))
    return grammar.parse(raw)


def decide(sa: Sa, allowed: frozenset[tuple[str, int]], cfg: Config,
           grammar: IdentityGrammar) -> Decision:
    """The outcome for one SA (whether it is live is the caller's filter)."""
    try:
        ident = identity_of(sa, cfg, grammar)
    except IdentityRejected as e:
        return Decision(sa.uniqueid, e.shown, Outcome.REJECTED_IDENTITY, sa.vips, reason=e.reason)
    name = str(ident)
    if not sa.vips:
        return Decision(sa.uniqueid, name, Outcome.NO_VIP, sa.vips, ident.account, ident.vlan,
                        "SA has no IPv4 virtual IP")
    if ident.vlan is None:
        return Decision(sa.uniqueid, name, Outcome.NO_VLAN, sa.vips, ident.account, None,
                        "identity names no lab VLAN")
    if cfg.vlan(ident.vlan) is None:
        return Decision(sa.uniqueid, name, Outcome.UNKNOWN_VLAN, sa.vips, ident.account, ident.vlan,
                        "VLAN is not in the config")
    if (ident.account, ident.vlan) not in allowed:
        return Decision(sa.uniqueid, name, Outcome.NOT_ON_LIST, sa.vips, ident.account, ident.vlan,
                        "pair is not on the allow-list")
    return Decision(sa.uniqueid, name, Outcome.ALLOWED, sa.vips, ident.account, ident.vlan)


def on_cert_connection(sa: Sa, cfg: Config) -> bool:
    """The SA came in on the certificate-only connection (its identity is a subject DN)."""
    cert = cfg.strongswan_cert_auth
    return cert.enabled and sa.conn == cert.connection


def lease_conflict(d: Decision, leases: Mapping[IPv4Address, str], *, cert: bool = False) -> Decision:
    """An allowed SA whose VIP the pool has leased to someone else gets no rule.

    charon's pool leases are a second record of who holds an address. A full reconcile
    reads them right after list-sas; an online lease naming another identity means the
    two disagree, and a lab VLAN is not opened on a disputed address. A VIP without a
    lease (e.g. one assigned by RADIUS) is not disputed. charon records a certificate
    client's lease under its subject DN, so with ``cert`` the holder is the DN's account
    (its single, last CN), read as ``decide`` read the SA.
    """
    for vip in d.vips:
        holder = leases.get(vip)
        if holder is not None and (account_from_dn(holder) if cert else holder) != d.identity:
            return replace(d, outcome=Outcome.LEASE_MISMATCH,
                           reason=f"pool lease of {vip} belongs to {shown(holder)}")
    return d


def desired_state(sas: Iterable[Sa], allowed: frozenset[tuple[str, int]], cfg: Config,
                  grammar: IdentityGrammar, leases: Mapping[IPv4Address, str] | None = None) -> DesiredState:
    """Rules for the VIPs of the given live SAs.

    A VIP held by several SAs (make-before-break reauth, ``unique = never``) keeps its rule
    while any allowed SA holds it; if two allowed SAs disagree on the VLAN, the newest SA
    (highest unique id) wins, so a re-login with another VLAN takes effect at once.
    Passing only the SAs that hold some VIPs yields exactly the rules of those VIPs, which
    is how incremental reconciles reuse this function.
    """
    rules: dict[IPv4Address, UserRule] = {}
    decisions: list[Decision] = []
    prio = cfg.routing.user_priority
    for sa in sorted(sas, key=Sa.sort_key):
        if sa.state not in LIVE_STATES:
            continue
        d = decide(sa, allowed, cfg, grammar)
        if leases is not None and d.outcome is Outcome.ALLOWED:
            d = lease_conflict(d, leases, cert=on_cert_connection(sa, cfg))
        decisions.append(d)
        if d.outcome is not Outcome.ALLOWED:
            continue
        assert d.vlan is not None
        vlan = cfg.vlan(d.vlan)
        assert vlan is not None
        for vip in sa.vips:
            rules[vip] = UserRule(vip, d.vlan, vlan.table_id, prio)
    return DesiredState(rules, tuple(decisions))


def describe(d: Decision) -> dict[str, object]:
    """The structured log record of a decision (values already log-safe)."""
    out: dict[str, object] = {"event": "decision", "uniqueid": shown(d.uniqueid, 24),
                              "identity": d.identity, "outcome": str(d.outcome),
                              "vips": [str(v) for v in d.vips]}
    if d.vlan is not None:
        out["vlan"] = d.vlan
    if d.reason:
        out["reason"] = d.reason
    return out


def _live_identities(sas: Iterable[Sa], cfg: Config, grammar: IdentityGrammar) -> list[tuple[str, Identity]]:
    out = []
    for sa in sorted(sas, key=Sa.sort_key):
        if sa.state not in LIVE_STATES:
            continue
        try:
            out.append((sa.uniqueid, identity_of(sa, cfg, grammar)))
        except IdentityRejected:
            continue
    return out


def live_pairs(sas: Iterable[Sa], cfg: Config, grammar: IdentityGrammar) -> frozenset[tuple[str, int]]:
    """The (account, vlan) pairs that charon's live SAs claim: all of the allow-list their
    decisions read."""
    return frozenset((ident.account, ident.vlan) for _, ident in _live_identities(sas, cfg, grammar)
                     if ident.vlan is not None)


def holders_of(sas: Iterable[Sa], pairs: frozenset[tuple[str, int]], cfg: Config,
               grammar: IdentityGrammar) -> list[str]:
    """Unique ids of the live SAs whose identity is one of ``pairs`` (revoked grants to terminate)."""
    return [uid for uid, ident in _live_identities(sas, cfg, grammar)
            if ident.vlan is not None and (ident.account, ident.vlan) in pairs]


def sessions_of(sas: Iterable[Sa], who: Identity, cfg: Config, grammar: IdentityGrammar) -> list[str]:
    """Unique ids of the live SAs of one identity, compared as values (``ikemgr terminate``)."""
    return [uid for uid, ident in _live_identities(sas, cfg, grammar) if ident == who]

"""The decision core: desired_state over SAs × allow-list × config (pure, property-based)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikemgr.config.load import load
from ikemgr.core.identity import IdentityGrammar
from ikemgr.core.model import Outcome, Sa, UserRule
from ikemgr.core.policy import decide, desired_state, holders_of

CFG = load(Path(__file__).resolve().parents[2] / "examples" / "campus.yaml")
G = IdentityGrammar(CFG.policy.identity_pattern, CFG.policy.account_pattern)
P = CFG.routing.user_priority
VIP1, VIP2 = IPv4Address("10.1.0.10"), IPv4Address("10.1.0.11")
ALLOWED = frozenset({("alice", 123456), ("carol", 123457)})


def sa(uid: str, ident: object, *vips: IPv4Address, state: str = "ESTABLISHED") -> Sa:
    return Sa(uid, ident, tuple(vips), state)  # type: ignore[arg-type]


@pytest.mark.parametrize("ident,outcome", [
    ("alice@123456", Outcome.ALLOWED),
    (b"alice@123456", Outcome.ALLOWED),
    ("bob@123456", Outcome.NOT_ON_LIST),
    ("alice@123457", Outcome.NOT_ON_LIST),
    ("alice", Outcome.NO_VLAN),
    ("alice@999999", Outcome.UNKNOWN_VLAN),
    ("alice@0123456", Outcome.REJECTED_IDENTITY),
    (".*@123456", Outcome.REJECTED_IDENTITY),
    ("a@1@2", Outcome.REJECTED_IDENTITY),
    (b"\xff\xfe@123456", Outcome.REJECTED_IDENTITY),
    (None, Outcome.REJECTED_IDENTITY),
])
def test_decide_outcomes(ident: object, outcome: Outcome) -> None:
    assert decide(sa("1", ident, VIP1), ALLOWED, CFG, G).outcome is outcome


def test_allowed_sa_gets_rule_with_vlan_table_and_priority() -> None:
    d = desired_state([sa("1", "alice@123456", VIP1)], ALLOWED, CFG, G)
    assert d.rules == {VIP1: UserRule(VIP1, 123456, 123456, P)}
    assert [x.outcome for x in d.decisions] == [Outcome.ALLOWED]


def test_no_vip_is_a_decision_but_no_rule() -> None:
    d = desired_state([sa("1", "alice@123456")], ALLOWED, CFG, G)
    assert d.rules == {} and d.decisions[0].outcome is Outcome.NO_VIP


def test_non_live_states_are_not_considered() -> None:
    for state in ("CONNECTING", "DELETING", "REKEYED", "DESTROYING"):
        assert desired_state([sa("1", "alice@123456", VIP1, state=state)], ALLOWED, CFG, G).rules == {}


def test_vip_held_by_two_sas_keeps_rule_while_any_allowed_sa_holds_it() -> None:
    a, b = sa("5", "alice@123456", VIP1), sa("6", "alice@123456", VIP1)
    assert VIP1 in desired_state([a, b], ALLOWED, CFG, G).rules
    assert VIP1 in desired_state([b], ALLOWED, CFG, G).rules
    # a non-allowed second holder does not take the rule away
    c = sa("7", "bob@123456", VIP1)
    assert VIP1 in desired_state([a, c], ALLOWED, CFG, G).rules


def test_newest_sa_wins_when_allowed_sas_disagree_on_vlan() -> None:
    allowed = ALLOWED | {("alice", 123457)}
    old, new = sa("9", "alice@123456", VIP1), sa("10", "alice@123457", VIP1)
    for order in ([old, new], [new, old]):
        assert desired_state(order, allowed, CFG, G).rules[VIP1].vlan == 123457


def test_identity_is_never_a_pattern() -> None:
    """The seed grepped the list with the identity: '.*@123456' matched everyone."""
    for ident in (".*@123456", "ali.e@123456", "[a-z]*@123456", "alice|bob@123456"):
        assert desired_state([sa("1", ident, VIP1)], ALLOWED, CFG, G).rules == {}


# --------------------------------------------------------------------------- properties

accounts = st.sampled_from(["alice", "bob", "carol", "dave"])
vlans = st.sampled_from([123456, 123457, 200001, 999999])
hostile = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40),
    st.sampled_from(["a@1@2", "@123456", "alice@", "alice@0123456", "$(reboot)@123456",
                     "a;rm -rf /@123456", "..@123456", "x" * 200 + "@123456", "alice\x00@123456"]),
)
idents = st.one_of(st.builds(lambda a, v: f"{a}@{v}", accounts, vlans), accounts, hostile)
vips = st.integers(min_value=10, max_value=20).map(lambda n: IPv4Address(f"10.1.0.{n}"))
states = st.sampled_from(["ESTABLISHED", "ESTABLISHED", "REKEYING", "DELETING", "CONNECTING"])
sa_lists = st.lists(
    st.builds(lambda i, ident, vs, s: Sa(str(i), ident, tuple(vs), s),
              st.integers(1, 10_000), idents, st.lists(vips, max_size=2, unique=True), states),
    max_size=25, unique_by=lambda s: s.uniqueid)
allow_sets = st.frozensets(st.tuples(accounts, vlans), max_size=8)


@settings(max_examples=300, deadline=None)
@given(sa_lists, allow_sets)
def test_every_rule_is_backed_by_a_live_allowed_sa(sas: list[Sa], allowed: frozenset) -> None:
    d = desired_state(sas, allowed, CFG, G)
    for vip, rule in d.rules.items():
        backers = [s for s in sas if vip in s.vips and s.live]
        assert backers, "a rule without a live SA holding the VIP"
        ok = []
        for s in backers:
            dec = decide(s, allowed, CFG, G)
            if dec.outcome is Outcome.ALLOWED and dec.vlan == rule.vlan:
                ok.append(s)
        assert ok, "a rule not justified by an allowed SA"
        assert rule.priority == P and CFG.vlan(rule.vlan) is not None
        assert rule.table_id == CFG.vlan(rule.vlan).table_id  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(sa_lists, allow_sets)
def test_every_live_allowed_vip_has_a_rule(sas: list[Sa], allowed: frozenset) -> None:
    d = desired_state(sas, allowed, CFG, G)
    for s in sas:
        if s.live and decide(s, allowed, CFG, G).outcome is Outcome.ALLOWED:
            assert all(v in d.rules for v in s.vips)


@settings(max_examples=200, deadline=None)
@given(sa_lists, allow_sets, st.randoms())
def test_order_of_sas_does_not_matter(sas: list[Sa], allowed: frozenset, rnd: random.Random) -> None:
    shuffled = list(sas)
    rnd.shuffle(shuffled)
    assert desired_state(sas, allowed, CFG, G).rules == desired_state(shuffled, allowed, CFG, G).rules


@settings(max_examples=200, deadline=None)
@given(sa_lists, allow_sets)
def test_never_a_rule_for_a_rejected_identity(sas: list[Sa], allowed: frozenset) -> None:
    d = desired_state(sas, allowed, CFG, G)
    rejected = {x.uniqueid for x in d.decisions if x.outcome is Outcome.REJECTED_IDENTITY}
    clean = [s for s in sas if s.uniqueid not in rejected]
    assert d.rules == desired_state(clean, allowed, CFG, G).rules


@settings(max_examples=200, deadline=None)
@given(sa_lists, allow_sets)
def test_scoped_input_gives_the_same_rules_for_those_vips(sas: list[Sa], allowed: frozenset) -> None:
    """What incremental reconciles rely on: the SAs holding some VIPs decide those VIPs."""
    full = desired_state(sas, allowed, CFG, G).rules
    for vip in {v for s in sas for v in s.vips}:
        part = desired_state([s for s in sas if vip in s.vips], allowed, CFG, G).rules
        assert part.get(vip) == full.get(vip)


def test_full_reconcile_refuses_a_vip_the_pool_leased_to_someone_else() -> None:
    alice = sa("7", "alice@123456", IPv4Address("10.1.0.10"))
    # charon's lease agrees: the rule stands
    agreed = desired_state([alice], ALLOWED, CFG, G, {IPv4Address("10.1.0.10"): "alice@123456"})
    assert set(agreed.rules) == {IPv4Address("10.1.0.10")}
    # the pool says the address is bob's: no lab VLAN on a disputed address
    disputed = desired_state([alice], ALLOWED, CFG, G, {IPv4Address("10.1.0.10"): "bob@123456"})
    assert disputed.rules == {}
    (d,) = disputed.decisions
    assert d.outcome is Outcome.LEASE_MISMATCH and "'bob@123456'" in d.reason
    # an address with no lease (e.g. assigned by RADIUS) is not disputed; no leases = no check
    assert set(desired_state([alice], ALLOWED, CFG, G, {}).rules) == {IPv4Address("10.1.0.10")}
    assert set(desired_state([alice], ALLOWED, CFG, G, None).rules) == {IPv4Address("10.1.0.10")}
    # a lease never opens anything by itself: bob is not on the list
    bob = sa("8", "bob@123456", IPv4Address("10.1.0.11"))
    assert desired_state([bob], ALLOWED, CFG, G, {IPv4Address("10.1.0.11"): "bob@123456"}).rules == {}


def test_a_certificate_client_is_its_subjects_cn_on_the_certificate_connection_only() -> None:
    """charon reports a public-key client as its subject DN (no EAP identity): on the
    certificate connection the account is the DN's single, last CN, and the same grammar
    and allow-list decide; on the EAP connection a DN-shaped identity is just refused."""
    cfg = CFG.model_copy(update={"strongswan_cert_auth": CFG.strongswan_cert_auth.model_copy(
        update={"enabled": True, "subject": "C=JP, O=Example University"})})
    allowed = frozenset({("alice", 123456)})
    dn = "C=JP, O=Example University, CN=alice@123456"
    cert = Sa("9", dn.encode(), (IPv4Address("10.1.0.10"),), "ESTABLISHED", conn="ikemgr-cert")
    d = decide(cert, allowed, cfg, G)
    assert (d.outcome, d.account, d.vlan) == (Outcome.ALLOWED, "alice", 123456)
    eap = Sa("10", dn.encode(), (IPv4Address("10.1.0.11"),), "ESTABLISHED", conn=cfg.strongswan.connection)
    assert decide(eap, allowed, cfg, G).outcome is Outcome.REJECTED_IDENTITY
    for bad in ("C=JP, O=Example University, CN=a, CN=alice@123456", "CN=alice@123456, O=Example University",
                "C=JP, O=Example University, CN=.*@123456", b"C=JP, CN=\xff@123456", "C=JP, O=X"):
        raw = bad if isinstance(bad, bytes) else bad.encode()
        got = decide(Sa("11", raw, (IPv4Address("10.1.0.12"),), "ESTABLISHED", conn="ikemgr-cert"), allowed, cfg, G)
        assert got.outcome is Outcome.REJECTED_IDENTITY, bad


def test_a_certificate_clients_pool_lease_is_held_by_its_subject_dn() -> None:
    """charon records a public-key client's lease under its subject DN (what list-sas shows
    as remote-id), not under the account: a full reconcile must read the holder the way
    ``decide`` read the SA, or it refuses every certificate client (seen with libreswan)."""
    cfg = CFG.model_copy(update={"strongswan_cert_auth": CFG.strongswan_cert_auth.model_copy(
        update={"enabled": True, "subject": "C=JP, O=Example University"})})
    dn = "C=JP, O=Example University, CN=alice@123456"
    cert = Sa("9", dn.encode(), (VIP1,), "ESTABLISHED", conn="ikemgr-cert")
    agreed = desired_state([cert], ALLOWED, cfg, G, {VIP1: dn})
    assert set(agreed.rules) == {VIP1}, agreed.decisions
    # another certificate's account holds the lease: disputed
    other = desired_state([cert], ALLOWED, cfg, G, {VIP1: "C=JP, O=Example University, CN=bob@123456"})
    assert other.rules == {} and other.decisions[0].outcome is Outcome.LEASE_MISMATCH
    # a lease under a DN does not vouch for an EAP client of the same CN
    eap = Sa("10", b"alice@123456", (VIP1,), "ESTABLISHED", conn=cfg.strongswan.connection)
    assert desired_state([eap], ALLOWED, cfg, G, {VIP1: dn}).rules == {}
    # nor does an account-named lease vouch for a certificate client: charon never writes one
    assert desired_state([cert], ALLOWED, cfg, G, {VIP1: "alice@123456"}).rules == {}


def test_a_revoked_certificate_client_is_among_the_holders_to_terminate() -> None:
    """``sync.terminate_revoked`` closes the SAs of revoked pairs; a certificate client's SA
    carries its subject DN, so on the certificate connection it is found by its CN."""
    cfg = CFG.model_copy(update={"strongswan_cert_auth": CFG.strongswan_cert_auth.model_copy(
        update={"enabled": True, "subject": "C=JP, O=Example University"})})
    dn = b"C=JP, O=Example University, CN=alice@123456"
    sas = [Sa("9", dn, (VIP1,), "ESTABLISHED", conn="ikemgr-cert"),
           Sa("10", b"alice@123456", (VIP2,), "ESTABLISHED", conn=cfg.strongswan.connection),
           # the same DN on the EAP connection is no account (decide refuses it too)
           Sa("11", dn, (IPv4Address("10.1.0.12"),), "ESTABLISHED", conn=cfg.strongswan.connection),
           Sa("12", b"C=JP, O=Example University, CN=carol@123457", (), "ESTABLISHED", conn="ikemgr-cert")]
    assert holders_of(sas, frozenset({("alice", 123456)}), cfg, G) == ["9", "10"]
    assert holders_of(sas, frozenset({("carol", 123457)}), cfg, G) == ["12"]
    assert holders_of(sas, frozenset({("alice", 123456)}), CFG, G) == ["10"]  # connection disabled

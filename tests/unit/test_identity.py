"""The identity grammar refuses hostile input before any regex sees it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ikemgr.core.identity import Identity, IdentityGrammar
from ikemgr.errors import IdentityRejected

G = IdentityGrammar()

HOSTILE = [
    "a@1; rm -rf /", ".*@123456", "alice@123456\n", "alice@123456\x00", "alice@123456 ", " alice@123456",
    "a@1@2", "@123456", "alice@", "alice@0123456", "alice@1234567890", "ALICE@123456", "al ice@123456",
    "$(id)@123456", "`id`@123456", "alice@12x", "..@123456", "../etc@1", "a..b@1", ".alice@1", "-alice@1",
    "alice@１２３", "al|ce@1", "a'b@1", 'a"b@1', "a\\b@1", "a;b", "x" * 65 + "@1", "x" * 300,
    b"\xff\xfe@123456", b"alice@123456\x00", "alice@-1", "alice@+1", "alice@1.0", "",
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_identities_are_rejected(value: object) -> None:
    with pytest.raises(IdentityRejected) as e:
        G.parse(value)
    assert "\n" not in str(e.value) and "\x00" not in str(e.value)


def test_good_identities() -> None:
    assert G.parse("alice@123456") == Identity("alice", 123456)
    assert G.parse(b"bob.k-1_x@7") == Identity("bob.k-1_x", 7)
    assert G.parse("carol") == Identity("carol", None)
    with pytest.raises(IdentityRejected):
        G.parse_vlan_identity("carol")


@given(st.text(max_size=200) | st.binary(max_size=600))
def test_parse_never_crashes_and_round_trips(value: object) -> None:
    try:
        ident = G.parse(value)
    except IdentityRejected:
        return
    assert G.parse(str(ident)) == ident


@pytest.mark.parametrize("value", HOSTILE + [b"alice@123456\x7f", b"a" * 129 + b"@1", b"al\tce@1"],
                         ids=range(len(HOSTILE) + 3))
def test_vlan_pair_refuses_what_parse_vlan_identity_refuses(value: object) -> None:
    for check in (G.vlan_pair, G.parse_vlan_identity):
        with pytest.raises(IdentityRejected):
            check(value)


@given(st.text(max_size=200) | st.binary(max_size=600))
def test_vlan_pair_is_parse_vlan_identity_as_a_plain_tuple(value: object) -> None:
    """The same answer (or the same refusal, with the same reason) for text and for bytes;
    ASCII bytes take the fast path, anything else the full checks."""
    try:
        ident = G.parse_vlan_identity(value)
    except IdentityRejected as e:
        with pytest.raises(IdentityRejected) as again:
            G.vlan_pair(value)
        assert (again.value.reason, again.value.shown) == (e.reason, e.shown)
        return
    pair = G.vlan_pair(value)
    assert type(pair) is tuple and pair == (ident.account, ident.vlan)
    if isinstance(value, bytes):
        assert G.vlan_pair(value.decode("utf-8")) == pair


def test_ascii_bytes_and_text_are_read_alike() -> None:
    assert G.vlan_pair(b"alice@123456") == G.vlan_pair("alice@123456") == ("alice", 123456)
    for bad in (b"alice@123456\x1f", b"al\x7fice@1", b"x" * 129):
        with pytest.raises(IdentityRejected) as from_bytes:
            G.vlan_pair(bad)
        with pytest.raises(IdentityRejected) as from_text:
            G.vlan_pair(bad.decode("ascii"))
        assert from_bytes.value.reason == from_text.value.reason


def _answer(fn, value: object) -> object:
    try:
        return fn(value)
    except IdentityRejected as e:
        return ("rejected", e.reason)


_NEAR = st.text(alphabet="az09.-_@ \x00\x7f\u00e9", max_size=12) | st.sampled_from(
    ["a@1", "a@0", "a@01", ".a@1", "-a@1", "a..b@1", "a@1; rm -rf /", ".*@123456", "@1", "a@", "a@@1",
     "x" * 200 + "@1", "a@\u0661"])


@given(_NEAR | st.binary(max_size=12))
def test_vlan_pair_fast_path_gives_the_full_checks_answer(value: object) -> None:
    """vlan_pair's inline common case accepts only what the step-by-step checks accept, with the same pair."""
    assert _answer(G.vlan_pair, value) == _answer(G._vlan_pair, value)

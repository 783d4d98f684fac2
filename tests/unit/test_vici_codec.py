"""adapters.vici.decode_message: the same result as the vici package's decoder, and stricter;
decode_event: the same as decode_message, less what the event path never reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vici.protocol import FiniteStream, Message

from ikemgr.adapters.vici.codec import (
    EVENT_KEYS,
    MessageError,
    decode_event,
    decode_event_cut,
    decode_message,
    parse_event,
    repeats,
)

SAMPLES = Path(__file__).with_name("test_vici_sample_events.json")

keys = st.text(min_size=1, max_size=20).filter(lambda k: len(k.encode()) < 256)
blobs = st.binary(max_size=300)
messages = st.recursive(
    st.dictionaries(keys, st.one_of(blobs, st.lists(blobs, max_size=5)), max_size=6),
    lambda inner: st.dictionaries(keys, st.one_of(blobs, st.lists(blobs, max_size=4), inner), max_size=5),
    max_leaves=30,
)


def library(data: bytes) -> Any:
    return json.loads(json.dumps(Message.deserialize(FiniteStream(data)), default=lambda b: b.hex()))


def ours(data: bytes, pos: int = 0) -> Any:
    return json.loads(json.dumps(decode_message(data, pos), default=lambda b: b.hex()))


@settings(max_examples=300, deadline=None)
@given(messages)
def test_same_result_as_the_library(msg: dict[str, Any]) -> None:
    data = Message.serialize(msg)
    assert ours(data) == library(data)


def _wire(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _wire(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_wire(v) for v in o]
    return str(o).encode()


def test_recorded_charon_messages() -> None:
    items = json.loads(SAMPLES.read_text())
    assert len(items) >= 10
    for item in items:
        data = Message.serialize(_wire(item))
        assert ours(data) == library(data)
        assert ours(b"\xff\x00" + data, 2) == library(data)  # a body after a packet header


@given(messages.filter(bool))
def test_truncation_is_an_error_not_a_short_message(msg: dict[str, Any]) -> None:
    data = Message.serialize(msg)
    for cut in {1, len(data) // 2, len(data) - 1} - {0, len(data)}:
        try:
            got = decode_message(data[:cut])
        except MessageError:
            continue
        # a cut can fall exactly between two top-level elements: then it is a shorter, valid message
        assert got == decode_message(Message.serialize(got))
        assert len(Message.serialize(got)) == cut


@pytest.mark.parametrize(("data", "why"), [
    (b"\x02", "unexpected end of section"),
    (b"\x01\x01a", "expected the end of a section"),
    (b"\x09", "unknown element type 9"),
    (b"\x04\x01l\x05\x00\x01x\x03", "expected the end of list"),
    (b"\x03\x01k\x00\x05ab", "truncated"),
    (b"\x03\x02\xff\xfe\x00\x00", "not UTF-8"),
])
def test_malformed_messages_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(MessageError, match=why):
        decode_message(data)


def _event_view(msg: Any) -> Any:
    """What decode_event keeps of a decoded message: sections (less child-sas), EVENT_KEYS."""
    out = {}
    for k, v in msg.items():
        if isinstance(v, dict):
            if k != "child-sas":
                out[k] = _event_view(v)
        elif k.encode() in EVENT_KEYS:
            out[k] = v
    return out


event_keys = st.one_of(keys, st.sampled_from([k.decode() for k in EVENT_KEYS] + ["child-sas"]))
event_messages = st.recursive(
    st.dictionaries(event_keys, st.one_of(blobs, st.lists(blobs, max_size=5)), max_size=6),
    lambda inner: st.dictionaries(event_keys, st.one_of(blobs, st.lists(blobs, max_size=4), inner), max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(event_messages, st.binary(max_size=8), st.binary(max_size=8))
def test_decode_event_keeps_what_the_event_path_reads(msg: dict[str, Any], before: bytes, after: bytes) -> None:
    # inside a larger buffer (several frames read at once): only [pos, end) is read
    data = Message.serialize(msg)
    buf = before + data + after
    assert decode_event(buf, len(before), len(before) + len(data)) == _event_view(decode_message(data))


def test_decode_event_gives_the_recorded_events_the_same_updates() -> None:
    for item in json.loads(SAMPLES.read_text()):
        if item.get("kind") != "event":
            continue
        data = Message.serialize(_wire(item["raw"]))
        full, lean = parse_event(item["event"], decode_message(data)), parse_event(item["event"],
                                                                                   decode_event(data, 0, len(data)))
        # the same SAs, up or down, identities and VIPs; byte counters live in the skipped child-sas
        assert [(u.sa.uniqueid, u.sa.identity_raw, u.sa.vips, u.sa.state, u.present) for u in lean] == [
            (u.sa.uniqueid, u.sa.identity_raw, u.sa.vips, u.sa.state, u.present) for u in full]


@given(event_messages.filter(bool))
def test_decode_event_refuses_a_cut_message_bounded_inside_a_buffer(msg: dict[str, Any]) -> None:
    data = Message.serialize(msg)
    for cut in {1, len(data) // 2, len(data) - 1} - {0, len(data)}:
        buf = data[:cut] + data  # the next frame's bytes follow the cut one
        try:
            got = decode_event(buf, 0, cut)
        except MessageError:
            continue
        # a cut between two top-level elements is a shorter, valid message
        assert got == _event_view(decode_message(data[:cut]))


@pytest.mark.parametrize(("data", "why"), [
    (b"\x02", "unexpected end of section"),
    (b"\x01\x01a", "expected the end of a section"),
    (b"\x09\x00", "unknown element type 9"),
    (b"\x04\x02up\x05\x00\x01x\x03", "expected the end of list"),
    (b"\x03\x02up\x00\x05ab", "truncated"),
    (b"\x01\x02\xff\xfe\x02", "not UTF-8"),
    (b"\x01\x09child-sas\x03\x01k\x00\x09ab", "truncated"),
])
def test_decode_event_refuses_malformed_messages(data: bytes, why: str) -> None:
    with pytest.raises(MessageError, match=why):
        decode_event(data, 0, len(data))


@pytest.mark.parametrize(("raw", "want"), [
    ([b"10.1.0.5"], ("10.1.0.5",)),
    ([b"10.1.0.5", b"fd00::5"], ("10.1.0.5",)),  # IPv6 is skipped (not supported yet)
    ([b"01.2.3.4", b"1.2.3", b"1.2.3.4 ", b"256.1.1.1", b"1.2.3.4\x00", b"0x1.2.3.4", b"\xff\xfe"], ()),
    ([b"1.2.3.4", b"not an address", b"5.6.7.8"], ("1.2.3.4", "5.6.7.8")),
])
def test_vips_are_strict_dotted_quads(raw: list[bytes], want: tuple[str, ...]) -> None:
    """The fast parse (inet_pton) takes only what ipaddress would; anything else is skipped."""
    from ikemgr.adapters.vici.codec import vips_of

    assert tuple(str(v) for v in vips_of({"remote-vips": raw})) == want


def _recorded(event: str, up: bool) -> bytes:
    for item in json.loads(SAMPLES.read_text()):
        if item.get("event") == event and ("up" in item["raw"]) == up:
            return Message.serialize(_wire(item["raw"]))
    raise AssertionError(f"no recorded {event} (up={up})")


def test_a_child_updown_after_its_ike_updown_repeats_its_decode() -> None:
    """charon's pair as recorded: the same bytes up to the VIPs, other tasks and a CHILD_SA
    after. A down after an up differs at its first byte (no ``up`` key)."""
    ike, child = _recorded("ike-updown", True), _recorded("child-updown", True)
    msg, cut, depth = decode_event_cut(ike, 0, len(ike))
    assert depth == 1 and ike[cut:] != child[cut:]  # the tails differ: tasks-passive, child-sas
    assert repeats(child, 0, len(child), ike[:cut], depth)
    assert decode_event(child, 0, len(child)) == msg
    down = _recorded("ike-updown", False)
    assert not repeats(down, 0, len(down), ike[:cut], depth)
    assert not repeats(child[:-1], 0, len(child) - 1, ike[:cut], depth)  # truncated: decode it, refuse it


@settings(max_examples=400, deadline=None)
@given(event_messages, event_messages, st.binary(max_size=12), st.integers(0, 3))
def test_a_repeat_is_only_ever_a_message_that_decodes_the_same(first: dict[str, Any], extra: dict[str, Any],
                                                              noise: bytes, how: int) -> None:
    """Soundness: whatever follows the first message's cut (elements inserted there, keys of
    EVENT_KEYS among them, other sections, stray bytes, a cut tail), ``repeats`` is True
    only when ``decode_event`` gives exactly the first message's decode."""
    data = Message.serialize(first)
    msg, cut, depth = decode_event_cut(data, 0, len(data))
    inserted = Message.serialize(extra)
    second = {0: data[:cut] + inserted + data[cut:], 1: data[:cut] + noise + data[cut:],
              2: data[:cut] + inserted + b"\x02" * depth, 3: (data[:cut] + inserted + data[cut:])[:-1]}[how]
    if repeats(second, 0, len(second), data[:cut], depth):
        assert decode_event(second, 0, len(second)) == msg


plain_keys = keys.filter(lambda k: k.encode() not in EVENT_KEYS and k != "child-sas")


@settings(max_examples=200, deadline=None)
@given(event_messages, st.dictionaries(plain_keys, st.one_of(blobs, st.lists(blobs, max_size=4)), max_size=5),
       messages)
def test_other_tasks_and_a_child_sa_after_the_cut_are_a_repeat(first: dict[str, Any], plain: dict[str, Any],
                                                               child: dict[str, Any]) -> None:
    """Completeness: keys the event path never reads and a ``child-sas`` section of
    anything, after the cut, are a repeat."""
    data = Message.serialize(first)
    _msg, cut, depth = decode_event_cut(data, 0, len(data))
    second = data[:cut] + Message.serialize({**plain, "child-sas": child}) + data[cut:]
    assert repeats(second, 0, len(second), data[:cut], depth)

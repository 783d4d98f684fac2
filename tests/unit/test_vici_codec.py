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

from ikemgr.adapters.vici.codec import EVENT_KEYS, MessageError, decode_event, decode_message, parse_event

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

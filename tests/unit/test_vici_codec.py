"""adapters.vici.decode_message: the same result as the vici package's decoder, and stricter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vici.protocol import FiniteStream, Message

from ikemgr.adapters.vici.codec import MessageError, decode_message

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

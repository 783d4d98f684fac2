"""adapters.kernel.rule_channel: the rule codec checked both ways against pyroute2's fibmsg, ACKs, dumps."""

from __future__ import annotations

import errno
import struct
from ipaddress import IPv4Network, ip_network
from typing import Any

import pytest
from pyroute2.netlink.rtnl.fibmsg import fibmsg

from ikemgr.adapters.kernel import rule_channel
from ikemgr.adapters.kernel.rule_channel import decode_rule, encode, parse_acks, parse_dump
from ikemgr.core.model import Rule

N = ip_network


def decode(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    m = fibmsg(data)
    m.decode()
    fields = {k: m[k] for k in ("family", "dst_len", "src_len", "table", "action")}
    attrs = {name: value for name, value in m["attrs"]}
    hdr = m["header"]
    return {**fields, "type": hdr["type"], "flags": hdr["flags"], "seq": hdr["sequence_number"],
            "length": hdr["length"]}, attrs


CASES: list[tuple[str, Rule, dict[str, Any], dict[str, Any]]] = [
    # the rules backend's per-user rule: from VIP/32 to a campus prefix, table id above 255
    ("add", Rule(29000, 123456, N("10.1.0.10/32"), N("10.0.0.0/8")),  # type: ignore[arg-type]
     {"src_len": 32, "dst_len": 8, "table": 0, "action": 1},
     {"FRA_PRIORITY": 29000, "FRA_SRC": "10.1.0.10", "FRA_DST": "10.0.0.0", "FRA_TABLE": 123456,
      "FRA_PROTOCOL": 99}),
    # a table id below 256 also goes into the header, as iproute2 does
    ("del", Rule(29000, 200, N("10.1.0.11/32"), N("198.51.100.0/24")),  # type: ignore[arg-type]
     {"src_len": 32, "dst_len": 24, "table": 200, "action": 1},
     {"FRA_PRIORITY": 29000, "FRA_SRC": "10.1.0.11", "FRA_DST": "198.51.100.0", "FRA_TABLE": 200,
      "FRA_PROTOCOL": 99}),
    # the marks backend's shapes: fwmark lookup, fwmark 0 goto, nop
    ("add", Rule(29001, 123457, fwmark=123457),
     {"src_len": 0, "dst_len": 0, "table": 0, "action": 1},
     {"FRA_PRIORITY": 29001, "FRA_FWMARK": 123457, "FRA_FWMASK": 0xFFFFFFFF, "FRA_TABLE": 123457,
      "FRA_PROTOCOL": 99}),
    ("add", Rule(29000, fwmark=0, fwmask=0xFFFFFFFF, action="goto", goto=29002),
     {"table": 0, "action": 2},
     {"FRA_PRIORITY": 29000, "FRA_FWMARK": 0, "FRA_FWMASK": 0xFFFFFFFF, "FRA_GOTO": 29002,
      "FRA_PROTOCOL": 99}),
    ("del", Rule(29002, action="nop"), {"table": 0, "action": 3},
     {"FRA_PRIORITY": 29002, "FRA_PROTOCOL": 99}),
]


@pytest.mark.parametrize(("verb", "rule", "fields", "attrs"), CASES)
def test_encoding_decodes_with_pyroute2(verb: str, rule: Rule, fields: dict[str, Any],
                                        attrs: dict[str, Any]) -> None:
    data = encode(verb, rule, 99, seq=7)
    got_fields, got_attrs = decode(data)
    assert got_fields["family"] == 2 and got_fields["seq"] == 7 and got_fields["length"] == len(data)
    assert len(data) % 4 == 0
    if verb == "add":
        assert (got_fields["type"], got_fields["flags"]) == (rule_channel.RTM_NEWRULE, 0x1 | 0x4 | 0x200 | 0x400)
    else:
        assert (got_fields["type"], got_fields["flags"]) == (rule_channel.RTM_DELRULE, 0x1 | 0x4)
    assert {k: got_fields[k] for k in fields} == fields
    assert got_attrs == attrs


def test_the_cached_shape_encodes_as_the_full_encoder_does() -> None:
    """An IPv4-source rule is its cached shape with the address and sequence put in: the
    same bytes as building the message whole, for every verb and flag, and for rules that
    share a shape but not a source."""
    for verb, rule, *_ in CASES:
        for src in ("10.1.0.10/32", "10.64.255.250/32", "10.0.0.0/9", "0.0.0.0/0"):
            r = Rule(rule.priority, rule.table, N(src), rule.dst, rule.fwmark,  # type: ignore[arg-type]
                     rule.fwmask, rule.action, rule.goto)
            for exclusive in (True, False):
                for ack in (True, False):
                    for seq in (1, 0xFFFFFFFF):
                        assert encode(verb, r, 99, seq, exclusive, ack) == \
                            rule_channel._encode(verb, r, 99, seq, exclusive, ack)


def test_a_request_without_ack_leaves_only_the_ack_flag_out() -> None:
    r = Rule(29000, 123456, N("10.1.0.10/32"), N("10.0.0.0/8"))  # type: ignore[arg-type]
    got_fields, _ = decode(encode("add", r, 99, seq=7, ack=False))
    assert got_fields["flags"] == 0x1 | 0x200 | 0x400
    got_fields, _ = decode(encode("del", r, 99, seq=7, ack=False))
    assert got_fields["flags"] == 0x1


def test_unknown_verb_is_refused() -> None:
    with pytest.raises(ValueError, match="add or del"):
        encode("replace", Rule(1), 99, seq=1)
    with pytest.raises(ValueError, match="add or del"):  # the cached shape's path too
        encode("replace", Rule(1, 200, N("10.1.0.10/32")), 99, seq=1)  # type: ignore[arg-type]


def ack(seq: int, code: int) -> bytes:
    body = struct.pack("=i", -code) + struct.pack("=IHHII", 16, 32, 5, seq, 0)
    return struct.pack("=IHHII", 16 + len(body), rule_channel.NLMSG_ERROR, 0x100, seq, 4242) + body


def test_acks_in_one_buffer_give_each_sequence_and_errno() -> None:
    data = ack(1, 0) + ack(2, errno.EEXIST) + ack(3, errno.ENOENT)
    assert parse_acks(data) == [(1, 0), (2, errno.EEXIST), (3, errno.ENOENT)]


def test_a_truncated_buffer_is_an_error_not_a_short_list() -> None:
    data = ack(1, 0) + ack(2, 0)
    with pytest.raises(ValueError, match="truncated"):
        parse_acks(data[:-4])


def test_non_ack_messages_are_skipped() -> None:
    done = struct.pack("=IHHII", 20, rule_channel.NLMSG_DONE, 0, 9, 0) + b"\0\0\0\0"
    assert parse_acks(done + ack(4, 0)) == [(4, 0)]


def test_prefix_lengths_come_from_the_networks() -> None:
    r = Rule(5, 300, IPv4Network("10.0.0.0/9"), None)
    f, a = decode(encode("add", r, 1, 1))
    assert (f["src_len"], f["dst_len"], a["FRA_SRC"]) == (9, 0, "10.0.0.0")


def as_dump_message(verb_data: bytes) -> bytes:
    """A request turned into what a dump returns: the same rule as an RTM_NEWRULE message."""
    size, _kind, _flags, seq, pid = struct.unpack_from("=IHHII", verb_data)
    return struct.pack("=IHHII", size, rule_channel.RTM_NEWRULE, 0x2, seq, pid) + verb_data[16:]


@pytest.mark.parametrize(("verb", "rule", "fields", "attrs"), CASES)
def test_dump_messages_decode_back_to_the_same_rule(verb: str, rule: Rule, fields: dict[str, Any],
                                                     attrs: dict[str, Any]) -> None:
    data = as_dump_message(encode("add", rule, 99, seq=3))
    assert decode_rule(data, 16, len(data) - 16) == (rule, 99)


def test_a_dump_built_by_pyroute2_decodes() -> None:
    """The kernel's side of the codec, as pyroute2 encodes it (an independent encoder)."""
    m = fibmsg()
    m["family"], m["dst_len"], m["src_len"], m["table"], m["action"] = 2, 8, 32, 0, 1
    m["attrs"] = [("FRA_PRIORITY", 29000), ("FRA_SRC", "10.1.0.10"), ("FRA_DST", "10.0.0.0"),
                  ("FRA_TABLE", 123456), ("FRA_PROTOCOL", 99)]
    m["header"]["type"], m["header"]["flags"], m["header"]["sequence_number"] = rule_channel.RTM_NEWRULE, 2, 5
    m.encode()
    done = struct.pack("=IHHII", 20, rule_channel.NLMSG_DONE, 2, 5, 0) + b"\0\0\0\0"
    rules, finished = parse_dump(bytes(m.data) + done)
    assert finished and rules == [(Rule(29000, 123456, N("10.1.0.10/32"), N("10.0.0.0/8")), 99)]


def test_shapes_ikemgr_never_makes_read_as_foreign() -> None:
    m = fibmsg()
    m["family"], m["table"], m["action"], m["flags"] = 2, 200, 1, 0x2  # "not from …": inverted
    m["attrs"] = [("FRA_PRIORITY", 29000), ("FRA_PROTOCOL", 99)]
    m["header"]["type"] = rule_channel.RTM_NEWRULE
    m.encode()
    data = bytes(m.data)
    rule, proto = decode_rule(data, 16, len(data) - 16)
    assert rule.action == "foreign" and proto == 99


def test_a_failed_dump_raises_instead_of_reading_as_empty() -> None:
    err = struct.pack("=i", -errno.EPERM) + struct.pack("=IHHII", 16, rule_channel.RTM_GETRULE, 0x301, 1, 0)
    msg = struct.pack("=IHHII", 16 + len(err), rule_channel.NLMSG_ERROR, 0, 1, 0) + err
    with pytest.raises(OSError):
        parse_dump(msg)

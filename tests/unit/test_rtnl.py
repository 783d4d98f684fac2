"""adapters.rtnl: the rule codec, decoded by pyroute2's own fibmsg parser, and ACK parsing."""

from __future__ import annotations

import errno
import struct
from ipaddress import IPv4Network, ip_network
from typing import Any

import pytest
from pyroute2.netlink.rtnl.fibmsg import fibmsg

from ikemgr.adapters.kernel import rule_channel
from ikemgr.adapters.kernel.rule_channel import RuleMsg, encode, parse_acks

N = ip_network


def decode(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    m = fibmsg(data)
    m.decode()
    fields = {k: m[k] for k in ("family", "dst_len", "src_len", "table", "action")}
    attrs = {name: value for name, value in m["attrs"]}
    hdr = m["header"]
    return {**fields, "type": hdr["type"], "flags": hdr["flags"], "seq": hdr["sequence_number"],
            "length": hdr["length"]}, attrs


CASES: list[tuple[str, RuleMsg, dict[str, Any], dict[str, Any]]] = [
    # the rules backend's per-user rule: from VIP/32 to a campus prefix, table id above 255
    ("add", RuleMsg(29000, "lookup", 123456, N("10.1.0.10/32"), N("10.0.0.0/8"), protocol=99),  # type: ignore[arg-type]
     {"src_len": 32, "dst_len": 8, "table": 0, "action": 1},
     {"FRA_PRIORITY": 29000, "FRA_SRC": "10.1.0.10", "FRA_DST": "10.0.0.0", "FRA_TABLE": 123456,
      "FRA_PROTOCOL": 99}),
    # a table id below 256 also goes into the header, as iproute2 does
    ("del", RuleMsg(29000, "lookup", 200, N("10.1.0.11/32"), N("198.51.100.0/24"), protocol=99),  # type: ignore[arg-type]
     {"src_len": 32, "dst_len": 24, "table": 200, "action": 1},
     {"FRA_PRIORITY": 29000, "FRA_SRC": "10.1.0.11", "FRA_DST": "198.51.100.0", "FRA_TABLE": 200,
      "FRA_PROTOCOL": 99}),
    # the marks backend's shapes: fwmark lookup, fwmark 0 goto, nop
    ("add", RuleMsg(29001, "lookup", 123457, fwmark=123457, protocol=99),
     {"src_len": 0, "dst_len": 0, "table": 0, "action": 1},
     {"FRA_PRIORITY": 29001, "FRA_FWMARK": 123457, "FRA_FWMASK": 0xFFFFFFFF, "FRA_TABLE": 123457,
      "FRA_PROTOCOL": 99}),
    ("add", RuleMsg(29000, "goto", fwmark=0, fwmask=0xFFFFFFFF, goto=29002, protocol=99),
     {"table": 0, "action": 2},
     {"FRA_PRIORITY": 29000, "FRA_FWMARK": 0, "FRA_FWMASK": 0xFFFFFFFF, "FRA_GOTO": 29002,
      "FRA_PROTOCOL": 99}),
    ("del", RuleMsg(29002, "nop", protocol=99), {"table": 0, "action": 3},
     {"FRA_PRIORITY": 29002, "FRA_PROTOCOL": 99}),
]


@pytest.mark.parametrize(("verb", "rule", "fields", "attrs"), CASES)
def test_encoding_decodes_with_pyroute2(verb: str, rule: RuleMsg, fields: dict[str, Any],
                                        attrs: dict[str, Any]) -> None:
    data = encode(verb, rule, seq=7)
    got_fields, got_attrs = decode(data)
    assert got_fields["family"] == 2 and got_fields["seq"] == 7 and got_fields["length"] == len(data)
    assert len(data) % 4 == 0
    if verb == "add":
        assert (got_fields["type"], got_fields["flags"]) == (rule_channel.RTM_NEWRULE, 0x1 | 0x4 | 0x200 | 0x400)
    else:
        assert (got_fields["type"], got_fields["flags"]) == (rule_channel.RTM_DELRULE, 0x1 | 0x4)
    assert {k: got_fields[k] for k in fields} == fields
    assert got_attrs == attrs


def test_unknown_verb_is_refused() -> None:
    with pytest.raises(ValueError, match="add or del"):
        encode("replace", RuleMsg(1), seq=1)


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
    r = RuleMsg(5, "lookup", 300, IPv4Network("10.0.0.0/9"), None, protocol=1)
    f, a = decode(encode("add", r, 1))
    assert (f["src_len"], f["dst_len"], a["FRA_SRC"]) == (9, 0, "10.0.0.0")

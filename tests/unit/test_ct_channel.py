"""adapters.kernel.ct_channel: the conntrack codec checked both ways against pyroute2's nfct_msg,
and the flush's counting of the kernel's answers (deleted, gone meanwhile, refused)."""

from __future__ import annotations

import errno
import struct
from ipaddress import IPv4Address
from typing import Any

import pytest
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

from ikemgr.adapters.kernel import ct_channel
from ikemgr.adapters.kernel.ct_channel import (
    CtChannel,
    decode_entry,
    delete_request,
    dump_request,
    filtered_delete_request,
    parse_acks,
    parse_dump,
)

_HDR = struct.Struct("=IHHII")


def ip(text: str) -> int:
    return int(IPv4Address(text))


def entry(src: str, dst: str, *, zone: int | None = None, seq: int = 5, sport: int = 40000) -> bytes:
    """One IPCTNL_MSG_CT_NEW of a dump, as pyroute2 encodes it (an independent encoder)."""
    m = nfct_msg()
    m["nfgen_family"] = 2
    attrs: list[Any] = [
        ("CTA_TUPLE_ORIG", {"attrs": [
            ("CTA_TUPLE_IP", {"attrs": [("CTA_IP_V4_SRC", src), ("CTA_IP_V4_DST", dst)]}),
            ("CTA_TUPLE_PROTO", {"attrs": [("CTA_PROTO_NUM", 6), ("CTA_PROTO_SRC_PORT", sport),
                                           ("CTA_PROTO_DST_PORT", 443)]})]}),
        ("CTA_TUPLE_REPLY", {"attrs": [
            ("CTA_TUPLE_IP", {"attrs": [("CTA_IP_V4_SRC", dst), ("CTA_IP_V4_DST", "192.0.2.1")]})]}),
        ("CTA_STATUS", 8), ("CTA_TIMEOUT", 120)]
    if zone is not None:
        attrs.append(("CTA_ZONE", zone))
    m["attrs"] = attrs
    m["header"]["type"], m["header"]["flags"], m["header"]["sequence_number"] = ct_channel.MSG_NEW, 2, seq
    m.encode()
    return bytes(m.data)


def done(seq: int = 5) -> bytes:
    return _HDR.pack(20, ct_channel.NLMSG_DONE, 2, seq, 0) + b"\0\0\0\0"


def ack(seq: int, code: int) -> bytes:
    return _HDR.pack(36, ct_channel.NLMSG_ERROR, 0x100, seq, 0) + struct.pack("=i", -code) + \
        _HDR.pack(16, ct_channel.MSG_DELETE, 5, seq, 0)


def decoded(data: bytes) -> nfct_msg:
    m = nfct_msg(data)
    m.decode()
    return m


def test_a_dump_built_by_pyroute2_decodes_to_source_tuple_and_zone() -> None:
    data = entry("10.1.0.10", "10.20.0.1", zone=7) + entry("10.1.0.11", "10.20.0.2", seq=5) + done()
    got, finished = parse_dump(data)
    assert finished and [(src, zone is not None) for src, _, zone in got] == [(ip("10.1.0.10"), True),
                                                                               (ip("10.1.0.11"), False)]
    # the original tuple comes back as the very attribute pyroute2 wrote
    src, orig, zone = got[0]
    size = struct.unpack_from("=H", orig)[0]
    assert src == ip("10.1.0.10") and size == len(orig) and orig in data
    assert zone is not None and struct.unpack_from(">H", zone, 4)[0] == 7


def test_the_delete_request_decodes_with_pyroute2_as_the_entry_it_names() -> None:
    (src, orig, zone), = parse_dump(entry("10.1.0.10", "10.20.0.1", zone=7, sport=40001) + done())[0]
    assert src == ip("10.1.0.10")
    data = delete_request(orig, zone, seq=9)
    m = decoded(data)
    hdr = m["header"]
    assert (hdr["type"], hdr["flags"], hdr["sequence_number"], hdr["length"]) == (
        ct_channel.MSG_DELETE, ct_channel.NLM_F_REQUEST | ct_channel.NLM_F_ACK, 9, len(data))
    assert m["nfgen_family"] == 2
    tup = m.get_attr("CTA_TUPLE_ORIG")
    assert tup.get_attr("CTA_TUPLE_IP").get_attr("CTA_IP_V4_SRC") == "10.1.0.10"
    assert tup.get_attr("CTA_TUPLE_IP").get_attr("CTA_IP_V4_DST") == "10.20.0.1"
    assert tup.get_attr("CTA_TUPLE_PROTO").get_attr("CTA_PROTO_SRC_PORT") == 40001
    assert m.get_attr("CTA_ZONE") == 7
    assert m.get_attr("CTA_TUPLE_REPLY") is None  # the kernel finds the entry by its original tuple
    assert decoded(delete_request(orig, None, seq=1)).get_attr("CTA_ZONE") is None


def test_the_dump_request_asks_for_every_ipv4_entry() -> None:
    m = decoded(dump_request(3))
    assert m["header"]["type"] == ct_channel.MSG_GET and m["nfgen_family"] == 2
    assert m["header"]["flags"] == ct_channel.NLM_F_REQUEST | ct_channel.NLM_F_DUMP


def test_an_entry_without_an_ipv4_source_matches_no_vip() -> None:
    m = nfct_msg()
    m["nfgen_family"] = 2
    m["attrs"] = [("CTA_STATUS", 8)]
    m["header"]["type"] = ct_channel.MSG_NEW
    m.encode()
    data = bytes(m.data)
    assert decode_entry(data, 16, len(data)) == (None, b"", None)


def test_a_failed_dump_raises_instead_of_reading_as_empty() -> None:
    err = struct.pack("=i", -errno.EPERM) + _HDR.pack(16, ct_channel.MSG_GET, 0x301, 1, 0)
    with pytest.raises(OSError) as e:
        parse_dump(_HDR.pack(16 + len(err), ct_channel.NLMSG_ERROR, 0, 1, 0) + err)
    assert e.value.errno == errno.EPERM


def test_truncated_messages_raise() -> None:
    data = entry("10.1.0.10", "10.20.0.1")
    with pytest.raises(ValueError):
        parse_dump(data[:-8])
    with pytest.raises(ValueError):
        parse_acks(ack(1, 0)[:-24] + _HDR.pack(64, ct_channel.NLMSG_ERROR, 0, 2, 0))


class FakeSock:
    """The kernel's side of one flush: a dump in two receive buffers, then an ACK per delete."""

    def __init__(self, dump: list[bytes], codes: dict[str, int], filter_code: int = 0) -> None:
        self.dump, self.codes, self.filter_code = dump, codes, filter_code
        self.replies: list[bytes] = []
        self.deleted: list[str] = []
        self.filtered: list[str] = []  # the addresses of filtered deletes
        self.dumps = 0

    def send(self, data: bytes) -> int:
        off = 0
        while off < len(data):
            size, kind, _flags, seq, _pid = _HDR.unpack_from(data, off)
            msg = data[off:off + size]
            if kind == ct_channel.MSG_GET:
                self.dumps += 1
                self.replies += self.dump
            elif decoded(msg).get_attr("CTA_FILTER") is not None:
                src = decoded(msg).get_attr("CTA_TUPLE_ORIG").get_attr("CTA_TUPLE_IP").get_attr("CTA_IP_V4_SRC")
                self.filtered.append(src)
                self.replies.append(ack(seq, self.filter_code))
            else:
                src = decoded(msg).get_attr("CTA_TUPLE_ORIG").get_attr("CTA_TUPLE_IP").get_attr("CTA_IP_V4_SRC")
                self.deleted.append(src)
                self.replies.append(ack(seq, self.codes.get(src, 0)))
            off += size
        return len(data)

    def recv_into(self, buf: bytearray) -> int:
        data = self.replies.pop(0)
        buf[:len(data)] = data
        return len(data)

    def close(self) -> None:
        pass


def channel(sock: FakeSock, *, filtered: bool = False) -> CtChannel:
    """A channel on the fake socket; the dump way unless ``filtered``."""
    ch = CtChannel.__new__(CtChannel)
    ch.sock, ch.seq, ch._buf = sock, 0, bytearray(1 << 16)  # type: ignore[assignment]
    ch.filtered = filtered
    return ch


def test_the_filtered_delete_decodes_with_pyroute2_as_a_source_address_filter() -> None:
    m = decoded(filtered_delete_request(ip("10.1.0.10"), seq=3))
    assert (m["header"]["type"], m["header"]["sequence_number"], m["nfgen_family"], m["version"]) == (
        ct_channel.MSG_DELETE, 3, 2, 1)
    assert m.get_attr("CTA_TUPLE_ORIG").get_attr("CTA_TUPLE_IP").get_attr("CTA_IP_V4_SRC") == "10.1.0.10"
    f = m.get_attr("CTA_FILTER")
    assert (f.get_attr("CTA_FILTER_ORIG_FLAGS"), f.get_attr("CTA_FILTER_REPLY_FLAGS")) == (1, 0)


def test_a_few_vips_are_one_filtered_delete_each_and_no_dump() -> None:
    sock = FakeSock([entry("10.1.0.10", "10.20.0.1") + done()], {})
    vips = {ip("10.1.0.10"), ip("10.1.0.11")}
    assert channel(sock, filtered=True).flush(vips) == (0, 0)
    assert sorted(sock.filtered) == ["10.1.0.10", "10.1.0.11"] and sock.dumps == 0 and sock.deleted == []


def test_more_vips_than_filtered_max_are_one_dump() -> None:
    sock = FakeSock([entry("10.1.0.10", "10.20.0.1") + done()], {})
    vips = {ip("10.1.0.10") + i for i in range(ct_channel.FILTERED_MAX + 1)}
    assert channel(sock, filtered=True).flush(vips) == (1, 0)
    assert sock.filtered == [] and sock.dumps == 1 and sock.deleted == ["10.1.0.10"]


def test_a_kernel_without_filtered_deletes_gets_the_dump_from_then_on() -> None:
    sock = FakeSock([entry("10.1.0.10", "10.20.0.1") + done()], {}, filter_code=errno.EOPNOTSUPP)
    ch = channel(sock, filtered=True)
    assert ch.flush({ip("10.1.0.10")}) == (1, 0)  # refused, nothing deleted: the dump did it
    assert sock.filtered == ["10.1.0.10"] and sock.dumps == 1 and not ch.filtered
    sock.replies, sock.dump = [], [entry("10.1.0.12", "10.20.0.1") + done()]
    assert ch.flush({ip("10.1.0.12")}) == (1, 0)
    assert sock.filtered == ["10.1.0.10"] and sock.dumps == 2  # no second try


def test_a_refused_filtered_delete_is_counted() -> None:
    sock = FakeSock([], {}, filter_code=errno.EPERM)
    assert channel(sock, filtered=True).flush({ip("10.1.0.10"), ip("10.1.0.11")}) == (0, 2)


def test_flush_deletes_only_the_vips_entries_and_counts_the_answers() -> None:
    dump = [entry("10.1.0.10", "10.20.0.1") + entry("10.1.0.11", "10.20.0.1", sport=1),
            entry("10.1.0.12", "10.20.0.1", sport=2) + entry("10.1.0.13", "10.20.0.1", sport=3)
            + entry("10.1.0.10", "10.20.0.9", sport=4) + done()]
    sock = FakeSock(dump, {"10.1.0.12": errno.ENOENT, "10.1.0.13": errno.EPERM})
    # 10.1.0.12 timed out between the dump and the delete: gone as wanted, not a failure
    assert channel(sock).flush({ip("10.1.0.10"), ip("10.1.0.12"), ip("10.1.0.13"), ip("10.9.9.9")}) == (2, 1)
    assert sorted(sock.deleted) == ["10.1.0.10", "10.1.0.10", "10.1.0.12", "10.1.0.13"]
    assert not sock.replies


def test_flush_of_nothing_in_the_table_sends_no_delete() -> None:
    sock = FakeSock([entry("10.1.0.11", "10.20.0.1") + done()], {})
    assert channel(sock).flush({ip("10.1.0.10")}) == (0, 0) and sock.deleted == []


def test_many_deletes_go_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ct_channel, "CHUNK", 2)
    sock = FakeSock([b"".join(entry("10.1.0.10", "10.20.0.1", sport=p) for p in range(5)) + done()], {})
    assert channel(sock).flush({ip("10.1.0.10")}) == (5, 0) and len(sock.deleted) == 5

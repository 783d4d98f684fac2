"""adapters.kernel.nft_channel: the set-element batch decoded by pyroute2's nft codec (an
independent decoder); against the kernel in tests/integration/policy/test_backends.py."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address

from pyroute2.netlink.nfnetlink.nftsocket import nft_set_elem_list_msg

from ikemgr.adapters.kernel import nft_channel as nc
from ikemgr.adapters.kernel.nlmsg import NLM_F_ACK, NLM_F_CREATE, NLMSGHDR, messages


def _decoded(data: bytes, body: int, end: int) -> tuple[str, str, list[tuple[IPv4Address, int | None]]]:
    m = nft_set_elem_list_msg(data[body - NLMSGHDR.size:end])
    m.decode()
    out = []
    for e in m.get_attr("NFTA_SET_ELEM_LIST_ELEMENTS"):
        attrs = dict((k, v) for k, v, *_ in e["attrs"])
        key = dict((k, v) for k, v, *_ in attrs["NFTA_SET_ELEM_KEY"]["attrs"])["NFTA_DATA_VALUE"]
        data_attr = attrs.get("NFTA_SET_ELEM_DATA")
        mark = None
        if data_attr is not None:
            raw = dict((k, v) for k, v, *_ in data_attr["attrs"])["NFTA_DATA_VALUE"]
            (mark,) = struct.unpack("=I", raw)  # nft's mark type: host byte order
        out.append((IPv4Address(key), mark))
    return m.get_attr("NFTA_SET_ELEM_LIST_TABLE"), m.get_attr("NFTA_SET_ELEM_LIST_SET"), out


def test_a_batch_deletes_then_adds_in_one_transaction_and_asks_one_ack() -> None:
    dels = [(IPv4Address("10.64.1.1"), 123456)]
    adds = [(IPv4Address("10.64.1.2"), 123456), (IPv4Address("10.64.1.3"), 123457)]
    data, first, last, verbs = nc.batch("ikemgr_policy", "users", dels, adds, 7)
    msgs = list(messages(data))
    assert [k for k, *_ in msgs] == [nc.NFNL_MSG_BATCH_BEGIN, nc.MSG_DELSETELEM, nc.MSG_NEWSETELEM,
                                     nc.NFNL_MSG_BATCH_END]
    assert [s for _k, s, *_ in msgs] == [7, 8, 9, 10] and (first, last) == (7, 9)
    assert verbs == ["batch", "delete", "add"]
    flags = [NLMSGHDR.unpack_from(data, b - NLMSGHDR.size)[2] for _k, _s, b, _e in msgs]
    assert not flags[1] & NLM_F_ACK and flags[2] & NLM_F_ACK  # the last element message only
    assert flags[2] & NLM_F_CREATE and not flags[1] & NLM_F_CREATE
    # the batch messages name the nftables subsystem (res_id, big-endian)
    fam, _v, res = struct.unpack_from("=BBH", data, msgs[0][2])
    assert fam == socket.AF_UNSPEC and socket.ntohs(res) == nc.NFNL_SUBSYS_NFTABLES
    assert _decoded(data, msgs[1][2], msgs[1][3]) == ("ikemgr_policy", "users", [(dels[0][0], None)])
    assert _decoded(data, msgs[2][2], msgs[2][3]) == ("ikemgr_policy", "users", adds)


def test_many_elements_are_cut_into_messages_of_one_batch() -> None:
    adds = [(IPv4Address(0x0A400000 + i), 123456 + i % 8) for i in range(2 * nc.PER_MESSAGE + 5)]
    data, first, last, verbs = nc.batch("t", "m", [], adds, 1)
    msgs = list(messages(data))
    assert len(msgs) == 2 + 3 and verbs == ["batch", "add", "add", "add"] and last - first == 3
    got = [e for _k, _s, b, end in msgs[1:-1] for e in _decoded(data, b, end)[2]]
    assert got == adds

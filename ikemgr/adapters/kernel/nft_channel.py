"""The ``marks`` backend's VIP → mark map changes over one nfnetlink socket.

A pure codec and a small transport, like ``rule_channel``. Through libnftables each change
is a text command: parsed, evaluated against a cache it fetches from the kernel first, then
sent. That was most of a connect's cost in ``watch`` (``Engine.events`` on one-transition
batches: 111 µs per connect, 98 µs per disconnect in process). The message is fixed-shape:
an nfnetlink batch (NFNL_MSG_BATCH_BEGIN … NFNL_MSG_BATCH_END, one transaction, as
``nft`` sends it) of NFT_MSG_DELSETELEM and NFT_MSG_NEWSETELEM messages naming the table
and the map, each element a key (the IPv4 address, network order) and its data (the mark,
host order, as nft's ``mark`` type stores it).

The kernel handles a batch all or nothing: a refused message (a delete of an element that
is not there, an add whose key is there with another mark) aborts the whole transaction and
is answered with its ``-errno``. Only the last element message asks for an ACK; the kernel
answers every failure anyway, in order, so once the last one's answer is read every earlier
failure has been read before it. A failed commit is answered on the batch's first message.
Encoding is checked against what the kernel holds afterwards (``nft -j list map``) by the
policy backend tests. Reads stay with libnftables (a full reconcile's ``list map``).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Sequence
from ipaddress import IPv4Address

from ikemgr.adapters.kernel.nlmsg import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_REQUEST,
    attr,
    open_socket,
    parse_acks,
    request,
)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
MSG_NEWSETELEM = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM
MSG_DELSETELEM = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM
# linux/netfilter/nf_tables.h
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA = 1, 2
NFTA_DATA_VALUE = 1
NLA_F_NESTED = 0x8000

_NFGENMSG = struct.Struct("=BBH")  # family, version, res_id (big-endian on the wire)
_MARK = struct.Struct("=I")  # nft's mark type: host byte order
#: the body of NFNL_MSG_BATCH_BEGIN and _END: the subsystem the batch is for
_BATCH_BODY = _NFGENMSG.pack(socket.AF_UNSPEC, 0, socket.htons(NFNL_SUBSYS_NFTABLES))

#: elements per message: each is 36 bytes, and a nested attribute's length is 16 bits
PER_MESSAGE = 1024
#: the socket's send buffer: the whole batch of a 10,000-user reconcile goes in one send
SNDBUF = 4 << 20


class NftError(Exception):
    """The kernel refused the batch; nothing of it was applied."""

    def __init__(self, verb: str, code: int) -> None:
        super().__init__(f"nft {verb} element: {os.strerror(code)}")
        self.verb, self.code = verb, code


def _nested(kind: int, payload: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, payload)


def element(vip: IPv4Address, mark: int | None) -> bytes:
    """One NFTA_LIST_ELEM: the key, and the mark when there is one (an add)."""
    body = _nested(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, vip.packed))
    if mark is not None:
        body += _nested(NFTA_SET_ELEM_DATA, attr(NFTA_DATA_VALUE, _MARK.pack(mark)))
    return _nested(NFTA_LIST_ELEM, body)


def _names(table: str, set_name: str) -> bytes:
    return (attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
            + attr(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0"))


def batch(table: str, set_name: str, delete: Sequence[tuple[IPv4Address, int]],
          add: Sequence[tuple[IPv4Address, int]], seq: int) -> tuple[bytes, int, int, list[str]]:
    """The batch that deletes then adds ``(vip, mark)`` elements of ``table``'s map ``set_name``.

    Returns its bytes, the sequence numbers of its first and last messages, and the verb
    of each message from the first (for naming a refusal)."""
    head = _NFGENMSG.pack(socket.AF_INET, 0, 0)
    names = _names(table, set_name)
    parts = [request(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, _BATCH_BODY)]
    verbs = ["batch"]
    work = [("delete", MSG_DELSETELEM, NLM_F_REQUEST, [element(v, None) for v, _m in delete]),
            ("add", MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE, [element(v, m) for v, m in add])]
    msgs: list[tuple[str, int, int, bytes]] = []
    for verb, kind, flags, elems in work:
        for start in range(0, len(elems), PER_MESSAGE):
            listed = _nested(NFTA_SET_ELEM_LIST_ELEMENTS, b"".join(elems[start:start + PER_MESSAGE]))
            body = head + names + listed
            msgs.append((verb, kind, flags, body))
    first = seq
    for i, (verb, kind, flags, body) in enumerate(msgs):
        seq += 1
        parts.append(request(kind, flags | (NLM_F_ACK if i == len(msgs) - 1 else 0), seq, body))
        verbs.append(verb)
    last = seq
    parts.append(request(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 1, _BATCH_BODY))
    return b"".join(parts), first, last, verbs


class SetElemChannel:
    """One NETLINK_NETFILTER socket; ``change`` sends one batch and checks its answers.

    The socket belongs to the network namespace of the thread that opens it, for good."""

    def __init__(self) -> None:
        self.sock = open_socket(NETLINK_NETFILTER, SNDBUF)
        self._seq = 0

    def change(self, table: str, set_name: str, delete: Sequence[tuple[IPv4Address, int]],
               add: Sequence[tuple[IPv4Address, int]]) -> None:
        """Deletes then adds, in one transaction. Raises NftError (nothing applied) or OSError."""
        if not delete and not add:
            return
        data, first, last, verbs = batch(table, set_name, delete, add, self._seq + 1)
        self._seq = (last + 1) % 0x7FFFFFFF
        self.sock.sendto(data, (0, 0))
        refused: NftError | None = None
        while True:
            for seq, code in parse_acks(self.sock.recv(1 << 20)):
                if not first <= seq <= last:
                    continue  # an answer to an earlier, abandoned batch
                if code and refused is None:
                    refused = NftError(verbs[seq - first], code)
                if seq == last or (seq == first and code):  # the last answer, or a failed commit
                    if refused is not None:
                        raise refused
                    return

    def close(self) -> None:
        self.sock.close()

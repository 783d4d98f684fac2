"""Netlink framing shared by the rule and conntrack channels (linux/netlink.h).

Pure: the header constants, one request's bytes, one attribute's bytes, the walk over the messages of one
receive buffer (a truncated message is an error, never read short) and the ACKs in it.
Each channel keeps its own message bodies and its own socket.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x300, 0x200, 0x400
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # ACKs without a copy of the request: smaller receive queue
SO_SNDBUFFORCE = 32  # SO_SNDBUF beyond wmem_max (CAP_NET_ADMIN)

NLMSGHDR = struct.Struct("=IHHII")
NLATTR = struct.Struct("=HH")  # length, type: rtnetlink's rtattr and nfnetlink's nlattr alike
_ERR = struct.Struct("=i")


def open_socket(protocol: int, sndbuf: int = 0) -> socket.socket:
    """A netlink socket of ``protocol`` as the rule and nft channels use it: ACKs without a
    copy of the request, a 1 MiB receive buffer (and ``sndbuf`` bytes of send buffer, forced
    when root may), bound, with a 10 s timeout (the kernel answers at once; silence means
    something broke). It belongs to the network namespace of the thread that opens it."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        if sndbuf:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, sndbuf)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.bind((0, 0))
        sock.settimeout(10.0)
    except OSError:
        sock.close()
        raise
    return sock


def request(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """One netlink message: the header, then ``body`` (the caller pads its attributes)."""
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute: its header, ``payload``, and the padding to four bytes."""
    size = NLATTR.size + len(payload)
    return NLATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def messages(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int]]:
    """(type, sequence number, body start, message end) of each message in ``data``."""
    off = 0
    while off + NLMSGHDR.size <= len(data):
        size, kind, _flags, seq, _pid = NLMSGHDR.unpack_from(data, off)
        if size < NLMSGHDR.size or off + size > len(data):
            raise ValueError(f"truncated netlink message at offset {off}")
        yield kind, seq, off + NLMSGHDR.size, off + size
        off += (size + 3) & ~3


def error_code(data: bytes | memoryview, body: int) -> int:
    """The errno an NLMSG_ERROR whose body starts at ``body`` carries (0: an ACK)."""
    (code,) = _ERR.unpack_from(data, body)
    return -int(code)


def parse_acks(data: bytes | memoryview) -> list[tuple[int, int]]:
    """(sequence number, errno) of every ACK/error in a receive buffer; errno 0 = done."""
    return [(seq, error_code(data, body)) for kind, seq, body, _end in messages(data) if kind == NLMSG_ERROR]

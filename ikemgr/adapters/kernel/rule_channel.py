"""``ip rule`` over one rtnetlink socket: batched changes and the RTM_GETRULE dump.

A pure codec and a small transport.

The ``rules`` backend changes one rule per campus prefix for every lab user who comes or
goes. Through pyroute2's ``IPRoute.rule()`` each change costs ~0.7 ms, almost all of it
building and parsing the message in Python, so at 1,000 events/s the policy thread is
busy 90 % of the time and queueing pushes p99 event→rule past 10 ms. The message itself
is fixed-shape (a ``fib_rule_hdr`` and six attributes): packed with ``struct`` it costs
microseconds, and any number of them go to the kernel in one ``send``. The kernel answers
a failure with an ``NLMSG_ERROR`` carrying ``-errno``, in order; only the last request of
a send asks for an ACK (0) too, which tells that the send is done. An ACK for every
request cost the kernel ~20 µs each (its own message, queued and read back one system call
at a time): 4,000 rules took 27 µs of system time apiece with them and 7 µs without.

Reads use the same socket: one RTM_GETRULE dump, decoded by offset into ``core.model.Rule``
values (no ``ip -j rule show`` subprocess, no pyroute2 message objects). Encoding and
decoding are checked against pyroute2's own ``fibmsg`` codec in the unit tests and
against the kernel by the policy backend tests. The socket belongs to the network
namespace of the thread that opens it (adapters.kernel.netns.InNetns runs us in that thread).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Sequence
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network

from ikemgr.adapters.kernel.netns import InNetns, NsChannel
from ikemgr.adapters.kernel.nlmsg import (
    NLATTR,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    attr,
    error_code,
    messages,
    open_socket,
    parse_acks,
    request,
)
from ikemgr.core.model import ALL_ONES, Network, Rule
from ikemgr.errors import ApplyFailed, BackendUnavailable

NETLINK_ROUTE = 0
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
# fib rule attributes (linux/fib_rules.h)
FRA_DST, FRA_SRC, FRA_GOTO, FRA_PRIORITY, FRA_FWMARK, FRA_TABLE, FRA_FWMASK, FRA_PROTOCOL = (
    1, 2, 4, 6, 10, 15, 16, 21)
FRA_IIFNAME, FRA_OIFNAME = 3, 17
FR_ACT = {"lookup": 1, "goto": 2, "nop": 3}
FR_ACT_NAME = {v: k for k, v in FR_ACT.items()}
FIB_RULE_INVERT = 0x2
RT_TABLE_UNSPEC = 0

_FIB_HDR = struct.Struct("=BBBBBBBBI")
_U32 = struct.Struct("=I")

#: requests per send; with CAP_ACK each answer is 36 bytes, the socket buffer holds thousands
CHUNK = 512


def _u32(kind: int, value: int) -> bytes:
    return attr(kind, _U32.pack(value))


def encode(verb: str, rule: Rule, protocol: int, seq: int, exclusive: bool = True, ack: bool = True) -> bytes:
    """One RTM_NEWRULE (``verb="add"``, create-exclusive unless told) or RTM_DELRULE request.

    With NLM_F_EXCL the kernel compares the new rule with every rule it holds before
    inserting it: 10,000 adds cost 2.0 s of kernel time instead of 0.7 s (measured here, at
    one priority). Without it an add of a rule already there doubles it: only a caller that
    knows the rule is absent (the policy backends, by the engine's index) leaves it out.

    ``ack=False`` leaves NLM_F_ACK out: the kernel still answers a failure, only a success
    goes unanswered (``RuleChannel`` asks an ACK of the last request of a send alone).

    A rule with an IPv4 source (every per-user rule) is the bytes of its shape with the
    source address and the sequence number put in: the shape (everything else) is cached.
    """
    src = rule.src
    if src is not None and src.version == 4:
        head, mid, tail = _shape(verb, rule.priority, rule.table, src.prefixlen, rule.dst, rule.fwmark,
                                 rule.fwmask, rule.action, rule.goto, protocol, exclusive, ack)
        return head + _U32.pack(seq) + mid + src.network_address.packed + tail
    return _encode(verb, rule, protocol, seq, exclusive, ack)


#: the source address's place in a message whose rule has an IPv4 source: the netlink
#: header, the fib_rule_hdr, FRA_PRIORITY and FRA_PROTOCOL, then FRA_SRC's own header
_SRC_AT = NLMSGHDR.size + _FIB_HDR.size + 8 + 8 + NLATTR.size
_SEQ_AT = 8  # nlmsg_seq in the netlink header


@lru_cache(maxsize=4096)
def _shape(verb: str, priority: int, table: int, src_len: int, dst: Network | None, fwmark: int | None,
           fwmask: int | None, action: str, goto: int | None, protocol: int, exclusive: bool,
           ack: bool) -> tuple[bytes, bytes, bytes]:
    """The message of a rule of this shape with an IPv4 source, cut around its sequence
    number and its source address (``_encode`` is the one encoder: the parts are its bytes)."""
    src = IPv4Network((0, src_len))
    data = _encode(verb, Rule(priority, table, src, dst, fwmark, fwmask, action, goto), protocol, 0,
                   exclusive, ack)
    return data[:_SEQ_AT], data[_SEQ_AT + 4:_SRC_AT], data[_SRC_AT + 4:]


def _encode(verb: str, rule: Rule, protocol: int, seq: int, exclusive: bool, ack: bool) -> bytes:
    if verb not in ("add", "del"):
        raise ValueError(f"verb {verb!r}: add or del")
    action = FR_ACT[rule.action]
    table = rule.table if rule.action == "lookup" else 0
    attrs = [_u32(FRA_PRIORITY, rule.priority), attr(FRA_PROTOCOL, bytes((protocol,)))]
    if rule.src is not None:
        attrs.append(attr(FRA_SRC, rule.src.network_address.packed))
    if rule.dst is not None:
        attrs.append(attr(FRA_DST, rule.dst.network_address.packed))
    if rule.fwmark is not None:
        attrs.append(_u32(FRA_FWMARK, rule.fwmark))
        attrs.append(_u32(FRA_FWMASK, 0xFFFFFFFF if rule.fwmask is None else rule.fwmask))
    if rule.action == "goto":
        attrs.append(_u32(FRA_GOTO, rule.goto or 0))
    if table:
        attrs.append(_u32(FRA_TABLE, table))
    hdr = _FIB_HDR.pack(socket.AF_INET, rule.dst.prefixlen if rule.dst is not None else 0,
                        rule.src.prefixlen if rule.src is not None else 0, 0,
                        table if table < 256 else RT_TABLE_UNSPEC, 0, 0, action, 0)
    body = hdr + b"".join(attrs)
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    if verb == "add":
        kind, flags = RTM_NEWRULE, flags | NLM_F_CREATE | (NLM_F_EXCL if exclusive else 0)
    else:
        kind = RTM_DELRULE
    return request(kind, flags, seq, body)


def dump_request(seq: int, family: int = socket.AF_INET) -> bytes:
    """RTM_GETRULE with NLM_F_DUMP: every rule of ``family`` in this namespace."""
    body = _FIB_HDR.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    return request(RTM_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


@lru_cache(maxsize=256)
def _net(payload: bytes, plen: int) -> Network:
    """Address bytes and prefix length → network, from the integer (no text round trip).

    Parsing ``f"{addr}/{plen}"`` was two thirds of a 10,000-rule dump's decode; the cache
    serves the few prefixes that repeat (the campus prefixes every user rule carries).
    """
    if len(payload) == 4:
        return IPv4Network((int.from_bytes(payload, "big"), plen), strict=False)
    if len(payload) == 16:
        return IPv6Network((int.from_bytes(payload, "big"), plen), strict=False)
    raise ValueError(f"a rule address of {len(payload)} bytes")


def decode_rule(data: bytes, off: int, size: int) -> tuple[Rule, int | None]:
    """One RTM_NEWRULE message of a dump → (the rule, its protocol); pure, by offset."""
    family, dst_len, src_len, tos, table, _r1, _r2, action, flags = _FIB_HDR.unpack_from(data, off)
    attrs: dict[int, bytes] = {}
    pos, end = off + _FIB_HDR.size, off + size
    while pos + NLATTR.size <= end:
        alen, kind = NLATTR.unpack_from(data, pos)
        if alen < NLATTR.size or pos + alen > end:
            raise ValueError("truncated rule attribute")
        attrs[kind & 0x3FFF] = data[pos + NLATTR.size:pos + alen]
        pos += (alen + 3) & ~3

    def u32(kind: int) -> int | None:
        v = attrs.get(kind)
        return _U32.unpack(v[:4])[0] if v is not None and len(v) >= 4 else None

    src = _net(attrs[FRA_SRC], src_len) if FRA_SRC in attrs else None
    dst = _net(attrs[FRA_DST], dst_len) if FRA_DST in attrs else None
    fwmark = u32(FRA_FWMARK)
    fwmask = u32(FRA_FWMASK)
    if fwmark is None and fwmask is not None:
        fwmark = 0  # the kernel leaves FRA_FWMARK out when the mark is 0 ("fwmark 0/0xffffffff")
    if fwmark is not None and fwmask is None:
        fwmask = ALL_ONES
    if fwmark == 0 and fwmask == 0:  # no mark selector at all
        fwmark = fwmask = None
    name = FR_ACT_NAME.get(action, "foreign")
    table_id = u32(FRA_TABLE) or table
    goto = u32(FRA_GOTO) if name == "goto" else None
    if name != "lookup":
        table_id = 0
    if (flags & FIB_RULE_INVERT or family != socket.AF_INET or tos or FRA_IIFNAME in attrs
            or FRA_OIFNAME in attrs):
        name = "foreign"  # a shape ikemgr never makes: whoever owns it, it is not one of ours
    proto = attrs.get(FRA_PROTOCOL)
    prio = u32(FRA_PRIORITY) or 0
    return Rule(prio, table_id, src, dst, fwmark, fwmask, name, goto), (proto[0] if proto else None)


def parse_dump(data: bytes) -> tuple[list[tuple[Rule, int | None]], bool]:
    """Every rule in one receive buffer of a dump, and whether NLMSG_DONE ended it."""
    out: list[tuple[Rule, int | None]] = []
    for kind, _seq, body, end in messages(data):
        if kind == NLMSG_DONE:
            return out, True
        if kind == NLMSG_ERROR:
            code = error_code(data, body)
            if code:
                raise OSError(code, os.strerror(code))
        elif kind == RTM_NEWRULE:
            out.append(decode_rule(data, body, end - body))
    return out, False


class RuleError(Exception):
    """The kernel refused a rule change for another reason than exists/not found."""

    def __init__(self, verb: str, rule: Rule, code: int) -> None:
        super().__init__(f"ip rule {verb} priority {rule.priority}: {os.strerror(code)}")
        self.verb, self.rule, self.code = verb, rule, code


class RuleChannel:
    """One NETLINK_ROUTE socket; ``apply`` sends deletes then adds, in chunks, and checks every answer.

    Idempotent by design: deleting a missing rule (ENOENT) and adding a present one
    (EEXIST) count as done, as they do for ``ip -force -batch``.
    """

    def __init__(self) -> None:
        self.sock = open_socket(NETLINK_ROUTE)
        self._seq = 0

    def apply(self, delete: Sequence[Rule], add: Sequence[Rule], protocol: int,
              exclusive: bool = True, after: Sequence[Rule] = ()) -> None:
        """``delete``, then ``add``, then the deletes in ``after``, in that order."""
        work = [("del", r) for r in delete] + [("add", r) for r in add] + [("del", r) for r in after]
        for start in range(0, len(work), CHUNK):
            self._send_chunk(work[start:start + CHUNK], protocol, exclusive)

    def dump(self) -> list[tuple[Rule, int | None]]:
        """Every IPv4 rule of this namespace with its protocol (one RTM_GETRULE dump)."""
        self._seq = self._seq % 0xFFFFFFFF + 1
        self.sock.sendto(dump_request(self._seq), (0, 0))
        out: list[tuple[Rule, int | None]] = []
        while True:
            rules, done = parse_dump(self.sock.recv(1 << 20))
            out.extend(rules)
            if done:
                return out

    def _send_chunk(self, chunk: Sequence[tuple[str, Rule]], protocol: int, exclusive: bool = True) -> None:
        """One send; only its last request asks for an ACK. The kernel handles the requests
        of a send in order and answers every failure, so once the last one's ACK is read,
        every earlier failure has been read before it, and silence means done. With an ACK
        per request ``watch``'s ``rules`` burst was 11,953 transitions/s and its paced p99
        6.4 ms; with one per send 16,285/s and 2.0 ms (``bench_events.py``, same run)."""
        if not chunk:
            return
        pending: dict[int, tuple[str, Rule]] = {}
        buf = bytearray()
        last = len(chunk) - 1
        for i, (verb, rule) in enumerate(chunk):
            self._seq = self._seq % 0xFFFFFFFF + 1
            pending[self._seq] = (verb, rule)
            buf += encode(verb, rule, protocol, self._seq, exclusive, ack=i == last)
        final = self._seq
        self.sock.sendto(bytes(buf), (0, 0))
        first: RuleError | None = None
        done = False
        while not done:
            for seq, code in parse_acks(self.sock.recv(1 << 20)):
                item = pending.get(seq)
                if item is None:
                    continue  # an answer to an earlier, abandoned request
                done = done or seq == final
                verb, rule = item
                benign = (verb == "add" and code == errno.EEXIST) or (verb == "del" and code == errno.ENOENT)
                if code and not benign and first is None:
                    first = RuleError(verb, rule, code)
        if first is not None:
            raise first

    def close(self) -> None:
        self.sock.close()


class RuleSocket:
    """Rule changes through one rtnetlink socket, opened inside the namespace (``NsChannel``)."""

    def __init__(self, ex: InNetns, protocol: int) -> None:
        self.ex = ex
        self.protocol = protocol
        self._chan: NsChannel[RuleChannel] = NsChannel(ex, RuleChannel)

    def _reset(self) -> None:
        self._chan.reset()  # a fresh socket next time

    def dump(self, lo: int, hi: int) -> list[Rule]:
        """The rules ikemgr owns: its protocol, a priority in [lo, hi). A failed dump raises."""
        try:
            rules = self._chan.call(RuleChannel.dump)
        except (OSError, ValueError) as e:
            self._reset()
            why = getattr(e, "strerror", None) or e
            raise BackendUnavailable("netlink", f"rule dump: {why}") from None
        return [r for r, proto in rules if proto == self.protocol and lo <= r.priority < hi]

    def change(self, add: list[Rule], delete: list[Rule], *, exclusive: bool = True,
               after: Sequence[Rule] = ()) -> None:
        """Deletes, then adds, then the deletes in ``after``, in as few sends as the batch
        allows; exists/not-found are done.

        ``exclusive=False`` only right after ``dump`` under the policy lock: the adds are
        then known to be absent, and the kernel's duplicate check is skipped (``encode``).
        """
        if not add and not delete and not after:
            return
        try:
            self._chan.call(lambda chan: chan.apply(delete, add, self.protocol, exclusive, after))
        except RuleError as e:
            raise ApplyFailed(str(e)) from None
        except OSError as e:
            self._reset()
            raise ApplyFailed(f"rtnetlink: {e.strerror or e}") from None

    def close(self) -> None:
        self._chan.close()

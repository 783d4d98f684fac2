"""Batched ``ip rule`` changes over one rtnetlink socket: a pure codec and a small transport.

The ``rules`` backend changes one rule per campus prefix for every lab user who comes or
goes. Through pyroute2's ``IPRoute.rule()`` each change costs ~0.7 ms, almost all of it
building and parsing the message in Python, so at 1,000 events/s the policy thread is
busy 90 % of the time and queueing pushes p99 event→rule past 10 ms. The message itself
is fixed-shape (a ``fib_rule_hdr`` and six attributes): packed with ``struct`` it costs
microseconds, and any number of them go to the kernel in one ``send``; the kernel answers
each with an ACK (an ``NLMSG_ERROR`` carrying 0 or ``-errno``) in order.

Encoding is checked against pyroute2's own ``fibmsg`` decoder in the unit tests and
against the kernel by the policy backend tests. The socket belongs to the network
namespace of the thread that opens it (adapters.netns.InNetns runs us in that thread).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import struct
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network
from typing import Any

from ikemgr.adapters.kernel.netns import InNetns
from ikemgr.errors import ApplyFailed, BackendUnavailable

NETLINK_ROUTE = 0
RTM_NEWRULE, RTM_DELRULE = 32, 33
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
# fib rule attributes (linux/fib_rules.h)
FRA_DST, FRA_SRC, FRA_GOTO, FRA_PRIORITY, FRA_FWMARK, FRA_TABLE, FRA_FWMASK, FRA_PROTOCOL = (
    1, 2, 4, 6, 10, 15, 16, 21)
FR_ACT = {"lookup": 1, "goto": 2, "nop": 3}
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # ACKs without a copy of the request: smaller receive queue
RT_TABLE_UNSPEC = 0

_NLMSGHDR = struct.Struct("=IHHII")
_FIB_HDR = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_ERR = struct.Struct("=i")

#: requests per send; with CAP_ACK each ACK is 36 bytes, the socket buffer holds thousands
CHUNK = 512


@dataclass(frozen=True)
class RuleMsg:
    """The fields of one rule as ikemgr sets them (a typed view, no strings)."""

    priority: int
    action: str = "lookup"  # lookup | goto | nop
    table: int = 0
    src: IPv4Network | None = None
    dst: IPv4Network | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    goto: int | None = None
    protocol: int = 0


def _attr(kind: int, payload: bytes) -> bytes:
    size = _RTA.size + len(payload)
    return _RTA.pack(size, kind) + payload + b"\0" * (-size % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def encode(verb: str, rule: RuleMsg, seq: int) -> bytes:
    """One RTM_NEWRULE (``verb="add"``, create-exclusive) or RTM_DELRULE request."""
    if verb not in ("add", "del"):
        raise ValueError(f"verb {verb!r}: add or del")
    action = FR_ACT[rule.action]
    table = rule.table if rule.action == "lookup" else 0
    attrs = [_u32(FRA_PRIORITY, rule.priority), _attr(FRA_PROTOCOL, bytes((rule.protocol,)))]
    if rule.src is not None:
        attrs.append(_attr(FRA_SRC, rule.src.network_address.packed))
    if rule.dst is not None:
        attrs.append(_attr(FRA_DST, rule.dst.network_address.packed))
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
    if verb == "add":
        kind, flags = RTM_NEWRULE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    else:
        kind, flags = RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def parse_acks(data: bytes) -> list[tuple[int, int]]:
    """(sequence number, errno) of every ACK/error in a receive buffer; errno 0 = done."""
    out: list[tuple[int, int]] = []
    off = 0
    while off + _NLMSGHDR.size <= len(data):
        size, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if size < _NLMSGHDR.size or off + size > len(data):
            raise ValueError(f"truncated netlink message at offset {off}")
        if kind == NLMSG_ERROR:
            (code,) = _ERR.unpack_from(data, off + _NLMSGHDR.size)
            out.append((seq, -code))
        off += (size + 3) & ~3
    return out


class RuleError(Exception):
    """The kernel refused a rule change for another reason than exists/not found."""

    def __init__(self, verb: str, rule: RuleMsg, code: int) -> None:
        super().__init__(f"ip rule {verb} priority {rule.priority}: {os.strerror(code)}")
        self.verb, self.rule, self.code = verb, rule, code


class RuleChannel:
    """One NETLINK_ROUTE socket; ``apply`` sends deletes then adds, in chunks, and checks every ACK.

    Idempotent by design: deleting a missing rule (ENOENT) and adding a present one
    (EEXIST) count as done, as they do for ``ip -force -batch``.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        try:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind((0, 0))
            self.sock.settimeout(10.0)  # the kernel answers at once; silence means something broke
        except OSError:
            self.sock.close()
            raise
        self._seq = 0

    def apply(self, delete: Sequence[RuleMsg], add: Sequence[RuleMsg]) -> None:
        work = [("del", r) for r in delete] + [("add", r) for r in add]
        for start in range(0, len(work), CHUNK):
            self._send_chunk(work[start:start + CHUNK])

    def _send_chunk(self, chunk: Iterable[tuple[str, RuleMsg]]) -> None:
        pending: dict[int, tuple[str, RuleMsg]] = {}
        buf = bytearray()
        for verb, rule in chunk:
            self._seq = self._seq % 0xFFFFFFFF + 1
            pending[self._seq] = (verb, rule)
            buf += encode(verb, rule, self._seq)
        self.sock.sendto(bytes(buf), (0, 0))
        first: RuleError | None = None
        while pending:
            for seq, code in parse_acks(self.sock.recv(1 << 20)):
                item = pending.pop(seq, None)
                if item is None:
                    continue  # an answer to an earlier, abandoned request
                verb, rule = item
                benign = (verb == "add" and code == errno.EEXIST) or (verb == "del" and code == errno.ENOENT)
                if code and not benign and first is None:
                    first = RuleError(verb, rule, code)
        if first is not None:
            raise first

    def close(self) -> None:
        self.sock.close()




log = logging.getLogger("ikemgr.backend")


ALL_ONES = 0xFFFFFFFF


@dataclass(frozen=True, order=True)
class KernelRule:
    """One ip rule as ikemgr sees it (the part ikemgr sets)."""

    priority: int
    table: int = 0
    src: IPv4Network | None = None
    dst: IPv4Network | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    action: str = "lookup"  # lookup | goto | nop
    goto: int | None = None

    def ip_args(self, protocol: int) -> str:
        """iproute2 ``ip rule`` arguments (for ``ip -batch``), from typed values only."""
        out = f"priority {int(self.priority)}"
        if self.src is not None:
            out += f" from {IPv4Network(self.src)}"
        if self.dst is not None:
            out += f" to {IPv4Network(self.dst)}"
        if self.fwmark is not None:
            mask = self.fwmask if self.fwmask is not None else ALL_ONES
            out += f" fwmark {int(self.fwmark):#x}/{int(mask):#x}"
        if self.action == "goto":
            out += f" goto {int(self.goto or 0)}"
        elif self.action == "nop":
            out += " nop"
        else:
            out += f" lookup {int(self.table)}"
        return out + f" protocol {int(protocol)}"

    def msg(self, protocol: int) -> RuleMsg:
        """The rtnetlink request fields (adapters.rtnl encodes them)."""
        return RuleMsg(self.priority, self.action, self.table, self.src, self.dst, self.fwmark,
                       self.fwmask, self.goto, protocol)


def parse_ip_rules(items: list[dict[str, Any]], protocol: int, lo: int, hi: int) -> list[KernelRule]:
    """``ip -N -j rule show`` → the rules ikemgr owns in [lo, hi) (pure)."""
    out: list[KernelRule] = []
    for r in items:
        prio = int(r.get("priority", -1))
        if not (lo <= prio < hi) or str(r.get("protocol")) != str(protocol):
            continue
        src = dst = None
        if r.get("src", "all") != "all":
            src = ip_network(f"{r['src']}/{r.get('srclen', 32)}", strict=False)
        if r.get("dst", "all") != "all":
            dst = ip_network(f"{r['dst']}/{r.get('dstlen', 32)}", strict=False)
        fwmark = int(r["fwmark"], 0) if "fwmark" in r else None
        fwmask = int(r["fwmask"], 0) if "fwmask" in r else (ALL_ONES if fwmark is not None else None)
        if "goto" in r:
            action, goto, table = "goto", int(r["goto"]), 0
        elif "nop" in r:
            action, goto, table = "nop", None, 0
        else:
            action, goto = "lookup", None
            table = int(r.get("table", 0)) if str(r.get("table", "0")).isdigit() else -1
        if r.get("not") is not None or (src is not None and src.version != 4):
            action = "foreign"  # a shape ikemgr never makes: remove it as stray
        out.append(KernelRule(prio, table, src, dst, fwmark, fwmask, action, goto))  # type: ignore[arg-type]
    return out


class RuleSocket:
    """Rule changes through one rtnetlink socket opened in the executor thread (its netns)."""

    def __init__(self, ex: InNetns, protocol: int) -> None:
        self.ex = ex
        self.protocol = protocol
        self._chan: RuleChannel | None = None

    def dump(self, lo: int, hi: int) -> list[KernelRule]:
        def run() -> list[KernelRule]:
            p = subprocess.run(["ip", "-N", "-j", "rule", "show"], capture_output=True, text=True,
                               check=False)
            if p.returncode != 0:
                raise BackendUnavailable("netlink", f"ip rule show: {p.stderr.strip()}")
            return parse_ip_rules(json.loads(p.stdout or "[]"), self.protocol, lo, hi)

        return self.ex.call(run)

    def change(self, add: list[KernelRule], delete: list[KernelRule]) -> None:
        """Deletes, then adds, in as few sends as the batch allows; exists/not-found are done."""
        if not add and not delete:
            return

        def run() -> None:
            try:
                if self._chan is None:
                    self._chan = RuleChannel()
                self._chan.apply([r.msg(self.protocol) for r in delete],
                                 [r.msg(self.protocol) for r in add])
            except RuleError as e:
                raise ApplyFailed(str(e)) from None
            except OSError as e:
                chan, self._chan = self._chan, None  # a fresh socket next time
                if chan is not None:
                    chan.close()
                raise ApplyFailed(f"rtnetlink: {e.strerror or e}") from None

        self.ex.call(run)

    def close(self) -> None:
        if self._chan is not None:
            chan, self._chan = self._chan, None
            self.ex.call(chan.close)

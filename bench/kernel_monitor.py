"""When did the kernel change? A separate process listening to the kernel's own notifications.

The latency a user sees ends when the kernel holds the policy, not when ikemgr's call
returned. This process enters the gateway's namespace and subscribes to the kernel's
netlink multicast groups: ``RTNLGRP_IPV4_RULE`` (every ``ip rule`` added or deleted,
its /32 source address read by offset) and ``NFNLGRP_NFTABLES``
(every nftables set element added or deleted: the ``marks`` backend's VIP → mark map).
Each notification is stamped with ``time.perf_counter()`` (CLOCK_MONOTONIC, the clock the
VICI server stamps its sends with) the moment ``recv`` returns it. The kernel sends the
notification when the change is committed, so the stamp is an upper bound on "visible".

A lost notification (socket overrun, ENOBUFS) is counted and reported; the benchmark's
final check reads the kernel itself (``ip -j rule``, ``nft -j list map``) either way.

The listener runs at a real-time priority (``SCHED_FIFO``, ``RT_PRIORITY``) when it may:
on a 2-core machine with the VICI server, ``watch`` and this process runnable at once,
a listener at normal priority waits its turn for a CPU, and every change the kernel
announced meanwhile gets the late stamp of the ``recv`` that returns it (the instrument's
delay, read as the watcher's). It sleeps in ``select`` between notifications and uses
little CPU; the kernel's real-time throttling keeps 5 % of each CPU for everything else
in any case. Where it may not (no CAP_SYS_NICE), it runs at normal priority and says so
(``KernelMonitor.sched``, printed by the benchmark).
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import select
import socket
import struct
import time
from ipaddress import IPv4Address
from multiprocessing.connection import Connection

from ikemgr.adapters.kernel.rule_channel import FRA_SRC, RTM_DELRULE, RTM_NEWRULE

NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12
RTNLGRP_IPV4_RULE = 8
NFNLGRP_NFTABLES = 7
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NFNL_SUBSYS_NFTABLES = 10
_HDR = struct.Struct("=IHHII")
_NLA = struct.Struct("=HH")
_FIB_HDR_SIZE = 12  # struct fib_rule_hdr (linux/fib_rules.h)

#: SCHED_FIFO priority of the listener: above every normal task, low among real-time ones
RT_PRIORITY = 10

#: (perf_counter time, "add" | "del", VIP as int)
Change = tuple[float, str, int]


def _nla(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """Attribute type → (offset, end) of its payload, in [start, end)."""
    out: dict[int, tuple[int, int]] = {}
    pos = start
    while pos + _NLA.size <= end:
        size, kind = _NLA.unpack_from(data, pos)
        if size < _NLA.size:
            break
        out.setdefault(kind & 0x3FFF, (pos + _NLA.size, pos + size))
        pos += (size + 3) & ~3
    return out


def _nla_all(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    pos = start
    while pos + _NLA.size <= end:
        size, kind = _NLA.unpack_from(data, pos)
        if size < _NLA.size:
            break
        out.append((kind & 0x3FFF, pos + _NLA.size, pos + size))
        pos += (size + 3) & ~3
    return out


def parse_notifications(data: bytes, now: float) -> list[Change]:
    """Rule and set-element notifications in one receive buffer → changes with a VIP."""
    out: list[Change] = []
    off = 0
    while off + _HDR.size <= len(data):
        size, kind, _f, _s, _p = _HDR.unpack_from(data, off)
        if size < _HDR.size:
            break
        body, end = off + _HDR.size, off + size
        if kind in (RTM_NEWRULE, RTM_DELRULE):
            # a per-user rule has a /32 source (fib_rule_hdr.src_len); only its address is
            # read, by offset: decoding whole Rule values was most of this process's CPU
            if data[body + 2] == 32:
                src = _nla(data, body + _FIB_HDR_SIZE, end).get(FRA_SRC)
                if src is not None and src[1] - src[0] == 4:
                    out.append((now, "add" if kind == RTM_NEWRULE else "del",
                                int.from_bytes(data[src[0]:src[1]], "big")))
        elif kind >> 8 == NFNL_SUBSYS_NFTABLES and kind & 0xFF in (NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM):
            verb = "add" if kind & 0xFF == NFT_MSG_NEWSETELEM else "del"
            top = _nla(data, body + 4, end)  # after struct nfgenmsg
            if 3 in top:  # NFTA_SET_ELEM_LIST_ELEMENTS
                for _k, s, e in _nla_all(data, *top[3]):  # NFTA_LIST_ELEM
                    key = _nla(data, s, e).get(1)  # NFTA_SET_ELEM_KEY
                    if key is None:
                        continue
                    val = _nla(data, *key).get(1)  # NFTA_DATA_VALUE
                    if val is not None and val[1] - val[0] == 4:
                        out.append((now, verb, int(IPv4Address(data[val[0]:val[1]]))))
        off += (size + 3) & ~3
    return out


def _open(proto: int, group: int) -> socket.socket:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
    s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: we are root
    s.bind((0, 0))
    s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
    return s


def _run(ns: str, ctl: Connection) -> None:
    from pyroute2 import netns as pr_netns

    pr_netns.setns(ns, flags=0)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
        sched = f"SCHED_FIFO {RT_PRIORITY}"
    except OSError as e:
        sched = f"normal priority (SCHED_FIFO refused: {e.strerror})"
    socks = [_open(NETLINK_ROUTE, RTNLGRP_IPV4_RULE), _open(NETLINK_NETFILTER, NFNLGRP_NFTABLES)]
    seen: list[Change] = []
    lost = 0
    # an instrument must not pause on its own: no cyclic GC in this short-lived process
    # (a collection here delays a stamp, and reads as the watcher's latency)
    gc.freeze()
    gc.disable()
    ctl.send(("ready", sched))
    while True:
        ready, _, _ = select.select([*socks, ctl], [], [])
        for s in ready:
            if s is ctl:
                op = ctl.recv()
                if op == "stop":
                    ctl.send(("changes", seen, lost))
                    return
                ctl.send(("changes", seen, lost))  # "take": hand over and start afresh
                seen, lost = [], 0
                continue
            try:
                data = s.recv(1 << 20)  # type: ignore[union-attr]
            except OSError:  # ENOBUFS: notifications were dropped
                lost += 1
                continue
            seen.extend(parse_notifications(data, time.perf_counter()))


class KernelMonitor:
    """The listener in a child process inside namespace ``ns``; ``take`` returns what it saw."""

    def __init__(self, ns: str) -> None:
        ctx = mp.get_context("fork")
        self.ctl, child = ctx.Pipe()
        self.proc = ctx.Process(target=_run, args=(ns, child), daemon=True)
        self.proc.start()
        if not self.ctl.poll(30):
            raise RuntimeError("kernel monitor did not start")
        what, self.sched = self.ctl.recv()
        if what != "ready":
            raise RuntimeError(f"kernel monitor did not start: {what!r}")

    def take(self) -> tuple[list[Change], int]:
        self.ctl.send("take")
        _, seen, lost = self.ctl.recv()
        return seen, lost

    def wait_for(self, want: dict[int, str], timeout: float) -> tuple[dict[int, float], int]:
        """Poll until every VIP in ``want`` had its change ("add"/"del"); VIP → first time seen."""
        got: dict[int, float] = {}
        lost = 0
        end = time.monotonic() + timeout
        while len(got) < len(want) and time.monotonic() < end:
            time.sleep(0.05)
            seen, n = self.take()
            lost += n
            for t, verb, vip in seen:
                if want.get(vip) == verb and vip not in got:
                    got[vip] = t
        return got, lost

    def stop(self) -> None:
        try:
            self.ctl.send("stop")
            self.ctl.recv()
        except (OSError, EOFError):
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


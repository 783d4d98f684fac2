"""The conntrack flush, run as a child process of the policy engine.

Deleting the conntrack entries of some VIPs means dumping the namespace's whole conntrack
table and picking the entries whose original source is one of them
(``adapters.kernel.ct_channel``). That parse runs in Python, and while it does, it holds
the interpreter lock the event thread needs: on a busy gateway (100,000s of entries) that
would stall rule changes for as long as the parse takes, and in the events benchmark one
flush (then through pyroute2) pushed the p99 event→rule latency from ~5 ms to ~30 ms. In a
child process the parse costs the engine nothing.

Protocol on stdin/stdout (text lines): the parent writes VIPs, one per line as the decimal
integer of the address (``int(IPv4Address)``: writing 4,000 of them as dotted quads held the
parent's interpreter lock for 4 ms, stalling its event thread), then an empty line; the
child answers with one line, ``<deleted> <failed>`` (entries deleted, and entries the
kernel refused to delete), or ``error <reason>``. The child exits at end of input. It
runs in the network namespace it was started in (the parent starts it from a thread that
has entered the gateway's).
"""

from __future__ import annotations

import sys
from typing import TextIO

from ikemgr.adapters.kernel.ct_channel import CtChannel


def serve(inp: TextIO, out: TextIO) -> None:
    ct = CtChannel()
    try:
        batch: set[int] = set()
        for line in inp:
            line = line.strip()
            if line:
                vip = int(line)  # only addresses cross the pipe
                if not 0 <= vip <= 0xFFFFFFFF:
                    raise ValueError(f"not an IPv4 address: {line[:40]!r}")
                batch.add(vip)
                continue
            try:
                deleted, failed = ct.flush(batch)
                reply = f"{deleted} {failed}"
            except Exception as e:  # netlink trouble: report it, keep serving
                reply = f"error {' '.join(str(e).split())[:200]}"
            out.write(reply + "\n")
            out.flush()
            batch = set()
    finally:
        ct.close()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)

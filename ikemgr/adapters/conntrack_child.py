"""The conntrack flush, run as a child process of the policy engine.

Deleting the conntrack entries of some VIPs means dumping the namespace's whole conntrack
table and picking the entries whose original source is one of them. pyroute2 parses that
dump in Python, and while it does, it holds the interpreter lock the event thread needs:
on a busy gateway (100,000s of entries) that would stall rule changes for as long as the
parse takes, and in the events benchmark one flush pushed the p99 event→rule latency from
~5 ms to ~30 ms. In a child process the parse costs the engine nothing.

Protocol on stdin/stdout (text lines): the parent writes VIPs, one per line, then an empty
line; the child answers with one line, the number of entries it deleted, or
``error <reason>``. The child exits at end of input. It runs in the network namespace it
was started in (the parent starts it from a thread that has entered the gateway's).
"""

from __future__ import annotations

import sys
from ipaddress import IPv4Address
from typing import Any, TextIO


def flush(ct: Any, vips: set[str]) -> int:
    """Delete every entry whose original source address is one of ``vips``; how many went."""
    deleted = 0
    for entry in list(ct.dump_entries()):
        if entry.tuple_orig is not None and entry.tuple_orig.saddr in vips:
            try:
                ct.delete(entry)
                deleted += 1
            except Exception:  # the entry timed out meanwhile
                continue
    return deleted


def serve(inp: TextIO, out: TextIO) -> None:
    from pyroute2 import Conntrack

    ct = Conntrack()
    try:
        batch: set[str] = set()
        for line in inp:
            line = line.strip()
            if line:
                batch.add(str(IPv4Address(line)))  # only addresses cross the pipe
                continue
            try:
                reply = str(flush(ct, batch))
            except Exception as e:  # netlink trouble: report it, keep serving
                reply = f"error {' '.join(str(e).split())[:200]}"
            out.write(reply + "\n")
            out.flush()
            batch = set()
    finally:
        ct.close()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)

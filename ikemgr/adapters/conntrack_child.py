"""The conntrack flush, run as a child process of the policy engine.

Deleting the conntrack entries of some VIPs means dumping the namespace's whole conntrack
table and picking the entries whose original source is one of them. pyroute2 parses that
dump in Python, and while it does, it holds the interpreter lock the event thread needs:
on a busy gateway (100,000s of entries) that would stall rule changes for as long as the
parse takes, and in the events benchmark one flush pushed the p99 event→rule latency from
~5 ms to ~30 ms. In a child process the parse costs the engine nothing.

Protocol on stdin/stdout (text lines): the parent writes VIPs, one per line, then an empty
line; the child answers with one line, ``<deleted> <failed>`` (entries deleted, and
entries the kernel refused to delete), or ``error <reason>``. The child exits at end of
input. It runs in the network namespace it was started in (the parent starts it from a
thread that has entered the gateway's).
"""

from __future__ import annotations

import errno
import sys
from ipaddress import IPv4Address
from typing import Any, TextIO


def flush(ct: Any, vips: set[str]) -> tuple[int, int]:
    """Delete every entry whose original source address is one of ``vips``.

    Returns (deleted, failed). An entry that timed out between the dump and the delete
    (ENOENT) is gone as wanted; any other refusal is a failure the caller counts and
    reports, never a silent success.
    """
    deleted = failed = 0
    for entry in list(ct.dump_entries()):
        if entry.tuple_orig is not None and entry.tuple_orig.saddr in vips:
            try:
                ct.delete(entry)
                deleted += 1
            except OSError as e:
                if getattr(e, "code", e.errno) == errno.ENOENT:
                    continue
                failed += 1
    return deleted, failed


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
                deleted, failed = flush(ct, batch)
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

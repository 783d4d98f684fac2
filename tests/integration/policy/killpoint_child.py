"""A policy engine that SIGKILLs itself at one exact point of a kernel change.

Run by test_kill_points.py as ``python killpoint_child.py SPEC.json``. The spec names the
config, namespace and allow file, the SAs the engine starts with (a full reconcile, as
``watch`` does at start), the kill point, and the change during which it dies: an event
batch or a second full reconcile. The engine, its backends and the kernel are the real
ones; the kill point wraps one backend call and kills the process with SIGKILL (no
cleanup, no finally, no atexit) right before or after it, as a crash would.

Kill points:
  marks-after-vlan-rule   marks: the VLAN's fwmark rule is in, the nft transaction not sent
  marks-after-nft         marks: the nft transaction is committed, the unused VLAN rule not removed
  marks-before-acks       marks: the kernel committed the nft transaction, ikemgr read none of its answers
  rules-between-chunks    rules: the first rtnetlink chunk is applied and ACKed, the next not sent
  rules-before-acks       rules: the kernel applied the batch, ikemgr read none of its ACKs
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from ikemgr.adapters.kernel import nft_channel, rule_channel
from ikemgr.config.load import load
from ikemgr.core.model import Sa, SaUpdate
from ikemgr.engine.wiring import build_engine


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sa(d: dict[str, Any]) -> Sa:
    return Sa(d["uid"], d["id"], tuple(IPv4Address(v) for v in d["vips"]), d.get("state", "ESTABLISHED"))


def install(point: str, engine: Any) -> None:
    backend = engine.backend
    if point == "marks-after-vlan-rule":
        change = backend.nl.change

        def after_rule(add: list[Any], delete: list[Any]) -> None:
            change(add, delete)
            if add:
                die()
        backend.nl.change = after_rule
    elif point == "marks-after-nft":
        change_elements = backend._change_elements

        def after_nft(delete: list[Any], add: list[Any]) -> None:
            change_elements(delete, add)
            die()
        backend._change_elements = after_nft
    elif point == "marks-before-acks":
        nft_channel.parse_acks = lambda data: die()  # type: ignore[assignment,misc]
    elif point == "rules-between-chunks":
        send = rule_channel.RuleChannel._send_chunk
        calls = [0]

        def second_chunk(self: Any, chunk: Any, protocol: int, exclusive: bool = True) -> None:
            calls[0] += 1
            if calls[0] == 2:
                die()
            send(self, chunk, protocol, exclusive)
        rule_channel.RuleChannel._send_chunk = second_chunk  # type: ignore[method-assign]
    elif point == "rules-before-acks":
        rule_channel.parse_acks = lambda data: die()  # type: ignore[assignment,misc]
    else:
        raise SystemExit(f"unknown kill point {point}")


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    engine = build_engine(load(Path(spec["config"])), netns=spec["netns"], allow_file=Path(spec["allow_file"]))
    engine.full([sa(d) for d in spec["start"]])
    for argv in spec.get("before_change", []):  # kernel drift the change's own read finds
        subprocess.run(argv, check=True, timeout=30)
    install(spec["point"], engine)
    if "events" in spec:
        engine.events([SaUpdate("ike-updown", sa(d), d.get("state", "ESTABLISHED") == "ESTABLISHED")
                       for d in spec["events"]])
    else:
        engine.full([sa(d) for d in spec["full"]])
    return 3  # the kill point was never reached


if __name__ == "__main__":
    sys.exit(main())

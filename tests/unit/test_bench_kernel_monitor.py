"""The benchmark's kernel monitor reads a rule notification's VIP as the rule codec does.

``bench/kernel_monitor.py`` stamps the kernel's rule notifications; it reads only the /32
source address by offset. Checked here against the product's encoder and decoder on the
same bytes (the kernel sends RTM_NEWRULE/RTM_DELRULE in the request's layout).
"""

from __future__ import annotations

import sys
from ipaddress import ip_network
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import kernel_monitor  # noqa: E402

from ikemgr.adapters.kernel.rule_channel import decode_rule, encode  # noqa: E402
from ikemgr.core.model import Rule  # noqa: E402


def test_user_rules_are_read_by_their_source_and_other_rules_are_not() -> None:
    user = [Rule(29000 + i, 123456, ip_network(f"10.64.1.{i}/32"), ip_network("10.20.0.0/16"))
            for i in range(1, 4)]
    others = [Rule(30000, 200, ip_network("10.64.0.0/10"), ip_network("10.20.0.0/16")),  # the pool
              Rule(29500, 123456, fwmark=123456)]  # marks: no source
    data = b"".join(encode("add" if i % 2 else "del", r, 99, seq=i + 1)  # del, add, ..., del
                    for i, r in enumerate(user[:2] + others + user[2:]))
    got = kernel_monitor.parse_notifications(data, 1.5)
    assert got == [(1.5, "del", int(user[0].src.network_address)),  # type: ignore[union-attr]
                   (1.5, "add", int(user[1].src.network_address)),  # type: ignore[union-attr]
                   (1.5, "del", int(user[2].src.network_address))]  # type: ignore[union-attr]
    # the same address the product's decoder reads from those bytes
    one = encode("add", user[1], 99, seq=7)
    rule, proto = decode_rule(one, 16, len(one) - 16)
    assert rule == user[1] and proto == 99

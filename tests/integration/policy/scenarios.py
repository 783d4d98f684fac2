"""The scenario table both entry points (watch's event path and hook) must pass.

Each step: (verb, unique id, VIP, identity) → VIP → table id expected in the kernel after it.
``up``/``down`` twice in a row stand for updown being called once per traffic-selector
pair (two campus prefixes), or for ike-updown followed by child-updown.
"""

from __future__ import annotations

A, B = "10.1.0.10", "10.1.0.11"
ALLOWED = ("alice@123456", "carol@123457")

SCENARIO: list[tuple[str, str, str, str, dict[str, int]]] = [
    ("up", "1", A, "alice@123456", {A: 123456}),
    ("up", "1", A, "alice@123456", {A: 123456}),            # second TS pair: idempotent
    ("up", "2", B, "bob@123456", {A: 123456}),              # not on the list
    ("up", "3", A, "alice@123456", {A: 123456}),            # reauth, make-before-break: same VIP
    ("down", "1", A, "alice@123456", {A: 123456}),          # old SA goes, the new one holds the VIP
    ("down", "1", A, "alice@123456", {A: 123456}),
    ("down", "2", B, "bob@123456", {A: 123456}),
    ("up", "4", B, "carol@123457", {A: 123456, B: 123457}),
    ("up", "5", "10.1.0.12", "alice@0123456", {A: 123456, B: 123457}),  # hostile: leading zero
    ("up", "6", "10.1.0.13", "$(id)@123456", {A: 123456, B: 123457}),
    ("down", "3", A, "alice@123456", {B: 123457}),
    ("down", "4", B, "carol@123457", {}),
    ("down", "4", B, "carol@123457", {}),
]

"""A crash in the middle of a storm: `ikemgr watch` SIGKILLed while hundreds of events per
second arrive, more of the storm sent while it is down, then restarted.

charon cannot be driven at hundreds of connects per second, so the events come from the
benchmarks' VICI server (bench/vici_server.py: charon's wire protocol with the vici
package's codec, every message a copy of one recorded from charon 5.9.8, downs without
``up``); the kernel is the real one, in the test's namespace. The storm mixes connects,
disconnects, reauths that hand one VIP from an old SA to a new one, users not on the list
and hostile identities. After the restart the kernel must equal the decision for the
server's live SAs — nothing stale, nothing missing — and a hostile identity's VIP must never
have had policy: the kernel is sampled all through the run, and watch's log is checked.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import REPO, wait_for

from .conftest import IKEMGR, Lab

sys.path.insert(0, str(REPO / "bench"))
from vici_server import ServerProcess  # noqa: E402

pytestmark = pytest.mark.root

ALLOWED = {"alice": 123456, "carol": 123457, "erin": 123457}
HOSTILE = ["$(reboot)@123456", ".*@123456", "alice@123456;id", "a" * 300 + "@123456", "alice\n@123456",
           "ALICE@123456", "alice@0123456"]


def storm(seed: int, n: int) -> list[tuple[int, str, str, bool]]:
    """Transitions (uid, identity, vip, up): plenty of churn on a small VIP space, so VIPs are
    reused, reauths overlap (new SA up before the old goes), and hostile ones come and go."""
    rnd = random.Random(seed)
    live: dict[int, tuple[str, str]] = {}
    out: list[tuple[int, str, str, bool]] = []
    uid = 100
    hostile_vips = [f"10.1.0.{200 + i}" for i in range(len(HOSTILE))]
    while len(out) < n:
        r = rnd.random()
        if r < 0.15 and live:  # reauth: a new SA with the same identity and VIP, then the old goes
            old = rnd.choice(sorted(live))
            ident, vip = live[old]
            uid += 1
            out += [(uid, ident, vip, True), (old, ident, vip, False)]
            live[uid] = (ident, vip)
            del live[old]
        elif r < 0.45 and live:
            old = rnd.choice(sorted(live))
            out.append((old, *live.pop(old), False))
        elif r < 0.55:
            i = rnd.randrange(len(HOSTILE))
            uid += 1
            out.append((uid, HOSTILE[i], hostile_vips[i], True))
            live[uid] = (HOSTILE[i], hostile_vips[i])
        else:
            name = rnd.choice(["alice", "carol", "erin", "bob", "dave"])
            vlan = ALLOWED.get(name, 123456)
            vip = f"10.1.0.{10 + rnd.randrange(40)}"
            if any(v == vip for _, v in live.values()):
                continue  # charon hands a VIP to one identity at a time
            uid += 1
            out.append((uid, f"{name}@{vlan}", vip, True))
            live[uid] = (f"{name}@{vlan}", vip)
    return out


def expected(live: dict[int, tuple[str, str]]) -> dict[str, int]:
    """The decision, written out for this storm: a VIP routes to its allowed holder's VLAN."""
    want: dict[str, int] = {}
    for _uid, (ident, vip) in sorted(live.items()):
        account, _, vlan = ident.partition("@")
        if account in ALLOWED and vlan == str(ALLOWED[account]):
            want[vip] = ALLOWED[account]
    return want


def final_live(items: list[tuple[int, str, str, bool]]) -> dict[int, tuple[str, str]]:
    live: dict[int, tuple[str, str]] = {}
    for uid, ident, vip, up in items:
        if up:
            live[uid] = (ident, vip)
        else:
            live.pop(uid, None)
    return live


@pytest.mark.parametrize("backend", ["marks", "rules"])
def test_sigkill_in_a_storm_leaves_no_stale_and_no_missing_policy(lab: Lab, backend: str, tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "charon.vici")
    allow = tmp_path / "allow.txt"
    allow.write_text("".join(f"{a}@{v}\n" for a, v in ALLOWED.items()))
    cfg = lab.config(backend, strongswan={"vici_socket": srv.uri}, policy={"reconcile_interval": 3600})
    log = tmp_path / "watch.log"
    samples: list[dict[str, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(lab.routed(backend))

    def connected() -> int:
        return sum('"event": "connected"' in ln for ln in log.read_text().splitlines()) if log.exists() else 0

    def start() -> subprocess.Popen[bytes]:
        before = connected()
        with log.open("ab") as out:
            p = subprocess.Popen([str(IKEMGR), "watch", "--config", str(cfg), "--netns", lab.ns,
                                  "--allow-file", str(allow), "--log-format", "json", "--tick", "0.1"],
                                 stdout=out, stderr=out, start_new_session=True)
        # registered, list-sas read and the start-up reconcile done: then the storm goes on
        wait_for(lambda: connected() > before, 20, "watch did not connect")
        return p

    items = storm(seed=int.from_bytes(os.urandom(2), "big"), n=900)
    chunks = [items[i:i + 150] for i in range(0, len(items), 150)]
    sampler = threading.Thread(target=sample)
    watch = start()
    sampler.start()
    try:
        sent: list[tuple[int, str, str, bool]] = []
        for k, chunk in enumerate(chunks):
            if k in (1, 3):  # SIGKILL in the middle of a burst, mid-batch most likely
                t = threading.Thread(target=srv.stream, args=(chunk, 400.0))
                t.start()
                time.sleep(0.15)
                watch.send_signal(signal.SIGKILL)
                watch.wait(10)
                t.join(30)
            elif k in (2, 4):  # while it is down
                srv.stream(chunk, 400.0)
                watch = start()
            else:
                srv.stream(chunk, 400.0)
            sent += chunk
        live = final_live(sent)
        want = expected(live)
        wait_for(lambda: lab.routed(backend) == want, 15,
                 f"kernel {lab.routed(backend)} != decision {want}")
        time.sleep(0.5)
        assert lab.routed(backend) == want  # and it stays so
    finally:
        stop.set()
        sampler.join(30)
        if watch.poll() is None:
            watch.send_signal(signal.SIGKILL)
            watch.wait(10)
        srv.stop()
    hostile_vips = {f"10.1.0.{200 + i}" for i in range(len(HOSTILE))}
    assert samples and not [s for s in samples if hostile_vips & set(s)], "a hostile identity had policy"
    adds = [json.loads(ln) for ln in log.read_text().splitlines() if '"rule-add"' in ln]
    assert adds and not [a for a in adds if a.get("vip") in hostile_vips]
    assert connected() == 3  # the start and two restarts, each after a SIGKILL

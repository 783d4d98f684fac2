#!/usr/bin/env python3
"""Events/s and event→rule latency: ikemgr's engine vs the seed's shell updown, same run.

The seed (paper, setting 6) runs per event: ``expr`` on the identity, ``grep | cut`` over
the user list, ``ip rule add`` and ``logger``. It is re-created here faithfully (numeric
table instead of ``gw$VLANGW`` so nothing is written to /etc/iproute2) and run in a
network namespace of its own, as charon would run it: one ``sh`` per event.

ikemgr is measured on its real path: VICI event packets encoded with the vici codec are
written into a socket (a socketpair stands in for charon's socket), read by the
EventSession in batches, decoded, decided, diffed and applied to the kernel (nft map
element + fwmark rule for ``marks``; ip rules for ``rules``) in another namespace.
Latency is from the moment the event is written to the moment the kernel call returned.

Also: reconcile of 10,000 SAs after a restart (empty kernel, and kernel already right).

Needs root. Usage: .venv/bin/python bench/bench_events.py [--events 4000] [--shell-events 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from ipaddress import IPv4Address
from pathlib import Path

from vici.protocol import Message, Packet, Transport

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ikemgr.adapters import vici  # noqa: E402
from ikemgr.config.load import load_text  # noqa: E402
from ikemgr.core.model import Sa  # noqa: E402
from ikemgr.engine.wiring import build_engine, close_engine  # noqa: E402

SEED_UPDOWN = r"""#!/bin/sh
# the seed's updown addition (setting 6), as published, with a numeric table
TAG=vpn-updown
FAC_PRIOD=local0.notice
case "$PLUTO_VERB" in
up-client)
if expr "$PLUTO_XAUTH_ID" : '.\+@[0-9]\+$' > /dev/null
then
    VLANGW=`grep "^$PLUTO_XAUTH_ID$" $USERLIST | cut -d@ -f2`
    if [ $VLANGW ]
    then
        ip rule add from $PLUTO_PEER_CLIENT to 10.20.0.0/16 lookup $VLANGW
        logger -t $TAG -p $FAC_PRIOD \
            "added ip rule gw$VLANGW from $PLUTO_PEER_CLIENT by $PLUTO_XAUTH_ID" 2>/dev/null
    else
        logger -t $TAG -p $FAC_PRIOD "$PLUTO_XAUTH_ID VLAN and ID pair is not valid" 2>/dev/null
    fi
fi
;;
down-client)
if expr "$PLUTO_XAUTH_ID" : '.\+@[0-9]\+$' > /dev/null
then
    VLANGW=`grep "^$PLUTO_XAUTH_ID$" $USERLIST | cut -d@ -f2`
    if [ $VLANGW ]
    then
        ip rule del from $PLUTO_PEER_CLIENT to 10.20.0.0/16 lookup $VLANGW
        logger -t $TAG -p $FAC_PRIOD \
            "deleted ip rule gw$VLANGW from $PLUTO_PEER_CLIENT by $PLUTO_XAUTH_ID" 2>/dev/null
    fi
fi
;;
esac
"""

VLANS = [123456 + i for i in range(8)]


def config(tmp: Path, backend: str) -> str:
    vlans = [{"number": n, "interface": f"lab{i}", "subnet": f"10.2.{i}.0/24", "gateway": f"10.2.{i}.254"}
             for i, n in enumerate(VLANS)]
    return json.dumps({
        "gateway": {"fqdn": "vpn.example.test",
                    "outside": {"interface": "out0", "address": "192.0.2.1/24", "gateway": "192.0.2.254"},
                    "campus": {"interface": "campus0", "address": "10.64.0.1/10", "gateway": "10.64.0.2"}},
        "pool": {"first": "10.64.0.10", "last": "10.127.255.250"},
        "campus_prefixes": ["10.20.0.0/16"],
        "vlans": vlans,
        "policy": {"backend": backend, "state_dir": str(tmp / "state"), "lock_file": str(tmp / "lock")},
    })


def vip(i: int) -> IPv4Address:
    return IPv4Address("10.64.1.0") + i


def user(i: int) -> str:
    return f"user{i}@{VLANS[i % len(VLANS)]}"


def event_packet(seq: int, i: int, up: bool) -> bytes:
    sa = {"uniqueid": str(seq), "version": "2", "state": "ESTABLISHED" if up else "DELETING",
          "local-host": "192.0.2.1", "local-port": "4500", "local-id": "vpn.example.test",
          "remote-host": "198.51.100.7", "remote-port": "4500", "remote-id": "198.51.100.7",
          "remote-eap-id": user(i), "encr-alg": "AES_CBC", "encr-keysize": "256",
          "integ-alg": "HMAC_SHA2_256_128", "prf-alg": "PRF_HMAC_SHA2_256", "dh-group": "CURVE_25519",
          "established": "0", "remote-vips": [str(vip(i))], "tasks-passive": ["CHILD_CREATE"]}
    msg = {"up": "yes", "kuins": sa} if up else {"kuins": sa}
    name = b"ike-updown"
    return struct.pack("!BB", Packet.EVENT, len(name)) + name + Message.serialize(msg)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def netns(name: str) -> None:
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)


def userlist(tmp: Path, n_users: int, lines: int) -> Path:
    f = tmp / "users.txt"
    with f.open("w") as out:
        for i in range(n_users):
            out.write(user(i) + "\n")
        for j in range(n_users, lines):
            out.write(f"other{j}@{VLANS[j % len(VLANS)]}\n")
    return f


# --------------------------------------------------------------------------- shell baseline


def bench_shell(ns: str, tmp: Path, users: Path, n: int) -> dict[str, float]:
    script = tmp / "updown.sh"
    script.write_text(SEED_UPDOWN)
    lat: list[float] = []

    def run_all() -> float:
        from pyroute2 import netns as pr_netns

        pr_netns.setns(ns, flags=0)
        t0 = time.perf_counter()
        for verb in ("up-client", "down-client"):
            for i in range(n // 2):
                env = {"PATH": os.environ["PATH"], "USERLIST": str(users), "PLUTO_VERB": verb,
                       "PLUTO_XAUTH_ID": user(i), "PLUTO_PEER_CLIENT": f"{vip(i)}/32"}
                t = time.perf_counter()
                subprocess.run(["sh", str(script)], env=env, check=False, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                lat.append(time.perf_counter() - t)
        return time.perf_counter() - t0

    box: list[float] = []
    th = threading.Thread(target=lambda: box.append(run_all()))
    th.start()
    th.join()
    rules = subprocess.run(["ip", "-n", ns, "rule", "show"], capture_output=True, text=True).stdout
    assert "10.20.0.0/16" not in rules, "shell baseline left rules behind"
    return {"events": len(lat), "eps": len(lat) / box[0], "p50": pct(lat, 50), "p99": pct(lat, 99)}


# --------------------------------------------------------------------------- ikemgr


def _send_phases(sock: socket.socket, packets: list[bytes], half: int, rate: float | None,
                 go: int, out: int) -> int:
    """In the sender process: the ups, wait for the go byte, the downs; then the send times."""
    tr = Transport(sock)
    gap = 1.0 / rate if rate else 0.0
    sent = [0.0] * len(packets)
    for phase in (range(half), range(half, len(packets))):
        if phase.start:
            os.read(go, 1)
        start = time.perf_counter()
        for k, i in enumerate(phase):
            if gap:
                target = start + k * gap
                while (now := time.perf_counter()) < target:
                    time.sleep(min(0.0005, target - now))
            sent[i] = time.perf_counter()
            tr.send(packets[i])
    data = struct.pack(f"={len(sent)}d", *sent)
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]
    os.close(out)
    os.read(go, 1)  # keep the socket open until the engine has read everything
    return 0


def bench_engine(ns: str, tmp: Path, users: Path, backend: str, n: int, rate: float | None,
                 conntrack: bool) -> dict[str, float]:
    cfg = load_text(config(tmp, backend))
    eng = build_engine(cfg, netns=ns, allow_file=users, lock_file=tmp / "lock", flush_conntrack=conntrack,
                       long_lived=True)  # as in watch
    eng.full([])
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    ev = vici.EventSession(a)
    half = n // 2
    packets = [event_packet(10_000 + i, i, True) for i in range(half)]
    packets += [event_packet(10_000 + i, i, False) for i in range(half)]
    sent = [0.0] * len(packets)
    done = [0.0] * len(packets)
    batches: list[int] = []
    idx = {"next": 0}

    def consume() -> None:
        handled = 0
        while handled < len(packets):
            batch = ev.batch(1.0, limit=4096)
            if not batch:
                continue
            updates = []
            for name, msg in batch:
                updates.extend(vici.parse_event(name, msg))
            eng.events(updates, time.monotonic())
            t = time.perf_counter()
            for _ in batch:
                done[idx["next"]] = t
                idx["next"] += 1
            handled += len(batch)
            batches.append(len(batch))

    # charon is another process: the sender runs in a forked child so that its pacing loop
    # does not take the interpreter lock from the engine (it did, and inflated the latency)
    go_r, go_w = os.pipe()
    ts_r, ts_w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: send, pace, report the send times; never returns
        code = 1
        try:
            a.close()
            code = _send_phases(b, packets, half, rate, go_r, ts_w)
        except BaseException as e:  # noqa: BLE001 - reported, then the child ends
            print(f"sender process failed: {e!r}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    os.close(go_r)
    os.close(ts_w)
    b.close()
    th = threading.Thread(target=consume)
    th.start()
    # two phases, ups then downs: an up and a down of the same SA in one batch would cancel
    while idx["next"] < half:
        time.sleep(0.001)
    os.write(go_w, b"!")
    with os.fdopen(ts_r, "rb") as f:
        raw = f.read()
    sent[:] = list(struct.unpack(f"={len(packets)}d", raw))
    th.join()
    os.write(go_w, b"!")
    os.waitpid(pid, 0)
    os.close(go_w)
    elapsed = max(done) - t0
    lat = [d - s for d, s in zip(done, sent, strict=True)]
    left = len(eng.owned)
    close_engine(eng)
    a.close()
    assert left == 0, "engine left rules behind"
    return {"events": len(packets), "eps": len(packets) / elapsed, "elapsed": elapsed,
            "p50": pct(lat, 50), "p99": pct(lat, 99),
            "batches": len(batches), "max_batch": max(batches)}


def bench_reconcile(ns: str, tmp: Path, users: Path, backend: str, n: int) -> dict[str, float]:
    cfg = load_text(config(tmp, backend))
    sas = [Sa(str(100_000 + i), user(i), (vip(i),), "ESTABLISHED") for i in range(n)]
    out: dict[str, float] = {}
    eng = build_engine(cfg, netns=ns, allow_file=users, lock_file=tmp / "lock", flush_conntrack=False)
    t = time.perf_counter()
    r = eng.full(sas)
    out["empty_kernel_s"] = time.perf_counter() - t
    assert len(r.plan.add) == n
    close_engine(eng)
    eng = build_engine(cfg, netns=ns, allow_file=users, lock_file=tmp / "lock", flush_conntrack=False)
    t = time.perf_counter()
    r = eng.full(sas)  # restart: the kernel is already right
    out["restart_in_sync_s"] = time.perf_counter() - t
    assert r.plan.empty
    t = time.perf_counter()
    eng.full([])  # everyone gone (charon restarted)
    out["remove_all_s"] = time.perf_counter() - t
    close_engine(eng)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--shell-events", type=int, default=1000)
    ap.add_argument("--list-lines", type=int, default=10_000)
    ap.add_argument("--paced-rate", type=float, default=None,
                    help="events/s for the latency run (default: 50x the shell's rate in this run)")
    ap.add_argument("--reconcile-sas", type=int, default=10_000)
    ap.add_argument("--backends", default="marks,rules")
    ap.add_argument("--no-conntrack", action="store_true", help="skip conntrack flushes")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    n_users = max(args.events // 2, args.shell_events // 2, args.reconcile_sas)
    with tempfile.TemporaryDirectory(prefix="ikt-p-bench-") as d:
        tmp = Path(d)
        users = userlist(tmp, n_users, max(args.list_lines, n_users))
        names = []
        try:
            ns = "ikt-p-b" + secrets.token_hex(3)
            names.append(ns)
            netns(ns)
            print(f"machine: {os.cpu_count()} CPUs; user list {max(args.list_lines, n_users)} lines")
            sh = bench_shell(ns, tmp, users, args.shell_events)
            print(f"seed shell updown : {sh['eps']:8.0f} events/s   p50 {sh['p50'] * 1e3:6.2f} ms   "
                  f"p99 {sh['p99'] * 1e3:6.2f} ms   ({sh['events']} events)")
            rate = args.paced_rate or round(50 * sh["eps"])
            print(f"latency runs paced at {rate:.0f} events/s "
                  f"({rate / sh['eps']:.0f}x the shell's rate above; goal: p99 <= 5 ms there)")
            for backend in args.backends.split(","):
                ns_b = "ikt-p-b" + secrets.token_hex(3)
                names.append(ns_b)
                netns(ns_b)
                burst = bench_engine(ns_b, tmp, users, backend, args.events, None, not args.no_conntrack)
                paced = bench_engine(ns_b, tmp, users, backend, args.events, rate, not args.no_conntrack)
                print(f"ikemgr {backend:6} burst: {burst['eps']:8.0f} events/s   "
                      f"p50 {burst['p50'] * 1e3:6.2f} ms   p99 {burst['p99'] * 1e3:6.2f} ms   "
                      f"({burst['events']} events, "
                      f"{burst['batches']} batches, largest {burst['max_batch']})")
                print(f"ikemgr {backend:6} paced {rate:.0f}/s: p50 {paced['p50'] * 1e3:6.2f} ms   "
                      f"p99 {paced['p99'] * 1e3:6.2f} ms   "
                      f"({paced['eps']:.0f} events/s achieved, {paced['batches']} batches)")
                print(f"  ratio events/s ikemgr {backend} / shell: {burst['eps'] / sh['eps']:.1f}x")
                rec = bench_reconcile(ns_b, tmp, users, backend, args.reconcile_sas)
                print(f"  reconcile {args.reconcile_sas} SAs ({backend}): empty kernel "
                      f"{rec['empty_kernel_s']:.2f} s, restart in sync {rec['restart_in_sync_s']:.2f} s, "
                      f"all gone {rec['remove_all_s']:.2f} s")
        finally:
            for n in names:
                subprocess.run(["ip", "netns", "del", n], check=False)


if __name__ == "__main__":
    main()

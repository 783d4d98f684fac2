"""A VICI event server for the benchmarks: charon's wire protocol, at thousands of events/s.

A real charon cannot be driven at thousands of connects per second, so the benchmarks point
``strongswan.vici_socket`` at this server instead. It speaks the real protocol with the
``vici`` package's own codec (``vici.protocol``: ``Transport`` framing, ``Packet`` types and
named-packet encoding, ``Message`` serialisation) on a unix socket, and answers what
``ikemgr watch``, ``reconcile`` and ``sync`` ask: ``register``/``unregister`` (confirmed),
``list-sas`` (``list-sa`` events, then the response), ``get-pools`` (with leases) and
``terminate``. Anything else gets ``CMD_UNKNOWN``/``EVENT_UNKNOWN``, as charon answers.

The messages are not invented: every event and ``list-sas`` entry is a copy of one recorded
from charon 5.9.8 (``tests/unit/test_vici_sample_events.json``) with the unique id, EAP
identity, VIP, SPIs and child SA renamed. So an up is ``ike-updown`` then ``child-updown``
carrying ``up = yes``; a down is ``ike-updown`` (state DELETING, no ``established``, no
child SAs) then ``child-updown`` — both without an ``up`` key.

The server runs in a process of its own (``ServerProcess``), as charon does: its pacing
loop must not take the interpreter lock from whatever measures. It records when each event
went into the socket (``time.perf_counter``, CLOCK_MONOTONIC, comparable across processes).
"""

from __future__ import annotations

import copy
import gc
import json
import multiprocessing as mp
import os
import socket
import struct
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from vici.protocol import Message, Packet, Transport

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "unit" / "test_vici_sample_events.json"
CONN = "kuvpn"


def _templates() -> dict[str, dict[str, Any]]:
    """The first recorded ike/child up and down events and one list-sas entry, by role."""
    out: dict[str, dict[str, Any]] = {}
    for rec in json.loads(SAMPLES.read_text()):
        if rec["kind"] == "event" and rec["event"] in ("ike-updown", "child-updown"):
            role = f"{rec['event']}:{'up' if 'up' in rec['raw'] else 'down'}"
            out.setdefault(role, rec["raw"])
        elif rec["kind"] == "list-sas-after-event" and rec["sas"]:
            out.setdefault("list-sa", rec["sas"][0])
    roles = {"ike-updown:up", "ike-updown:down", "child-updown:up", "child-updown:down", "list-sa"}
    missing = roles - set(out)
    if missing:
        raise SystemExit(f"{SAMPLES}: no recorded {sorted(missing)}")
    return out


TEMPLATES = _templates()


def sa_section(template: dict[str, Any], uid: int, identity: str, vip: str) -> dict[str, Any]:
    """The recorded SA section with this SA's id, identity, VIP, SPIs and child SA."""
    (old_conn, sa), = ((k, v) for k, v in template.items() if isinstance(v, dict))
    sa = copy.deepcopy(sa)
    sa["uniqueid"] = str(uid)
    sa["remote-eap-id"] = identity
    sa["remote-vips"] = [vip]
    sa["initiator-spi"] = f"{uid:016x}"
    sa["responder-spi"] = f"{uid ^ 0x5A5A5A5A:016x}"
    children = sa.get("child-sas")
    if isinstance(children, dict):
        (child,) = children.values()
        child.update({"uniqueid": str(uid), "reqid": str(uid), "remote-ts": [f"{vip}/32"],
                      "spi-in": f"{uid & 0xFFFFFFFF:08x}", "spi-out": f"{(uid * 7) & 0xFFFFFFFF:08x}"})
        sa["child-sas"] = {f"{CONN}-{uid}": child}
    out = {k: v for k, v in template.items() if not isinstance(v, dict)}  # "up": "yes" first
    out[CONN] = sa
    return out


def event_packet(name: str, message: dict[str, Any]) -> bytes:
    """A named EVENT packet: the same named-packet layout the codec builds for requests."""
    return Packet._named_request(Packet.EVENT, name, Message.serialize(message))


def transition(uid: int, identity: str, vip: str, up: bool) -> list[bytes]:
    """What charon sends for one connect (up) or disconnect (down) of a one-child IKE_SA."""
    way = "up" if up else "down"
    return [event_packet(ev, sa_section(TEMPLATES[f"{ev}:{way}"], uid, identity, vip))
            for ev in ("ike-updown", "child-updown")]


def _unnamed(kind: int, message: dict[str, Any] | None = None) -> bytes:
    return struct.pack("!B", kind) + (Message.serialize(message) if message else b"")


class ViciServer:
    """Unix-socket VICI server: command answers in per-connection threads, events on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.live: dict[int, tuple[str, str]] = {}  # uid → (identity, vip) for list-sas/get-pools
        self.lock = threading.Lock()
        self.subscribers: dict[str, list[Transport]] = {}
        self.terminated: list[str] = []
        self.requests: dict[str, int] = {}
        if path.exists():
            path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        tr = Transport(conn)
        mine: set[str] = set()
        try:
            while True:
                try:
                    p = Packet.parse(tr.receive())
                except (OSError, struct.error):
                    return
                (size,) = struct.unpack("!B", p.payload.read(1))
                name = p.payload.read(size).decode()
                with self.lock:
                    self.requests[name] = self.requests.get(name, 0) + 1
                if p.response_type in (Packet.EVENT_REGISTER, Packet.EVENT_UNREGISTER):
                    with self.lock:
                        subs = self.subscribers.setdefault(name, [])
                        if p.response_type == Packet.EVENT_REGISTER:
                            subs.append(tr)
                            mine.add(name)
                        elif tr in subs:
                            subs.remove(tr)
                            mine.discard(name)
                    tr.send(_unnamed(Packet.EVENT_CONFIRM))
                elif p.response_type == Packet.CMD_REQUEST:
                    self._command(tr, name, Message.deserialize(p.payload))
        finally:
            with self.lock:
                for name in mine:
                    subs = self.subscribers.get(name, [])
                    if tr in subs:
                        subs.remove(tr)
            conn.close()

    def _command(self, tr: Transport, name: str, msg: dict[str, Any]) -> None:
        with self.lock:
            live = sorted(self.live.items())
            listeners = tr in self.subscribers.get("list-sa", [])
        if name == "list-sas":
            if listeners:
                for uid, (identity, vip) in live:
                    tr.send(event_packet("list-sa", sa_section(TEMPLATES["list-sa"], uid, identity, vip)))
            tr.send(_unnamed(Packet.CMD_RESPONSE))
        elif name == "get-pools":
            leases = {str(i): {"address": vip, "identity": identity, "status": "online"}
                      for i, (_uid, (identity, vip)) in enumerate(live)}
            pool = {"base": "10.64.0.10", "size": "4194000", "online": str(len(live)), "offline": "0"}
            if msg.get("leases") == b"yes":
                pool["leases"] = leases  # type: ignore[assignment]
            tr.send(_unnamed(Packet.CMD_RESPONSE, {"vpnpool": pool}))
        elif name == "terminate":
            uid = msg.get("ike-id", b"").decode()
            with self.lock:
                found = self.live.pop(int(uid), None) if uid.isdigit() else None
                self.terminated.append(uid)
            reply = {"success": "yes"} if found else {"success": "no", "errmsg": f"no IKE_SA {uid}"}
            tr.send(_unnamed(Packet.CMD_RESPONSE, reply))
        else:
            tr.send(_unnamed(Packet.CMD_UNKNOWN))

    def wait_subscribed(self, event: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if self.subscribers.get(event):
                    return True
            time.sleep(0.01)
        return False

    def stream(self, packets: Sequence[tuple[str, bytes]], rate: float | None, per: int) -> list[float]:
        """Send the packets to their subscribers; ``per`` packets make one step of the pacing.

        Returns the send time of each step's first packet (what starts the clock for the
        kernel change it causes).
        """
        with self.lock:
            subs = {k: list(v) for k, v in self.subscribers.items()}
        gap = 1.0 / rate if rate else 0.0
        times: list[float] = []
        start = time.perf_counter()
        for step in range(0, len(packets), per):
            if gap:
                # sleep until the step is due, never spin: a busy-wait here took one of the
                # machine's two cores from the watcher it measures. A wake-up that comes late
                # sends every step that fell due meanwhile, at once (as charon's worker threads
                # do), so the offered rate holds on average; each is stamped when it is sent.
                target = start + (step // per) * gap
                now = time.perf_counter()
                if target > now:
                    time.sleep(target - now)
            times.append(time.perf_counter())
            for name, pkt in packets[step:step + per]:
                for tr in list(subs.get(name, ())):
                    try:
                        tr.send(pkt)
                    except OSError:  # the subscriber died (a crash test kills watch mid-storm)
                        subs[name].remove(tr)
        return times

    def close(self) -> None:
        self.sock.close()
        if self.path.exists():
            self.path.unlink()


def _run(path: Path, ctl: Connection) -> None:
    """The server process: build, then obey the control pipe until told to stop."""
    srv = ViciServer(path)
    # an instrument must not pause on its own: no cyclic GC in this short-lived process
    # (a collection here delays a stamp, and reads as the watcher's latency)
    gc.freeze()
    gc.disable()
    ctl.send(("ready", None))
    while True:
        op, arg = ctl.recv()
        if op == "stop":
            srv.close()
            ctl.send(("stopped", srv.requests))
            return
        if op == "live":  # {uid: (identity, vip)} for list-sas and get-pools
            with srv.lock:
                srv.live = dict(arg)
            ctl.send(("ok", None))
        elif op == "wait":
            ctl.send(("ok", srv.wait_subscribed(arg, 30.0)))
        elif op == "stream":  # (transitions [(uid, identity, vip, up)], rate per s or None)
            items, rate = arg
            pkts: list[tuple[str, bytes]] = []
            for uid, identity, vip, up in items:
                for p in transition(uid, identity, vip, up):
                    pkts.append((Packet.parse(p).event_type.decode(), p))
                with srv.lock:
                    if up:
                        srv.live[uid] = (identity, vip)
                    else:
                        srv.live.pop(uid, None)
            ctl.send(("sent", srv.stream(pkts, rate, 2)))
        elif op == "stats":
            with srv.lock:
                ctl.send(("ok", {"requests": dict(srv.requests), "terminated": list(srv.terminated)}))


class ServerProcess:
    """The VICI server in a child process, driven over a pipe (``live``, ``stream``, ``stop``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        ctx = mp.get_context("fork")
        self.ctl, child = ctx.Pipe()
        self.proc = ctx.Process(target=_run, args=(path, child), daemon=True)
        self.proc.start()
        self._expect("ready")

    def _expect(self, what: str) -> Any:
        if not self.ctl.poll(60):
            raise RuntimeError(f"VICI server: no {what!r} within 60 s")
        got, arg = self.ctl.recv()
        if got != what:
            raise RuntimeError(f"VICI server: {got!r}, expected {what!r}")
        return arg

    @property
    def uri(self) -> str:
        return f"unix://{self.path}"

    def set_live(self, live: dict[int, tuple[str, str]]) -> None:
        self.ctl.send(("live", live))
        self._expect("ok")

    def wait_subscribed(self, event: str) -> bool:
        self.ctl.send(("wait", event))
        return bool(self._expect("ok"))

    def stream(self, items: list[tuple[int, str, str, bool]], rate: float | None) -> list[float]:
        """Send the transitions; returns each one's send time (its first packet)."""
        self.ctl.send(("stream", (items, rate)))
        return list(self._expect("sent"))

    def stats(self) -> dict[str, Any]:
        self.ctl.send(("stats", None))
        return dict(self._expect("ok"))

    def stop(self) -> dict[str, int]:
        try:
            self.ctl.send(("stop", None))
            return dict(self._expect("stopped"))
        finally:
            self.proc.join(5)
            if self.proc.is_alive():
                os.kill(self.proc.pid or 0, 9)

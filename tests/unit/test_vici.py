"""VICI adapter: events recorded from a real charon 5.9.8, and a socketpair peer speaking
the vici package's own codec (asserting exactly what the adapter sends)."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from vici.protocol import FiniteStream, Message, Packet, Transport

from ikemgr.adapters import vici
from ikemgr.adapters.vici.codec import parse_batch
from ikemgr.errors import BackendUnavailable

#: recorded by the lab probe from charon 5.9.8 (copied from the lab notes)
SAMPLES = Path(__file__).with_name("test_vici_sample_events.json")


def wire(o: Any) -> Any:
    """JSON sample → what vici.Message.deserialize returns: text keys, bytes values."""
    if isinstance(o, dict):
        return {k: wire(v) for k, v in o.items()}
    if isinstance(o, list):
        return [wire(v) for v in o]
    return str(o).encode()


def samples() -> list[dict[str, Any]]:
    return json.loads(SAMPLES.read_text())


def test_recorded_events_decode_to_sa_updates() -> None:
    seen: list[tuple[str, str, bool, tuple[IPv4Address, ...], object]] = []
    for item in samples():
        if item["kind"] != "event":
            continue
        for u in vici.parse_event(item["event"], wire(item["raw"])):
            seen.append((item["event"], u.sa.uniqueid, u.present, u.sa.vips, u.sa.identity_raw))
    vip = (IPv4Address("172.29.0.1"),)
    assert seen == [
        ("ike-update", "7", False, (), b"%any"),  # half-open, CONNECTING: "not present"
        ("ike-updown", "7", True, vip, b"alice@123456"),  # remote-eap-id preferred
        ("child-updown", "7", True, vip, b"alice@123456"),
        ("ike-updown", "7", False, vip, b"alice@123456"),  # DELETING
        ("child-updown", "7", False, vip, b"alice@123456"),
        ("ike-update", "8", False, (), b"%any"),
        ("ike-updown", "8", True, vip, b"alice@123456"),  # IKE id == EAP id: remote-id
        ("child-updown", "8", True, vip, b"alice@123456"),
        ("ike-updown", "8", False, vip, b"alice@123456"),
        ("child-updown", "8", False, vip, b"alice@123456"),
    ]


def test_a_down_event_still_in_state_established_is_a_down() -> None:
    """DPD gave up (ike_sa.c retransmit → ike_updown(FALSE)): no ``up`` key, state ESTABLISHED.

    The shape charon 5.9.8 sent for libreswan's silent drop (ike-peers notes); only the
    ``up`` key tells up from down, for both up/down events."""
    sa = {"uniqueid": b"12", "state": b"ESTABLISHED", "remote-id": b"alice@123456",
          "remote-vips": [b"10.1.0.10"], "child-sas": {}}
    for event in ("ike-updown", "child-updown"):
        (gone,) = vici.parse_event(event, {"kuins": sa})
        assert gone.present is False and gone.sa.state == "ESTABLISHED"
        (back,) = vici.parse_event(event, {"up": b"yes", "kuins": sa})
        assert back.present is True
    # a rekey still goes by state: the old SA (REKEYED) goes, the new one is there
    rekey = {"kuins": {"old": {**sa, "state": b"REKEYED"}, "new": {**sa, "uniqueid": b"13"}}}
    old, new = vici.parse_event("ike-rekey", rekey)
    assert (old.present, new.present) == (False, True)


def test_recorded_list_sas_and_leases() -> None:
    items = samples()
    lists = [vici.parse_list_sas(wire(i["sas"])) for i in items if i["kind"] == "list-sas-after-event"]
    assert [[(s.uniqueid, s.state, s.live) for s in sas] for sas in lists] == [
        [("7", "ESTABLISHED", True)], [], [("8", "ESTABLISHED", True)], []]
    assert lists[0][0].established is not None
    pools = [i for i in items if i["kind"] == "get-pools-leases"][0]["pools"]
    assert vici.parse_leases(wire(pools)) == {}  # the recorded lease is offline
    pools["vpnpool"]["leases"]["0"]["status"] = "online"
    assert vici.parse_leases(wire(pools)) == {IPv4Address("172.29.0.1"): "alice@123456"}


def test_identity_fallbacks_and_vip_filtering() -> None:
    base = {"uniqueid": b"3", "state": b"ESTABLISHED", "remote-id": b"1.2.3.4"}
    assert vici.sa_of("c", {**base, "remote-xauth-id": b"x@1"}).identity_raw == b"x@1"  # type: ignore[union-attr]
    assert vici.sa_of("c", base).identity_raw == b"1.2.3.4"  # type: ignore[union-attr]
    sa = vici.sa_of("c", {**base, "remote-vips": [b"fd00::1", b"junk", b"10.1.0.9"]})
    assert sa is not None and sa.vips == (IPv4Address("10.1.0.9"),)
    assert vici.sa_of("c", {"state": b"ESTABLISHED"}) is None


def test_ike_rekey_hands_vips_from_old_to_new() -> None:
    old = {"uniqueid": b"4", "state": b"REKEYED", "remote-eap-id": b"alice@123456",
           "remote-vips": [b"10.1.0.10"]}
    new = {**old, "uniqueid": b"5", "state": b"ESTABLISHED"}
    ups = vici.parse_event("ike-rekey", {"kuins": {"old": old, "new": new}})
    assert [(u.sa.uniqueid, u.present) for u in ups] == [("4", False), ("5", True)]


def test_child_sas_bytes_are_summed() -> None:
    d = {"uniqueid": b"4", "state": b"ESTABLISHED", "child-sas": {
        "a": {"bytes-in": b"10", "bytes-out": b"20"}, "b": {"bytes-in": b"1", "bytes-out": b"2"}}}
    sa = vici.sa_of("c", d)
    assert sa is not None and (sa.bytes_in, sa.bytes_out) == (11, 22)


# --------------------------------------------------------------------------- socketpair peer


class Peer:
    """A fake charon built from the vici codec: records requests, answers per a script."""

    def __init__(self, sock: socket.socket, script: Callable[[Peer], None]) -> None:
        self.t = Transport(sock)
        self.sock = sock
        self.received: list[tuple[int, str, dict[str, Any] | None]] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script: Callable[[Peer], None]) -> None:
        try:
            script(self)
        except BaseException as e:  # surfaced by the test
            self.error = e

    def recv(self) -> tuple[int, str, dict[str, Any] | None]:
        raw = self.t.receive()
        kind = raw[0]
        n = raw[1]
        name = raw[2:2 + n].decode()
        rest = raw[2 + n:]
        msg = Message.deserialize(FiniteStream(rest)) if rest else None
        self.received.append((kind, name, msg))
        return kind, name, msg

    def send_event(self, name: str, msg: dict[str, Any]) -> None:
        n = name.encode()
        self.t.send(struct.pack("!BB", Packet.EVENT, len(n)) + n + Message.serialize(msg))

    def confirm(self) -> None:
        self.t.send(struct.pack("!B", Packet.EVENT_CONFIRM))

    def respond(self, msg: dict[str, Any]) -> None:
        self.t.send(struct.pack("!B", Packet.CMD_RESPONSE) + Message.serialize(msg))


SA_DICT = {"uniqueid": "7", "state": "ESTABLISHED", "remote-id": "192.0.2.100",
           "remote-eap-id": "alice@123456", "remote-vips": ["172.29.0.1"], "established": "12"}


def test_list_sas_sends_register_request_unregister() -> None:
    a, b = socket.socketpair()

    def script(p: Peer) -> None:
        p.recv()
        p.confirm()
        p.recv()
        p.send_event("list-sa", {"kuvpn": SA_DICT})
        p.send_event("list-sa", {"kuvpn": {**SA_DICT, "uniqueid": "8", "remote-vips": ["172.29.0.2"]}})
        p.respond({})
        p.recv()
        p.confirm()
        p.recv()
        p.respond({"vpnpool": {"leases": {"0": {"address": "172.29.0.2", "identity": "bob@123456",
                                                "status": "online"}}}})

    peer = Peer(b, script)
    s = vici.CommandSession(a)
    sas = s.list_sas()
    leases = s.leases()
    peer.thread.join(2)
    assert peer.error is None
    assert [(x.uniqueid, x.vips, x.established) for x in sas] == [
        ("7", (IPv4Address("172.29.0.1"),), 12), ("8", (IPv4Address("172.29.0.2"),), 12)]
    assert leases == {IPv4Address("172.29.0.2"): "bob@123456"}
    assert peer.received == [
        (Packet.EVENT_REGISTER, "list-sa", None),
        (Packet.CMD_REQUEST, "list-sas", {"noblock": b"yes"}),
        (Packet.EVENT_UNREGISTER, "list-sa", None),
        (Packet.CMD_REQUEST, "get-pools", {"leases": b"yes"}),
    ]
    s.close()
    b.close()


def _list_sas_then_pools(p: Peer, sas: list[dict[str, Any]], online: list[str]) -> None:
    """One list-sas (streamed list-sa events) and one get-pools, as charon answers them."""
    p.recv()
    p.confirm()
    p.recv()
    for sa in sas:
        p.send_event("list-sa", {"kuvpn": sa})
    p.respond({})
    p.recv()
    p.confirm()
    p.recv()
    p.respond({"vpnpool": {"leases": {str(i): {"address": a, "identity": "x", "status": "online"}
                                      for i, a in enumerate(online)}}})


def test_an_online_lease_no_listed_sa_holds_reads_list_sas_again_waiting() -> None:
    """charon's noblock list leaves out a checked-out SA (SA 8 here, busy in its updown);
    its online lease shows it, and the second list-sas waits for it."""
    from ikemgr.engine.oneshot import sas_and_leases

    a, b = socket.socketpair()
    second = {**SA_DICT, "uniqueid": "8", "remote-vips": ["172.29.0.2"]}

    def script(p: Peer) -> None:
        _list_sas_then_pools(p, [SA_DICT], ["172.29.0.1", "172.29.0.2"])
        _list_sas_then_pools(p, [SA_DICT, second], ["172.29.0.1", "172.29.0.2"])

    peer = Peer(b, script)
    s = vici.CommandSession(a)
    sas, leases = sas_and_leases(s)
    peer.thread.join(2)
    assert peer.error is None
    assert [x.uniqueid for x in sas] == ["7", "8"] and len(leases) == 2
    requests = [(name, msg) for kind, name, msg in peer.received if kind == Packet.CMD_REQUEST]
    assert requests == [("list-sas", {"noblock": b"yes"}), ("get-pools", {"leases": b"yes"}),
                        ("list-sas", None), ("get-pools", {"leases": b"yes"})]
    s.close()
    b.close()


def test_every_online_lease_held_reads_list_sas_once() -> None:
    from ikemgr.engine.oneshot import sas_and_leases

    a, b = socket.socketpair()
    peer = Peer(b, lambda p: _list_sas_then_pools(p, [SA_DICT], ["172.29.0.1"]))
    s = vici.CommandSession(a)
    sas, leases = sas_and_leases(s)
    peer.thread.join(2)
    assert peer.error is None
    assert [x.uniqueid for x in sas] == ["7"] and leases == {IPv4Address("172.29.0.1"): "x"}
    assert [name for kind, name, _ in peer.received if kind == Packet.CMD_REQUEST] == ["list-sas", "get-pools"]
    s.close()
    b.close()


def test_event_session_registers_and_batches_what_arrives_together() -> None:
    a, b = socket.socketpair()
    go = threading.Event()

    def script(p: Peer) -> None:
        for _ in vici.EVENTS:
            p.recv()
            p.confirm()
        go.wait(2)
        p.send_event("ike-updown", {"up": "yes", "kuvpn": SA_DICT})
        p.send_event("child-updown", {"up": "yes", "kuvpn": SA_DICT})
        p.send_event("ike-update", {"local-host": "192.0.2.1", "(unnamed)": {
            "uniqueid": "9", "state": "CONNECTING", "remote-id": "%any"}})

    peer = Peer(b, script)
    ev = vici.EventSession(a)
    ev.register()
    assert [r[:2] for r in peer.received] == [(Packet.EVENT_REGISTER, e) for e in vici.EVENTS]
    assert ev.batch(0.05) == []  # idle tick
    go.set()
    peer.thread.join(2)
    batch = ev.batch(1.0)
    assert [name for name, _ in batch] == ["ike-updown", "child-updown", "ike-update"]
    ups = [u for name, msg in batch for u in vici.parse_event(name, msg)]
    assert [(u.sa.uniqueid, u.present) for u in ups] == [("7", True), ("7", True), ("9", False)]
    # the child-updown repeats its ike-updown's bytes up to the cut: its decode is reused
    assert batch[1][1] is batch[0][1] and batch[2][1] is not batch[0][1]
    assert [(u.sa.uniqueid, u.present) for u in parse_batch(batch)] == [("7", True), ("9", False)]
    b.close()
    with pytest.raises(BackendUnavailable, match="vici unavailable: connection lost"):
        ev.batch(1.0)
    ev.close()


def test_connect_errors_are_one_line() -> None:
    with pytest.raises(BackendUnavailable, match=r"vici unavailable: unix:///nonexistent/x\.vici"):
        vici.connect("unix:///nonexistent/x.vici", timeout=0.2)


def _frame(name: str, msg: dict[str, Any]) -> bytes:
    body = Packet._named_request(Packet.EVENT, name, Message.serialize(msg))
    return struct.pack("!I", len(body)) + body


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 16])
def test_event_session_frames_a_stream_cut_anywhere(chunk: int) -> None:
    """One recv takes many frames, or part of one: every event comes out once, in order."""
    a, b = socket.socketpair()
    stream = b"".join(_frame("ike-updown" if i % 2 else "child-updown",
                             {"up": "yes", "kuvpn": {**SA_DICT, "uniqueid": str(i)}}) for i in range(40))
    # a confirm of a late register (not an event) and a malformed event sit in the stream too
    confirm = struct.pack("!B", Packet.EVENT_CONFIRM)
    bad = Packet._named_request(Packet.EVENT, "ike-updown", b"\x01\x05kuvpn\x03\x08uniqueid\x00\x09ab")
    stream = struct.pack("!I", 1) + confirm + stream + struct.pack("!I", len(bad)) + bad \
        + _frame("ike-updown", {"kuvpn": {**SA_DICT, "uniqueid": "99"}})
    ev = vici.EventSession(a)

    def send() -> None:
        for i in range(0, len(stream), chunk):
            b.sendall(stream[i:i + chunk])

    t = threading.Thread(target=send)
    t.start()
    got: list[tuple[str, dict[str, Any]]] = []
    while len(got) < 41:
        got += ev.batch(2.0)
    t.join(5)
    ups = [u for name, msg in got for u in vici.parse_event(name, msg)]
    assert [u.sa.uniqueid for u in ups] == [str(i) for i in range(40)] + ["99"]
    assert [u.present for u in ups] == [True] * 40 + [False]
    assert ev.undecodable == 1
    assert ev.batch(0.05) == []  # nothing left over
    b.close()
    ev.close()


def test_event_session_batch_stops_at_its_limit_and_keeps_the_rest() -> None:
    a, b = socket.socketpair()
    b.sendall(b"".join(_frame("ike-updown", {"up": "yes", "kuvpn": {**SA_DICT, "uniqueid": str(i)}})
                       for i in range(10)))
    ev = vici.EventSession(a)
    first = ev.batch(1.0, limit=4)
    rest = ev.batch(1.0) if len(first) == 4 else []
    while len(first) + len(rest) < 10:
        rest += ev.batch(1.0)
    assert len(first) == 4
    assert [m["kuvpn"]["uniqueid"] for _, m in first + rest] == [str(i).encode() for i in range(10)]
    b.close()
    ev.close()

"""The benchmark's VICI server sends what charon 5.9.8 sent, byte layout and shape.

``bench/vici_server.py`` stands in for charon in the event and sync benchmarks; its
figures mean something only if ``watch`` reads the same messages from it as from a real
charon. Checked here against the recorded events and through the product's own codec.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from vici.protocol import Message, Packet

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import vici_server  # noqa: E402

from ikemgr.adapters.vici.codec import _body, parse_event  # noqa: E402
from ikemgr.adapters.vici.session import CommandSession, EventSession  # noqa: E402

RECORDED = json.loads((ROOT / "tests" / "unit" / "test_vici_sample_events.json").read_text())


def shape(d: Any) -> Any:
    """Keys and nesting, values left out."""
    if isinstance(d, dict):
        return {k: shape(v) for k, v in d.items()}
    return "list" if isinstance(d, list) else "value"


def recorded(event: str, up: bool) -> dict[str, Any]:
    return next(r["raw"] for r in RECORDED if r["kind"] == "event" and r["event"] == event
                and ("up" in r["raw"]) == up)


@pytest.mark.parametrize("up", [True, False])
def test_a_transition_is_the_recorded_pair_with_this_sas_values(up: bool) -> None:
    packets = vici_server.transition(42, "bob@123457", "10.64.1.42", up)
    names = []
    for pkt, event in zip(packets, ("ike-updown", "child-updown"), strict=True):
        p = Packet.parse(pkt)
        assert p.response_type == Packet.EVENT
        names.append(p.event_type.decode())
        msg = Message.deserialize(p.payload)
        want = recorded(event, up)
        got = json.loads(json.dumps(msg, default=lambda b: b.decode()))
        (conn,) = (k for k, v in got.items() if isinstance(v, dict))
        (rconn,) = (k for k, v in want.items() if isinstance(v, dict))
        assert ("up" in got) is up
        sa, rsa = got[conn], want[rconn]
        if "child-sas" in rsa:  # the child SA is renamed after the unique id, as charon names it
            assert list(sa["child-sas"]) == [f"{conn}-42"]
            sa = {**sa, "child-sas": list(sa["child-sas"].values())}
            rsa = {**rsa, "child-sas": list(rsa["child-sas"].values())}
        assert shape(sa) == shape(rsa)
        assert (sa["uniqueid"], sa["remote-eap-id"], sa["remote-vips"]) == ("42", "bob@123457", ["10.64.1.42"])
        assert sa["state"] == rsa["state"]
    assert names == ["ike-updown", "child-updown"]


@pytest.mark.parametrize("up", [True, False])
def test_the_products_codec_reads_the_transition_as_up_or_down(up: bool) -> None:
    for pkt in vici_server.transition(7, "alice@123456", "10.64.1.7", up):
        p = Packet.parse(pkt)
        (u,) = parse_event(p.event_type.decode(), _body(p))
        assert (u.sa.uniqueid, u.present, [str(v) for v in u.sa.vips]) == ("7", up, ["10.64.1.7"])


def test_list_sas_get_pools_and_events_over_a_socket(tmp_path: Path) -> None:
    srv = vici_server.ViciServer(tmp_path / "charon.vici")
    srv.live = {5: ("bob@123456", "10.64.1.5")}
    try:
        cmd_sock = socket.socket(socket.AF_UNIX)
        cmd_sock.connect(str(srv.path))
        cmd = CommandSession(cmd_sock)
        sas = cmd.list_sas()
        assert [(s.uniqueid, s.identity_raw, [str(v) for v in s.vips]) for s in sas] == [
            ("5", b"bob@123456", ["10.64.1.5"])]
        assert {str(k): v for k, v in cmd.leases().items()} == {"10.64.1.5": "bob@123456"}
        ev_sock = socket.socket(socket.AF_UNIX)
        ev_sock.connect(str(srv.path))
        ev = EventSession(ev_sock)
        ev.register()
        assert srv.wait_subscribed("child-updown", 5.0)
        pkts = vici_server.transition(9, "carol@123456", "10.64.1.9", True)
        srv.stream([(Packet.parse(x).event_type.decode(), x) for x in pkts], None, 2)
        got = []
        while len(got) < 2:
            got += ev.batch(2.0)
        assert [name for name, _ in got] == ["ike-updown", "child-updown"]
        cmd.close()
        ev.close()
    finally:
        srv.close()

"""The two VICI sessions charon wants: one for commands, one registered for events.

The event session belongs to the event stream once registered; the command session
runs ``list-sas``, ``get-pools`` and ``terminate``. The socket path always comes from
the config, because every lab charon has its own.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import Any

from vici.protocol import Message, Packet, Transport

from ikemgr.adapters.vici.codec import (
    EVENTS,
    UPDOWN_EVENTS,
    MessageError,
    _body,
    _text,
    as_text,
    decode_event_cut,
    parse_leases,
    parse_list_sas,
    repeats,
)
from ikemgr.core.model import Sa
from ikemgr.errors import BackendUnavailable

log = logging.getLogger("ikemgr.vici")

#: one read takes up to this much of a queued event stream (about 300 events)
_RECV_SIZE = 256 * 1024


def connect(uri: str, timeout: float = 5.0) -> socket.socket:
    """unix:///path or tcp://host:port → a connected socket; BackendUnavailable otherwise."""
    try:
        if uri.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(uri[len("unix://"):])
        elif uri.startswith("tcp://"):
            host, _, port = uri[len("tcp://"):].rpartition(":")
            sock = socket.create_connection((host, int(port)), timeout=timeout)
        else:
            raise BackendUnavailable("vici", f"unsupported socket URI {uri!r}")
    except OSError as e:
        raise BackendUnavailable("vici", f"{uri}: {e.strerror or e}") from None
    sock.settimeout(None)
    return sock


class _Wire:
    """Request/response over one socket with the vici codec; errors → BackendUnavailable."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.transport = Transport(sock)

    def _recv(self) -> Any:
        try:
            return Packet.parse(self.transport.receive())
        except (OSError, struct.error) as e:
            raise BackendUnavailable("vici", f"connection lost: {e}") from None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class CommandSession(_Wire):
    """list-sas and get-pools; streamed requests collect their events."""

    def _streamed(self, command: str, event: str, message: dict[str, Any] | None) -> list[Any]:
        self._send(Packet.register_event(event))
        self._expect_confirm(event)
        body = Message.serialize(message) if message else None
        self._send(Packet.request(command, body))
        items: list[Any] = []
        while True:
            p = self._recv()
            if p.response_type == Packet.EVENT:
                items.append(_body(p))
                continue
            if p.response_type != Packet.CMD_RESPONSE:
                raise BackendUnavailable("vici", f"{command}: unexpected response {p.response_type}")
            break
        self._send(Packet.unregister_event(event))
        self._expect_confirm(event)
        return items

    def _send(self, packet: bytes) -> None:
        try:
            self.transport.send(packet)
        except OSError as e:
            raise BackendUnavailable("vici", f"connection lost: {e}") from None

    def _expect_confirm(self, event: str) -> None:
        p = self._recv()
        while p.response_type == Packet.EVENT:
            p = self._recv()
        if p.response_type != Packet.EVENT_CONFIRM:
            raise BackendUnavailable("vici", f"charon refused event {event!r}")

    def request(self, command: str, message: dict[str, Any] | None = None) -> Any:
        self._send(Packet.request(command, Message.serialize(message) if message else None))
        p = self._recv()
        if p.response_type != Packet.CMD_RESPONSE:
            raise BackendUnavailable("vici", f"{command}: unexpected response {p.response_type}")
        return _body(p)

    def list_sas(self, *, wait: bool = False) -> list[Sa]:
        """charon's IKE_SAs. Without ``wait`` (``noblock``) charon leaves out every IKE_SA
        another of its threads has checked out at that moment (one waiting on RADIUS, one
        running its updown script), rather than waiting for it; with ``wait`` the list is
        complete and may take as long as the slowest such thread."""
        return parse_list_sas(self._streamed("list-sas", "list-sa", None if wait else {"noblock": "yes"}))

    def list_sas_text(self) -> list[dict[str, Any]]:
        """Every IKE_SA as charon lists it (waiting for busy ones), values as text, its
        connection name under "name"."""
        out = []
        for item in self._streamed("list-sas", "list-sa", None):
            for name, body in as_text(item).items():
                if isinstance(body, dict):
                    out.append({"name": name, **body})
        return out

    def leases(self) -> dict[IPv4Address, str]:
        return parse_leases(self.request("get-pools", {"leases": "yes"}))

    def terminate_ike(self, uniqueid: str) -> None:
        """Close one IKE_SA by unique id; charon sends the DELETE without us waiting for it."""
        if not uniqueid.isdigit():
            raise BackendUnavailable("vici", f"terminate: bad IKE_SA id {uniqueid!r}")
        reply = self.request("terminate", {"ike-id": uniqueid, "timeout": "-1"})
        if _text(reply.get("success")) != "yes":
            detail = _text(reply.get('errmsg')) or 'failed'
            raise BackendUnavailable("vici", f"terminate {uniqueid}: {detail}")


class EventSession(_Wire):
    """Registered for the policy events; ``batch`` returns what arrived together.

    Once registered the session reads the stream itself: one ``recv`` takes every frame
    the socket holds (a storm queues hundreds), and each frame is decoded in place from
    that buffer — the vici package's transport costs two ``recv`` and four ``settimeout``
    calls per frame, a quarter of an event's cost on the watch path.
    """

    #: events that could not be decoded since the session opened (the watcher reconciles)
    undecodable = 0
    #: bytes read but not yet framed (a frame cut by the end of a ``recv``)
    _pending = b""
    #: the last up/down event decoded, if the frame just before: (its body up to the cut,
    #: the depth there, its decode), for ``codec.repeats``
    _last: tuple[bytes, int, dict[str, Any]] | None = None

    def register(self, events: Iterable[str] = EVENTS) -> None:
        for e in events:
            try:
                self.transport.send(Packet.register_event(e))
            except OSError as err:
                raise BackendUnavailable("vici", f"connection lost: {err}") from None
            p = self._recv()
            if p.response_type != Packet.EVENT_CONFIRM:
                raise BackendUnavailable("vici", f"charon refused event {e!r}")

    def _read(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for bytes, append what the socket holds; False when idle."""
        try:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return False
            chunk = self.sock.recv(_RECV_SIZE)
        except (OSError, ValueError) as e:
            raise BackendUnavailable("vici", f"connection lost: {e}") from None
        if not chunk:
            raise BackendUnavailable("vici", "connection lost: closed by charon")
        self._pending = self._pending + chunk if self._pending else chunk
        return True

    def batch(self, timeout: float, limit: int = 1024) -> list[tuple[str, dict[str, Any]]]:
        """Wait up to ``timeout`` s for one event, then take every event already queued.

        Returns [] on an idle tick. Events that arrive together are handled as one batch:
        one decision pass, one atomic kernel change.
        """
        out: list[tuple[str, dict[str, Any]]] = []
        wait: float = timeout
        while len(out) < limit:
            buf, pos = self._pending, 0
            have = len(buf)
            while len(out) < limit and have - pos >= 4:
                size = int.from_bytes(buf[pos:pos + 4], "big")
                if have - pos - 4 < size:
                    break
                start, pos = pos + 4, pos + 4 + size
                self._frame(buf, start, pos, out)
            self._pending = buf[pos:] if pos else buf
            if out:
                wait = 0.0  # events in hand: take only what is already queued
            if len(out) >= limit or not self._read(wait):
                break
            wait = 0.0
        return out

    def _frame(self, buf: bytes, start: int, end: int, out: list[tuple[str, dict[str, Any]]]) -> None:
        """One frame of ``buf[start:end]``: an event is decoded and appended, anything else dropped."""
        if end - start < 2 or buf[start] != Packet.EVENT:
            return  # confirms of a late (un)register: nothing to act on
        name_end = start + 2 + buf[start + 1]
        last, self._last = self._last, None
        try:
            name = buf[start + 2:name_end].decode("ascii")
            updown = name in UPDOWN_EVENTS
            if updown and last is not None and repeats(buf, name_end, end, last[0], last[1]):
                # the up/down before it, again (a child-updown after its ike-updown): the
                # same decode, not made twice (parse_batch then skips it as a repeat)
                out.append((name, last[2]))
                self._last = last
                return
            msg, cut, depth = decode_event_cut(buf, name_end, end)
        except (MessageError, ValueError, TypeError) as e:
            # a malformed event must not stop the watcher, but a lost "down" is a stale
            # rule: counted here, and the watcher answers with a full reconcile
            self.undecodable += 1
            log.warning("undecodable %r event (%s): a full reconcile follows",
                        buf[start + 2:name_end][:64], e, extra={"fields": {"event": "vici-undecodable"}})
            return
        if updown:
            self._last = (buf[name_end:cut], depth, msg)
        out.append((name, msg))

"""A small EAP peer over RADIUS (RFC 3579) on pyrad and Python's ssl: GTC, MSCHAPv2, TLS, TTLS/PAP.

eapol_test is not packaged in Debian. This plays the part charon's eap-radius relays in
production: EAP-Response/Identity, a NAK towards the wanted method when the server
proposes another one, then the method itself. EAP-TLS (RFC 5216) and EAP-TTLS (RFC 5281)
carry a real OpenSSL handshake (ssl.MemoryBIO) in fragmented EAP messages; the server is
the real FreeRADIUS on the rendered config.
"""

from __future__ import annotations

import os
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pyrad import packet
from pyrad.client import Client

from ikemgr.adapters.radius import authenticator_response, nt_response

EAP_REQUEST, EAP_RESPONSE = 1, 2
TYPE_IDENTITY, TYPE_NAK, TYPE_GTC, TYPE_TLS, TYPE_TTLS = 1, 3, 6, 13, 21
FLAG_L, FLAG_M, FLAG_S = 0x80, 0x40, 0x20
FRAGMENT = 1000


@dataclass
class EapResult:
    outcome: str                      # accept | reject
    rounds: int = 0
    tls_established: bool = False
    trace: list[str] = field(default_factory=list)
    reply_attributes: dict[str, object] = field(default_factory=dict)


def eap_response(eid: int, typ: int, data: bytes) -> bytes:
    return struct.pack("!BBHB", EAP_RESPONSE, eid, 5 + len(data), typ) + data


Handler = Callable[[int, bytes, EapResult], bytes]


def run(client: Client, identity: str, method: int, handler: Handler, max_rounds: int = 40) -> EapResult:
    """Drive one EAP conversation; ``handler(eid, type_data, result)`` answers each request."""
    result = EapResult("reject")
    state: bytes | None = None
    eap_msg = eap_response(0, TYPE_IDENTITY, identity.encode())
    for rounds in range(1, max_rounds + 1):
        pkt = client.CreateAuthPacket(code=packet.AccessRequest)
        pkt["User-Name"] = identity
        pkt["EAP-Message"] = [eap_msg[i:i + 253] for i in range(0, len(eap_msg), 253)]
        if state is not None:
            pkt["State"] = state
        reply = client.SendPacket(pkt)
        result.rounds = rounds
        if reply.code in (packet.AccessAccept, packet.AccessReject):
            result.outcome = "accept" if reply.code == packet.AccessAccept else "reject"
            result.reply_attributes = {k: reply[k] for k in reply.keys() if isinstance(k, str)}
            return result
        state = reply["State"][0] if "State" in reply else None
        eap = b"".join(reply["EAP-Message"])
        code, eid, _length, typ = struct.unpack("!BBHB", eap[:5])
        if code != EAP_REQUEST:
            result.trace.append(f"unexpected EAP code {code}")
            return result
        if typ != method:
            result.trace.append(f"server proposed EAP type {typ}: NAK -> {method}")
            eap_msg = eap_response(eid, TYPE_NAK, bytes([method]))
            continue
        eap_msg = handler(eid, eap[5:], result)
    result.trace.append("too many rounds")
    return result


def gtc(client: Client, identity: str, password: str) -> EapResult:
    """EAP-GTC: the password in the clear inside EAP (the server checks it by an LDAP bind)."""
    return run(client, identity, TYPE_GTC,
               lambda eid, _data, _res: eap_response(eid, TYPE_GTC, password.encode()))


def _fragments(data: bytes) -> list[bytes]:
    """EAP-TLS/TTLS payloads (flags + data) for one TLS flight."""
    chunks = [data[i:i + FRAGMENT] for i in range(0, len(data), FRAGMENT)] or [b""]
    out = []
    for i, chunk in enumerate(chunks):
        more = i < len(chunks) - 1
        if i == 0 and more:
            out.append(bytes([FLAG_L | FLAG_M]) + struct.pack("!I", len(data)) + chunk)
        else:
            out.append(bytes([FLAG_M if more else 0]) + chunk)
    return out


def _avp(code: int, value: bytes) -> bytes:
    """A Diameter AVP (RFC 5281 §10.1), M bit set, padded to 4 octets."""
    raw = struct.pack("!IB", code, 0x40) + (8 + len(value)).to_bytes(3, "big") + value
    return raw + b"\x00" * (-len(raw) % 4)


def ttls_pap_avps(user: str, password: str) -> bytes:
    pw = password.encode()
    pw += b"\x00" * (-len(pw) % 16)  # RFC 5281 §11.2.5: padded to 16 octets
    return _avp(1, user.encode()) + _avp(2, pw)


class TlsHandler:
    """The TLS side of EAP-TLS/TTLS; ``inner`` is written once the handshake is done (TTLS)."""

    def __init__(self, typ: int, ctx: ssl.SSLContext, server_name: str, inner: bytes | None) -> None:
        self.typ = typ
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=False,
                                server_hostname=server_name)
        self.inner = inner
        self.pending: list[bytes] = []
        self.inbuf = b""

    def __call__(self, eid: int, data: bytes, result: EapResult) -> bytes:
        flags, body = data[0], data[1:]
        if flags & FLAG_L:
            body = body[4:]
        if self.pending and not body and not flags & FLAG_S:
            return eap_response(eid, self.typ, self.pending.pop(0))  # fragment acknowledged
        self.inbuf += body
        if flags & FLAG_M:
            return eap_response(eid, self.typ, b"\x00")                # ack, send the rest
        if self.inbuf:
            self.incoming.write(self.inbuf)
            self.inbuf = b""
        if not result.tls_established:
            try:
                self.tls.do_handshake()
                result.tls_established = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                result.trace.append(f"TLS: {e.reason or e}")
        if result.tls_established and self.inner is not None:
            self.tls.write(self.inner)
            self.inner = None
        out = self.outgoing.read()
        if out:
            self.pending = _fragments(out)
            return eap_response(eid, self.typ, self.pending.pop(0))
        return eap_response(eid, self.typ, b"\x00")


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def eap_tls(client: Client, identity: str, cert: Path, key: Path, ca: Path, server_name: str) -> EapResult:
    return run(client, identity, TYPE_TLS,
               TlsHandler(TYPE_TLS, tls_context(ca, cert, key), server_name, None))


def eap_ttls_pap(client: Client, identity: str, password: str, ca: Path, server_name: str,
                 inner_identity: str | None = None) -> EapResult:
    avps = ttls_pap_avps(inner_identity or identity, password)
    return run(client, identity, TYPE_TTLS, TlsHandler(TYPE_TTLS, tls_context(ca), server_name, avps))


TYPE_MSCHAPV2 = 26


class MschapV2Handler:
    """EAP-MSCHAPv2 (draft-kamath-pppext-eap-mschapv2), the method native IKEv2 clients use."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.peer_challenge = os.urandom(16)
        self.expected: str | None = None

    def __call__(self, eid: int, data: bytes, result: EapResult) -> bytes:
        opcode, ms_id = data[0], data[1]
        if opcode == 1:  # Challenge
            size = data[4]
            auth_challenge = data[5:5 + size]
            nt_resp = nt_response(auth_challenge, self.peer_challenge, self.user, self.password)
            self.expected = authenticator_response(self.password, nt_resp, self.peer_challenge,
                                                   auth_challenge, self.user)
            value = self.peer_challenge + b"\x00" * 8 + nt_resp + b"\x00"
            body = bytes([49]) + value + self.user.encode()
            return eap_response(eid, TYPE_MSCHAPV2,
                                struct.pack("!BBH", 2, ms_id, 4 + len(body)) + body)
        if opcode == 3:  # Success request: check the server knows the password too
            message = data[4:].decode(errors="replace")
            if self.expected is None or not message.startswith(self.expected):
                result.trace.append(f"authenticator response did not verify: {message!r}")
                return eap_response(eid, TYPE_MSCHAPV2, bytes([4]))
            result.trace.append("authenticator response verified")
            return eap_response(eid, TYPE_MSCHAPV2, bytes([3]))
        result.trace.append(f"MSCHAPv2 failure: {data[4:].decode(errors='replace')}")
        return eap_response(eid, TYPE_MSCHAPV2, bytes([4]))


def eap_mschapv2(client: Client, identity: str, password: str) -> EapResult:
    return run(client, identity, TYPE_MSCHAPV2, MschapV2Handler(identity, password))

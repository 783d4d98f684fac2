"""RADIUS client (pyrad): one Access-Request, its verdict and its round-trip time.

Every request carries a Message-Authenticator and replies must carry a valid one, as
charon's eap-radius does (BlastRADIUS). The dictionary is the handful of attributes used
here, so nothing depends on a dictionary file being installed.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from pyrad import packet  # type: ignore[import-untyped]
from pyrad.client import Client, Timeout  # type: ignore[import-untyped]
from pyrad.dictionary import Dictionary  # type: ignore[import-untyped]

from ikemgr.errors import BackendUnavailable

DICTIONARY = """\
ATTRIBUTE	User-Name		1	string
ATTRIBUTE	User-Password		2	string	encrypt=1
ATTRIBUTE	NAS-IP-Address		4	ipaddr
ATTRIBUTE	NAS-Port		5	integer
ATTRIBUTE	Service-Type		6	integer
ATTRIBUTE	Framed-IP-Address	8	ipaddr
ATTRIBUTE	Reply-Message		18	string
ATTRIBUTE	State			24	octets
ATTRIBUTE	Class			25	octets
ATTRIBUTE	Session-Timeout		27	integer
ATTRIBUTE	NAS-Identifier		32	string
ATTRIBUTE	Acct-Status-Type	40	integer
ATTRIBUTE	Acct-Session-Id		44	string
ATTRIBUTE	EAP-Message		79	octets
ATTRIBUTE	Message-Authenticator	80	octets
VENDOR		Microsoft		311
BEGIN-VENDOR	Microsoft
ATTRIBUTE	MS-CHAP-Error		2	string
ATTRIBUTE	MS-CHAP-Challenge	11	octets
ATTRIBUTE	MS-CHAP2-Response	25	octets
ATTRIBUTE	MS-CHAP2-Success	26	octets
END-VENDOR	Microsoft
"""

CODES = {packet.AccessAccept: "accept", packet.AccessReject: "reject",
         packet.AccessChallenge: "challenge"}


def dictionary() -> Dictionary:
    return Dictionary(io.StringIO(DICTIONARY))


@dataclass(frozen=True)
class Verdict:
    """The server's answer: accept/reject/challenge, the RTT and any Reply-Message."""

    outcome: str
    rtt_ms: float
    reply_message: str | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome == "accept"


class RadiusClient:
    """Talks to one server; ``timeout`` is per try, ``retries`` the number of tries."""

    def __init__(self, address: IPv4Address | IPv6Address | str, port: int, secret: str,
                 timeout: float = 3.0, retries: int = 2, nas_identifier: str = "ikemgr") -> None:
        self.address = str(address)
        self.port = port
        self.nas_identifier = nas_identifier
        self._last_reply_success: bytes | None = None
        self._client = Client(server=self.address, authport=port, secret=secret.encode(),
                              dict=dictionary(), retries=retries, timeout=timeout, enforce_ma=True)

    def pap(self, user: str | bytes, password: str) -> Verdict:
        """Access-Request with User-Password (RFC 2865 hiding). ``user`` is sent as given."""
        pkt = self._client.CreateAuthPacket(code=packet.AccessRequest)
        if isinstance(user, bytes):
            pkt[1] = [user]  # raw bytes (e.g. with a NUL) go on the wire unchanged
        else:
            pkt["User-Name"] = user
        pkt["User-Password"] = pkt.PwCrypt(password)
        pkt["NAS-Identifier"] = self.nas_identifier
        pkt["Service-Type"] = 8  # Authenticate-Only: a probe, not a login
        return self._send(pkt)

    def mschapv2(self, user: str, password: str) -> Verdict:
        """Access-Request with MS-CHAPv2 (RFC 2548); the server's answer is verified too."""
        auth_challenge, peer_challenge = os.urandom(16), os.urandom(16)
        ident = 1
        nt_resp = nt_response(auth_challenge, peer_challenge, user, password)
        pkt = self._client.CreateAuthPacket(code=packet.AccessRequest)
        pkt["User-Name"] = user
        pkt["MS-CHAP-Challenge"] = auth_challenge
        pkt["MS-CHAP2-Response"] = bytes([ident, 0]) + peer_challenge + b"\x00" * 8 + nt_resp
        pkt["NAS-Identifier"] = self.nas_identifier
        pkt["Service-Type"] = 8
        verdict = self._send(pkt)
        if verdict.accepted:
            expected = authenticator_response(password, nt_resp, peer_challenge, auth_challenge, user)
            got = self._last_reply_success
            if got is None or got[1:].decode(errors="replace") != expected:
                # an accept the server cannot prove: it does not know the password
                return Verdict("reject", verdict.rtt_ms, "MS-CHAP2-Success missing or wrong")
        return verdict

    def _send(self, pkt: packet.Packet) -> Verdict:
        start = time.monotonic()
        try:
            reply = self._client.SendPacket(pkt)
        except Timeout:
            raise BackendUnavailable(
                "radius", f"no valid reply from {self.address}:{self.port} (timeout; wrong secret "
                "or server down)") from None
        except OSError as e:
            raise BackendUnavailable("radius", f"{self.address}:{self.port}: {e}") from None
        finally:
            self._client._CloseSocket()
        rtt = (time.monotonic() - start) * 1000.0
        self._last_reply_success = reply["MS-CHAP2-Success"][0] if "MS-CHAP2-Success" in reply else None
        message = None
        if "Reply-Message" in reply:
            message = "".join(str(m) for m in reply["Reply-Message"])
        return Verdict(CODES.get(reply.code, f"code {reply.code}"), round(rtt, 2), message)



# --------------------------------------------------------------------------- MS-CHAPv2 (RFC 2759)
# OpenSSL 3 keeps MD4 and DES in its legacy provider, which Python's hashlib does not load,
# so the two primitives MS-CHAPv2 needs are here, checked against RFC 2759 §9.2 and the
# classic DES vector in tests/unit/test_radius_mschapv2.py. Only a probe uses them.

_M32 = 0xFFFFFFFF


def _rol(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _M32


def md4(data: bytes) -> bytes:
    """RFC 1320."""
    msg = bytearray(data) + b"\x80"
    msg += b"\x00" * ((56 - len(msg)) % 64) + struct.pack("<Q", (8 * len(data)) & (2**64 - 1))
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    rounds = (
        (lambda x, y, z: (x & y) | (~x & z), 0, tuple(range(16)), (3, 7, 11, 19)),
        (lambda x, y, z: (x & y) | (x & z) | (y & z), 0x5A827999,
         (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), (3, 5, 9, 13)),
        (lambda x, y, z: x ^ y ^ z, 0x6ED9EBA1,
         (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15), (3, 9, 11, 15)),
    )
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off:off + 64])
        r = list(h)
        for f, k, order, shifts in rounds:
            for i, idx in enumerate(order):
                new = _rol((r[0] + f(r[1], r[2], r[3]) + x[idx] + k) & _M32, shifts[i % 4])
                r = [r[3], new, r[1], r[2]]
        h = [(a + b) & _M32 for a, b in zip(h, r, strict=True)]
    return struct.pack("<4I", *h)


_PC1 = (57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, 19, 11, 3,
        60, 52, 44, 36, 63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, 14, 6, 61, 53, 45, 37,
        29, 21, 13, 5, 28, 20, 12, 4)
_PC2 = (14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
        41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32)
_SHIFTS = (1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1)
_IP = (58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, 62, 54, 46, 38, 30, 22, 14, 6,
       64, 56, 48, 40, 32, 24, 16, 8, 57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
       61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7)
_FP = (40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31, 38, 6, 46, 14, 54, 22, 62, 30,
       37, 5, 45, 13, 53, 21, 61, 29, 36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27,
       34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25)
_E = (32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17,
      16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1)
_P = (16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
      2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25)
#: the eight S-boxes, 64 entries each, one hex digit per entry (row-major)
_S = tuple(tuple(int(c, 16) for c in box) for box in (
    "e4d12fb83a6c59070f74e2d1a6cb953841e8d62bfc973a50fc8249175b3ea06d",
    "f18e6b34972dc05a3d47f28ec01a69b50e7ba4d158c6932fd8a13f42b67c05e9",
    "a09e63f51dc7b428d709346a285ecbf1d6498f30b12c5ae71ad069874fe3b52c",
    "7de3069a1285bc4fd8b56f03472c1ae9a690cb7df13e52843f06a1d8945bc72e",
    "2c417ab6853fd0e9eb2c47d150fa3986421bad78f9c5630eb8c71e2d6f09a453",
    "c1af92680d34e75baf427c9561de0b389ef528c3704a1db6432c95fabe17608d",
    "4b2ef08d3c975a61d0b7491ae35c2f8614bdc37eaf6805926bd814a7950fe23c",
    "d2846fb1a93e50c71fd8a374c56b0e927b419ce206adf35821e74a8dfc90356b",
))


def _permute(value: int, table: tuple[int, ...], width: int) -> int:
    out = 0
    for pos in table:
        out = (out << 1) | ((value >> (width - pos)) & 1)
    return out


def des_encrypt_block(key: bytes, block: bytes) -> bytes:
    """Single DES, ECB, one 8-byte block (FIPS 46-3)."""
    k = _permute(int.from_bytes(key, "big"), _PC1, 64)
    c, d = k >> 28, k & 0xFFFFFFF
    subkeys = []
    for s in _SHIFTS:
        c = ((c << s) | (c >> (28 - s))) & 0xFFFFFFF
        d = ((d << s) | (d >> (28 - s))) & 0xFFFFFFF
        subkeys.append(_permute((c << 28) | d, _PC2, 56))
    v = _permute(int.from_bytes(block, "big"), _IP, 64)
    left, right = v >> 32, v & _M32
    for sk in subkeys:
        x = _permute(right, _E, 32) ^ sk
        out = 0
        for i in range(8):
            six = (x >> (42 - 6 * i)) & 0x3F
            row = ((six & 0x20) >> 4) | (six & 1)
            out = (out << 4) | _S[i][row * 16 + ((six >> 1) & 0xF)]
        left, right = right, left ^ _permute(out, _P, 32)
    return _permute((right << 32) | left, _FP, 64).to_bytes(8, "big")


def _des_key(seven: bytes) -> bytes:
    """7 key bytes → 8 DES key bytes (parity bits ignored by DES)."""
    n = int.from_bytes(seven, "big")
    return bytes(((n >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def nt_password_hash(password: str) -> bytes:
    return md4(password.encode("utf-16-le"))


def challenge_hash(peer_challenge: bytes, auth_challenge: bytes, user: str) -> bytes:
    return hashlib.sha1(peer_challenge + auth_challenge + user.encode()).digest()[:8]


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    z = password_hash + b"\x00" * 5
    return b"".join(des_encrypt_block(_des_key(z[i:i + 7]), challenge) for i in (0, 7, 14))


def nt_response(auth_challenge: bytes, peer_challenge: bytes, user: str, password: str) -> bytes:
    return challenge_response(challenge_hash(peer_challenge, auth_challenge, user),
                              nt_password_hash(password))


_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"


def authenticator_response(password: str, nt_resp: bytes, peer_challenge: bytes,
                           auth_challenge: bytes, user: str) -> str:
    """The "S=…" string the server must return (mutual authentication)."""
    hash_hash = md4(nt_password_hash(password))
    digest = hashlib.sha1(hash_hash + nt_resp + _MAGIC1).digest()
    digest = hashlib.sha1(digest + challenge_hash(peer_challenge, auth_challenge, user) + _MAGIC2).digest()
    return "S=" + digest.hex().upper()

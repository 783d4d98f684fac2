"""RADIUS client (pyrad): one Access-Request, its verdict and its round-trip time.

Every request carries a Message-Authenticator and replies must carry a valid one, as
charon's eap-radius does (BlastRADIUS). The dictionary is the handful of attributes used
here, so nothing depends on a dictionary file being installed.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from Crypto.Cipher import DES
from Crypto.Hash import MD4
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
# OpenSSL 3 keeps MD4 and DES in its legacy provider, which Python's hashlib does not load;
# pycryptodome has both. The vectors of RFC 2759 §9.2 are in tests/unit/test_radius_mschapv2.py.


def md4(data: bytes) -> bytes:
    """RFC 1320 (the NT password hash is MD4 of the UTF-16LE password)."""
    return MD4.new(data).digest()


def _des_key(seven: bytes) -> bytes:
    """7 key bytes → 8 DES key bytes (RFC 2759 §8.6; the parity bits are ignored by DES)."""
    n = int.from_bytes(seven, "big")
    return bytes(((n >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def des_encrypt_block(key: bytes, block: bytes) -> bytes:
    """Single DES, ECB, one 8-byte block: what MS-CHAPv2's ChallengeResponse needs."""
    return DES.new(key, DES.MODE_ECB).encrypt(block)


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

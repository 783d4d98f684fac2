"""The MS-CHAPv2 code (on pycryptodome's MD4 and DES) behind `ikemgr radius check --method mschapv2`, on published vectors."""

from __future__ import annotations

import pytest

from ikemgr.adapters.radius import (
    authenticator_response,
    challenge_hash,
    des_encrypt_block,
    md4,
    nt_password_hash,
    nt_response,
)
from ikemgr_lab.slapd import nt_hash


@pytest.mark.parametrize("data,digest", [  # RFC 1320 appendix A.5
    (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
    (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
    (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
    (b"message digest", "d9130a8164549fe818874806e1c7014b"),
    (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
    (b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
     "e33b4ddc9c38f2199c3e7b164fcc0536"),
])
def test_md4_rfc1320(data: bytes, digest: str) -> None:
    assert md4(data).hex() == digest


def test_des_known_answer() -> None:
    assert des_encrypt_block(bytes.fromhex("133457799BBCDFF1"),
                             bytes.fromhex("0123456789ABCDEF")).hex() == "85e813540f0ab405"


def test_mschapv2_rfc2759_vectors() -> None:
    auth = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
    peer = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
    assert nt_password_hash("clientPass").hex().upper() == "44EBBA8D5312B8D611474411F56989AE"
    assert challenge_hash(peer, auth, "User").hex().upper() == "D02E4386BCE91226"
    resp = nt_response(auth, peer, "User", "clientPass")
    assert resp.hex().upper() == "82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF"
    assert authenticator_response("clientPass", resp, peer, auth, "User") == \
        "S=407A5589115FD0D6209F510FE9C04566932CDA56"


def test_nt_hash_as_samba_stores_it() -> None:
    assert nt_hash("clientPass") == "44EBBA8D5312B8D611474411F56989AE"

"""PKCS#12 bundles (client key + certificate + CA) in the two encodings clients import.

- ``legacy``: PBES1 pbeWithSHAAnd3-KeyTripleDES-CBC for key and certificates, SHA-1 MAC.
  What macOS and iOS import (their importer does not read PBES2/AES bundles; OpenSSL 3's
  default output fails there with a wrong-password message).
- ``modern``: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), SHA-256 MAC: Windows 10+,
  Android 12+, OpenSSL 3, NetworkManager.
"""

from __future__ import annotations

from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

from ikemgr.pki.certs import PrivateKey

Encoding = Literal["legacy", "modern"]
ENCODINGS: tuple[Encoding, ...] = ("legacy", "modern")
#: PBKDF2/PKCS#12-KDF rounds; 2048 is what macOS's own exporter writes
LEGACY_ROUNDS = 2048
MODERN_ROUNDS = 100_000


def export(key: PrivateKey, cert: x509.Certificate, ca: x509.Certificate, friendly_name: str,
           password: bytes, encoding: Encoding) -> bytes:
    if not password:
        raise ValueError("a PKCS#12 bundle needs a password")
    builder = PrivateFormat.PKCS12.encryption_builder()
    if encoding == "legacy":
        builder = (builder.kdf_rounds(LEGACY_ROUNDS)
                   .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                   .hmac_hash(hashes.SHA1()))
    else:
        builder = (builder.kdf_rounds(MODERN_ROUNDS)
                   .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                   .hmac_hash(hashes.SHA256()))
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode(), key, cert, [ca], builder.build(password))


def load(data: bytes, password: bytes) -> tuple[PrivateKey, x509.Certificate]:
    """Key and certificate of a bundle; ValueError when the password or the data is wrong."""
    key, cert, _ = pkcs12.load_key_and_certificates(data, password)
    if key is None or cert is None or not isinstance(key, PrivateKey):
        raise ValueError("the PKCS#12 bundle holds no ECDSA/RSA key with its certificate")
    return key, cert

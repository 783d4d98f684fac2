"""Certificate builders: the fields Apple, Windows, strongSwan and FreeRADIUS look at.

Pure: keys and values in, ``x509.Certificate`` out; no files, no clock except the
``now`` passed in.

- The gateway certificate carries the FQDN as DNS SAN (Apple and Windows match the
  server identity against the SAN, not the CN), optional IP SANs, and the EKUs
  serverAuth + ikeIntermediate (1.3.6.1.5.5.8.2.2): macOS/iOS refuse an IKEv2 server
  certificate without serverAuth, older Windows look for ikeIntermediate.
- A client certificate's Subject is the configured RDNs (what the FreeRADIUS subject rule
  checks) plus ``CN=<account>`` (FreeRADIUS ``check_cert_cn`` compares it with the account
  part of the EAP identity). The full identity is a SAN: rfc822Name for
  ``account@NNNNNN`` (charon finds the certificate for ``eap_id``/``id`` by SAN, as the lab
  does with ``pki --san``), dNSName for a bare ``account`` (how charon types an identity
  without ``@``), and a Microsoft UPN otherName (Windows EAP-TLS shows and sends the UPN).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

IKE_INTERMEDIATE = ObjectIdentifier("1.3.6.1.5.5.8.2.2")
MS_UPN = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa-3072")

_RDN_OIDS = {"C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME,
             "L": NameOID.LOCALITY_NAME, "O": NameOID.ORGANIZATION_NAME,
             "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "DC": NameOID.DOMAIN_COMPONENT,
             "CN": NameOID.COMMON_NAME}
#: a backdate so a client whose clock is a little behind still accepts a fresh certificate
BACKDATE = dt.timedelta(minutes=5)


def new_key(key_type: str) -> PrivateKey:
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"unknown key type {key_type!r}")


def name(rdns: Sequence[tuple[str, str]]) -> x509.Name:
    """An X.509 Name from (type, value) pairs in order (C, O, … , CN last)."""
    return x509.Name([x509.NameAttribute(_RDN_OIDS[t], v) for t, v in rdns])


def _hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _key_usage(*, signature: bool, encipher: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=signature, content_commitment=False,
                         key_encipherment=encipher, data_encipherment=False, key_agreement=False,
                         key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False,
                         decipher_only=False)


@dataclass(frozen=True)
class Issuer:
    """The signing side: the CA certificate and its key."""

    cert: x509.Certificate
    key: PrivateKey


def _base(subject: x509.Name, public: object, issuer_name: x509.Name, now: dt.datetime,
          days: int, serial: int) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer_name)
            .public_key(public)  # type: ignore[arg-type]
            .serial_number(serial)
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days)))


def build_ca(key: PrivateKey, rdns: Sequence[tuple[str, str]], now: dt.datetime, days: int,
             serial: int) -> x509.Certificate:
    subject = name(rdns)
    b = (_base(subject, key.public_key(), subject, now, days, serial)
         .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
         .add_extension(_key_usage(signature=True, encipher=False, cert_sign=True), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    return b.sign(key, _hash(key))


def _leaf(issuer: Issuer, key_public: object, subject: x509.Name, sans: list[x509.GeneralName],
          ekus: list[ObjectIdentifier], now: dt.datetime, days: int, serial: int,
          rsa_key: bool) -> x509.Certificate:
    b = (_base(subject, key_public, issuer.cert.subject, now, days, serial)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(_key_usage(signature=True, encipher=rsa_key, cert_sign=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
         .add_extension(x509.SubjectAlternativeName(sans), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key_public),  # type: ignore[arg-type]
                        critical=False)
         .add_extension(authority_key_id(issuer.cert), critical=False))
    return b.sign(issuer.key, _hash(issuer.key))


def authority_key_id(ca: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """From the CA's SKI when it has one (an operator's CA may not), else from its key."""
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def build_server(issuer: Issuer, key: PrivateKey, rdns: Sequence[tuple[str, str]], fqdn: str,
                 ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address], now: dt.datetime,
                 days: int, serial: int) -> x509.Certificate:
    sans: list[x509.GeneralName] = [x509.DNSName(fqdn)]
    sans += [x509.IPAddress(ip) for ip in ips]
    return _leaf(issuer, key.public_key(), name([*rdns, ("CN", fqdn)]), sans,
                 [ExtendedKeyUsageOID.SERVER_AUTH, IKE_INTERMEDIATE], now, days, serial,
                 isinstance(key, rsa.RSAPrivateKey))


def _utf8_der(text: str) -> bytes:
    """DER of a UTF8String (the UPN otherName value); identities are < 128 bytes."""
    data = text.encode()
    if len(data) > 127:
        raise ValueError("identity too long for a UPN")
    return bytes([0x0C, len(data)]) + data


def client_sans(identity: str) -> list[x509.GeneralName]:
    first: x509.GeneralName = x509.RFC822Name(identity) if "@" in identity else x509.DNSName(identity)
    return [first, x509.OtherName(MS_UPN, _utf8_der(identity))]


def build_client(issuer: Issuer, key: PrivateKey, rdns: Sequence[tuple[str, str]], cn: str,
                 identity: str, now: dt.datetime, days: int, serial: int) -> x509.Certificate:
    return _leaf(issuer, key.public_key(), name([*rdns, ("CN", cn)]), client_sans(identity),
                 [ExtendedKeyUsageOID.CLIENT_AUTH], now, days, serial,
                 isinstance(key, rsa.RSAPrivateKey))


def is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bool(bc.ca)


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    from cryptography.hazmat.primitives import serialization as s

    fmt = (s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)

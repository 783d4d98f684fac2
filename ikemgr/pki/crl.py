"""The CRL: what charon (x509crl/, revocation plugin) and FreeRADIUS (check_crl) load.

Both verify its signature against the CA and refuse it after ``nextUpdate``, so the CRL
carries the CA's AuthorityKeyIdentifier, a CRLNumber that only grows, and a nextUpdate
the operator chooses (``pki.crl_days``); ``ikemgr pki crl`` must run again before then.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type

from ikemgr.pki.certs import Issuer, authority_key_id

REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
}


@dataclass(frozen=True)
class Revoked:
    serial: int
    at: dt.datetime
    reason: str


def build_crl(issuer: Issuer, revoked: Iterable[Revoked], number: int, now: dt.datetime,
              days: int) -> x509.CertificateRevocationList:
    b = (x509.CertificateRevocationListBuilder()
         .issuer_name(issuer.cert.subject)
         .last_update(now)
         .next_update(now + dt.timedelta(days=days))
         .add_extension(x509.CRLNumber(number), critical=False)
         .add_extension(authority_key_id(issuer.cert), critical=False))
    for r in sorted(revoked, key=lambda r: r.serial):
        entry = x509.RevokedCertificateBuilder().serial_number(r.serial).revocation_date(r.at)
        if r.reason != "unspecified":
            entry = entry.add_extension(x509.CRLReason(REASONS[r.reason]), critical=False)
        b = b.add_revoked_certificate(entry.build())
    algo = hashes.SHA384() if (isinstance(issuer.key, ec.EllipticCurvePrivateKey)
                               and issuer.key.curve.key_size > 256) else hashes.SHA256()
    return b.sign(issuer.key, algo)


# ------------------------------------------------------------------ OpenSSL's name hash
# FreeRADIUS (OpenSSL's hashed-directory lookup, ``ca_path``) finds the CRL of an issuer
# under ``<hash>.r0``, where hash is OpenSSL's X509_NAME_hash of the issuer name:
# SHA-1 over the name's canonical encoding, the first four bytes little-endian. The
# canonical encoding (x509_name_canon): every string value as UTF8String, ASCII-lowercased,
# leading and trailing whitespace removed and inner runs of whitespace collapsed to one
# space; each RDN as a DER SET, the RDNs concatenated without the outer SEQUENCE.
_CANON_TYPES = {_ASN1Type.UTF8String, _ASN1Type.BMPString, _ASN1Type.UniversalString,
                _ASN1Type.PrintableString, _ASN1Type.T61String, _ASN1Type.IA5String,
                _ASN1Type.VisibleString}
_SPACE = b" \t\n\v\f\r"


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for a in arcs[2:]:
        chunk = [a & 0x7F]
        a >>= 7
        while a:
            chunk.append(0x80 | (a & 0x7F))
            a >>= 7
        out += bytes(reversed(chunk))
    return _der(0x06, bytes(out))


def _canon_value(attr: x509.NameAttribute[str | bytes]) -> bytes:
    value = attr.value
    if attr._type not in _CANON_TYPES or not isinstance(value, str):
        raise ValueError(f"{attr.oid.dotted_string}: a value type OpenSSL does not canonicalise")
    raw = value.encode("utf-8").strip(_SPACE)
    out = bytearray()
    for b in raw:
        if b in _SPACE:
            if out[-1:] != b" ":
                out.append(0x20)
            continue
        out.append(b + 32 if 0x41 <= b <= 0x5A else b)
    return _der(0x0C, bytes(out))


def name_hash(name: x509.Name) -> str:
    """OpenSSL's ``X509_NAME_hash`` (``openssl x509 -subject_hash``) as 8 hex digits."""
    canon = b""
    for rdn in name.rdns:
        entries = sorted(_der(0x30, _oid(a.oid.dotted_string) + _canon_value(a)) for a in rdn)
        canon += _der(0x31, b"".join(entries))
    md = hashlib.sha1(canon).digest()  # noqa: S324 - OpenSSL's file naming, not a security use
    return f"{int.from_bytes(md[:4], 'little'):08x}"


def crl_issuer_hash(data: bytes) -> str:
    """The hash-directory name stem of a CRL (PEM or DER) file's issuer."""
    crl = (x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----")
           else x509.load_der_x509_crl(data))
    return name_hash(crl.issuer)

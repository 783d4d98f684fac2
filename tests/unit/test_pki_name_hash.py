"""OpenSSL's subject-name hash (the file name FreeRADIUS's ca_path lookup wants), checked
against ``openssl x509 -subject_hash`` on names that exercise the canonical form."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from ikemgr.pki.crl import crl_issuer_hash, name_hash

KEY = ec.generate_private_key(ec.SECP256R1())
NOW = dt.datetime.now(dt.UTC)
OIDS = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "CN": NameOID.COMMON_NAME}
NAMES = [
    x509.Name([x509.NameAttribute(OIDS["C"], "JP"), x509.NameAttribute(OIDS["O"], "Example University"),
               x509.NameAttribute(OIDS["CN"], "Example University Client CA")]),
    # upper case, runs of whitespace, leading and trailing blanks, a tab: all canonicalised
    x509.Name([x509.NameAttribute(OIDS["O"], "  Kyoto   UNIVERSITY \t"),
               x509.NameAttribute(OIDS["CN"], "CA\tTwo")]),
    # non-ASCII: only ASCII is lowercased
    x509.Name([x509.NameAttribute(OIDS["CN"], "Ärzte CA ÇA")]),
    # a PrintableString and an IA5String value become UTF8String in the canonical form
    x509.Name([x509.NameAttribute(OIDS["OU"], "Lab A", _type=_ASN1Type.PrintableString),
               x509.NameAttribute(OIDS["CN"], "Ca", _type=_ASN1Type.IA5String)]),
    # a multi-valued RDN: a DER SET, its members sorted
    x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(OIDS["O"], "Zeta"),
                                               x509.NameAttribute(OIDS["CN"], "alpha")])]),
]


def _cert(name: x509.Name) -> bytes:
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(KEY.public_key())
         .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
         .sign(KEY, hashes.SHA256()))
    return c.public_bytes(serialization.Encoding.PEM)


def _openssl(*args: str, data: bytes) -> str:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed (scripts/setup.sh)")
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout.decode().strip()


@pytest.mark.parametrize("name", NAMES, ids=lambda n: n.rfc4514_string())
def test_name_hash_is_openssls_subject_hash(name: x509.Name) -> None:
    assert name_hash(name) == _openssl("x509", "-noout", "-subject_hash", data=_cert(name))


@pytest.mark.parametrize("form", [serialization.Encoding.PEM, serialization.Encoding.DER])
def test_crl_issuer_hash_reads_pem_and_der(form: serialization.Encoding) -> None:
    crl = (x509.CertificateRevocationListBuilder().issuer_name(NAMES[0]).last_update(NOW)
           .next_update(NOW + dt.timedelta(days=1)).sign(KEY, hashes.SHA256()))
    pem = crl.public_bytes(serialization.Encoding.PEM)
    assert crl_issuer_hash(crl.public_bytes(form)) == _openssl("crl", "-noout", "-hash", data=pem)

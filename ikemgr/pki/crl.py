"""The CRL: what charon (x509crl/, revocation plugin) and FreeRADIUS (check_crl) load.

Both verify its signature against the CA and refuse it after ``nextUpdate``, so the CRL
carries the CA's AuthorityKeyIdentifier, a CRLNumber that only grows, and a nextUpdate
the operator chooses (``pki.crl_days``); ``ikemgr pki crl`` must run again before then.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

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

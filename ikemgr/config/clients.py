"""Client-facing options of the gateway: the optional certificate-only connection.

Kept apart from ``schema.py`` so the models of the client side (this connection today,
client profiles later) grow in one file. The scalar types are the config's own
(``types``; the subject rule is the one EAP-TLS uses, ``services.SubjectRule``).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ikemgr.config.services import SubjectRule
from ikemgr.config.types import AbsPath, Strict, Token


class CertAuth(Strict):
    """IKEv2 public-key authentication of clients beside the EAP connection.

    For managed devices and for IKEv2 implementations that cannot be EAP clients (libreswan,
    openiked). Same pool, same updown/hook line and the same per-user policy: the identity
    is the certificate's CN (``account@NNNNNN`` where the certificate carries a VLAN).
    charon matches the client's certificate subject against ``<subject>, CN=*``, so a
    certificate of the right CA but of another organisation (or with extra RDNs) is refused.
    """

    enabled: bool = False
    connection: Token = Field(
        "ikemgr-cert", description="swanctl connection (and child) name of the certificate connection")
    subject: SubjectRule | None = Field(
        None, description="RDNs every client certificate subject carries before its CN, in "
        "certificate order, e.g. 'C=JP, O=Example University'")
    cacert: AbsPath | None = Field(
        None, description="CA that issues the client certificates; default: gateway.ca")

    @model_validator(mode="after")
    def _subject_required(self) -> CertAuth:
        if self.enabled and self.subject is None:
            raise ValueError("subject: required when enabled (otherwise every certificate of the "
                             "CA, of any organisation, would be accepted)")
        return self

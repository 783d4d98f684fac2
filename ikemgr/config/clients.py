"""Client-facing options of the gateway: the optional certificate-only connection.

Kept apart from ``schema.py`` so the models of the client side (this connection today,
client profiles later) grow in one file. Imports only pydantic and the standard library.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

#: RDN types a subject rule may name. CN is never part of the rule: it is the holder's
#: account and becomes the ``*`` of the remote identity pattern.
RULE_RDN_TYPES = ("C", "ST", "L", "O", "OU", "DC")
# no ',', '=', '*', quotes or backslashes: the value is placed inside a quoted swanctl id
_RDN_VALUE_RE = re.compile(r"^[A-Za-z0-9 .'&()_-]{1,64}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _subject_rule(v: str) -> str:
    """``C=JP, O=Example University``: typed RDNs in certificate order, never a regex."""
    out = []
    for part in (p.strip() for p in v.split(",")):
        typ, eq, value = part.partition("=")
        typ, value = typ.strip(), value.strip()
        if not eq or typ not in RULE_RDN_TYPES:
            raise ValueError(f"{part!r}: each part must be TYPE=value with TYPE one of "
                             f"{', '.join(RULE_RDN_TYPES)}")
        if not _RDN_VALUE_RE.fullmatch(value):
            raise ValueError(f"{value!r}: RDN values may use letters, digits, space and . ' & ( ) _ -")
        out.append(f"{typ}={value}")
    return ", ".join(out)


def _token(v: str) -> str:
    if not _TOKEN_RE.fullmatch(v):
        raise ValueError(f"{v!r} must be 1-64 of letters, digits, '_', '.', '-'")
    return v


def _abs_path(v: Path) -> Path:
    if not v.is_absolute():
        raise ValueError(f"{v} must be an absolute path")
    if any(c in str(v) for c in "\n\"'{}"):
        raise ValueError(f"{v!s} contains characters not allowed in a path here")
    return v


SubjectRule = Annotated[str, AfterValidator(_subject_rule)]


class CertAuth(BaseModel):
    """IKEv2 public-key authentication of clients beside the EAP connection.

    For managed devices and for IKEv2 implementations that cannot be EAP clients (libreswan,
    openiked). Same pool, same updown/hook line and the same per-user policy: the identity
    is the certificate's CN (``account@NNNNNN`` where the certificate carries a VLAN).
    charon matches the client's certificate subject against ``<subject>, CN=*``, so a
    certificate of the right CA but of another organisation (or with extra RDNs) is refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    connection: Annotated[str, AfterValidator(_token)] = Field(
        "ikemgr-cert", description="swanctl connection (and child) name of the certificate connection")
    subject: SubjectRule | None = Field(
        None, description="RDNs every client certificate subject carries before its CN, in "
        "certificate order, e.g. 'C=JP, O=Example University'")
    cacert: Annotated[Path, AfterValidator(_abs_path)] | None = Field(
        None, description="CA that issues the client certificates; default: gateway.ca")

    @model_validator(mode="after")
    def _subject_required(self) -> CertAuth:
        if self.enabled and self.subject is None:
            raise ValueError("subject: required when enabled (otherwise every certificate of the "
                             "CA, of any organisation, would be accepted)")
        return self

"""The ``pki:`` section: where ikemgr's own CA lives and what its certificates say.

Only pydantic and the standard library here (config imports nothing of ikemgr but errors).
The organisation and country end up in every certificate Subject; FreeRADIUS checks
EAP-TLS clients against ``eap.tls_allowed_subject``, so they must use the same RDN value
grammar as that rule (letters, digits, space and ``. ' & ( ) _ -``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_RDN_VALUE_RE = re.compile(r"^[A-Za-z0-9 .'&()_-]{1,64}$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")


def _rdn_value(v: str) -> str:
    if not _RDN_VALUE_RE.fullmatch(v) or v != v.strip():
        raise ValueError(f"{v!r}: RDN values may use letters, digits, space and . ' & ( ) _ - (1-64)")
    return v


def _country(v: str) -> str:
    if not _COUNTRY_RE.fullmatch(v):
        raise ValueError(f"{v!r} is not a two-letter ISO 3166 country code (e.g. JP)")
    return v


def _abs_dir(v: Path) -> Path:
    if not v.is_absolute():
        raise ValueError(f"{v} must be an absolute path")
    if any(c in str(v) for c in "\n\"'{}"):
        raise ValueError(f"{v!s} contains characters not allowed in a path here")
    return v


RdnValue = Annotated[str, AfterValidator(_rdn_value)]
Country = Annotated[str, AfterValidator(_country)]
PkiDir = Annotated[Path, AfterValidator(_abs_dir)]


class Pki(BaseModel):
    """ikemgr's CA: ``ikemgr pki init`` creates it in ``dir``; ``issue-*`` sign with it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: PkiDir = Field(Path("/etc/ikemgr/pki"), description="CA key, certificates, index, CRL")
    organisation: RdnValue = Field(
        "Example University", description="O= of the CA and of every issued certificate")
    country: Country = Field("JP", description="C= of the CA and of every issued certificate")
    key_type: Literal["ecdsa-p256", "ecdsa-p384", "rsa-3072"] = Field(
        "ecdsa-p256", description="key type of the CA and of issued certificates")
    ca_days: Annotated[int, Field(ge=30, le=10950)] = 3650
    server_days: Annotated[int, Field(ge=1, le=825)] = Field(
        397, description="Apple refuses TLS server certificates valid longer than 825 days")
    client_days: Annotated[int, Field(ge=1, le=3650)] = 365
    crl_days: Annotated[int, Field(ge=1, le=365)] = Field(
        30, description="nextUpdate of the CRL: charon and FreeRADIUS refuse an expired CRL")

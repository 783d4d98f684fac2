"""The proposal model against charon's behaviour, and the certificate probe on real files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError

from ikemgr.checks import host, interop
from ikemgr.checks import proposals as pr
from ikemgr.config.clients import CertAuth
from ikemgr.core.identity import account_from_dn
from ikemgr.render.cert_auth import remote_id_pattern


def test_parse_and_prf_from_integrity() -> None:
    p = pr.parse_one("aes256-sha256-modp2048", ike=True)
    assert (p.encr, p.integ, p.prf, p.dh) == (("aes256",), ("sha256",), ("prfsha256",), ("modp2048",))
    g = pr.parse_one("aes256gcm16-prfsha384-curve25519", ike=True)
    assert g.aead and g.dh == ("x25519",) and g.integ == ()


@pytest.mark.parametrize("text", ["aes256gcm16-sha256-modp2048-aes128", "sha256", "aes256-frob"])
def test_parse_errors(text: str) -> None:
    with pytest.raises(pr.ProposalError):
        pr.parse_one(text, ike=True)


def test_esp_rekey_needs_common_group_or_none() -> None:
    pfs = pr.parse_one("aes256-sha256-modp2048", ike=False)
    opt = pr.parse_one("aes256-sha256-modp2048-modpnone", ike=False)
    plain = pr.parse_one("aes256-sha256", ike=False)
    assert pr.match(pfs, plain, kind="esp-rekey") is None
    assert pr.match(opt, plain, kind="esp-rekey") is not None
    assert pr.match(pfs, plain, kind="esp-auth") is not None  # IKE_AUTH child: no KE at all
    assert not pfs.pfs_optional and opt.pfs_optional and plain.pfs_optional


def test_responder_order_wins() -> None:
    ours = pr.parse_list(["aes256-sha256-ecp256", "aes256-sha256-modp2048"], ike=True)
    theirs = pr.parse_list(["aes256-sha256-modp2048", "aes256-sha256-ecp256"], ike=True)
    s = pr.select(ours, theirs, kind="ike")
    assert s is not None and s.dh == "ecp256"  # charon 5.9.8 picks by its own order


def test_default_keyword_expands() -> None:
    d = pr.parse_list(["default"], ike=True)
    assert len(d) == 2 and "modp2048" in d[0].dh and "modp1024" not in d[0].dh


# ------------------------------------------------------------------ certificate probe


def _ca(tmp: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t CA")])
    now = datetime.now(UTC)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=9))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    path = tmp / "ca.crt"
    path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return key, ca, path


def _leaf(tmp: Path, signer: ec.EllipticCurvePrivateKey, issuer: x509.Certificate, der: bool = False) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw")]))
            .issuer_name(issuer.subject).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=5))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("vpn.example.test")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(signer, hashes.SHA256()))
    path = tmp / ("gw.der" if der else "gw.crt")
    path.write_bytes(cert.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM))
    return path


def test_cert_facts_from_real_files(tmp_path: Path) -> None:
    key, ca, ca_path = _ca(tmp_path)
    f = host.cert_facts(_leaf(tmp_path, key, ca, der=True), ca_path)
    assert f.error is None and f.chain_error is None
    assert f.dns_sans == ("vpn.example.test",)
    assert f.ekus == {interop.OID_SERVER_AUTH}
    # signed by another key under the same issuer name: the chain check fails
    other = ec.generate_private_key(ec.SECP256R1())
    bad = host.cert_facts(_leaf(tmp_path, other, ca), ca_path)
    assert bad.chain_error is not None
    assert host.cert_facts(tmp_path / "missing.crt", ca_path).error is not None
    (tmp_path / "junk.crt").write_text("hello")
    assert "not an X.509" in (host.cert_facts(tmp_path / "junk.crt", ca_path).error or "")


# ------------------------------------------------------------------ certificate connection model


def test_cert_auth_model_and_identity() -> None:
    c = CertAuth(enabled=True, subject="C=JP,O=Example University")
    assert c.subject == "C=JP, O=Example University"
    assert remote_id_pattern(c.subject) == "C=JP, O=Example University, CN=*"
    assert account_from_dn("C=JP, O=Example University, CN=alice@123456") == "alice@123456"
    assert account_from_dn("C=JP, O=X, CN=a, CN=b") is None
    assert account_from_dn("CN=a, O=X") is None


@pytest.mark.parametrize("subject", ['O=a"b', "O=x, CN=y", "O=*", "O=a\nb", "O=a}b", "XX=1"])
def test_cert_auth_refuses_hostile_subjects(subject: str) -> None:
    with pytest.raises(ValidationError):
        CertAuth(enabled=True, subject=subject)


def test_cert_auth_needs_a_subject_when_enabled() -> None:
    with pytest.raises(ValidationError):
        CertAuth(enabled=True)
    assert CertAuth().enabled is False

"""The PKI's certificates, CRL and PKCS#12 bundles, parsed back field by field."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from clients_support import PASSWORD, issue_client, make_config
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from typer.testing import CliRunner

from ikemgr.cli import app
from ikemgr.config.schema import Config
from ikemgr.errors import IdentityRejected, Refused, UsageError
from ikemgr.pki import certs, pkcs12
from ikemgr.pki.store import PkiStore
from ikemgr.render.freeradius import subject_regex

IKE_INTERMEDIATE = ObjectIdentifier("1.3.6.1.5.5.8.2.2")
HOSTILE = ["a'b", 'a"b', "a<b>&", "$(x)", "a;b", "a\nb", "ä@123456", "x" * 10_000,
           "../etc@1", "a/b", "alice@0123"]


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ext(cert: x509.Certificate, cls: type) -> object:
    return cert.extensions.get_extension_for_class(cls)


def test_ca_fields(store: PkiStore, cfg: Config) -> None:
    ca = load(store.ca_cert_path)
    bc = ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0  # type: ignore[attr-defined]
    ku = ext(ca, x509.KeyUsage).value  # type: ignore[attr-defined]
    assert ku.key_cert_sign and ku.crl_sign and ku.digital_signature and not ku.key_encipherment
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example University"
    assert ca.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "JP"
    assert ca.subject == ca.issuer
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days == cfg.pki.ca_days
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert mode(store.ca_key_path) == 0o600 and mode(store.ca_cert_path) == 0o644


def test_init_never_replaces_a_ca(store: PkiStore) -> None:
    before = store.ca_key_path.read_bytes()
    with pytest.raises(Refused):
        store.init()
    assert store.ca_key_path.read_bytes() == before


def test_server_certificate_apple_and_windows_accept(store: PkiStore, cfg: Config) -> None:
    ip = cfg.gateway.outside.address.ip
    issued = store.issue_server(cfg.gateway.fqdn, [ip])
    cert, ca = load(issued.cert), load(store.ca_cert_path)
    cert.verify_directly_issued_by(ca)
    eku = ext(cert, x509.ExtendedKeyUsage).value  # type: ignore[attr-defined]
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, IKE_INTERMEDIATE]
    san = ext(cert, x509.SubjectAlternativeName).value  # type: ignore[attr-defined]
    assert san.get_values_for_type(x509.DNSName) == ["vpn.example.ac.jp"]
    assert san.get_values_for_type(x509.IPAddress) == [ip]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "vpn.example.ac.jp"
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca  # type: ignore[attr-defined]
    ku = ext(cert, x509.KeyUsage).value  # type: ignore[attr-defined]
    assert ku.digital_signature and not ku.key_cert_sign
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc)
    assert days <= dt.timedelta(days=825) and days.days == cfg.pki.server_days
    aki = ext(cert, x509.AuthorityKeyIdentifier).value  # type: ignore[attr-defined]
    assert aki.key_identifier == ext(ca, x509.SubjectKeyIdentifier).value.digest  # type: ignore[attr-defined]
    assert mode(issued.key) == 0o600


def test_server_certificate_without_ip_san(store: PkiStore, cfg: Config) -> None:
    cert = load(store.issue_server(cfg.gateway.fqdn, []).cert)
    san = ext(cert, x509.SubjectAlternativeName).value  # type: ignore[attr-defined]
    assert san.get_values_for_type(x509.IPAddress) == []


def _oneline(cert: x509.Certificate) -> str:
    """OpenSSL's one-line subject (what FreeRADIUS puts in TLS-Client-Cert-Subject)."""
    short = {NameOID.COUNTRY_NAME: "C", NameOID.ORGANIZATION_NAME: "O", NameOID.COMMON_NAME: "CN",
             NameOID.ORGANIZATIONAL_UNIT_NAME: "OU"}
    return "".join(f"/{short[a.oid]}={a.value}" for a in cert.subject)


def test_client_certificate_for_eap_tls(store: PkiStore, cfg: Config) -> None:
    issued = issue_client(cfg, store)
    cert = load(issued.cert)
    cert.verify_directly_issued_by(load(store.ca_cert_path))
    assert _oneline(cert) == "/C=JP/O=Example University/CN=alice"
    # the FreeRADIUS subject rule ikemgr renders accepts it
    assert re.search(subject_regex(cfg.eap.subject_rdns), _oneline(cert))
    eku = ext(cert, x509.ExtendedKeyUsage).value  # type: ignore[attr-defined]
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    san = ext(cert, x509.SubjectAlternativeName).value  # type: ignore[attr-defined]
    assert san.get_values_for_type(x509.RFC822Name) == ["alice@123456"]
    upn = san.get_values_for_type(x509.OtherName)
    assert [o.type_id for o in upn] == [certs.MS_UPN] and upn[0].value == b"\x0c\x0calice@123456"
    assert not ext(cert, x509.BasicConstraints).value.ca  # type: ignore[attr-defined]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == cfg.pki.client_days
    for p in (issued.key, *issued.p12):
        assert mode(p) == 0o600, p


def test_client_of_a_bare_account_gets_a_dns_san(store: PkiStore, cfg: Config) -> None:
    cert = load(issue_client(cfg, store, "bob").cert)
    san = ext(cert, x509.SubjectAlternativeName).value  # type: ignore[attr-defined]
    assert san.get_values_for_type(x509.DNSName) == ["bob"]
    assert san.get_values_for_type(x509.RFC822Name) == []


def test_subject_follows_the_radius_rule(tmp_path: Path) -> None:
    eap = {"methods": ["mschapv2", "tls"], "tls_allowed_subject": "C=JP, O=Other Univ, OU=Staff"}
    cfg = make_config(tmp_path, eap=eap)
    store = PkiStore(cfg.pki.dir, cfg.pki)
    store.init()
    cert = load(issue_client(cfg, store).cert)
    assert _oneline(cert) == "/C=JP/O=Other Univ/OU=Staff/CN=alice"
    assert re.search(subject_regex(cfg.eap.subject_rdns), _oneline(cert))


def test_cn_is_the_whole_identity_when_radius_does_not_check_it(tmp_path: Path) -> None:
    eap = {"methods": ["mschapv2", "tls"], "tls_allowed_subject": "O=Example University",
           "tls_cn_is_account": False}
    cfg = make_config(tmp_path, eap=eap)
    store = PkiStore(cfg.pki.dir, cfg.pki)
    store.init()
    cert = load(issue_client(cfg, store).cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice@123456"


def test_existing_certificate_needs_force(store: PkiStore, cfg: Config) -> None:
    first = issue_client(cfg, store)
    with pytest.raises(Refused):
        issue_client(cfg, store)
    second = store.issue_client("alice@123456", "alice", (("O", "Example University"),), PASSWORD,
                                (), force=True)
    assert second.serial != first.serial
    assert [e["serial"] for e in store.entries()] == [f"{first.serial:x}", f"{second.serial:x}"]


def test_crl_lists_the_revoked_serial(store: PkiStore, cfg: Config) -> None:
    alice, bob = issue_client(cfg, store), issue_client(cfg, store, "bob@123456")
    assert store.revoke(name="alice@123456", reason="keyCompromise") == [f"{alice.serial:x}"]
    number, listed = store.write_crl()
    ca = load(store.ca_cert_path)
    for crl in (x509.load_pem_x509_crl(store.crl_pem.read_bytes()),
                x509.load_der_x509_crl(store.crl_der.read_bytes())):
        assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
        assert crl.issuer == ca.subject
        assert [r.serial_number for r in crl] == [alice.serial]
        assert crl.get_revoked_certificate_by_serial_number(bob.serial) is None
        reason = crl[0].extensions.get_extension_for_class(x509.CRLReason).value.reason
        assert reason == x509.ReasonFlags.key_compromise
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number == 1
        assert crl.next_update_utc is not None and crl.last_update_utc is not None
        assert (crl.next_update_utc - crl.last_update_utc).days == cfg.pki.crl_days
    assert listed == [f"{alice.serial:x}"]
    store.revoke(serial=f"{bob.serial:X}")  # upper-case hex is the same serial
    assert store.write_crl()[0] == 2
    assert len(x509.load_der_x509_crl(store.crl_der.read_bytes())) == 2


def test_revoke_unknown_or_twice(store: PkiStore, cfg: Config) -> None:
    issued = issue_client(cfg, store)
    store.revoke(serial=f"{issued.serial:x}")
    with pytest.raises(UsageError):
        store.revoke(serial=f"{issued.serial:x}")
    with pytest.raises(UsageError):
        store.revoke(serial="not-hex")


# DER of the algorithm OIDs (tag, length, value)
PBE_SHA1_3DES = bytes.fromhex("060a2a864886f70d010c0103")
PBES2 = bytes.fromhex("06092a864886f70d01050d")
AES256_CBC = bytes.fromhex("060960864801650304012a")
HMAC_SHA256 = bytes.fromhex("06082a864886f70d0209")
SHA1 = bytes.fromhex("06052b0e03021a")
SHA256 = bytes.fromhex("0609608648016503040201")


def test_pkcs12_both_encodings(store: PkiStore, cfg: Config) -> None:
    issued = issue_client(cfg, store)
    legacy, modern = issued.p12
    assert legacy.name == "alice@123456-legacy.p12" and modern.name == "alice@123456.p12"
    cert = load(issued.cert)
    for path in (legacy, modern):
        key, got = pkcs12.load(path.read_bytes(), PASSWORD)
        assert got == cert and certs.key_matches(cert, key)
        with pytest.raises(ValueError):
            pkcs12.load(path.read_bytes(), b"wrong")
    lb, mb = legacy.read_bytes(), modern.read_bytes()
    assert PBE_SHA1_3DES in lb and PBES2 not in lb and SHA1 in lb and SHA256 not in lb
    assert PBES2 in mb and AES256_CBC in mb and HMAC_SHA256 in mb and SHA256 in mb
    assert PBE_SHA1_3DES not in mb


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")
def test_pkcs12_algorithms_as_openssl_reads_them(store: PkiStore, cfg: Config, tmp_path: Path) -> None:
    issued = issue_client(cfg, store)
    pw = tmp_path / "pw"
    pw.write_bytes(PASSWORD)

    def info(path: Path, *extra: str) -> str:
        r = subprocess.run(["openssl", "pkcs12", "-info", "-noout", "-in", str(path), "-passin",
                            f"file:{pw}", *extra], capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0, r.stderr
        return r.stdout + r.stderr

    legacy = info(issued.p12[0], "-legacy")
    assert "MAC: sha1" in legacy
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in legacy
    modern = info(issued.p12[1])
    assert "MAC: sha256" in modern
    assert "PBES2, PBKDF2, AES-256-CBC" in modern and "hmacWithSHA256" in modern


def test_operator_ca(tmp_path: Path, cfg: Config) -> None:
    own = PkiStore(tmp_path / "operator", cfg.pki)
    own.init()
    store = PkiStore(tmp_path / "issued", cfg.pki, own.ca_cert_path, own.ca_key_path)
    cert = load(store.issue_server(cfg.gateway.fqdn, []).cert)
    cert.verify_directly_issued_by(load(own.ca_cert_path))
    other = PkiStore(tmp_path / "other", cfg.pki)
    other.init()
    wrong = PkiStore(tmp_path / "x", cfg.pki, own.ca_cert_path, other.ca_key_path)
    with pytest.raises(UsageError, match="not the key of"):
        wrong.issue_server(cfg.gateway.fqdn, [])
    leaf = PkiStore(tmp_path / "y", cfg.pki, store.cert_path(cfg.gateway.fqdn),
                    store.key_path(cfg.gateway.fqdn))
    with pytest.raises(UsageError, match="not a CA"):
        leaf.issue_server(cfg.gateway.fqdn, [])


@pytest.mark.parametrize("user", HOSTILE, ids=lambda u: repr(u[:12]))
def test_hostile_user_names_refused(cfg: Config, user: str) -> None:
    from ikemgr.pki.names import user_identity

    with pytest.raises(IdentityRejected):
        user_identity(cfg, user)




def test_cli_never_prints_keys_and_refuses_hostile(cfg_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["pki", "init", "-c", str(cfg_file)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["pki", "issue-server", "-c", str(cfg_file), "--outside-ip", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["pki", "issue-client", "-c", str(cfg_file), "--user", "alice@123456",
                            "--p12-password-file", str(tmp_path / "p12pw")])
    assert r.exit_code == 0, r.output
    assert "PRIVATE KEY" not in r.output
    pw = (tmp_path / "p12pw").read_text().strip()
    assert len(pw) >= 20 and pw not in r.output and mode(tmp_path / "p12pw") == 0o600
    for user in HOSTILE:
        r = runner.invoke(app, ["pki", "issue-client", "-c", str(cfg_file), "--user", user,
                                "--p12", "none"])
        assert r.exit_code == 2, (user[:20], r.output)
        assert len(r.output.strip().splitlines()) == 1
    for bad in (["revoke", "--name", "$(x)"], ["revoke", "--serial", "12;rm"],
                ["issue-server", "--ip", "1.2.3.4; x", "--force"], ["revoke", "--name", "x" * 10_000]):
        r = runner.invoke(app, ["pki", bad[0], "-c", str(cfg_file), *bad[1:]])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, (bad[:2], r.output[:200])
        assert len(r.output) < 300
    r = runner.invoke(app, ["pki", "revoke", "-c", str(cfg_file), "--name", "alice@123456"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["pki", "crl", "-c", str(cfg_file), "--json"])
    assert r.exit_code == 0 and '"number": 1' in r.output, r.output
    r = runner.invoke(app, ["pki", "init", "-c", str(cfg_file)])
    assert r.exit_code == 4

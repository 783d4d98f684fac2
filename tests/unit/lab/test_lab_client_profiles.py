"""The lab's client charons are configured from ``ikemgr profile --format swanctl``.

The profile is built by the product's own code from the lab's config, with certificates
from the lab's real CA (strongSwan's ``pki``), and read back with the parser that
``ikemgr client up`` uses for the profile contract.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from ikemgr.client.model import parse_settings, profile_of
from ikemgr.errors import UsageError
from ikemgr_lab import charons
from ikemgr_lab.model import LabDocument
from ikemgr_lab.pki import LabCA
from ikemgr_lab.runner import DEFAULT_LAB_CONFIG, Lab


def _profile(cfg: LabDocument, ca: LabCA, name: str, cert_of: str | None = None) -> dict[str, tuple[bytes, int]]:
    c = cfg.lab.client(name)
    ca_pem = ca.cert.read_bytes()
    p12 = None
    if c.auth == "eap-tls":
        issued = cert_of or name
        p12 = charons.client_p12(ca.dir / f"{issued}.crt", ca.dir / f"{issued}.key", ca_pem)
    return {f.path: (f.data, f.mode) for f in charons.client_profile(cfg, c, ca_pem, p12)}


def _conn(files: dict[str, tuple[bytes, int]]) -> dict:  # type: ignore[type-arg]
    return parse_settings(files["swanctl.conf"][0].decode())


@pytest.mark.parametrize("name", ["alice", "bob", "carol", "mallory"])
def test_password_client_is_a_full_tunnel_eap_profile_with_its_secret(
        cfg: LabDocument, ca: LabCA, name: str) -> None:
    c = cfg.lab.client(name)
    files = _profile(cfg, ca, name)
    assert set(files) == {"swanctl.conf", "x509ca/ca.pem"}
    # the password is in the file: root only
    assert stat.S_IMODE(files["swanctl.conf"][1]) == 0o600
    s = _conn(files)
    conn = s["connections"][cfg.strongswan.connection]
    assert conn["remote_addrs"] == str(cfg.gateway.outside.address.ip)
    assert conn["remote"] == {"auth": "pubkey", "id": cfg.gateway.fqdn, "cacerts": "ca.pem"}
    assert conn["local"] == {"auth": "eap-mschapv2", "eap_id": c.identity}
    assert conn["children"][cfg.strongswan.connection]["remote_ts"] == "0.0.0.0/0"
    assert conn["encap"] == "yes"
    # mallory's wrong password goes into her profile as it is: RADIUS must refuse it
    assert s["secrets"]["eap-user"] == {"id": c.identity, "secret": c.password}
    ca_in_profile = x509.load_pem_x509_certificate(files["x509ca/ca.pem"][0])
    assert ca_in_profile == x509.load_pem_x509_certificate(ca.cert.read_bytes())


@pytest.mark.parametrize("name", ["erin", "frank"])
def test_certificate_client_carries_its_own_certificate_and_key(
        cfg: LabDocument, ca: LabCA, name: str) -> None:
    c = cfg.lab.client(name)
    files = _profile(cfg, ca, name)
    pem = f"{c.identity}.pem"
    assert set(files) == {"swanctl.conf", "x509ca/ca.pem", f"x509/{pem}", f"private/{pem}"}
    assert stat.S_IMODE(files[f"private/{pem}"][1]) == 0o600
    s = _conn(files)
    assert "secrets" not in s
    local = s["connections"][cfg.strongswan.connection]["local"]
    assert local["auth"] == "eap-tls" and local["eap_id"] == c.identity and local["certs"] == pem
    cert = x509.load_pem_x509_certificate(files[f"x509/{pem}"][0])
    # frank's certificate is of another organisation, signed by the same CA: the profile
    # is fine, RADIUS's subject rule is what refuses him
    assert cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value == \
        (c.organisation or cfg.lab.organisation)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [c.identity]


def test_someone_elses_certificate_is_refused(cfg: LabDocument, ca: LabCA) -> None:
    with pytest.raises(UsageError, match="is not issued to frank@123457"):
        _profile(cfg, ca, "frank", cert_of="erin")


def test_lab_initiates_the_connection_the_profile_names(cfg: LabDocument, ca: LabCA, tmp_path: Path) -> None:
    """connect/disconnect use the profile's connection and child, read back as `client up` does."""
    lab = Lab(cfg, DEFAULT_LAB_CONFIG)
    for name in ("alice", "erin"):
        p = profile_of(_profile(cfg, ca, name)["swanctl.conf"][0].decode())
        assert p.connection == p.child == lab.client_conn
        assert p.remote_addrs == str(cfg.gateway.outside.address.ip) and p.remote_id == cfg.gateway.fqdn


def test_install_makes_the_swanctl_dir_exactly_the_profile(cfg: LabDocument, ca: LabCA, tmp_path: Path) -> None:
    inst = charons.client_instance(tmp_path / "erin", "ikl-erin")
    inst.prepare()  # what start() does: an empty /etc/swanctl tree and an include-only swanctl.conf
    files = charons.client_profile(cfg, cfg.lab.client("erin"), ca.cert.read_bytes(),
                                   charons.client_p12(ca.dir / "erin.crt", ca.dir / "erin.key",
                                                      ca.cert.read_bytes()))
    charons.install_profile(inst, files)
    on_disk = {str(p.relative_to(inst.swanctl_dir)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
               for p in inst.swanctl_dir.rglob("*") if p.is_file()}
    assert on_disk == {f.path: (f.data, f.mode) for f in files}
    assert sorted(str(p.relative_to(inst.swanctl_dir)) for p in inst.swanctl_dir.iterdir()) == \
        ["private", "swanctl.conf", "x509", "x509ca"]

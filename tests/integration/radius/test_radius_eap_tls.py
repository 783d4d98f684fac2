"""EAP-TLS against the rendered config: the CA signs many organisations, only ours gets in.

The peer is eapol_test (wpa_supplicant's EAP-TLS on its OpenSSL), which also checks the
server's certificate (test CA, ``domain_match``) and the MSK against the accept's MPPE keys.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from eapol_support import EapolResult
from radius_support import ORG, SERVER_NAME, Certs, RadiusEnv, pki

pytestmark = pytest.mark.root


def _run(env: RadiusEnv, identity: str, cert: Path, key: Path) -> tuple[EapolResult, str]:
    mark = env.mark()
    res = env.peer().tls(identity, cert, key, env.certs.ca, SERVER_NAME)
    return res, env.log_since(mark)


def test_allowed_organisation_accepted(radius_env: RadiusEnv) -> None:
    cert, key = radius_env.certs.client("alice-ok", f"C=JP, O={ORG}, CN=alice")
    res, log = _run(radius_env, "alice@123456", cert, key)
    assert res.outcome == "accept", (res, log[-4000:])
    assert res.tls_established
    assert res.naked("mschapv2")   # mschapv2 is proposed first
    assert "MPPE keys OK: 1  mismatch: 0" in res.output
    assert f"TLS-Client-Cert-Subject := \"/C=JP/O={ORG}/CN=alice\"" in log
    assert "Virtual server ikemgr-check-eap-tls received request" in log


def test_other_organisation_same_ca_rejected(radius_env: RadiusEnv) -> None:
    cert, key = radius_env.certs.client("alice-other", "C=JP, O=Other University, CN=alice")
    res, log = _run(radius_env, "alice@123456", cert, key)
    assert res.outcome == "reject", res
    assert res.tls_established   # refused by the rendered subject rule, not by TLS
    assert f"lacks C=JP, O={ORG}" in log


def test_organisation_name_prefix_is_not_enough(radius_env: RadiusEnv) -> None:
    cert, key = radius_env.certs.client("alice-hosp", f"C=JP, O={ORG} Hospital, CN=alice")
    res, log = _run(radius_env, "alice", cert, key)
    assert res.outcome == "reject", res
    assert f"lacks C=JP, O={ORG}" in log


def test_certificate_of_another_account_rejected(radius_env: RadiusEnv) -> None:
    """bob's certificate cannot log in as alice@123456 (and so cannot take her VLAN)."""
    cert, key = radius_env.certs.client("bob-ok", f"C=JP, O={ORG}, CN=bob")
    res, log = _run(radius_env, "alice@123456", cert, key)
    assert res.outcome == "reject", res
    assert "Certificate CN (bob) does not match specified value (alice)" in log


def test_certificate_from_a_foreign_ca_rejected(radius_env: RadiusEnv, tmp_path: Path) -> None:
    foreign = Certs(tmp_path, tmp_path / "ca.pem", tmp_path / "ca.key", tmp_path / "s.pem",
                    tmp_path / "s.key")
    pki("--gen", "--type", "ecdsa", "--size", "256", out=foreign.ca_key)
    pki("--self", "--ca", "--lifetime", "30", "--in", str(foreign.ca_key), "--type", "ecdsa",
        "--dn", f"C=JP, O={ORG}, CN=Rogue CA", out=foreign.ca)
    cert, key = foreign.client("alice-rogue", f"C=JP, O={ORG}, CN=alice")
    res, _log = _run(radius_env, "alice", cert, key)
    assert res.outcome == "reject", res
    assert not res.tls_established


def test_client_certs_really_differ_only_in_subject(radius_env: RadiusEnv) -> None:
    """Guard for the tests above: both certificates verify against the same CA."""
    for name in ("alice-ok", "alice-other"):
        crt = radius_env.certs.dir / f"{name}.pem"
        if not crt.exists():
            radius_env.certs.client(name, f"C=JP, O={'Other University' if 'other' in name else ORG}, "
                                    "CN=alice")
        r = subprocess.run(["openssl", "verify", "-CAfile", str(radius_env.certs.ca), str(crt)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.strip().endswith(": OK"), r.stdout + r.stderr

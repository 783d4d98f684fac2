"""Client certificates from `ikemgr pki` (signed by an operator's CA) through real FreeRADIUS EAP-TLS (eapol_test).

The session's test CA plays the operator's CA (``--ca-cert/--ca-key``); ikemgr issues the
client certificates with the Subject built from ``eap.tls_allowed_subject`` and CN = the
account, and the rendered FreeRADIUS (subject rule, ``check_cert_cn``) decides.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from eapol_support import EapolResult
from radius_support import ORG, SERVER_NAME, RadiusEnv

from ikemgr.pki.names import client_cn, client_subject_rdns, user_identity
from ikemgr.pki.store import PkiStore

pytestmark = pytest.mark.root


def _issue(env: RadiusEnv, tmp: Path, user: str) -> tuple[Path, Path]:
    cfg = env.cfg
    store = PkiStore(tmp / "pki", cfg.pki, env.certs.ca, env.certs.ca_key)
    ident = user_identity(cfg, user)
    issued = store.issue_client(str(ident), client_cn(cfg, ident), client_subject_rdns(cfg), None, ())
    return issued.cert, issued.key


def _run(env: RadiusEnv, identity: str, cert: Path, key: Path) -> tuple[EapolResult, str]:
    mark = env.mark()
    res = env.peer().tls(identity, cert, key, env.certs.ca, SERVER_NAME)
    return res, env.log_since(mark)


def test_ikemgr_client_certificate_passes_the_subject_check(radius_env: RadiusEnv, tmp_path: Path) -> None:
    cert, key = _issue(radius_env, tmp_path, "alice@123456")
    res, log = _run(radius_env, "alice@123456", cert, key)
    assert res.outcome == "accept", (res, log[-4000:])
    assert res.tls_established
    assert f'TLS-Client-Cert-Subject := "/C=JP/O={ORG}/CN=alice"' in log
    assert "Virtual server ikemgr-check-eap-tls received request" in log


def test_ikemgr_client_certificate_is_only_its_own_account(radius_env: RadiusEnv, tmp_path: Path) -> None:
    cert, key = _issue(radius_env, tmp_path, "alice@123456")
    res, log = _run(radius_env, "bob@123456", cert, key)
    assert res.outcome == "reject", res
    assert "Certificate CN (alice) does not match specified value (bob)" in log

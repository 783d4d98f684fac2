"""Revoked client certificates through real FreeRADIUS EAP-TLS (eapol_test): ``eap.crl_file``.

The CRL comes from ``ikemgr pki revoke`` + ``crl`` (the session's test CA plays the
operator's CA); render links it into FreeRADIUS's ca_path under its issuer's OpenSSL hash,
and FreeRADIUS (``check_crl``) refuses a revoked certificate. A CRL written again while
FreeRADIUS runs is read after ``eap.crl_reload_interval`` by the same process: FreeRADIUS
raises any interval below 300 s to 300, so that test is ``slow`` (``IKEMGR_SLOW=1``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from radius_support import CRL_RELOAD, ORG, CrlEnv

from ikemgr.commands._common import crl_issuer_of
from ikemgr.config.schema import Config
from ikemgr.errors import UsageError
from ikemgr.render.freeradius import CRL_DIR

pytestmark = pytest.mark.root


def test_the_crl_is_linked_under_its_issuers_openssl_hash(crl_env: CrlEnv) -> None:
    links = list((crl_env.raddb / CRL_DIR).iterdir())
    assert len(links) == 1 and links[0].is_symlink()
    assert links[0].readlink() == crl_env.store.crl_pem
    # the name OpenSSL's hashed-directory lookup asks for: `openssl crl -hash` of the CRL
    import subprocess
    h = subprocess.run(["openssl", "crl", "-noout", "-hash", "-in", str(crl_env.store.crl_pem)],
                       capture_output=True, text=True, check=True).stdout.strip()
    assert links[0].name == f"{h}.r0"
    eap = (crl_env.raddb / "mods-enabled" / "eap").read_text()
    assert "check_crl = yes" in eap and f"ca_path_reload_interval = {CRL_RELOAD}" in eap
    assert "set too low" not in crl_env.radiusd.log_text()


def test_a_revoked_certificate_is_refused_and_the_others_accepted(crl_env: CrlEnv) -> None:
    outcome, log = crl_env.tls("erin@123456")
    assert outcome == "accept", log[-3000:]
    assert f"/C=JP/O={ORG}/CN=erin" in log
    outcome, log = crl_env.tls("alice@123456")
    assert outcome == "reject", log[-3000:]
    assert "certificate revoked" in log


@pytest.mark.slow
def test_a_new_crl_is_read_by_the_running_freeradius(crl_env: CrlEnv) -> None:
    pid = crl_env.radiusd.pid
    assert crl_env.tls("carol@123456")[0] == "accept"
    t0 = time.monotonic()
    crl_env.store.revoke(name="carol@123456")
    crl_env.store.write_crl()  # an atomic replace of the file the link names
    deadline = t0 + CRL_RELOAD + 30
    outcome, log = "accept", ""
    while time.monotonic() < deadline:
        outcome, log = crl_env.tls("carol@123456")
        if outcome == "reject":
            break
        time.sleep(5)
    assert outcome == "reject", f"carol still accepted {time.monotonic() - t0:.0f} s after the new CRL"
    assert "certificate revoked" in log
    assert crl_env.radiusd.pid == pid and crl_env.radiusd.proc is not None and crl_env.radiusd.proc.poll() is None
    assert crl_env.tls("erin@123456")[0] == "accept"  # the others are unaffected


def test_render_refuses_a_missing_crl(crl_env: CrlEnv, tmp_path: Path) -> None:
    data = crl_env.cfg.model_dump(mode="json")
    data["eap"]["crl_file"] = str(tmp_path / "nothing.pem")
    with pytest.raises(UsageError, match=r"eap.crl_file: .*nothing.pem: No such file"):
        crl_issuer_of(Config.model_validate(data))
    (tmp_path / "garbage.pem").write_text("-----BEGIN X509 CRL-----\nno\n-----END X509 CRL-----\n")
    data["eap"]["crl_file"] = str(tmp_path / "garbage.pem")
    with pytest.raises(UsageError, match="not a CRL in PEM or DER"):
        crl_issuer_of(Config.model_validate(data))

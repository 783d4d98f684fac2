"""The rendered FreeRADIUS config against a real slapd: who gets in and who does not."""

from __future__ import annotations

import grp
import re
import shutil
import subprocess

import pytest
from radius_support import PASSWORDS, SECRET, RadiusEnv

from ikemgr.errors import BackendUnavailable

pytestmark = pytest.mark.root


def test_rendered_config_passes_freeradius_check(radius_env: RadiusEnv) -> None:
    out = radius_env.radiusd.check_config()
    assert "Configuration appears to be OK" in out
    # our files replaced the stock symlinks; the stock *-available files are untouched
    for rel in ("mods-enabled/eap", "mods-enabled/ldap", "sites-enabled/default",
                "sites-enabled/inner-tunnel", "sites-enabled/ikemgr-check-eap-tls"):
        p = radius_env.raddb / rel
        assert p.is_file() and not p.is_symlink(), rel
        assert "Rendered by ikemgr" in p.read_text()
    st = (radius_env.raddb / "sites-enabled/ikemgr-clients").stat()
    assert st.st_mode & 0o777 == 0o640 and grp.getgrgid(st.st_gid).gr_name == "freerad"
    assert (radius_env.raddb / "mods-enabled/ldap").stat().st_mode & 0o777 == 0o640
    assert "Rendered by ikemgr" not in (radius_env.raddb / "sites-available/default").read_text()


def test_good_password_accepted(radius_env: RadiusEnv) -> None:
    v = radius_env.client().pap("alice", PASSWORDS["alice"])
    assert v.outcome == "accept"
    assert 0 < v.rtt_ms < 2000


def test_vlan_identity_authenticates_the_account(radius_env: RadiusEnv) -> None:
    mark = radius_env.mark()
    v = radius_env.client().pap("alice@123456", PASSWORDS["alice"])
    assert v.outcome == "accept"
    log = radius_env.log_since(mark)
    assert "&Stripped-User-Name := alice" in log
    assert "&Stripped-User-Domain := 123456" in log
    assert 'with filter "(&(uid=alice)(!(shadowExpire=1)))"' in log
    # not treated as a realm: nothing about realms or proxying
    assert "Realm does not have" not in log and "Proxy" not in log


@pytest.mark.parametrize("user,password", [
    ("alice", "wrong-password"),                 # wrong password
    ("alice@123456", "wrong-password"),
    ("dave", PASSWORDS["dave"]),                 # disabled (shadowExpire: 1), right password
    ("dave@123456", PASSWORDS["dave"]),
    ("mallory", "whatever-pw"),                  # unknown account
    ("alice", ""),                               # empty password
])
def test_bad_credentials_rejected(radius_env: RadiusEnv, user: str, password: str) -> None:
    assert radius_env.client().pap(user, password).outcome == "reject"


def test_disabled_account_is_filtered_out_by_ldap(radius_env: RadiusEnv) -> None:
    mark = radius_env.mark()
    assert radius_env.client().pap("dave", PASSWORDS["dave"]).outcome == "reject"
    log = radius_env.log_since(mark)
    assert 'filter "(&(uid=dave)(!(shadowExpire=1)))"' in log
    assert "Search returned no results" in log


@pytest.mark.parametrize("user", [
    b"a@b@c", b"alice@12x", b"alice@", b"@123456", b"alice@0123456", b"alice@1234567890",
    b"alice @123456", b"alice@123456 ", b" alice", b"alice\x00@123456", b"alice@123456\x00",
    b"alice\t", b".alice@123456", b"al..ice", b"-alice", b"Alice", b"alice@example.ac.jp",
    b"a" * 65 + b"@123456", b"a" * 200, "alicé@123456".encode(),
])
def test_malformed_identities_rejected_early(radius_env: RadiusEnv, user: bytes) -> None:
    """The correct password of alice, so only the identity can be the reason."""
    mark = radius_env.mark()
    v = radius_env.client().pap(user, PASSWORDS["alice"])
    assert v.outcome == "reject"
    log = radius_env.log_since(mark)
    assert re.search(r"ikemgr: (identity|account|malformed)", log), log[-3000:]
    assert "Performing search" not in log  # rejected before LDAP was asked


def _radtest(env: RadiusEnv, kind: str, user: str, password: str) -> str:
    """The packet type radtest received ("Access-Accept"/"Access-Reject"), not its whole chatter:
    on failure radtest prints "Expected Access-Accept got Access-Reject", which contains both."""
    if shutil.which("radtest") is None:
        pytest.fail("radtest (freeradius-utils) is not installed")
    r = subprocess.run(["radtest", "-t", kind, user, password,
                        f"127.0.0.1:{env.cfg.radius.auth_port}", "0", SECRET],
                       capture_output=True, text=True, timeout=30)
    m = re.search(r"^Received (Access-\w+) ", r.stdout, re.M)
    return m.group(1) if m else f"no reply: {r.stdout + r.stderr}"


def test_mschap_uses_the_nt_hash_from_ldap(radius_env: RadiusEnv) -> None:
    """MS-CHAP (radclient computes it from the password) checks against sambaNTPassword."""
    assert _radtest(radius_env, "mschap", "carol@123457", PASSWORDS["carol"]) == "Access-Accept"
    assert _radtest(radius_env, "mschap", "carol", "not-carols-pw") == "Access-Reject"
    # alice has no NT hash: MS-CHAP cannot work for her, whatever the password
    assert _radtest(radius_env, "mschap", "alice", PASSWORDS["alice"]) == "Access-Reject"


def test_wrong_secret_is_unavailable_not_reject(radius_env: RadiusEnv) -> None:
    with pytest.raises(BackendUnavailable, match="radius unavailable"):
        radius_env.client(secret="not-the-secret").pap("alice", PASSWORDS["alice"])

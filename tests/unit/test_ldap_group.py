"""Pure parts of the directory readers: the group source's schema, TLS mapping, value decoding."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ikemgr.adapters.ldap import describe, tls_settings
from ikemgr.allowlist.sources.ldap_group import _show, _values
from ikemgr.config.services import Ldap
from ikemgr.config.sync import LdapGroupSource, Sync
from ikemgr.errors import ConfigError

GROUP = "cn=lab-123456,ou=groups,dc=example,dc=ac,dc=jp"


def group(**kw: Any) -> LdapGroupSource:
    return LdapGroupSource.model_validate({"kind": "ldap_group", "name": "labs", "vlans": {123456: GROUP}, **kw})


def test_group_source_defaults_and_text_keys() -> None:
    g = group(vlans={"123456": GROUP, 7: GROUP})  # JSON gives text keys, YAML ints
    assert g.vlans == {123456: GROUP, 7: GROUP}
    assert (g.member_attribute, g.account_attribute, g.timeout) == ("member", "uid", None)
    s = Sync.model_validate({"sources": [{"kind": "ldap_group", "name": "labs", "vlans": {"1": GROUP}}]})
    assert isinstance(s.sources[0], LdapGroupSource)


@pytest.mark.parametrize("kw,text", [
    ({"vlans": {"0123456": GROUP}}, "no leading 0"),
    ({"vlans": {"12a": GROUP}}, "is not a VLAN management number"),
    ({"vlans": {"1234567890": GROUP}}, "is not a VLAN management number"),
    ({"vlans": {0: GROUP}}, "greater than or equal to 1"),
    ({"vlans": {}}, "at least 1 item"),
    ({"vlans": {1: 'cn=x",dc=y'}}, "must not contain quotes"),
    ({"vlans": {1: "not a dn"}}, "is not a DN"),
    ({"member_attribute": "memberOf"}, "'member', 'uniqueMember' or 'memberUid'"),
    ({"account_attribute": "uid)(x=*"}, "is not an LDAP attribute name"),
    ({"timeout": 0}, "greater than 0"),
    ({"base_dn": "dc=x"}, "Extra inputs are not permitted"),
])
def test_group_source_refuses(kw: dict[str, Any], text: str) -> None:
    with pytest.raises(ValidationError, match=text.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        group(**kw)


def test_start_tls_on_ldaps_is_refused() -> None:
    with pytest.raises(ValidationError, match="is TLS already"):
        Ldap(uri="ldaps://ldap.example.ac.jp", start_tls=True)


@pytest.mark.parametrize("uri,start_tls,require,verify", [
    ("ldaps://h", False, "demand", ssl.CERT_REQUIRED),
    ("ldap://h", True, "hard", ssl.CERT_REQUIRED),
    ("ldap://h", True, "allow", ssl.CERT_NONE),   # libldap "allow" carries on with a bad certificate
    ("ldaps://h", False, "never", ssl.CERT_NONE),
])
def test_tls_settings_follow_require_cert(uri: str, start_tls: bool, require: str, verify: int,
                                          tmp_path: Path) -> None:
    ca = tmp_path / "ldap-ca.pem"
    ca.write_text("")
    tls = tls_settings(Ldap(uri=uri, start_tls=start_tls, tls_require_cert=require,  # type: ignore[arg-type]
                            tls_ca_file=ca))
    assert tls is not None and tls.validate == verify and tls.ca_certs_file == str(ca)


def test_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ldap.tls_ca_file: .*/nope.pem: no such file"):
        tls_settings(Ldap(uri="ldaps://h", tls_ca_file=tmp_path / "nope.pem"))


def test_plain_ldap_has_no_tls() -> None:
    assert tls_settings(Ldap(uri="ldap://h")) is None


def test_describe_shortens_certificate_errors() -> None:
    verify = OSError("socket ssl wrapping error: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                     "failed: self-signed certificate in certificate chain (_ssl.c:992)")
    assert describe(verify) == ("TLS: the server certificate is not trusted (self-signed certificate in "
                                "certificate chain)")
    name = OSError("socket ssl wrapping error: certificate {'subject': ...} doesn't match any name in ['h']")
    assert describe(name) == "TLS: the server certificate does not name this host"
    assert describe(OSError("x" * 1000)) == "x" * 300


def test_values_are_raw_case_insensitive_and_ranges_are_refused() -> None:
    assert _values({"Member": [b"uid=a,dc=x"], "member": [b"uid=b,dc=x"]}, "member") == [b"uid=a,dc=x",
                                                                                        b"uid=b,dc=x"]
    assert _values({"cn": [b"x"]}, "member") == []
    assert _values({"member;range=0-1499": [b"uid=a,dc=x"]}, "member") is None


def test_show_escapes_what_is_not_text() -> None:
    assert _show(b"a; rm -rf /") == "'a; rm -rf /'"
    assert _show(b"\xff\xfe") == "b'\\xff\\xfe'"
    assert _show(b"x\n" * 100).endswith("…")

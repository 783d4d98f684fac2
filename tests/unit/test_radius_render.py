"""Pure checks of the FreeRADIUS rendering: file set, modes, secrets, subject rule, config validation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ikemgr.config.load import load
from ikemgr.config.schema import Config
from ikemgr.config.services import Eap
from ikemgr.core.secrets import check_secret
from ikemgr.errors import ConfigError, UsageError
from ikemgr.render.freeradius import RadiusSecrets, radius_outputs, subject_regex, unlang_regex
from ikemgr.render.templates import Output

ROOT = Path(__file__).resolve().parents[2]


def _data(**sections: dict[str, Any]) -> dict[str, Any]:
    data = load(ROOT / "examples" / "campus.yaml").model_dump(mode="json")
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values} if isinstance(data.get(name), dict) else values
    return data


def _cfg(**sections: dict[str, Any]) -> Config:
    return Config.model_validate(_data(**sections))


TLS_EAP = {"methods": ["mschapv2", "gtc", "ttls", "tls"], "tls_allowed_subject": "O=Example University"}


def _by_path(outputs: list[Output]) -> dict[str, Output]:
    return {o.path: o for o in outputs}


def test_file_set_modes_and_secrets() -> None:
    cfg = _cfg(eap=TLS_EAP, ldap={"bind_dn": "cn=radius,dc=example,dc=ac,dc=jp",
                                  "bind_password_file": "/etc/ikemgr/ldap.pw"})
    outs = _by_path(radius_outputs(cfg, RadiusSecrets("s3cret!x", "bind-pw")))
    assert set(outs) == {"sites-enabled/ikemgr-clients", "policy.d/ikemgr", "mods-enabled/ldap", "mods-enabled/eap",
                         "sites-enabled/default", "sites-enabled/inner-tunnel",
                         "sites-enabled/ikemgr-check-eap-tls"}
    for name in ("sites-enabled/ikemgr-clients", "mods-enabled/ldap"):
        assert outs[name].secret and outs[name].mode == 0o640 and outs[name].group == "freerad"
    assert "secret = 's3cret!x'" in outs["sites-enabled/ikemgr-clients"].text
    assert "password = 'bind-pw'" in outs["mods-enabled/ldap"].text
    for name in ("policy.d/ikemgr", "mods-enabled/eap", "sites-enabled/default"):
        assert not outs[name].secret and "s3cret" not in outs[name].text


def test_prefix_places_the_set_below_a_root() -> None:
    outs = radius_outputs(_cfg(), RadiusSecrets("s3cret!x"), prefix="freeradius/3.0/")
    assert all(o.path.startswith("freeradius/3.0/") for o in outs)
    # no bind DN: the ldap module holds no secret
    assert not _by_path(outs)["freeradius/3.0/mods-enabled/ldap"].secret


def test_default_methods_and_no_tls_without_tls() -> None:
    defaults = {"methods": ["mschapv2", "gtc", "ttls"], "tls_allowed_subject": None}
    outs = _by_path(radius_outputs(_cfg(eap=defaults), RadiusSecrets("s3cret!x")))
    eap = outs["mods-enabled/eap"].text
    assert "default_eap_type = mschapv2" in eap
    assert re.search(r"^\tgtc \{\n\t\tauth_type = LDAP", eap, re.M)
    assert "\ttls {" not in eap and "check_cert_cn" not in eap
    assert "sites-enabled/ikemgr-check-eap-tls" not in outs
    ldap = outs["mods-enabled/ldap"].text
    assert 'filter = "(&(uid=%{%{Stripped-User-Name}:-%{User-Name}})(!(shadowExpire=1)))"' in ldap
    assert "control:NT-Password := 'sambaNTPassword'" in ldap


def test_listen_and_client_come_from_config() -> None:
    cfg = _cfg(radius={"address": "10.1.0.5", "auth_port": 11812, "acct_port": 11813,
                       "client_address": "10.1.0.251", "accounting": False})
    outs = _by_path(radius_outputs(cfg, RadiusSecrets("s3cret!x")))
    site = outs["sites-enabled/default"].text
    assert "ipaddr = 10.1.0.5\n\tport = 11812" in site and "type = acct" not in site
    assert "ipaddr = 10.1.0.251" in outs["sites-enabled/ikemgr-clients"].text
    assert "require_message_authenticator = yes" in outs["sites-enabled/ikemgr-clients"].text


def test_stock_realm_handling_is_not_called() -> None:
    outs = _by_path(radius_outputs(_cfg(), RadiusSecrets("s3cret!x")))
    for name in ("sites-enabled/default", "sites-enabled/inner-tunnel"):
        text = outs[name].text
        assert "ikemgr_identity" in text
        for stock in ("filter_username", "suffix", "ntdomain", "realm"):
            assert stock not in text, (name, stock)
    assert "ikemgr_same_inner_identity" in outs["sites-enabled/inner-tunnel"].text


@pytest.mark.parametrize("secret", ["", "has space", "quo'te", 'dq"x', "back\\slash", "é-unicode",
                                    "x" * 129, "tab\tx"])
def test_bad_secrets_refused(secret: str) -> None:
    with pytest.raises(UsageError):
        check_secret(secret, "RADIUS secret")
    with pytest.raises(UsageError):
        RadiusSecrets(secret)


def test_bind_dn_without_password_refused() -> None:
    cfg = _cfg(ldap={"bind_dn": "cn=radius,dc=x", "bind_password_file": "/etc/ikemgr/ldap.pw"})
    with pytest.raises(UsageError, match="bind password"):
        radius_outputs(cfg, RadiusSecrets("s3cret!x"))


@pytest.mark.parametrize("pattern", ["^[a-z]+/x$", "^%{User-Name}$", "^a b$", '^a"$'])
def test_identity_patterns_unusable_in_unlang_are_refused(pattern: str) -> None:
    with pytest.raises(ConfigError, match="policy.identity_pattern"):
        unlang_regex(pattern, "policy.identity_pattern")


# ------------------------------------------------------------------ the EAP-TLS subject rule

def _py(regex: str) -> re.Pattern[str]:
    """The unlang regex as Python sees it (\\/ is / in both)."""
    return re.compile(regex)


@pytest.mark.parametrize("subject,ok", [
    ("/C=JP/O=Example University/CN=alice", True),
    ("/C=JP/O=Example University/OU=Lab A/CN=alice", True),
    ("/O=Example University/CN=alice", True),
    ("/C=JP/O=Example University", True),
    ("/C=JP/O=Other University/CN=alice", False),
    ("/C=JP/O=Example University Hospital/CN=alice", False),    # prefix of another name
    ("/C=JP/O=Example Universityx/CN=alice", False),
    ("/C=JP/O=Other/CN=x/O=Example University", False),           # smuggled behind a CN
    ("/C=JP/O=Other/CN=a/O=Example University/CN=b", False),
    ("/C=JP/O=ExampleXUniversity/CN=alice", False),
])
def test_subject_regex_single_rdn(subject: str, ok: bool) -> None:
    rx = _py(subject_regex((("O", "Example University"),)))
    assert bool(rx.search(subject)) is ok


def test_subject_regex_two_rdns_in_order_and_dots_literal() -> None:
    rx = _py(subject_regex((("C", "JP"), ("O", "Univ. of Example (Main)"))))
    assert rx.search("/C=JP/O=Univ. of Example (Main)/CN=alice")
    assert not rx.search("/C=JP/O=UnivX of Example (Main)/CN=alice")
    assert not rx.search("/O=Univ. of Example (Main)/C=JP/CN=alice")
    assert not rx.search("/C=US/O=Univ. of Example (Main)/CN=alice")


@pytest.mark.parametrize("rule", ["CN=alice", "O=Ex/ample", "O=a|b", "O=.*", "O=", "Example University",
                                  "O=Ex\"q", "O=%{User-Name}", "O=x\\y", "E=a@b"])
def test_subject_rule_is_typed_not_a_regex(rule: str) -> None:
    with pytest.raises(ValidationError):
        Eap(methods=["tls"], default_method="tls", tls_allowed_subject=rule)


def test_subject_rule_normalised() -> None:
    eap = Eap(methods=["tls"], default_method="tls", tls_allowed_subject=" C=JP ,O=Example University")
    assert eap.tls_allowed_subject == "C=JP, O=Example University"
    assert eap.subject_rdns == (("C", "JP"), ("O", "Example University"))


def test_tls_needs_a_subject_rule() -> None:
    with pytest.raises(ValidationError, match="tls_allowed_subject"):
        Eap(methods=["tls"], default_method="tls")


def test_default_method_must_be_offered() -> None:
    with pytest.raises(ValidationError, match="default_method"):
        Eap(methods=["gtc"], default_method="mschapv2")


def test_ttls_needs_an_inner_method_and_proposes_gtc_first() -> None:
    with pytest.raises(ValidationError, match="ttls needs an inner EAP method"):
        Eap(methods=["ttls"], default_method="ttls")
    for methods, inner in ((["mschapv2", "gtc", "ttls"], "gtc"), (["mschapv2", "ttls"], "mschapv2"),
                           (["md5", "ttls"], "md5")):
        cfg = _cfg(ldap={"cleartext_attribute": "userPassword"},
                   eap={"methods": methods, "default_method": methods[0]})
        eap = _by_path(radius_outputs(cfg, RadiusSecrets("s3cret!x")))["mods-enabled/eap"].text
        ttls = eap[eap.index("ttls {"):]
        assert re.search(rf"default_eap_type = {inner}\n", ttls), ttls


def test_mschapv2_needs_a_readable_password() -> None:
    with pytest.raises(ValidationError, match="mschapv2 needs"):
        _cfg(ldap={"nt_hash_attribute": None})
    cfg = _cfg(ldap={"nt_hash_attribute": None}, eap={"methods": ["gtc", "ttls"], "default_method": "gtc"})
    assert "mschapv2" not in _by_path(radius_outputs(cfg, RadiusSecrets("s3cret!x")))[
        "mods-enabled/eap"].text


@pytest.mark.parametrize("field,value", [
    ("user_filter", "uid=%{User-Name}"), ("user_filter", "((uid=x)"), ("user_filter", '(uid="x")'),
    ("disabled_filter", "(a=1))("), ("base_dn", "no-equals-sign"), ("nt_hash_attribute", "bad attr"),
])
def test_ldap_values_validated(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        _cfg(ldap={field: value})


def test_secret_output_group_readable_only_with_group() -> None:
    Output("sites-enabled/ikemgr-clients", "x", mode=0o640, secret=True, group="freerad")
    with pytest.raises(ValueError):
        Output("sites-enabled/ikemgr-clients", "x", mode=0o640, secret=True)
    with pytest.raises(ValueError):
        Output("sites-enabled/ikemgr-clients", "x", mode=0o644, secret=True, group="freerad")


def test_a_crl_file_turns_on_check_crl_and_is_linked_under_its_issuer_hash() -> None:
    cfg = _cfg(eap={**TLS_EAP, "crl_file": "/etc/ikemgr/pki/crl.pem"})
    out = _by_path(radius_outputs(cfg, RadiusSecrets("s3cret-s3cret", crl_issuer_hash="3b4263c3"),
                                  prefix="freeradius/3.0/"))
    link = out["freeradius/3.0/ikemgr-crl/3b4263c3.r0"]
    assert link.link == "/etc/ikemgr/pki/crl.pem" and link.text == ""
    eap = out["freeradius/3.0/mods-enabled/eap"].text
    assert 'ca_path = "${confdir}/ikemgr-crl"' in eap
    assert "check_crl = yes" in eap and "ca_path_reload_interval = 300" in eap
    # without the issuer hash (a command layer that did not read the CRL) nothing is rendered
    with pytest.raises(UsageError, match="issuer hash"):
        radius_outputs(cfg, RadiusSecrets("s3cret-s3cret"))
    with pytest.raises(UsageError, match="8 lower-case hex"):
        RadiusSecrets("s3cret-s3cret", crl_issuer_hash="../../x")


def test_no_crl_file_no_crl_check() -> None:
    out = radius_outputs(_cfg(eap=TLS_EAP), RadiusSecrets("s3cret-s3cret"))
    assert not [o for o in out if o.link is not None]
    assert "check_crl" not in _by_path(out)["mods-enabled/eap"].text


@pytest.mark.parametrize(("eap", "message"), [
    ({"methods": ["mschapv2"], "tls_allowed_subject": None, "crl_file": "/etc/ikemgr/pki/crl.pem"},
     "no certificate method"),
    ({**TLS_EAP, "crl_file": "/etc/ikemgr/pki/crl.pem", "crl_reload_interval": 10}, "greater than or equal to 300"),
])
def test_crl_settings_are_checked(eap: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Eap.model_validate({**_data()["eap"], **eap})

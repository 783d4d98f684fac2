"""The pure side of `ikemgr client`: names, the profile contract, quoting, the /30, nft JSON."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from ikemgr.client import ike, model
from ikemgr.errors import UsageError

PROFILE = """\
# as `ikemgr profile --format swanctl` writes it
connections {
    kuins {
        version = 2
        remote_addrs = vpn.lab.test
        vips = 0.0.0.0
        encap = yes
        local {
            auth = eap-mschapv2
            eap_id = "alice@123456"
        }
        remote { auth = pubkey
            id = vpn.lab.test }
        children {
            kuins {
                remote_ts = 10.0.0.0/8, 192.168.11.0/24
            }
        }
    }
}
"""


@pytest.mark.parametrize("name", ["a", "work", "ikn-a", "x" * 11, "a1-b2"])
def test_good_names(name: str) -> None:
    assert model.check_name(name) == name
    assert len(model.host_ifname(name)) <= 15


@pytest.mark.parametrize("name", ["", "A", "1a", "-a", "a-", "a/b", "..", "a b", "a;b", "$(id)",
                                  "é", "x" * 12, "a\nb", "a\x00b", "ab\udcff", "a.b", "a_b"])
def test_bad_names(name: str) -> None:
    with pytest.raises(UsageError) as e:
        model.check_name(name)
    msg = str(e.value)
    assert "\n" not in msg and msg.isascii() and "refused" in msg


def test_profile_facts() -> None:
    p = model.profile_of(PROFILE)
    assert (p.connection, p.child, p.remote_addrs, p.remote_id, p.auth, p.eap_id) == (
        "kuins", "kuins", "vpn.lab.test", "vpn.lab.test", "eap-mschapv2", "alice@123456")
    assert p.identity == "alice@123456"


def test_parse_settings_quotes_and_comments() -> None:
    s = model.parse_settings('a { b = "x # y \\" z"  # comment\n c = 1 2 }\n')
    assert s == {"a": {"b": 'x # y " z', "c": "1 2"}}


@pytest.mark.parametrize("text, fragment", [
    ("include /etc/shadow\n", "'include'"),
    ("connections {\n", "not closed"),
    ("}\n", "unbalanced"),
    ("connections { a { vips = 0.0.0.0 } b { vips = 0.0.0.0 } }\n", "exactly one connection"),
    (PROFILE.replace("vips = 0.0.0.0", "vips = 10.1.0.5"), "vips"),
    (PROFILE.replace("eap-mschapv2", "psk"), "local auth"),
    (PROFILE.replace('eap_id = "alice@123456"', ""), "eap_id"),
    (PROFILE.replace("remote_addrs = vpn.lab.test", "remote_addrs = a,b"), "remote_addrs"),
    (PROFILE.replace("kuins {\n        version", "ku$ins {\n        version"), "connection name"),
    ("connections { = }\n", "unexpected"),
])
def test_profile_refused(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as e:
        model.profile_of(text)
    assert fragment in str(e.value)


def test_cert_profile_needs_certs_in_x509() -> None:
    tls = PROFILE.replace("auth = eap-mschapv2", "auth = eap-tls\n            certs = erin.pem")
    p = model.profile_of(tls)
    assert p.certs == ("erin.pem",)
    with pytest.raises(UsageError, match="x509/erin.pem"):
        ike.check_files(p, {"swanctl.conf": b"", "x509ca/ca.pem": b""})
    with pytest.raises(UsageError, match="x509/"):
        model.profile_of(tls.replace("certs = erin.pem", "certs = ../../etc/key.pem"))


def test_private_additions_pin_gateway_and_escape_secret() -> None:
    p = model.profile_of(PROFILE)
    text = model.private_additions(p, IPv4Address("192.0.2.1"), 'pa"ss\\word }')
    assert "remote_addrs = 192.0.2.1" in text
    assert 'secret = "pa\\"ss\\\\word }"' in text
    # what we append is read back by the same grammar as one merged tree
    merged = model.parse_settings(PROFILE + text)
    assert merged["connections"]["kuins"]["remote_addrs"] == "192.0.2.1"
    assert merged["secrets"]["eap-ikemgr-client"]["secret"] == 'pa"ss\\word }'


@pytest.mark.parametrize("raw, ok", [
    (b"secret\n", "secret"), (b"secret", "secret"), (b"s p a c e\r\n", "s p a c e"),
    (b"", None), (b"\n", None), (b"two\nlines\n", None), (b"\xff\xfe", None), (b"x" * 257, None),
    (b"tab\there", None),
])
def test_password_file(raw: bytes, ok: str | None) -> None:
    if ok is None:
        with pytest.raises(UsageError):
            model.check_password(raw)
    else:
        assert model.check_password(raw) == ok


def test_choose_uplink_skips_used() -> None:
    used = [IPv4Network("0.0.0.0/0"), IPv4Network("169.254.64.0/30"), IPv4Network("169.254.64.4/32")]
    assert model.choose_uplink(used) == IPv4Network("169.254.64.8/30")
    assert model.uplink_addresses(IPv4Network("169.254.64.8/30")) == (
        IPv4Address("169.254.64.9"), IPv4Address("169.254.64.10"))
    with pytest.raises(UsageError, match="no free /30"):
        model.choose_uplink([IPv4Network("169.254.0.0/16")])


def test_host_ruleset_masquerades_only_the_env() -> None:
    cmds = model.host_ruleset("work", IPv4Network("169.254.64.0/30"))["nftables"]
    assert cmds[0] == {"add": {"table": {"family": "ip", "name": "ikemgr-client-work"}}}
    nat = [c["add"]["rule"] for c in cmds if "rule" in c["add"] and c["add"]["rule"]["chain"] == "postrouting"]
    assert nat[0]["expr"][0]["match"]["right"] == {"prefix": {"addr": "169.254.64.0", "len": 30}}
    assert nat[0]["expr"][-1] == {"masquerade": None}
    fwd = [c["add"]["rule"]["expr"] for c in cmds if "rule" in c["add"] and c["add"]["rule"]["chain"] == "forward"]
    assert fwd[-1] == [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "ikc-work"}},
                       {"drop": None}]


def test_dns_from_updown_and_resolv_conf() -> None:
    text = ("PLUTO_DNS4_2=10.5.0.11\nPLUTO_DNS4_1=10.5.0.10\nPLUTO_DNS4_3=bogus;rm\n"
            "PLUTO_DNS6_1=2001:db8::53\nPLUTO_PEER=192.0.2.1\n")
    assert model.updown_dns(text) == ["10.5.0.10", "10.5.0.11", "2001:db8::53"]
    assert model.resolv_conf(["10.5.0.10"], "work").endswith("nameserver 10.5.0.10\n")
    assert "nameserver" not in model.resolv_conf([], "work")


def test_private_additions_set_the_dns_updown() -> None:
    p = model.profile_of(PROFILE)
    merged = model.parse_settings(PROFILE + model.private_additions(
        p, IPv4Address("192.0.2.1"), "pw", "/run/ikemgr/client/work/dns-updown"))
    child = merged["connections"]["kuins"]["children"]["kuins"]
    assert child == {"remote_ts": "10.0.0.0/8, 192.168.11.0/24",
                     "updown": "/run/ikemgr/client/work/dns-updown"}


@pytest.mark.parametrize("d", ["relative/dir", "/tmp/a b", "/tmp/$(id)", "/tmp/../etc", "/tmp/é"])
def test_state_dir_refuses_odd_paths(d: str) -> None:
    from ikemgr.client.state import state_dir

    with pytest.raises(UsageError):
        state_dir(Path(d))


def test_summary_from_list_sas() -> None:
    sas = [{"name": "kuins", "state": "ESTABLISHED", "local-id": "169.254.64.2",
            "remote-id": "vpn.lab.test", "local-vips": ["10.1.0.10"],
            "child-sas": {"kuins-1": {"state": "INSTALLED", "bytes-in": "703", "bytes-out": "700"}}}]
    s = ike.summary(sas, "kuins")
    assert (s["vip"], s["bytes_in"], s["bytes_out"], s["children"]) == ("10.1.0.10", 703, 700, 1)
    assert ike.summary(sas, "other")["state"] == "DOWN"


def test_env_ruleset_fails_closed_with_userspace_esp() -> None:
    cmds = model.env_ruleset(IPv4Address("192.0.2.1"))["nftables"]
    out = [c["add"]["rule"]["expr"] for c in cmds if "rule" in c["add"] and c["add"]["rule"]["chain"] == "output"]
    assert out == [[{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "uplink0"}},
                    {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                               "right": "192.0.2.1"}},
                    {"drop": None}]]
    assert not any("chain" in c["add"] and c["add"]["chain"]["name"] == "output"
                   for c in model.env_ruleset()["nftables"])


def test_profile_files_refuse_symlinks_and_need_a_ca(tmp_path: Path) -> None:
    (tmp_path / "swanctl.conf").write_text(PROFILE)
    with pytest.raises(UsageError, match="no CA certificate"):
        ike.read_profile_files(tmp_path)
    (tmp_path / "x509ca").mkdir()
    (tmp_path / "x509ca" / "ca.pem").write_text("pem")
    assert set(ike.read_profile_files(tmp_path)) == {"swanctl.conf", "x509ca/ca.pem"}
    (tmp_path / "x509ca" / "evil.pem").symlink_to("/etc/shadow")
    with pytest.raises(UsageError, match="not a regular file"):
        ike.read_profile_files(tmp_path)


def test_invoker_trusts_sudo_only_from_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from ikemgr.client import service

    monkeypatch.setenv("SUDO_UID", "61001")
    monkeypatch.setenv("SUDO_GID", "61002")
    monkeypatch.setattr(service.os, "getuid", lambda: 0)
    assert service.invoker() == service.Invoker(61001, 61002)
    monkeypatch.setattr(service.os, "getuid", lambda: 1000)
    monkeypatch.setattr(service.os, "getgid", lambda: 1000)
    assert service.invoker() == service.Invoker(1000, 1000)  # a user's own SUDO_UID means nothing

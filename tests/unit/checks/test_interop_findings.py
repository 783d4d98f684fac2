"""Every config-derived and host-derived finding of ``ikemgr check``: one input that triggers
it and one that does not (the host state is a value here; tests/integration/interop reads a
real namespace)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ikemgr.checks import interop
from ikemgr.checks.interop import CertFacts, HostRule, HostState, RadiusProbe
from ikemgr.config.schema import Config

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def cfg(**sections: Any) -> Config:
    doc: dict[str, Any] = {
        "gateway": {"fqdn": "vpn.example.test",
                    "outside": {"interface": "out0", "address": "192.0.2.1/24", "gateway": "192.0.2.254"},
                    "campus": {"interface": "campus0", "address": "10.1.0.251/24", "gateway": "10.1.0.254"}},
        "pool": {"first": "10.1.0.10", "last": "10.1.0.250"},
        "campus_prefixes": ["10.0.0.0/8"],
        "vlans": [{"number": 123456, "interface": "lab0", "subnet": "10.2.0.0/24", "gateway": "10.2.0.254"}],
    }
    for k, v in sections.items():
        doc[k] = {**doc.get(k, {}), **v} if isinstance(v, dict) else v
    return Config.model_validate(doc)


def ids(findings: list[interop.Finding]) -> set[str]:
    return {f.id for f in findings}


def by(findings: list[interop.Finding], fid: str) -> dict[str, interop.Finding]:
    return {f.subject: f for f in findings if f.id == fid}


# ------------------------------------------------------------------ proposals


def test_default_config_breaks_no_client() -> None:
    found = interop.config_findings(cfg())
    assert not interop.has_errors(found), found
    for c in interop.CLIENTS:
        assert interop.verdict(cfg(), c).failed_at is None


def test_gateway_proposals_are_the_templates() -> None:
    c = cfg(strongswan={"proposals": ["aes128-sha256-ecp256"], "esp_proposals": ["aes128gcm16"]})
    assert interop.gateway_proposals(c) == (("aes128-sha256-ecp256",), ("aes128gcm16",))


def test_ike_no_match_for_windows_without_modp1024() -> None:
    c = cfg(strongswan={"proposals": ["aes256-sha256-ecp256", "default"]})
    f = by(interop.proposal_findings(c), "proposals.ike-no-match")
    assert set(f) == {"windows"}  # strongSwan's default has no MODP_1024
    assert f["windows"].exchange == interop.IKE_SA_INIT and f["windows"].severity == "error"


def test_esp_no_match_at_first_child() -> None:
    c = cfg(strongswan={"esp_proposals": ["aes256gcm16"]})
    f = by(interop.proposal_findings(c), "proposals.esp-no-match")
    assert {"ios", "macos", "windows"} <= set(f)
    assert "android" not in f  # the app's default ESP has GCM
    assert f["macos"].exchange == interop.FIRST_CHILD


def test_pfs_required_breaks_macos_at_child_rekey_not_ios() -> None:
    # groups without modpnone: PFS required. iOS rekeys with its IKE group (modp2048 here).
    c = cfg(strongswan={"proposals": ["aes256-sha256-modp2048"], "esp_proposals": ["aes256-sha256-modp2048"]})
    f = by(interop.proposal_findings(c), "proposals.pfs-required")
    # they rekey without KE; Windows fails earlier (sha1), iOS rekeys with KE modp2048
    assert set(f) == {"macos", "apple-profile", "android"}
    assert f["macos"].exchange == interop.CHILD_REKEY
    assert f["macos"].clients == ("macOS built-in IKEv2 client (manual configuration)",)


def test_pfs_optional_with_modpnone_is_fine() -> None:
    c = cfg(strongswan={"proposals": ["aes256-sha256-modp2048"],
                        "esp_proposals": ["aes256-sha256-modp2048-modpnone"]})
    assert "proposals.pfs-required" not in ids(interop.proposal_findings(c))
    v = interop.verdict(c, interop.CLIENTS[0])  # iOS keeps PFS when it offers it
    assert v.child_rekey is not None and v.child_rekey.dh == "modp2048"


def test_invalid_ke_round_trip_is_info() -> None:
    found = by(interop.proposal_findings(cfg()), "proposals.invalid-ke")
    assert set(found) == {"ios"} and found["ios"].severity == "info"
    c = cfg(strongswan={"proposals": ["aes256-sha256-modp2048", "aes256-sha1-modp1024", "default"]})
    assert "ios" not in by(interop.proposal_findings(c), "proposals.invalid-ke")


def test_weak_negotiated_only_for_windows_defaults() -> None:
    f = by(interop.proposal_findings(cfg()), "proposals.weak-negotiated")
    assert set(f) == {"windows"} and f["windows"].severity == "warning"


def test_unknown_keyword_is_a_warning_not_a_crash() -> None:
    f = interop.proposal_findings(cfg(strongswan={"proposals": ["aes256-sha256-frobnicate"]}))
    assert ids(f) == {"proposals.unknown-keyword"}
    assert "proposals.unknown-keyword" not in ids(interop.proposal_findings(cfg()))


# ------------------------------------------------------------------ IKE features


@pytest.mark.parametrize("field,fid", [("fragmentation", "ike.fragmentation-off"),
                                       ("mobike", "ike.mobike-off")])
def test_feature_off(field: str, fid: str) -> None:
    assert fid in ids(interop.feature_findings(cfg(strongswan={field: False})))
    assert fid not in ids(interop.feature_findings(cfg()))


def test_short_rekey_time() -> None:
    assert "ike.rekey-short" in ids(interop.feature_findings(cfg(strongswan={"rekey_time": 300})))
    assert "ike.rekey-short" not in ids(interop.feature_findings(cfg()))


# ------------------------------------------------------------------ MTU


@pytest.mark.parametrize("encr,integ,mtu,expected", [
    ("aes256", "sha256", 1500, 1382),  # 1500-20-8-8-16-16=1432 → 1424 → 1422 inner → 1382
    ("aes256gcm16", None, 1500, 1398),  # 1500-20-8-8-8-16=1440 → 1438 inner
    ("aes256", "sha1", 1500, 1382),  # ICV 12: 1436 → 1424 → 1422
    ("3des", "sha1", 1500, 1398),  # IV 8, ICV 12, block 8: 1444 → 1440 → 1438
    ("aes256", "sha512", 1400, 1270),
])
def test_max_mss(encr: str, integ: str | None, mtu: int, expected: int) -> None:
    assert interop.max_mss(mtu, encr, integ) == expected


def test_mss_too_large() -> None:
    f = interop.mss_findings(cfg(firewall={"mss_clamp": 1400}))
    assert ids(f) == {"mtu.mss-too-large"} and f[0].severity == "error"
    assert interop.mss_findings(cfg(firewall={"mss_clamp": 1360})) == []
    # a smaller path MTU makes the default too large as well
    assert ids(interop.mss_findings(cfg(), path_mtu=1400)) == {"mtu.mss-too-large"}


def test_mss_pmtu_with_kernel_esp() -> None:
    assert ids(interop.mss_findings(cfg(firewall={"mss_clamp": "pmtu"}))) == {"mtu.mss-pmtu"}
    lib = cfg(firewall={"mss_clamp": "pmtu"}, strongswan={"kernel_ipsec": "libipsec", "encap": True})
    assert interop.mss_findings(lib) == []


# ------------------------------------------------------------------ send_cert


def test_rendered_template_sends_cert_always() -> None:
    text = interop.rendered_swanctl(cfg(strongswan_cert_auth={"enabled": True, "subject": "O=X"}))
    assert interop.send_cert_findings(text) == []


def test_send_cert_ifasked_breaks_clients_without_certreq() -> None:
    text = "connections {\n  a {\n    send_cert = ifasked\n    local {\n    }\n  }\n  b {\n  }\n}\n"
    f = by(interop.send_cert_findings(text), "cert.send-cert")
    assert set(f) == {"a", "b"}  # b: default ifasked
    assert any("iOS" in c for c in f["a"].clients) and not any("Windows" in c for c in f["a"].clients)


# ------------------------------------------------------------------ certificate connection


def test_cert_auth_findings() -> None:
    bad = cfg(strongswan_cert_auth={"enabled": True, "subject": "C=JP", "connection": "ikemgr"})
    found = interop.config_findings(bad)
    assert {"cert-auth.connection-name", "cert-auth.subject-without-o"} <= ids(found)
    good = cfg(strongswan_cert_auth={"enabled": True, "subject": "C=JP, O=Example University"})
    assert ids(interop.cert_auth_findings(good)) == {"cert-auth.no-certreq"}
    assert interop.cert_auth_findings(cfg()) == []


# ------------------------------------------------------------------ server certificate


def facts(**kw: Any) -> CertFacts:
    base: dict[str, Any] = dict(path="/x/gw.crt", ekus=frozenset({interop.OID_SERVER_AUTH, interop.OID_IKE_INTERMEDIATE}),
                                dns_sans=("vpn.example.test",), not_before=NOW - timedelta(days=1),
                                not_after=NOW + timedelta(days=365))
    base.update(kw)
    return CertFacts(**base)


def test_good_certificate_has_no_findings() -> None:
    assert interop.cert_findings(cfg(), facts(), NOW) == []


@pytest.mark.parametrize("kw,fid", [
    ({"error": "No such file or directory"}, "cert.unreadable"),
    ({"ekus": frozenset({interop.OID_IKE_INTERMEDIATE})}, "cert.eku-server-auth"),
    ({"ekus": frozenset({interop.OID_SERVER_AUTH})}, "cert.eku-ike-intermediate"),
    ({"dns_sans": ("other.example.test",)}, "cert.san-dns"),
    ({"chain_error": "issuer mismatch"}, "cert.chain"),
    ({"not_after": NOW - timedelta(days=1)}, "cert.expired"),
    ({"not_after": NOW + timedelta(days=10)}, "cert.expires-soon"),
    ({"not_before": NOW + timedelta(days=1)}, "cert.not-yet-valid"),
])
def test_certificate_findings(kw: dict[str, Any], fid: str) -> None:
    assert fid in ids(interop.cert_findings(cfg(), facts(**kw), NOW))


def test_san_match_ignores_case() -> None:
    assert interop.cert_findings(cfg(), facts(dns_sans=("VPN.Example.Test",)), NOW) == []


# ------------------------------------------------------------------ host


GOOD_SYSCTLS = {"net/ipv4/ip_forward": "1", "net/ipv4/ip_no_pmtu_disc": "0",
                "net/ipv4/conf/all/rp_filter": "2", "net/ipv4/conf/all/forwarding": "1",
                **{f"net/ipv4/conf/{i}/{k}": v for i in ("out0", "campus0", "lab0")
                   for k, v in (("rp_filter", "2"), ("forwarding", "1"))}}
IFACES = frozenset({"lo", "out0", "campus0", "lab0"})


def host(**kw: Any) -> HostState:
    s = dict(GOOD_SYSCTLS)
    s.update(kw.pop("sysctls", {}))
    return HostState(sysctls=s, interfaces=kw.pop("interfaces", IFACES), **kw)


def test_good_host_has_no_findings() -> None:
    assert interop.host_findings(cfg(), host()) == []


@pytest.mark.parametrize("sysctls,fid,subject", [
    ({"net/ipv4/ip_forward": "0"}, "host.ip-forward", "net.ipv4.ip_forward"),
    ({"net/ipv4/ip_no_pmtu_disc": "1"}, "host.pmtu-disc-off", "net.ipv4.ip_no_pmtu_disc"),
    ({"net/ipv4/conf/all/rp_filter": "0", "net/ipv4/conf/lab0/rp_filter": "1"}, "host.rp-filter-strict", "lab0"),
    # all=1 makes every interface strict, whatever the interface says (max of the two)
    ({"net/ipv4/conf/all/rp_filter": "1", "net/ipv4/conf/out0/rp_filter": "0"}, "host.rp-filter-strict", "out0"),
    ({"net/ipv4/conf/all/rp_filter": "0", "net/ipv4/conf/campus0/rp_filter": "0"}, "host.rp-filter-differs", "campus0"),
    ({"net/ipv4/conf/campus0/forwarding": "0"}, "host.forwarding-off", "campus0"),
])
def test_sysctl_findings(sysctls: dict[str, str], fid: str, subject: str) -> None:
    assert subject in by(interop.host_findings(cfg(), host(sysctls=sysctls)), fid)


def test_loose_all_wins_over_a_strict_interface() -> None:
    # the kernel uses max(all, interface): all=2 makes a strict (1) interface loose
    assert interop.host_findings(cfg(), host(sysctls={"net/ipv4/conf/lab0/rp_filter": "1"})) == []


def test_missing_interface() -> None:
    f = by(interop.host_findings(cfg(), host(interfaces=frozenset({"out0", "campus0"}))),
           "host.interface-missing")
    assert set(f) == {"lab0"}


def rule(priority: int, table: int | None = 254, protocol: int = 3) -> HostRule:
    return HostRule(priority, table, protocol, f"priority {priority} lookup {table}")


@pytest.mark.parametrize("rules,fid", [
    ((rule(30001),), "routing.priority-collision"),  # base_priority
    ((rule(29001, 100),), "routing.priority-collision"),  # marks backend's user band
    ((rule(30000, 100),), "routing.priority-collision"),  # charon_priority, not charon's table
    ((rule(29500, 100),), "routing.priority-in-band"),
    ((rule(100, 123456),), "routing.table-used-by-rule"),
])
def test_rule_findings(rules: tuple[HostRule, ...], fid: str) -> None:
    assert fid in ids(interop.routing_findings(cfg(), host(rules=rules)))


def test_a_foreign_rule_among_the_rules_backends_spread_users_is_a_collision() -> None:
    rules_cfg = cfg().model_copy(update={"policy": cfg().policy.model_copy(update={"backend": "rules"})})
    assert rules_cfg.routing.user_span == 1000  # 29000..29999, up to charon's rule
    f = interop.routing_findings(rules_cfg, host(rules=(rule(29500, 100),)))
    assert ids(f) == {"routing.priority-collision"}
    assert interop.routing_findings(rules_cfg, host(rules=(rule(30000, 220, 3),))) == []


def test_own_and_charons_rules_are_not_collisions() -> None:
    rules = (rule(30001, 200, 99), rule(29000, 0, 99), rule(30000, 220, 3), rule(32766, 254, 2),
             rule(0, 255, 2))
    assert interop.routing_findings(cfg(), host(rules=rules)) == []


def test_table_id_collision_only_with_foreign_routes() -> None:
    assert "routing.table-id-collision" in ids(
        interop.routing_findings(cfg(), host(route_protocols={123456: (99, 4)})))
    assert interop.routing_findings(cfg(), host(route_protocols={123456: (99, 99), 200: ()})) == []


def test_rt_tables_name_collisions() -> None:
    f = interop.routing_findings(cfg(), host(rt_tables=((200, "isp", "/etc/iproute2/rt_tables"),
                                                        (77, "gw123456", "/etc/iproute2/rt_tables.d/x.conf"))))
    assert ids(f) == {"routing.table-name-collision"} and len(f) == 2
    same = host(rt_tables=((200, "gwk3", "/etc/iproute2/rt_tables.d/old.conf"), (255, "local", "rt_tables")))
    assert interop.routing_findings(cfg(), same) == []


# ------------------------------------------------------------------ RADIUS


def test_radius_findings() -> None:
    down = RadiusProbe("127.0.0.1:1812", None, "radius unavailable: timeout")
    assert ids(interop.radius_findings(down)) == {"radius.unreachable"}
    assert interop.radius_findings(RadiusProbe("127.0.0.1:1812", "reject", None, 1.2)) == []

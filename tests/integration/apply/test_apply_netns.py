"""`ikemgr apply` against the real kernel in a fresh namespace: rules, routes, nftables, iptables.

Every check reads the kernel back with the system tools (`ip -j`, `nft -j`,
`iptables-legacy-save`) run inside the namespace, never ikemgr's own view.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from ikt_apply_gw import IKEMGR, VLAN1, VLAN2, Gw, sh

from ikemgr.config.load import load
from ikemgr.core.firewall import firewall_spec
from ikemgr.render.firewall import firewall_outputs, nft_table_text

pytestmark = pytest.mark.root

PROTO = "99"

RULES_BOTH = {
    ("10.1.0.0/24", "10.0.0.0/8", "200"),
    ("10.1.0.0/24", "198.51.100.0/24", "200"),
}
ROUTES_CAMPUS = {
    ("200", "10.1.0.0/24", "ens2", None, "10.1.0.251"),
    ("200", "default", "ens2", "10.1.0.254", None),
}
ROUTES_VLAN1 = {
    ("123456", "10.2.0.0/24", "lab1", None, "10.2.0.253"),
    ("123456", "default", "lab1", "10.2.0.254", None),
}
ROUTES_VLAN2 = {
    ("123457", "10.2.1.0/24", "lab2", None, "10.2.1.253"),
    ("123457", "default", "lab2", "10.2.1.254", None),
}
SNAT_ALL = {("ens1", "192.0.2.1"), ("lab1", "10.2.0.253"), ("lab2", "10.2.1.253")}


# --------------------------------------------------------------------------- readers


def owned_rules(g: Gw) -> set[tuple[str, str, str]]:
    out = set()
    for r in g.rules():
        if r["priority"] == 30001 and r.get("protocol") == PROTO:
            out.add((f"{r['src']}/{r['srclen']}", f"{r['dst']}/{r['dstlen']}", r["table"]))
    return out


def owned_routes(g: Gw) -> set[tuple[Any, ...]]:
    return {(r.get("table", "254"), r["dst"], r.get("dev"), r.get("gateway"), r.get("prefsrc"))
            for r in g.routes() if r.get("protocol") == PROTO}


def foreign_rules(g: Gw) -> list[dict[str, Any]]:
    return [r for r in g.rules() if not (r["priority"] == 30001 and r.get("protocol") == PROTO)]


def foreign_routes(g: Gw) -> list[dict[str, Any]]:
    ours = {"200", "123456", "123457"}
    return [r for r in g.routes() if not (r.get("protocol") == PROTO and r.get("table") in ours)]


def nft_tables(g: Gw) -> set[tuple[str, str]]:
    return {(o["table"]["family"], o["table"]["name"]) for o in g.ruleset() if "table" in o}


def nft_snat(g: Gw, table: str = "ikemgr") -> set[tuple[str, str]]:
    """(oifname, SNAT address) of every rule in <table>/postrouting, from nft's JSON."""
    out = set()
    for o in g.ruleset():
        rule = o.get("rule")
        if not rule or rule["table"] != table or rule["chain"] != "postrouting":
            continue
        oif = to = None
        for e in rule["expr"]:
            m = e.get("match")
            if m and m["left"].get("meta", {}).get("key") == "oifname":
                oif = m["right"]
            if m and m["left"].get("payload", {}).get("field") == "saddr":
                assert m["right"] == {"prefix": {"addr": "10.1.0.0", "len": 24}}
            if "snat" in e:
                to = e["snat"]["addr"]
        out.add((oif, to))
    return out


def ipt_lines(g: Gw, table: str) -> list[str]:
    return [ln for ln in g.exec("iptables-legacy-save", "-t", table).splitlines()
            if ln.startswith(("-A", ":IKEMGR"))]


# --------------------------------------------------------------------------- nftables


def test_apply_installs_exactly_the_base_state_then_is_a_no_op(gw: Gw) -> None:
    cfg = gw.config()
    before_rules, before_routes = foreign_rules(gw), foreign_routes(gw)

    rc, res, err = gw.apply(cfg)
    assert (rc, err) == (0, "")
    assert res["data"]["changed"] is True
    assert res["data"]["changes"] == [
        "+ nftables table ip ikemgr (3 SNAT rules, MSS clamp 1360)",
        "+ route 10.1.0.0/24 dev ens2 src 10.1.0.251 table gwk3",
        "+ route default via 10.1.0.254 dev ens2 table gwk3",
        "+ route 10.2.0.0/24 dev lab1 src 10.2.0.253 table gw123456",
        "+ route default via 10.2.0.254 dev lab1 table gw123456",
        "+ route 10.2.1.0/24 dev lab2 src 10.2.1.253 table gw123457",
        "+ route default via 10.2.1.254 dev lab2 table gw123457",
        "+ rule priority 30001 from 10.1.0.0/24 to 10.0.0.0/8 lookup gwk3",
        "+ rule priority 30001 from 10.1.0.0/24 to 198.51.100.0/24 lookup gwk3",
        f"+ file {gw.rt_tables}",
    ]
    assert owned_rules(gw) == RULES_BOTH
    assert owned_routes(gw) == ROUTES_CAMPUS | ROUTES_VLAN1 | ROUTES_VLAN2
    assert foreign_rules(gw) == before_rules
    assert foreign_routes(gw) == before_routes
    assert nft_tables(gw) == {("ip", "ikemgr")}
    assert nft_snat(gw) == SNAT_ALL
    # the kernel holds exactly the rendered table: render what you load
    loaded = load(cfg)
    assert gw.exec("nft", "list", "table", "ip", "ikemgr") == nft_table_text(firewall_spec(loaded))
    assert firewall_outputs(loaded)[0].text.endswith(gw.exec("nft", "list", "table", "ip", "ikemgr"))
    chains = {o["chain"]["name"]: o["chain"] for o in gw.ruleset() if "chain" in o}
    assert {k: (c["type"], c["hook"], c["prio"]) for k, c in chains.items()} == {
        "postrouting": ("nat", "postrouting", 100), "forward": ("filter", "forward", -150)}
    assert gw.rt_tables.read_text().splitlines()[-3:] == ["200 gwk3", "123456 gw123456", "123457 gw123457"]
    after = gw.snapshot()
    st = gw.rt_tables.stat()

    rc, res, err = gw.apply(cfg)
    assert (rc, err) == (0, "")
    assert res["data"]["changes"] == [] and res["data"]["changed"] is False
    assert res["messages"] == [f"no changes in netns {gw.ns}"]
    p = gw.apply_text(cfg)
    assert (p.returncode, p.stdout, p.stderr) == (0, f"no changes in netns {gw.ns}\n", "")
    assert gw.snapshot() == after
    st2 = gw.rt_tables.stat()
    assert (st2.st_ino, st2.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)  # unchanged file: no write


def test_inside_the_namespace_and_from_outside_agree(gw: Gw) -> None:
    """Run in the namespace (no --netns: plain IPRoute, firewall inline), then from outside."""
    cfg = gw.config()
    p = sh("ip", "netns", "exec", gw.ns, str(IKEMGR), "apply", "--config", str(cfg))
    assert p.stdout.splitlines()[0] == "applied (10 changes):"
    assert owned_routes(gw) == ROUTES_CAMPUS | ROUTES_VLAN1 | ROUTES_VLAN2
    assert nft_snat(gw) == SNAT_ALL
    rc, res, err = gw.apply(cfg)
    assert (rc, err, res["data"]["changes"]) == (0, "", [])
    p = sh("ip", "netns", "exec", gw.ns, str(IKEMGR), "apply", "--config", str(cfg))
    assert p.stdout == "no changes\n"


def test_dry_run_prints_the_plan_and_changes_nothing(gw: Gw) -> None:
    cfg = gw.config()
    before = gw.snapshot()
    p = gw.apply_text(cfg, "--dry-run")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == f"plan in netns {gw.ns} (10 changes, dry run):"
    assert "+ rule priority 30001 from 10.1.0.0/24 to 10.0.0.0/8 lookup gwk3" in lines
    assert gw.snapshot() == before
    assert not gw.rt_tables.exists()


def test_removed_vlan_loses_exactly_its_state(gw: Gw) -> None:
    assert gw.apply(gw.config())[0] == 0
    rules_before = gw.rules()
    one = gw.config(vlans=[VLAN1], name="one.yaml")

    rc, res, err = gw.apply(one)
    assert (rc, err) == (0, "")
    assert res["data"]["changes"] == [
        "~ nftables table ip ikemgr (replaced as a whole)",
        "- route default via 10.2.1.254 dev lab2 table gw123457",
        "- route 10.2.1.0/24 dev lab2 src 10.2.1.253 table gw123457",
        f"~ file {gw.rt_tables}",
    ]
    assert owned_routes(gw) == ROUTES_CAMPUS | ROUTES_VLAN1
    assert gw.rules() == rules_before
    assert nft_snat(gw) == SNAT_ALL - {("lab2", "10.2.1.253")}
    assert "123457" not in gw.rt_tables.read_text()
    assert gw.apply(one)[1]["data"]["changes"] == []

    # and back: the VLAN returns exactly as before
    rc, res, _ = gw.apply(gw.config())
    assert rc == 0 and owned_routes(gw) == ROUTES_CAMPUS | ROUTES_VLAN1 | ROUTES_VLAN2
    assert nft_snat(gw) == SNAT_ALL


def _plant_foreign_state(g: Gw) -> None:
    # same selector and priority as ikemgr's base rule, other protocol
    g.ip("rule", "add", "priority", "30001", "from", "10.1.0.0/24", "to", "10.0.0.0/8", "lookup", "200",
         "proto", "static")
    g.ip("rule", "add", "priority", "30001", "fwmark", "0x1", "lookup", "123456", "proto", "boot")
    # the policy engine's band, with ikemgr's protocol: not apply's business
    g.ip("rule", "add", "priority", "29500", "from", "10.1.0.77", "to", "10.0.0.0/8", "lookup", "123456",
         "proto", "99")
    # foreign routes in a table ikemgr owns, and ikemgr's protocol in a table it never owned
    g.ip("route", "add", "10.9.0.0/16", "dev", "lab1", "table", "123456", "proto", "static")
    g.ip("route", "add", "10.8.0.0/16", "dev", "lab2", "table", "123457", "proto", "boot")
    g.ip("route", "add", "10.7.0.0/16", "dev", "lab1", "table", "123999", "proto", "99")
    g.ip("route", "add", "10.6.0.0/16", "dev", "lab1", "proto", "99")
    g.exec("nft", "add table ip foreign; add chain ip foreign fw { type filter hook forward priority 0; }; "
           "add rule ip foreign fw ip saddr 10.1.0.0/24 counter accept")
    g.exec("nft", "add table ip ikemgr_policy; add set ip ikemgr_policy vips { type ipv4_addr; }; "
           "add element ip ikemgr_policy vips { 10.1.0.77 }")
    g.exec("nft", "add table inet ikemgr")


def test_foreign_state_is_untouched(gw: Gw) -> None:
    _plant_foreign_state(gw)
    rules0, routes0 = foreign_rules(gw), foreign_routes(gw)
    nft0 = {t: gw.exec("nft", "list", "table", *t.split()) for t in
            ("ip foreign", "ip ikemgr_policy", "inet ikemgr")}

    def untouched() -> None:
        assert foreign_rules(gw) == rules0
        assert foreign_routes(gw) == routes0
        for t, text in nft0.items():
            assert gw.exec("nft", "list", "table", *t.split()) == text

    rc, res, err = gw.apply(gw.config())
    assert (rc, err) == (0, "")
    assert owned_rules(gw) == RULES_BOTH
    assert owned_routes(gw) - {("123999", "10.7.0.0/16", "lab1", None, None),
                               ("254", "10.6.0.0/16", "lab1", None, None)} \
        == ROUTES_CAMPUS | ROUTES_VLAN1 | ROUTES_VLAN2
    untouched()
    assert gw.apply(gw.config())[1]["data"]["changes"] == []
    # remove every VLAN: their tables still hold the foreign routes afterwards
    rc, res, err = gw.apply(gw.config(vlans=[], name="none.yaml"))
    assert (rc, err) == (0, "")
    assert owned_routes(gw) == ROUTES_CAMPUS | {("123999", "10.7.0.0/16", "lab1", None, None),
                                                 ("254", "10.6.0.0/16", "lab1", None, None)}
    untouched()
    # switching the firewall backend removes ikemgr's nft table, and only that
    rc, res, err = gw.apply(gw.config(vlans=[], backend="iptables", name="ipt.yaml"))
    assert (rc, err) == (0, "")
    assert nft_tables(gw) == {("ip", "foreign"), ("ip", "ikemgr_policy"), ("inet", "ikemgr")}
    untouched()


def test_foreign_route_in_the_way_fails_cleanly_and_changes_nothing(gw: Gw) -> None:
    gw.ip("route", "add", "default", "dev", "ens2", "table", "200", "proto", "static")
    before = gw.snapshot()
    p = gw.apply_text(gw.config())
    assert p.returncode == 1
    assert p.stderr == ("error: route default via 10.1.0.254 dev ens2 table gwk3: the table already holds "
                        "a route to 0.0.0.0/0 that ikemgr does not own (protocol 4); remove it or use "
                        "another table\n")
    assert gw.snapshot() == before


def test_missing_interface_is_one_line_and_changes_nothing(gw: Gw) -> None:
    vlan3 = {"number": 7, "interface": "lab3", "subnet": "10.2.7.0/24", "gateway": "10.2.7.254"}
    before = gw.snapshot()
    p = gw.apply_text(gw.config(vlans=[VLAN1, VLAN2, vlan3]))
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == f"error: interface lab3 (vlans[2].interface) does not exist in netns {gw.ns}\n"
    assert gw.snapshot() == before


def test_snat_address_not_on_the_host_is_one_line_and_changes_nothing(gw: Gw) -> None:
    before = gw.snapshot()
    p = gw.apply_text(gw.config(vlans=[VLAN1, {**VLAN2, "snat": "10.2.1.200"}]))
    assert p.returncode == 1
    assert p.stderr == (f"error: 10.2.1.200 (vlans[1].snat) is not an address of this host in netns "
                        f"{gw.ns}; add it to lab2 (with noprefixroute)\n")
    assert gw.snapshot() == before


def test_missing_netns_is_a_usage_error_and_is_not_created(tmp_path: Path, gw: Gw) -> None:
    name = f"ikt-a-{secrets.token_hex(4)}-missing"
    p = sh(str(IKEMGR), "apply", "--config",
           str(gw.config()), "--netns", name, check=False)
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == f"error: --netns: network namespace {name} does not exist\n"
    assert not Path("/var/run/netns", name).exists()


# --------------------------------------------------------------------------- iptables-legacy


def test_iptables_backend(gw: Gw) -> None:
    gw.exec("iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-s", "10.5.0.0/16", "-j", "MASQUERADE")
    gw.exec("iptables-legacy", "-t", "mangle", "-A", "FORWARD", "-p", "udp", "-j", "ACCEPT")
    cfg = gw.config(backend="iptables")
    rendered = firewall_outputs(load(cfg))[0].text.splitlines()
    want_nat = [ln for ln in rendered if ln.startswith("-A IKEMGR-POSTROUTING")]
    want_mangle = [ln for ln in rendered if ln.startswith("-A IKEMGR-FORWARD")]
    assert len(want_nat) == 3 and len(want_mangle) == 2

    rc, res, err = gw.apply(cfg)
    assert (rc, err) == (0, "")
    assert res["data"]["changes"][:2] == ["+ iptables -t nat chain IKEMGR-POSTROUTING (3 rules)",
                                          "+ iptables -t mangle chain IKEMGR-FORWARD (2 rules)"]
    # what the kernel holds is line for line the rendered iptables-restore file
    assert ipt_lines(gw, "nat") == [":IKEMGR-POSTROUTING - [0:0]", "-A POSTROUTING -j IKEMGR-POSTROUTING",
                                    "-A POSTROUTING -s 10.5.0.0/16 -j MASQUERADE", *want_nat]
    assert ipt_lines(gw, "mangle") == [":IKEMGR-FORWARD - [0:0]", "-A FORWARD -j IKEMGR-FORWARD",
                                       "-A FORWARD -p udp -j ACCEPT", *want_mangle]
    assert owned_rules(gw) == RULES_BOTH
    assert owned_routes(gw) == ROUTES_CAMPUS | ROUTES_VLAN1 | ROUTES_VLAN2
    assert nft_tables(gw) == set()
    saved = gw.exec("iptables-legacy-save")

    rc, res, err = gw.apply(cfg)
    assert (rc, err, res["data"]["changes"]) == (0, "", [])
    assert _strip_dates(gw.exec("iptables-legacy-save")) == _strip_dates(saved)

    one = gw.config(vlans=[VLAN1], backend="iptables", name="one.yaml")
    rc, res, err = gw.apply(one)
    assert (rc, err) == (0, "")
    assert res["data"]["changes"][0] == "~ iptables -t nat chain IKEMGR-POSTROUTING (2 rules)"
    assert ipt_lines(gw, "nat") == [":IKEMGR-POSTROUTING - [0:0]", "-A POSTROUTING -j IKEMGR-POSTROUTING",
                                    "-A POSTROUTING -s 10.5.0.0/16 -j MASQUERADE",
                                    *[ln for ln in want_nat if "-o lab2" not in ln]]
    assert ipt_lines(gw, "mangle")[-2:] == want_mangle
    assert owned_routes(gw) == ROUTES_CAMPUS | ROUTES_VLAN1
    assert gw.apply(one)[1]["data"]["changes"] == []


def test_switching_back_to_nftables_drops_the_legacy_chains_only(gw: Gw) -> None:
    gw.exec("iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-s", "10.5.0.0/16", "-j", "MASQUERADE")
    assert gw.apply(gw.config(backend="iptables"))[0] == 0
    assert len(ipt_lines(gw, "nat")) == 6
    rc, res, err = gw.apply(gw.config(backend="nftables", name="nft.yaml"))
    assert (rc, err) == (0, "")
    assert res["data"]["changes"][:3] == [
        "+ nftables table ip ikemgr (3 SNAT rules, MSS clamp 1360)",
        "- iptables -t nat chain IKEMGR-POSTROUTING (backend is nftables now)",
        "- iptables -t mangle chain IKEMGR-FORWARD (backend is nftables now)"]
    assert ipt_lines(gw, "nat") == ["-A POSTROUTING -s 10.5.0.0/16 -j MASQUERADE"]
    assert ipt_lines(gw, "mangle") == []
    assert nft_snat(gw) == SNAT_ALL
    assert gw.apply(gw.config(backend="nftables", name="nft.yaml"))[1]["data"]["changes"] == []


def test_nftables_backend_never_creates_legacy_tables(gw: Gw) -> None:
    assert gw.apply(gw.config())[0] == 0
    assert gw.apply(gw.config())[0] == 0
    assert gw.exec("cat", "/proc/net/ip_tables_names") == ""


def _strip_dates(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if not ln.startswith("#")]


def test_pmtu_clamp_loads_in_both_backends(gw: Gw) -> None:
    cfg = gw.config(firewall={"backend": "nftables", "mss_clamp": "pmtu"})
    assert gw.apply(cfg)[0] == 0
    assert "tcp option maxseg size set rt mtu" in gw.exec("nft", "list", "table", "ip", "ikemgr")
    assert gw.apply(cfg)[1]["data"]["changes"] == []
    cfg = gw.config(firewall={"backend": "iptables", "mss_clamp": "pmtu"}, name="ipt.yaml")
    assert gw.apply(cfg)[0] == 0
    assert ipt_lines(gw, "mangle")[-1] == \
        "-A IKEMGR-FORWARD -d 10.1.0.0/24 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"
    assert gw.apply(cfg)[1]["data"]["changes"] == []

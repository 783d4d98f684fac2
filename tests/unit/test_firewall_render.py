"""Firewall and rt_tables rendering: exact text for the Kyoto example, both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikemgr.config.schema import Config
from ikemgr.core.firewall import firewall_spec
from ikemgr.errors import ConfigError
from ikemgr.fsio import replace_text
from ikemgr.render.firewall import (
    IPT_PATH,
    NFT_PATH,
    firewall_outputs,
    ipt_context,
    ipt_file_text,
    nft_context,
    nft_file_text,
    nft_table_text,
)
from ikemgr.render.routing import RT_TABLES_PATH, rt_tables_output

CAMPUS_TABLE = '''table ip ikemgr {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "ens1" ip saddr 10.1.0.0/24 snat to 192.0.2.1 comment "pool to the Internet via the global address"
		oifname "ens3.1" ip saddr 10.1.0.0/24 snat to 10.2.0.253 comment "pool to lab VLAN 123456: broadcast - 2"
		oifname "ens3.2" ip saddr 10.1.0.0/24 snat to 10.2.1.253 comment "pool to lab VLAN 123457: broadcast - 2"
		oifname "ens3.3" ip saddr 10.1.0.0/24 snat to 10.2.2.125 comment "pool to lab VLAN 200001: broadcast - 2"
	}

	chain forward {
		type filter hook forward priority mangle; policy accept;
		ip saddr 10.1.0.0/24 tcp flags syn tcp option maxseg size > 1360 tcp option maxseg size set 1360
		ip daddr 10.1.0.0/24 tcp flags syn tcp option maxseg size > 1360 tcp option maxseg size set 1360
	}
}
'''  # noqa: E501

CAMPUS_IPT_RULES = [
    '-A IKEMGR-POSTROUTING -s 10.1.0.0/24 -o ens1 -m comment --comment "pool to the Internet via the '
    'global address" -j SNAT --to-source 192.0.2.1',
    '-A IKEMGR-POSTROUTING -s 10.1.0.0/24 -o ens3.1 -m comment --comment "pool to lab VLAN 123456: '
    'broadcast - 2" -j SNAT --to-source 10.2.0.253',
    '-A IKEMGR-POSTROUTING -s 10.1.0.0/24 -o ens3.2 -m comment --comment "pool to lab VLAN 123457: '
    'broadcast - 2" -j SNAT --to-source 10.2.1.253',
    '-A IKEMGR-POSTROUTING -s 10.1.0.0/24 -o ens3.3 -m comment --comment "pool to lab VLAN 200001: '
    'broadcast - 2" -j SNAT --to-source 10.2.2.125',
    "-A IKEMGR-FORWARD -s 10.1.0.0/24 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1360",
    "-A IKEMGR-FORWARD -d 10.1.0.0/24 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1360",
]


def variant(cfg: Config, **sections: dict[str, object]) -> Config:
    doc = cfg.model_dump(mode="json")
    for key, value in sections.items():
        doc[key] = {**doc[key], **value}
    return Config.model_validate(doc)


def test_nft_table_exact(campus: Config) -> None:
    assert nft_table_text(firewall_spec(campus)) == CAMPUS_TABLE


def test_nft_file_is_atomic_replace_of_the_same_table(campus: Config) -> None:
    spec = firewall_spec(campus)
    text = nft_file_text(spec)
    body = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    # create-if-missing, delete, full table: one nft transaction, no half ruleset ever visible
    assert body[:2] == ["table ip ikemgr {}", "delete table ip ikemgr"]
    assert text.endswith(CAMPUS_TABLE)
    (out,) = firewall_outputs(campus)
    assert (out.path, out.text, out.mode, out.secret) == (NFT_PATH, text, 0o644, False)
    # the policy engine's table is never named in a statement
    assert all("ikemgr_policy" not in ln for ln in body)


def test_nft_pmtu_clamp(campus: Config) -> None:
    cfg = variant(campus, firewall={"mss_clamp": "pmtu"})
    ctx = nft_context(firewall_spec(cfg))
    assert ctx["clamps"] == [
        {"match": "ip saddr 10.1.0.0/24", "stmt": "tcp option maxseg size set rt mtu"},
        {"match": "ip daddr 10.1.0.0/24", "stmt": "tcp option maxseg size set rt mtu"},
    ]
    assert "\t\tip daddr 10.1.0.0/24 tcp flags syn tcp option maxseg size set rt mtu\n" in \
        nft_table_text(firewall_spec(cfg))


def test_custom_table_name_and_mss(campus: Config) -> None:
    cfg = variant(campus, firewall={"table": "kuvpn", "mss_clamp": 1400})
    text = nft_file_text(firewall_spec(cfg))
    assert "delete table ip kuvpn\ntable ip kuvpn {\n" in text
    assert "tcp option maxseg size > 1400 tcp option maxseg size set 1400" in text
    assert "ikemgr {" not in text


def test_iptables_rules_exact(campus: Config) -> None:
    cfg = variant(campus, firewall={"backend": "iptables"})
    (out,) = firewall_outputs(cfg)
    assert out.path == IPT_PATH
    lines = [ln for ln in out.text.splitlines() if ln and not ln.startswith("#")]
    assert lines == [
        "*nat", ":IKEMGR-POSTROUTING - [0:0]", *CAMPUS_IPT_RULES[:4], "COMMIT",
        "*mangle", ":IKEMGR-FORWARD - [0:0]", *CAMPUS_IPT_RULES[4:], "COMMIT",
    ]
    assert out.text == ipt_file_text(firewall_spec(cfg))


def test_iptables_pmtu(campus: Config) -> None:
    ctx = ipt_context(firewall_spec(variant(campus, firewall={"mss_clamp": "pmtu"})))
    assert ctx["clamps"] == [
        "-s 10.1.0.0/24 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
        "-d 10.1.0.0/24 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
    ]


def test_rt_tables(campus: Config) -> None:
    out = rt_tables_output(campus)
    assert out.path == RT_TABLES_PATH
    assert [ln for ln in out.text.splitlines() if not ln.startswith("#")] == [
        "200 gwk3", "123456 gw123456", "123457 gw123457", "200001 gw200001"]


@pytest.mark.parametrize(("table", "message"), [
    ("9lives", "firewall.table: '9lives' must start with a letter or '_' (nftables table name)"),
    ("ikemgr_policy", "firewall.table: 'ikemgr_policy' is the policy engine's table; pick another name"),
    ("a" * 20, "firewall.table: 'aaaaaaaaaaaaaaaaaaaa' is too long: the iptables chain "
               "AAAAAAAAAAAAAAAAAAAA-POSTROUTING exceeds 28 characters"),
])
def test_bad_table_names(campus: Config, table: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        firewall_spec(variant(campus, firewall={"table": table}))
    assert e.value.lines() == [message]


def test_rt_tables_write_is_atomic_and_skips_unchanged(tmp_path: Path, campus: Config) -> None:
    target = tmp_path / "rt_tables.d" / "ikemgr.conf"
    text = rt_tables_output(campus).text
    assert replace_text(target, text) is True
    ino = target.stat().st_ino
    assert replace_text(target, text) is False
    assert target.stat().st_ino == ino
    assert replace_text(target, text + "7 extra\n") is True
    assert target.stat().st_ino != ino  # replaced by rename, never rewritten in place
    assert target.read_text().endswith("7 extra\n")
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in target.parent.iterdir()) == ["ikemgr.conf"]  # no temp files left

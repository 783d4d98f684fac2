"""Config model: the example loads with the derived values; bad configs give one line each."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ikemgr.cli import app
from ikemgr.config.load import load, load_text
from ikemgr.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "campus.yaml"
TEXT = EXAMPLE.read_text()


def test_example_derives_kyoto_values() -> None:
    cfg = load(EXAMPLE)
    assert cfg.pool_network == ipaddress.ip_network("10.1.0.0/24")
    assert cfg.gateway.campus.table.name == "gwk3"
    v = cfg.vlan(123456)
    assert v is not None
    assert str(v.snat_address) == "10.2.0.253"  # broadcast − 2, as in the seed's table 4
    assert (v.table_id, v.table_label) == (123456, "gw123456")
    assert str(cfg.vlan(200001).snat_address) == "10.2.2.125"  # a /25: broadcast .127 − 2
    assert len(cfg.vlans) >= 3


def _line_of(text: str, needle: str) -> int:
    """Line of the n-th line containing needle ("text#2" = the second such line)."""
    what, _, nth = needle.partition("#")
    hits = [i for i, ln in enumerate(text.splitlines(), 1) if what in ln]
    return hits[int(nth or 1) - 1]


# (replace this, with that, expected error line); {line} is the line of the 3rd element's needle
BAD = [
    ("subnet: 10.2.1.0/24", "subnet: 10.2.1.0/33", "vlans[1].subnet (line {line}): 10.2.1.0/33 is not a network",
     "10.2.1.0/33"),
    ("subnet: 10.2.1.0/24", "subnet: 10.2.1.1/24",
     "vlans[1].subnet (line {line}): 10.2.1.1/24 has host bits set (did you mean 10.2.1.0/24?)", "10.2.1.1/24"),
    ("gateway: 10.2.1.254", "gateway: 10.3.1.254\n    snat: 10.2.1.200",
     "vlans[1].gateway (line {line}): 10.3.1.254 is not inside subnet 10.2.1.0/24", "10.3.1.254"),
    ("gateway: 10.2.0.254", "gateway: 10.2.0.254\n    snat: 10.2.9.1",
     "vlans[0].snat (line {line}): 10.2.9.1 is not inside subnet 10.2.0.0/24", "10.2.9.1"),
    ("gateway: 10.2.0.254", "gateway: 10.2.0.254\n    snat: 10.2.0.255",
     "vlans[0].snat (line {line}): 10.2.0.255 is the network or broadcast address of 10.2.0.0/24",
     "10.2.0.255"),
    ("gateway: 10.2.0.254", "gateway: 10.2.0.254\n    snat: 10.2.0.254",
     "vlans[0].snat (line {line}): 10.2.0.254 equals the VLAN gateway", "snat: 10.2.0.254"),
    ("number: 123457", "number: 123457\n    table: 123456",
     "vlans[1].table (line {line}): id 123456 already used by vlans[0]", "table: 123456"),
    ("number: 123457", "number: 123457\n    table_name: gw123456",
     "vlans[1].table_name (line {line}): gw123456 already used by vlans[0]", "table_name: gw123456"),
    ("number: 123457", "number: 123457\n    table: 254",
     "vlans[1].table (line {line}): id 254 is reserved by the kernel (0, 253, 254, 255)", "table: 254"),
    ("number: 200001", "number: 123457", "vlans[2].number (line {line}): 123457 appears twice",
     "number: 123457#2"),
    ("number: 200001", "number: 1234567890",
     "vlans[2].number (line {line}): Input should be less than or equal to 999999999", "1234567890"),
    ("  mobike: true", "  mobike: true\n  turbo: yes", "strongswan.turbo (line {line}): unknown key", "turbo"),
    ("  dpd_delay: 30", "  dpd_delay: soon",
     "strongswan.dpd_delay (line {line}): Input should be a valid integer, unable to parse string as an integer",
     "dpd_delay"),
    ("  backend: marks", "  backend: magic", "policy.backend (line {line}): Input should be 'marks' or 'rules'",
     "magic"),
    ("  mss_clamp: 1360", "  mss_clamp: 99",
     "firewall.mss_clamp (line {line}): 99 must be 'pmtu' or an MSS between 536 and 1460", "mss_clamp"),
    ("  last: 10.1.0.250", "  last: 10.1.1.5", "pool.last (line {line}): 10.1.1.5 is outside the client segment "
     "10.1.0.0/24", "last: 10.1.1.5"),
    ("  first: 10.1.0.10", "  first: 10.1.0.10\n  x_last: 1",
     "pool.x_last (line {line}): unknown key", "x_last"),
    ("    address: 192.0.2.1/24", "    address: 192.0.2.1",
     "gateway.outside.address (line {line}): 192.0.2.1 needs a prefix length (address/len)", "address: 192.0.2.1"),
    ("  fqdn: vpn.example.ac.jp", "  fqdn: vpn example", "gateway.fqdn (line {line}): 'vpn example' is not a "
     "host name", "fqdn"),
    ("    interface: ens3.2", "    interface: ens3.1",
     "vlans[1].interface (line {line}): ens3.1 already used by vlans[0]", "interface: ens3.1#2"),
    ("  - 10.0.0.0/8", "  - 10.0.0.0/8\n  - 2001:db8::/32",
     "campus_prefixes (line {line}): IPv6 is not supported yet", "campus_prefixes"),
    ("  cert: /etc/swanctl/x509/gateway.crt", "  cert: gateway.crt",
     "gateway.cert (line {line}): gateway.crt must be an absolute path", "cert: gateway.crt"),
]


@pytest.mark.parametrize(("old", "new", "expected", "needle"), BAD, ids=[b[2].split(" ")[0] for b in BAD])
def test_bad_config_one_line_with_field_and_line(old: str, new: str, expected: str, needle: str,
                                                 tmp_path: Path) -> None:
    assert old in TEXT
    text = TEXT.replace(old, new, 1)
    with pytest.raises(ConfigError) as e:
        load_text(text)
    line = _line_of(text, needle)
    assert e.value.lines() == [expected.format(line=line)]
    # the operator sees exactly that line and exit code 2, no traceback
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    r = CliRunner().invoke(app, ["config", "check", "--config", str(bad)])
    assert r.exit_code == 2
    assert r.output.splitlines() == [f"error: {expected.format(line=line)}"]


def test_structural_errors() -> None:
    with pytest.raises(ConfigError) as e:
        load_text("gateway: [unclosed\n")
    assert e.value.lines()[0].startswith("<yaml> (line 2): not valid YAML")
    with pytest.raises(ConfigError) as e:
        load_text("- a\n- b\n")
    assert e.value.lines() == ["<config> (line 1): the top level must be a mapping"]
    with pytest.raises(ConfigError) as e:
        load_text("")
    assert e.value.lines() == ["<config>: the file is empty"]
    with pytest.raises(ConfigError) as e:
        load_text("pool: {first: 10.1.0.10, last: 10.1.0.20}\n")
    assert "gateway (line 1): required key is missing" in e.value.lines()
    assert "campus_prefixes (line 1): required key is missing" in e.value.lines()
    with pytest.raises(ConfigError) as e:
        load_text("a: 1\na: 2\n")
    assert "not valid YAML" in e.value.lines()[0]


def test_cli_exit_code_and_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEXT.replace("subnet: 10.2.1.0/24", "subnet: 10.2.1.0/33"))
    r = runner.invoke(app, ["config", "check", "--config", str(bad)])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"error: vlans[1].subnet (line {_line_of(bad.read_text(), '10.2.1.0/33')}): 10.2.1.0/33 is not a network"]
    missing = runner.invoke(app, ["config", "check", "--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert "nope.yaml: no such file" in missing.output
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"gateway:\n  fqdn: \xff\xfe\n")
    r = runner.invoke(app, ["config", "check", "--config", str(binary)])
    assert r.exit_code == 2 and "(line 2): not valid UTF-8" in r.output
    ok = runner.invoke(app, ["config", "check", "--config", str(EXAMPLE), "--json"])
    assert ok.exit_code == 0 and '"ok": true' in ok.output

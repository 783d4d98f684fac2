"""Configs that used to pass `config check` but break a gateway: each refused in one line
(field and YAML line), every problem of a file reported, warnings that do not stop."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ikemgr.cli import app
from ikemgr.config.load import load_text, parse_text
from ikemgr.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "examples" / "campus.yaml").read_text()


def _line_of(text: str, needle: str) -> int:
    """Line of the n-th line containing needle ("text#2" = the second such line)."""
    what, _, nth = needle.partition("#")
    hits = [i for i, ln in enumerate(text.splitlines(), 1) if what in ln]
    return hits[int(nth or 1) - 1]


def _edit(*pairs: tuple[str, str]) -> str:
    text = TEXT
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


# (edits, expected error line, needle of the line it names)
BAD = [
    # the same subnet on two lab VLANs: both interfaces would own SNAT 10.2.0.253
    ([("subnet: 10.2.1.0/24\n    gateway: 10.2.1.254", "subnet: 10.2.0.0/24\n    gateway: 10.2.0.1")],
     "vlans[1].subnet (line {line}): 10.2.0.0/24 equals vlans[0].subnet 10.2.0.0/24 "
     "(both would own SNAT 10.2.0.253)", "subnet: 10.2.0.0/24#2"),
    ([("subnet: 10.2.1.0/24", "subnet: 10.2.0.0/23")],
     "vlans[1].subnet (line {line}): 10.2.0.0/23 overlaps vlans[0].subnet 10.2.0.0/24", "10.2.0.0/23"),
    ([("subnet: 10.2.2.0/25\n    gateway: 10.2.2.126", "subnet: 10.1.0.128/25\n    gateway: 10.1.0.129")],
     "vlans[2].subnet (line {line}): 10.1.0.128/25 is inside the client segment 10.1.0.0/24", "10.1.0.128/25"),
    ([("subnet: 10.2.2.0/25\n    gateway: 10.2.2.126", "subnet: 10.1.0.0/24\n    gateway: 10.1.0.1")],
     "vlans[2].subnet (line {line}): 10.1.0.0/24 equals the client segment 10.1.0.0/24", "subnet: 10.1.0.0/24"),
    ([("subnet: 10.2.2.0/25\n    gateway: 10.2.2.126", "subnet: 10.0.0.0/15\n    gateway: 10.0.0.1")],
     "vlans[2].subnet (line {line}): 10.0.0.0/15 overlaps the client segment 10.1.0.0/24", "10.0.0.0/15"),
    ([("    interface: ens2", "    interface: ens1")],
     "gateway.campus.interface (line {line}): ens1 is also gateway.outside.interface "
     "(outside and campus need an interface each)", "interface: ens1#2"),
    ([("url: sqlite:////var/lib/ikemgr/ikemgr.db", "url: postgres://ikemgr@db.example.ac.jp/ikemgr")],
     "database.url (line {line}): postgres:// is not a SQLAlchemy dialect: use postgresql+psycopg://",
     "url: postgres"),
    ([("url: sqlite:////var/lib/ikemgr/ikemgr.db", "url: postgresql://ikemgr:pw@db/ikemgr")],
     "database.url (line {line}): postgresql:// needs the driver psycopg2 (the default), which ikemgr "
     "does not install: use postgresql+psycopg://", "url: postgresql"),
    ([("url: sqlite:////var/lib/ikemgr/ikemgr.db", "url: mysql+pymysql://ikemgr@db/ikemgr")],
     "database.url (line {line}): mysql+pymysql:// is not supported: use sqlite:///<path> or "
     "postgresql+psycopg://<user>@<host>/<database>", "url: mysql"),
    ([("url: sqlite:////var/lib/ikemgr/ikemgr.db", "url: /var/lib/ikemgr/ikemgr.db")],
     "database.url (line {line}): not a SQLAlchemy URL: use sqlite:///<path> or "
     "postgresql+psycopg://<user>@<host>/<database>", "url: /var"),
    ([("radius:\n  address: 127.0.0.1\n  secret_file: /etc/ikemgr/radius.secret\n",
       "radius:\n  address: 127.0.0.2\n  servers:\n    - {address: 192.0.2.10, secret_file: /etc/ikemgr/r.secret}\n")],
     "radius.address (line {line}): describes the local FreeRADIUS; with radius.servers (remote RADIUS) "
     "no FreeRADIUS is rendered: remove it", "address: 127.0.0.2"),
    ([("radius:\n  address: 127.0.0.1\n  secret_file: /etc/ikemgr/radius.secret\n",
       "radius:\n  servers:\n    - {address: 192.0.2.10, secret_file: /etc/ikemgr/a.secret}\n"
       "    - {address: 192.0.2.10, secret_file: /etc/ikemgr/b.secret}\n")],
     "radius.servers[1].address (line {line}): 192.0.2.10:1812 is also servers[0]", "b.secret"),
]


@pytest.mark.parametrize(("edits", "expected", "needle"), BAD, ids=[b[1].split(" (")[0] + "-" + b[2] for b in BAD])
def test_refused_in_one_line_with_field_and_line(edits: list[tuple[str, str]], expected: str, needle: str,
                                                 tmp_path: Path) -> None:
    text = _edit(*edits)
    want = expected.format(line=_line_of(text, needle))
    with pytest.raises(ConfigError) as e:
        load_text(text)
    assert e.value.lines() == [want]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    r = CliRunner().invoke(app, ["config", "check", "--config", str(bad)])
    assert (r.exit_code, r.output.splitlines()) == (2, [f"error: {want}"])
    # every command that loads the config refuses it the same way
    r = CliRunner().invoke(app, ["render", "--config", str(bad), "--out", str(tmp_path / "o")])
    assert (r.exit_code, r.output.splitlines()) == (2, [f"error: {want}"])


def test_a_database_password_is_never_printed() -> None:
    text = _edit(("url: sqlite:////var/lib/ikemgr/ikemgr.db", "url: postgres://ikemgr:hunter2@db/ikemgr"))
    with pytest.raises(ConfigError) as e:
        load_text(text)
    assert "hunter2" not in str(e.value) and "db/ikemgr" not in str(e.value)


def test_a_sync_source_url_is_checked_too() -> None:
    text = TEXT + ("sync:\n  sources:\n    - kind: sql\n      name: regdb\n"
                   "      url: postgres://reader@regdb/kuins\n      view: public.grants\n")
    with pytest.raises(ConfigError) as e:
        load_text(text)
    assert e.value.lines() == [f"sync.sources[0].url (line {_line_of(text, 'postgres://reader')}): "
                               "postgres:// is not a SQLAlchemy dialect: use postgresql+psycopg://"]


def test_every_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    """A duplicate VLAN number is reported beside a field error elsewhere, and beside the
    other cross checks of the same list (not the first problem only)."""
    text = _edit(("number: 200001", "number: 123457"),              # vlans[2]: duplicate number
                 ("subnet: 10.2.1.0/24", "subnet: 10.2.0.0/23"),   # vlans[1]: overlaps vlans[0]
                 ("  dpd_delay: 30", "  dpd_delay: soon"),          # a field error in another section
                 ("url: sqlite:////var/lib/ikemgr/ikemgr.db", "url: postgres://db/ikemgr"))
    expected = [
        f"vlans[1].subnet (line {_line_of(text, '10.2.0.0/23')}): 10.2.0.0/23 overlaps vlans[0].subnet 10.2.0.0/24",
        f"vlans[2].number (line {_line_of(text, 'number: 123457#2')}): 123457 appears twice",
        f"strongswan.dpd_delay (line {_line_of(text, 'dpd_delay')}): Input should be a valid integer, "
        "unable to parse string as an integer",
        f"database.url (line {_line_of(text, 'url: postgres')}): postgres:// is not a SQLAlchemy dialect: "
        "use postgresql+psycopg://",
    ]
    with pytest.raises(ConfigError) as e:
        load_text(text)
    assert e.value.lines() == expected
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    r = CliRunner().invoke(app, ["config", "check", "--config", str(bad)])
    assert (r.exit_code, r.output.splitlines()) == (2, [f"error: {x}" for x in expected])


def test_gateway_and_pool_problems_come_together() -> None:
    text = _edit(("    interface: ens2", "    interface: ens1"), ("  first: 10.1.0.10", "  first: 10.1.9.10"),
                 ("  last: 10.1.0.250", "  last: 10.1.9.250"))
    with pytest.raises(ConfigError) as e:
        load_text(text)
    # the pool check needs a valid gateway: only the gateway's problem while that one stands
    assert e.value.lines() == [f"gateway.campus.interface (line {_line_of(text, 'interface: ens1#2')}): ens1 is "
                               "also gateway.outside.interface (outside and campus need an interface each)"]
    text = _edit(("  first: 10.1.0.10", "  first: 10.1.9.10"), ("  last: 10.1.0.250", "  last: 10.1.9.250"))
    with pytest.raises(ConfigError) as e:
        load_text(text)
    assert e.value.lines() == [
        f"pool.first (line {_line_of(text, 'first: 10.1.9.10')}): 10.1.9.10 is outside the client segment 10.1.0.0/24",
        f"pool.last (line {_line_of(text, 'last: 10.1.9.250')}): 10.1.9.250 is outside the client segment 10.1.0.0/24",
    ]


# ----------------------------------------------------------------------------- warnings

def _warnings(text: str) -> list[str]:
    return [str(w) for w in parse_text(text).warnings()]


def test_the_example_has_no_model_warning() -> None:
    assert _warnings(TEXT) == []


def test_ldap_without_starttls_warns_while_passwords_cross_it(tmp_path: Path) -> None:
    text = _edit(("uri: ldaps://ldap.example.ac.jp", "uri: ldap://ldap.example.ac.jp"))
    line = _line_of(text, "uri: ldap://")
    want = (f"ldap.uri (line {line}): ldap://ldap.example.ac.jp carries the local FreeRADIUS (user passwords "
            "and NT hashes) in clear text: set ldap.start_tls: true or use ldaps://")
    assert _warnings(text) == [want]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    r = CliRunner().invoke(app, ["config", "check", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert f"warning: {want}" in r.output.splitlines()
    # StartTLS, or a directory on loopback: nothing crosses a wire in clear
    assert _warnings(text.replace("uri: ldap://ldap.example.ac.jp", "uri: ldap://ldap.example.ac.jp\n"
                                  "  start_tls: true")) == []
    assert _warnings(text.replace("ldap://ldap.example.ac.jp", "ldap://127.0.0.1:389")) == []


def test_radius_address_the_gateway_does_not_own_warns() -> None:
    text = _edit(("radius:\n  address: 127.0.0.1", "radius:\n  address: 10.9.9.9"))
    assert _warnings(text) == [
        f"radius.address (line {_line_of(text, '10.9.9.9')}): 10.9.9.9 is not an address of this gateway "
        "(loopback, gateway.outside/campus or a VLAN's SNAT address): the local FreeRADIUS listens there; "
        "a remote RADIUS server goes in radius.servers"]
    assert _warnings(_edit(("radius:\n  address: 127.0.0.1", "radius:\n  address: 10.1.0.251"))) == []


# ----------------------------------------------------------------------------- files

def _with_files(tmp_path: Path, text: str = TEXT) -> tuple[Path, dict[str, Path]]:
    """The example with every file it names inside tmp_path, private files 0600."""
    names = {"/etc/ikemgr/radius.secret": "radius.secret", "/etc/swanctl/x509/gateway.crt": "gateway.crt",
             "/etc/swanctl/private/gateway.key": "gateway.key", "/etc/swanctl/x509ca/ca.crt": "ca.crt"}
    paths = {}
    for old, name in names.items():
        p = tmp_path / name
        p.write_text("x-secret-value\n")
        p.chmod(0o600 if name.endswith((".secret", ".key")) else 0o644)
        text = text.replace(old, str(p))
        paths[name] = p
    eap = {"server_cert": "radius.crt", "server_key": "radius.key", "ca_file": "radius-ca.crt"}
    lines = []
    for key, name in eap.items():
        p = tmp_path / name
        p.write_text("x\n")
        p.chmod(0o600 if name.endswith(".key") else 0o644)
        lines.append(f"  {key}: {p}")
        paths[name] = p
    rows = text.splitlines()
    at = next(i for i, ln in enumerate(rows) if ln.startswith("eap:")) + 1
    text = "\n".join([*rows[:at], *lines, *rows[at:]]) + "\n"
    cfg = tmp_path / "campus.yaml"
    cfg.write_text(text)
    return cfg, paths


def test_config_check_warns_of_missing_files_with_their_lines(tmp_path: Path) -> None:
    cfg, paths = _with_files(tmp_path)
    r = CliRunner().invoke(app, ["config", "check", "--config", str(cfg)])
    assert r.exit_code == 0 and "warning" not in r.output, r.output
    paths["gateway.crt"].unlink()
    r = CliRunner().invoke(app, ["config", "check", "--config", str(cfg)])
    line = _line_of(cfg.read_text(), "  cert: ")
    assert r.exit_code == 0, r.output
    assert [ln for ln in r.output.splitlines() if ln.startswith("warning")] == [
        f"warning: gateway.cert (line {line}): {paths['gateway.crt']}: no such file (the certificate must be "
        "there before the daemons start)"]


@pytest.mark.parametrize(("name", "field", "key"), [("radius.secret", "radius.secret_file", "secret_file"),
                                                     ("gateway.key", "gateway.key", "  key: "),
                                                     ("radius.key", "eap.server_key", "server_key")])
def test_a_world_readable_secret_or_key_is_refused(tmp_path: Path, name: str, field: str, key: str) -> None:
    cfg, paths = _with_files(tmp_path)
    paths[name].chmod(0o644)
    line = _line_of(cfg.read_text(), key)
    what = "secret" if name.endswith(".secret") else "private key"
    want = (f"error: {field} (line {line}): {paths[name]}: the {what} is readable by everyone (mode 0644): "
            f"chmod o-rwx {paths[name]}, and replace the {what}: it may have leaked")
    for argv in (["config", "check"], ["render", "--out", str(tmp_path / "out")]):
        r = CliRunner().invoke(app, [*argv, "--config", str(cfg)])
        assert (r.exit_code, r.output.splitlines()) == (2, [want]), argv
    assert not (tmp_path / "out").exists()  # nothing rendered


def test_a_world_writable_ca_is_refused_a_readable_one_is_fine(tmp_path: Path) -> None:
    cfg, paths = _with_files(tmp_path)
    paths["ca.crt"].chmod(0o646)
    r = CliRunner().invoke(app, ["config", "check", "--config", str(cfg)])
    line = _line_of(cfg.read_text(), "  ca: ")
    assert (r.exit_code, r.output.splitlines()) == (
        2, [f"error: gateway.ca (line {line}): {paths['ca.crt']}: writable by everyone (mode 0646): "
            f"chmod o-w {paths['ca.crt']}"])
    paths["ca.crt"].chmod(0o644)
    assert CliRunner().invoke(app, ["config", "check", "--config", str(cfg)]).exit_code == 0

"""Remote RADIUS (radius.servers): charon's eap-radius asks a primary and a secondary server,
and no FreeRADIUS is rendered that would listen on an address the gateway does not own."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from ikemgr.cli import app
from ikemgr.commands._common import load_secrets
from ikemgr.config.load import load, load_text
from ikemgr.core.secrets import Secrets
from ikemgr.render.outputs import all_outputs

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "examples" / "campus.yaml").read_text()
LOCAL = "radius:\n  address: 127.0.0.1\n  secret_file: /etc/ikemgr/radius.secret\n"
assert LOCAL in TEXT


def _remote(primary: Path, secondary: Path | None = None) -> str:
    servers = f"    - address: 192.0.2.10\n      secret_file: {primary}\n"
    if secondary is not None:
        servers += f"    - {{address: 198.51.100.20, auth_port: 11812, acct_port: 11813, secret_file: {secondary}}}\n"
    return TEXT.replace(LOCAL, "radius:\n  servers:\n" + servers)


EXPECTED_TWO = """# Rendered by ikemgr from /etc/ikemgr/campus.yaml; edit that file and re-render instead.
# holds the RADIUS shared secrets: mode 0600
eap-radius {
    load = yes
    accounting = yes
    nas_identifier = ikemgr
    servers {
        primary {
            address = 192.0.2.10
            auth_port = 1812
            acct_port = 1813
            secret = "primary-s3cret"
            preference = 100
        }
        secondary {
            address = 198.51.100.20
            auth_port = 11812
            acct_port = 11813
            secret = "secondary-s3cret"
            preference = 0
        }
    }
}
"""


def _outputs(text: str, secrets: Secrets) -> dict[str, str]:
    return {o.path: o.text for o in all_outputs(load_text(text), secrets, "/etc/ikemgr/campus.yaml")}


def test_two_servers_render_primary_and_secondary_and_no_freeradius() -> None:
    cfg = load_text(_remote(Path("/etc/ikemgr/a.secret"), Path("/etc/ikemgr/b.secret")))
    assert not cfg.radius.local
    assert [(t.name, str(t.address), t.auth_port) for t in cfg.radius.targets] == [
        ("primary", "192.0.2.10", 1812), ("secondary", "198.51.100.20", 11812)]
    out = _outputs(_remote(Path("/etc/ikemgr/a.secret"), Path("/etc/ikemgr/b.secret")),
                   Secrets("primary-s3cret", radius_servers=("primary-s3cret", "secondary-s3cret")))
    header = out["strongswan.d/charon/eap-radius.conf"].splitlines()[0]
    assert out["strongswan.d/charon/eap-radius.conf"] == EXPECTED_TWO.replace(EXPECTED_TWO.splitlines()[0], header)
    assert not [p for p in out if p.startswith("freeradius/")]


def test_a_dumped_remote_config_validates_again() -> None:
    from ikemgr.config.schema import Config

    cfg = load_text(_remote(Path("/etc/ikemgr/a.secret"), Path("/etc/ikemgr/b.secret")))
    again = Config.model_validate(cfg.model_dump(mode="json"))
    assert again.radius.targets == cfg.radius.targets


def test_one_remote_server_is_the_primary_only() -> None:
    out = _outputs(_remote(Path("/etc/ikemgr/a.secret")), Secrets("p-s3cret", radius_servers=("p-s3cret",)))
    text = out["strongswan.d/charon/eap-radius.conf"]
    assert "primary {" in text and "secondary" not in text and "address = 192.0.2.10" in text
    assert not [p for p in out if p.startswith("freeradius/")]


def test_the_local_form_still_renders_freeradius() -> None:
    out = _outputs(TEXT, Secrets("local-s3cret"))
    assert "freeradius/3.0/clients.conf" in out
    assert "primary {\n            address = 127.0.0.1" in out["strongswan.d/charon/eap-radius.conf"]


def test_each_server_secret_is_read_from_its_own_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.secret", tmp_path / "b.secret"
    for p, v in ((a, "primary-s3cret"), (b, "secondary-s3cret")):
        p.write_text(v + "\n")
        p.chmod(0o600)
    cfg = tmp_path / "campus.yaml"
    cfg.write_text(_remote(a, b))
    assert load_secrets(load(cfg)).radius_servers == ("primary-s3cret", "secondary-s3cret")
    b.unlink()
    r = CliRunner().invoke(app, ["render", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert (r.exit_code, r.output.splitlines()[-1]) == (2, f"error: radius.servers[1].secret_file: {b}: no such file")


def test_switching_to_remote_removes_the_rendered_freeradius(tmp_path: Path) -> None:
    secret = tmp_path / "radius.secret"
    secret.write_text("local-s3cret\n")
    secret.chmod(0o600)
    cfg = tmp_path / "campus.yaml"
    cfg.write_text(TEXT.replace("/etc/ikemgr/radius.secret", str(secret)))
    out = tmp_path / "etc"
    r = CliRunner().invoke(app, ["render", "--config", str(cfg), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "freeradius/3.0/clients.conf").is_file()
    cfg.write_text(_remote(secret))
    r = CliRunner().invoke(app, ["render", "--config", str(cfg), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"removed   {out}/freeradius/3.0/clients.conf" in r.output
    assert not [p for p in (out / "freeradius").rglob("*") if p.is_file()]
    assert "address = 192.0.2.10" in (out / "strongswan.d/charon/eap-radius.conf").read_text()


def test_radius_config_check_refuses_with_remote_radius(tmp_path: Path) -> None:
    a = tmp_path / "a.secret"
    a.write_text("p-s3cret\n")
    a.chmod(0o600)
    cfg = tmp_path / "campus.yaml"
    cfg.write_text(_remote(a))
    r = CliRunner().invoke(app, ["radius", "config-check", "--config", str(cfg)])
    assert (r.exit_code, r.output.splitlines()) == (
        2, ["error: radius.servers: RADIUS is remote, ikemgr renders no FreeRADIUS to check"])

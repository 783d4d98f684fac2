"""`ikemgr radius check` (one Access-Request, a health probe) and `ikemgr radius config-check`.

check exit codes: 0 the answer was the expected one (accept by default), 1 it was not,
3 no valid answer (server down, wrong secret, timeout), 2 bad input.
config-check renders the FreeRADIUS set over a private copy of the stock tree and runs
`freeradius -XC` on it: 0 OK, 1 FreeRADIUS refuses it.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path

import typer

from ikemgr.adapters.radius import RadiusClient
from ikemgr.checks.freeradius import STOCK_RADDB, RadiusdInstance, prepare_raddb
from ikemgr.commands._common import ConfigOpt, JsonOpt, load_config, load_secrets, read_secret, run
from ikemgr.config.schema import Config
from ikemgr.errors import EXIT_FAILED, EXIT_OK, UsageError
from ikemgr.fsio import SecretUnreadable, secret_line
from ikemgr.render.freeradius import RadiusSecrets, radius_outputs
from ikemgr.result import Result

MAX_USER_BYTES = 253  # one RADIUS attribute


def _password(path: Path | None) -> tuple[str, bool]:
    if path is None:
        # no password: a random one, so a reject proves the server is up and knows our secret
        return secrets.token_urlsafe(16), False
    if str(path) == "-":
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UsageError("no password on standard input")
        return line, True
    try:
        return secret_line(path), True
    except SecretUnreadable as e:
        raise UsageError(f"password file {e}") from None


def check(config: Path, user: str, password_file: Path | None, method: str, expect: str) -> Result:
    cfg = load_config(config)
    if not user or len(user.encode()) > MAX_USER_BYTES:
        raise UsageError(f"--user must be 1-{MAX_USER_BYTES} bytes")
    if method not in ("pap", "mschapv2"):
        raise UsageError(f"--method {method}: must be pap or mschapv2")
    target = cfg.radius.targets[0]  # the local FreeRADIUS, or the primary remote server
    secret = read_secret(target.secret_file, target.secret_field)
    password, given = _password(password_file)
    client = RadiusClient(target.address, target.auth_port, secret,
                          timeout=cfg.radius.timeout, retries=cfg.radius.retries,
                          nas_identifier=cfg.radius.nas_identifier)
    verdict = client.pap(user, password) if method == "pap" else client.mschapv2(user, password)
    ok = verdict.outcome == expect
    server = f"{target.address}:{target.auth_port}"
    line = f"{verdict.outcome} from {server} for {user!r} in {verdict.rtt_ms:.1f} ms ({method})"
    if verdict.reply_message:
        line += f": {verdict.reply_message}"
    data = {"server": server, "user": user, "method": method, "outcome": verdict.outcome,
            "rtt_ms": verdict.rtt_ms, "reply_message": verdict.reply_message,
            "expected": expect, "password_given": given}
    errors = () if ok else (f"expected {expect}, got {verdict.outcome}",)
    return Result("radius check", data=data, messages=(line,), errors=errors,
                  exit_code=EXIT_OK if ok else EXIT_FAILED)


def read_secrets(cfg_path: Path) -> tuple[Config, RadiusSecrets]:
    """The config and the secrets its files hold (the command layer reads files; core does not)."""
    cfg = load_config(cfg_path)
    return cfg, load_secrets(cfg)


def config_check(config: Path, stock: Path) -> Result:
    cfg, secrets_ = read_secrets(config)
    if not cfg.radius.local:
        raise UsageError("radius.servers: RADIUS is remote, ikemgr renders no FreeRADIUS to check")
    outputs = radius_outputs(cfg, secrets_)
    with tempfile.TemporaryDirectory(prefix="ikemgr-raddb-") as tmp:
        raddb = prepare_raddb(Path(tmp) / "raddb", outputs, stock=stock)
        RadiusdInstance(raddb, Path(tmp)).check_config()
    return Result("radius config-check", data={"files": [o.path for o in outputs], "stock": str(stock)},
                  messages=(f"freeradius -XC: ok ({len(outputs)} rendered files over {stock})",))


def register(app: typer.Typer) -> None:
    sub = typer.Typer(no_args_is_help=True, help="Probe FreeRADIUS and check its rendered configuration.")
    app.add_typer(sub, name="radius")

    @sub.command("check")
    def check_cmd(
        user: str = typer.Option(..., "--user", "-u", help="User-Name to send, e.g. alice@123456."),
        password_file: Path = typer.Option(
            None, "--password-file", "-p",
            help="File whose first line is the password ('-' = stdin). Without it a random "
                 "password is sent: use with --expect reject as a liveness probe."),
        method: str = typer.Option("pap", "--method", "-m", help="pap or mschapv2 (needs the NT "
                                   "hash in LDAP; what native clients use inside EAP)."),
        expect: str = typer.Option("accept", "--expect", help="accept or reject: the answer "
                                   "that counts as success (exit 0)."),
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Send one Access-Request; print accept/reject and the round-trip time.

        Exit 0 when the answer is the expected one, 1 when not, 3 when no valid answer came.
        """

        def body() -> Result:
            if expect not in ("accept", "reject"):
                raise UsageError("--expect must be accept or reject")
            return check(config, user, password_file, method, expect)

        run("radius check", as_json, body)

    @sub.command("config-check")
    def config_check_cmd(
        stock: Path = typer.Option(STOCK_RADDB, "--stock", help="The FreeRADIUS tree to lay the files over."),
        config: Path = ConfigOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Render the FreeRADIUS files over a private copy of the stock tree and run freeradius -XC.

        Catches what only FreeRADIUS sees: missing certificates, unlang errors, module options.
        """
        run("radius config-check", as_json, lambda: config_check(config, stock))

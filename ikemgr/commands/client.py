"""`ikemgr client up|down|list|exec`: per-program VPN environments on a Linux client.

Thin: options → ``ikemgr.client.service`` → ``Result``. ``exec`` replaces this process
with the program (through ``ip netns exec`` + ``setpriv``), so its exit code is the
program's.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Network
from pathlib import Path

import typer

from ikemgr.client import model, service
from ikemgr.client.state import Store, state_dir
from ikemgr.commands._common import JsonOpt, run
from ikemgr.errors import UsageError
from ikemgr.result import Result, TableData

StateOpt = typer.Option(None, "--state-dir", envvar="IKEMGR_CLIENT_STATE_DIR",
                        help="Where environment records live (root only). Default /run/ikemgr/client.")


def _store(d: Path | None) -> Store:
    return Store(state_dir(d))


def _uptime(s: int) -> str:
    h, rem = divmod(int(s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}"


def register(app: typer.Typer) -> None:
    sub = typer.Typer(no_args_is_help=True,
                      help="Per-program VPN environments: a namespace whose only way out is the tunnel.")
    app.add_typer(sub, name="client")

    @sub.command("up")
    def up(name: str = typer.Argument(..., help="environment name (a-z 0-9 -, ≤ 11)"),
           profile: Path = typer.Option(..., "--profile", help="the swanctl profile directory "
                                        "(`ikemgr profile --format swanctl`)"),
           password_file: Path | None = typer.Option(None, "--password-file",
                                                     help="file holding the EAP password"),
           uplink_range: str = typer.Option(str(model.DEFAULT_UPLINK_RANGE), "--uplink-range",
                                            help="where the uplink /30 is taken from"),
           ipsec: str = typer.Option("auto", "--ipsec", help="auto | libipsec | kernel"),
           timeout: int = typer.Option(30, "--timeout", min=5, max=300),
           state: Path | None = StateOpt, as_json: bool = JsonOpt) -> None:
        """Create environment NAME, connect it, and report its identity and VIP."""

        def body() -> Result:
            model.check_name(name)
            if ipsec not in ("auto", "libipsec", "kernel"):
                raise UsageError("--ipsec: auto, libipsec or kernel")
            try:
                rng = IPv4Network(uplink_range)
            except ValueError:
                raise UsageError(f"--uplink-range: {model.shown(uplink_range)} is not an IPv4 "
                                 "network") from None
            v = service.up(name, profile, password_file, _store(state), uplink_range=rng,
                           ipsec=ipsec, timeout=timeout)
            return Result("client up", data=v,
                          messages=(f"{name}: up as {v['identity']}, VIP {v['vip']}, DNS "
                                    f"{', '.join(v['dns']) or '(none)'}; run programs with "
                                    f"`ikemgr client exec {name} -- CMD`",))

        run("client up", as_json, body)

    @sub.command("down")
    def down(name: str = typer.Argument(...), state: Path | None = StateOpt,
             as_json: bool = JsonOpt) -> None:
        """Remove environment NAME: charon, namespace, uplink, NAT, /etc/netns/NAME, record."""

        def body() -> Result:
            v = service.down(name, _store(state))
            return Result("client down", data=v,
                          messages=(f"{name}: removed {', '.join(v['removed']) or 'nothing'}",))

        run("client down", as_json, body)

    @sub.command("list")
    def list_(state: Path | None = StateOpt, as_json: bool = JsonOpt) -> None:
        """Environments with identity, VIP, uptime and bytes through the tunnel."""

        def body() -> Result:
            envs = service.listing(_store(state))
            rows = tuple((e["name"], e["owner_uid"], e["identity"], e["vip"], e["state"],
                          _uptime(e["uptime"]), e["bytes_in"], e["bytes_out"]) for e in envs)
            return Result("client list", data={"environments": envs},
                          tables=(TableData("environments", ("name", "owner", "identity", "vip",
                                                             "state", "uptime", "bytes in",
                                                             "bytes out"), rows),))

        run("client list", as_json, body)

    @sub.command("exec", context_settings={"ignore_unknown_options": True})
    def exec_(name: str = typer.Argument(...),
              argv: list[str] = typer.Argument(None, help="-- the program and its arguments"),
              as_root: bool = typer.Option(False, "--root",
                                           help="run as root (only in an environment root made)"),
              state: Path | None = StateOpt) -> None:
        """Run a program inside NAME as the invoking user (argv, never a shell string)."""

        def body() -> Result:
            cmd, env = service.exec_argv(name, list(argv or []), _store(state), as_root)
            os.execvpe(cmd[0], cmd, env)
            raise AssertionError("unreachable")  # pragma: no cover

        run("client exec", False, body)

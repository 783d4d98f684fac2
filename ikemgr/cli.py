"""Command line: parse → load config → command → Result → one renderer; IkemgrError → exit code.

Subcommands live in ``ikemgr/commands/<name>.py``; each module defines
``register(app: typer.Typer) -> None``. They are discovered here, so adding a command
never means editing this file.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import ikemgr.commands
from ikemgr import __version__

app = typer.Typer(
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    help="ikemgr: a strongSwan IKEv2 campus gateway and its per-user policy routing, "
    "from one declarative config.\n\nExit codes: 0 ok, 1 failed, 2 bad input (config, "
    "arguments, identity), 3 backend unavailable, 4 refused by a safety valve.",
)


def _version(value: bool) -> None:
    if value:
        print(f"ikemgr {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """ikemgr: a strongSwan IKEv2 campus gateway and its policy routing from one config."""


def _register_all() -> None:
    for mod in sorted(pkgutil.iter_modules(ikemgr.commands.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"ikemgr.commands.{mod.name}")
        module.register(app)


_register_all()


def main() -> None:
    app()

"""Command line: parse → load config → command → Result → one renderer; IkemgrError → exit code.

Subcommands live in ``ikemgr/commands/<name>.py``; each module defines
``register(app: typer.Typer) -> None``. They are discovered here, so adding a command
never means editing this file. Installed extensions add theirs through the entry point
group ``ikemgr.commands`` (the namespace lab registers ``ikemgr lab`` that way; the
product wheel does not contain it).
"""

from __future__ import annotations

import functools
import gc
import importlib
import os
import pkgutil
import sys
from typing import Any

import typer

import ikemgr.commands
from ikemgr import __version__

HELP = (
    "ikemgr: a strongSwan IKEv2 campus gateway and its per-user policy routing, "
    "from one declarative config.\n\nExit codes: 0 ok, 1 failed, 2 bad input (config, "
    "arguments, identity), 3 backend unavailable, 4 refused by a safety valve."
)


def _version(value: bool) -> None:
    if value:
        print(f"ikemgr {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """ikemgr: a strongSwan IKEv2 campus gateway and its policy routing from one config."""


@functools.cache
def command_modules() -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules(ikemgr.commands.__path__)
                        if not m.name.startswith("_")))


def extension_commands() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="ikemgr.commands")}


def build_app(only: str | None = None) -> typer.Typer:
    """The command tree; ``only`` loads a single subcommand module (see ``_requested``)."""
    app = typer.Typer(no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False, help=HELP)
    app.callback()(_root)
    for name in command_modules():
        if only is None or name == only:
            importlib.import_module(f"ikemgr.commands.{name}").register(app)
    if only in command_modules():  # a built-in command: no need to look through the installed packages
        return app
    for name, ep in extension_commands().items():
        if only is None or name == only:
            ep.load()(app)
    return app


def _requested(argv: list[str]) -> str | None:
    """The one subcommand module a command line needs, or None for all of them.

    charon waits for its updown script, so `ikemgr hook` should not import the store,
    the firewall backends and the lab; the root help and shell completion see every command.
    """
    if any(k.endswith("_COMPLETE") for k in os.environ):
        return None
    first = next((a for a in argv[1:] if not a.startswith("-")), None)
    return first if first in command_modules() or first in extension_commands() else None


def __getattr__(name: str) -> Any:
    # `from ikemgr.cli import app` (tests, embedding) gets the full tree, built on first use
    if name == "app":
        app = build_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)


def main() -> None:
    # importing the commands allocates ~100,000 objects that live as long as the process:
    # no cyclic collection while they are made (~0.04 s of CPU at every start), and frozen
    # afterwards, so the collections of the command itself never scan them again
    gc.disable()
    try:
        app = build_app(_requested(sys.argv))
    finally:
        gc.freeze()
        gc.enable()
    app()


def updown_main() -> None:
    """``ikemgr-updown``: strongSwan's updown in hook mode (``updown = …/ikemgr-updown [--config …]``).

    charon runs it with only PLUTO_* and its own PATH; as a console script it carries the
    venv's interpreter in its first line, so it needs no PATH to find ikemgr. It is exactly
    ``ikemgr hook --log-format text ARGS`` (charon logs what it prints).
    """
    sys.argv = [sys.argv[0], "hook", "--log-format", "text", *sys.argv[1:]]
    main()

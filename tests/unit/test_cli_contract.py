"""The CLI's promises: --help everywhere, --version, shell completion, --json where output is data."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from helpers import IKEMGR
from ikemgr import __version__
from ikemgr.cli import app, command_modules


def _paths() -> list[list[str]]:
    """Every command path of the tree: ["render"], ["grant", "add"], …"""
    root = typer.main.get_command(app)
    out: list[list[str]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        if path:
            out.append(path)
        for name, sub in (getattr(cmd, "commands", None) or {}).items():  # a group
            walk(sub, [*path, name])

    walk(root, [])
    return out


PATHS = _paths()


def test_every_command_module_is_in_the_tree() -> None:
    top = {p[0] for p in PATHS}
    assert set(command_modules()) <= top, set(command_modules()) - top


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) for p in PATHS])
def test_help_on_every_command(path: list[str]) -> None:
    r = CliRunner().invoke(app, [*path, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output and " ".join(path) in r.output


DATA_COMMANDS = [["config", "show"], ["render"], ["apply"], ["reconcile"], ["status"], ["sync"],
                 ["grant", "list"], ["vlan", "list"], ["audit"], ["radius", "check"]]


@pytest.mark.parametrize("path", DATA_COMMANDS, ids=[" ".join(p) for p in DATA_COMMANDS])
def test_json_where_output_is_data(path: list[str]) -> None:
    r = CliRunner().invoke(app, [*path, "--help"])
    assert r.exit_code == 0 and "--json" in r.output, r.output


def test_version() -> None:
    r = subprocess.run([str(IKEMGR), "--version"], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, f"ikemgr {__version__}\n")


def test_exit_codes_in_the_root_help() -> None:
    r = CliRunner().invoke(app, ["--help"])
    text = " ".join(r.output.split())
    for code in ("0 ok", "1 failed", "2 bad input", "3 backend unavailable", "4 refused by a safety valve"):
        assert code in text, text


def test_bash_completion_script_and_answers() -> None:
    r = subprocess.run([str(IKEMGR), "--show-completion", "bash"], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "SHELL": "/bin/bash"})
    assert r.returncode == 0 and "_IKEMGR_COMPLETE=complete_bash" in r.stdout, r.stdout + r.stderr
    env = {**os.environ, "_IKEMGR_COMPLETE": "complete_bash", "COMP_WORDS": "ikemgr grant ", "COMP_CWORD": "2"}
    r = subprocess.run([str(IKEMGR)], capture_output=True, text=True, timeout=30, env=env)
    assert set(r.stdout.split()) >= {"add", "remove", "list"}, r.stdout + r.stderr

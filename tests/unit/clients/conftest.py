"""Fixtures for the PKI and profile unit tests: one config (object or file), one PKI per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clients_support import config_dict, make_config
from typer.testing import CliRunner

from ikemgr.cli import app
from ikemgr.config.schema import Config
from ikemgr.pki.store import PkiStore


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def store(cfg: Config) -> PkiStore:
    s = PkiStore(cfg.pki.dir, cfg.pki)
    s.init()
    return s



@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    """The same config as ``cfg``, as the file the CLI reads (JSON is YAML)."""
    p = tmp_path / "ikemgr.yaml"
    p.write_text(json.dumps(config_dict(tmp_path)))
    return p


@pytest.fixture
def cli_env(cfg_file: Path) -> tuple[CliRunner, Path]:
    """A CLI runner and a config file whose PKI ``ikemgr pki init`` has made."""
    runner = CliRunner()
    assert runner.invoke(app, ["pki", "init", "-c", str(cfg_file)]).exit_code == 0
    return runner, cfg_file

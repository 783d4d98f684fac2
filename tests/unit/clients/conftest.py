"""Fixtures for the PKI and profile unit tests: one config, one PKI per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from clients_support import make_config

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


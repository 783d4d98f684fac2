"""Fixtures the unit tests share: the campus example config, stderr as the JSON log sees it."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest

from helpers import REPO
from ikemgr.config.load import load
from ikemgr.config.schema import Config
from ikemgr.log import setup_logging

CAMPUS_EXAMPLE = REPO / "examples" / "campus.yaml"


@pytest.fixture(scope="module")
def campus() -> Config:
    """examples/campus.yaml, loaded once per module (tests derive variants, never change it)."""
    return load(CAMPUS_EXAMPLE)


class CountingStderr(io.StringIO):
    """A stderr that counts its write() calls: one batch of log lines must be one write."""

    writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


@pytest.fixture
def log_stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingStderr]:
    """sys.stderr replaced by a CountingStderr, with ikemgr's JSON logging (journal prefixes) on it."""
    buf = CountingStderr()
    monkeypatch.setattr(sys, "stderr", buf)
    setup_logging("json", journal=True)
    yield buf
    logging.getLogger("ikemgr").handlers[:] = []

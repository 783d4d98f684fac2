"""Fixtures more than one integration folder uses: the product wheel built from this checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO


@pytest.fixture(scope="session")
def product_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ikemgr wheel of this checkout, without its dependencies; built once per run
    (the packaging tests install it into a fresh venv, the Ansible role installs it)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
                   check=True, capture_output=True, text=True, timeout=600)
    (whl,) = out.glob("ikemgr-*.whl")
    return whl

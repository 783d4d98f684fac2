"""Fixtures for the packaging tests: a fresh venv outside the checkout with only the product wheel in it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def venv(product_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv (the system's python, not this checkout's venv) with the wheel pip-installed."""
    home = tmp_path_factory.mktemp("gateway")
    env = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    r = subprocess.run([str(env / "bin" / "pip"), "install", "-q", str(product_wheel)], capture_output=True,
                       text=True, timeout=900, cwd=home)
    assert r.returncode == 0, r.stderr[-2000:]
    return env

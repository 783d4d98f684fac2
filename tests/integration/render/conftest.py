"""The example config with its RADIUS secret in the test's tmp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    secret = tmp_path / "radius.secret"
    secret.write_text("s3cret-for-tests\n")
    secret.chmod(0o600)  # render refuses a secret others can read
    text = (ROOT / "examples" / "campus.yaml").read_text()
    cfg = tmp_path / "campus.yaml"
    cfg.write_text(text.replace("/etc/ikemgr/radius.secret", str(secret)))
    return cfg

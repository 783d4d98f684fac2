"""Fixtures for the render tests: the example config with its RADIUS secret in the test's tmp dir,
and a gateway/client namespace pair for the tests that load the rendered files into charon."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import sh

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


@pytest.fixture
def netns_pair() -> Iterator[Callable[..., tuple[str, str]]]:
    """Makes (gateway, client) namespaces ``ikq-<random>g``/``…c``, lo up, joined by a veth pair
    ikq-gw ↔ ikq-cl: ``make(gw_addr, client_addr, *gw_lo_addrs)``; all deleted after the test."""
    made: list[str] = []

    def make(gw_addr: str, client_addr: str, *gw_lo_addrs: str) -> tuple[str, str]:
        tag = secrets.token_hex(3)
        gw, cl = f"ikq-{tag}g", f"ikq-{tag}c"
        for ns in (gw, cl):
            sh("ip", "netns", "add", ns, timeout=30)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up", timeout=30)
        sh("ip", "-n", gw, "link", "add", "ikq-gw", "type", "veth", "peer", "name", "ikq-cl", "netns", cl,
           timeout=30)
        sh("ip", "-n", gw, "addr", "add", gw_addr, "dev", "ikq-gw", timeout=30)
        for addr in gw_lo_addrs:
            sh("ip", "-n", gw, "addr", "add", addr, "dev", "lo", timeout=30)
        sh("ip", "-n", cl, "addr", "add", client_addr, "dev", "ikq-cl", timeout=30)
        sh("ip", "-n", gw, "link", "set", "ikq-gw", "up", timeout=30)
        sh("ip", "-n", cl, "link", "set", "ikq-cl", "up", timeout=30)
        return gw, cl

    yield make
    for ns in made:
        sh("ip", "netns", "del", ns, check=False, timeout=30)

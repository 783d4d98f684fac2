"""The lab's gateway charon hands out the pool's DNS servers (charon.dnsN, served by attr)."""

from __future__ import annotations

from pathlib import Path

from ikemgr_lab import charons
from ikemgr_lab.model import load_lab as load
from ikemgr_lab.runner import DEFAULT_LAB_CONFIG, Lab

CLIENT_LAB = Path(__file__).resolve().parents[2] / "integration" / "client" / "lab.yaml"


def _settings(path: Path) -> str:
    lab = Lab(load(path), path)
    return charons.gateway_instance(lab.cfg, Path("/tmp/x"), "ikn-gw", Path("/tmp/x/etc")).charon_settings


def test_pool_dns_reaches_the_gateway_charon() -> None:
    s = _settings(CLIENT_LAB)
    assert s.startswith("    dns1 = 10.5.0.10\n")
    assert "attr" in charons.RESPONDER_PLUGINS  # attr is what serves charon.dnsN


def test_no_pool_dns_no_dns_lines() -> None:
    assert "dns1" not in _settings(DEFAULT_LAB_CONFIG)

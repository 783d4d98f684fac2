"""A fresh gateway namespace per test (see ikt_apply_gw); removed at teardown, also on failure."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from ikt_apply_gw import Gw, netns_del

from helpers.gateway import veth_gateway


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gw]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    suffix = secrets.token_hex(4)
    g = Gw(f"ikt-a-{suffix}", f"ikt-a-{suffix}p", tmp_path)
    try:
        veth_gateway(g.ns, g.peer)
        yield g
    finally:
        netns_del(g.ns)
        netns_del(g.peer)

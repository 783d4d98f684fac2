"""A fresh gateway namespace per test (see ikt_apply_gw); removed at teardown, also on failure."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from ikt_apply_gw import LINKS, Gw, netns_del, sh


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gw]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    suffix = secrets.token_hex(4)
    g = Gw(f"ikt-a-{suffix}", f"ikt-a-{suffix}p", tmp_path)
    try:
        sh("ip", "netns", "add", g.ns)
        sh("ip", "netns", "add", g.peer)
        sh("ip", "-n", g.ns, "link", "set", "lo", "up")
        for ifname, addr in LINKS.items():
            sh("ip", "-n", g.ns, "link", "add", ifname, "type", "veth", "peer", "name", f"p-{ifname}",
               "netns", g.peer)
            sh("ip", "-n", g.ns, "addr", "add", addr, "dev", ifname, "noprefixroute")
            sh("ip", "-n", g.ns, "link", "set", ifname, "up")
            sh("ip", "-n", g.peer, "link", "set", f"p-{ifname}", "up")
        yield g
    finally:
        netns_del(g.ns)
        netns_del(g.peer)

"""Fixtures of the interop proofs (helpers live in ikc_support.py: a unique module name,
so ``from ikc_support import …`` never picks up another folder's conftest)."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ikc_support import CLIENT_IP, GW_IP, HOST_IFACES, WORK, Topology, make_pki

from helpers import sh
from ikemgr.checks.charon import CharonInstance
from ikemgr.config.load import load
from ikemgr.config.schema import Config


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    ns = f"ikc-{secrets.token_hex(3)}"
    work = WORK / ns
    work.mkdir(parents=True, exist_ok=True)
    pki = make_pki(work / "pki")
    pki.server()
    t = Topology(ns, work, pki)
    try:
        for n in (t.gw_ns, t.client_ns):
            sh("ip", "netns", "add", n)
            sh("ip", "-n", n, "link", "set", "lo", "up")
        sh("ip", "link", "add", "name", "out0", "netns", t.gw_ns, "type", "veth",
           "peer", "name", "eth0", "netns", t.client_ns)
        sh("ip", "-n", t.gw_ns, "addr", "add", f"{GW_IP}/24", "dev", "out0")
        sh("ip", "-n", t.client_ns, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", t.gw_ns, "link", "set", "out0", "up")
        # a campus-side address: kernel-libipsec routes the VIP via ipsec0 from inside local_ts
        sh("ip", "-n", t.gw_ns, "addr", "add", "10.0.0.1/32", "dev", "lo")
        sh("ip", "-n", t.client_ns, "link", "set", "eth0", "up")
        yield t
    finally:
        for inst in list(t.started):
            try:
                inst.stop()
            except Exception as e:  # keep tearing down the rest; the failure is printed
                print(f"stopping {inst.workdir}: {e}")
        for n in (t.gw_ns, t.client_ns):
            sh("ip", "netns", "del", n, check=False)
        if not os.environ.get("IKC_KEEP"):
            subprocess.run(["rm", "-rf", str(work)], check=False)


@pytest.fixture(scope="module")
def certauth_gateway(topo: Topology) -> tuple[CharonInstance, Config]:
    """(the gateway charon, its config) running the rendered ``certauth`` config of ``topo``."""
    cfg_path = topo.config("certauth")
    return topo.gateway(cfg_path), load(cfg_path)


@pytest.fixture
def host_ns() -> Iterator[tuple[str, Path]]:
    """(namespace, work dir): a fresh ``ikc-<random>h`` with the gateway's links (HOST_IFACES) up,
    for ``ikemgr check --netns``; deleted with its work dir after the test."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    ns = f"ikc-{secrets.token_hex(3)}h"
    work = WORK / ns
    work.mkdir(parents=True)
    try:
        sh("ip", "netns", "add", ns)
        for i in HOST_IFACES:
            sh("ip", "-n", ns, "link", "add", i, "type", "veth", "peer", "name", f"{i}p")
            sh("ip", "-n", ns, "link", "set", i, "up")
        yield ns, work
    finally:
        sh("ip", "netns", "del", ns, check=False)
        subprocess.run(["rm", "-rf", str(work)], check=False)

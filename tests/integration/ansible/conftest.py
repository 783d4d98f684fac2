"""Fixtures for the Ansible and Vagrant tests: the role's site and a client charon."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_site import PLAYBOOK, Site

from helpers import sh
from helpers.gateway import veth_gateway
from ikemgr.checks.charon import BASE_PLUGINS, INITIATOR_PLUGINS, NETLINK_PLUGINS, CharonInstance


@pytest.fixture(scope="module")
def site(product_wheel: Path) -> Iterator[Site]:
    """A fresh veth gateway namespace pair and temp dir for the role, with this checkout's wheel."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if not PLAYBOOK.exists():
        pytest.skip("ansible-core is not installed (pip install -e '.[test]')")
    suffix = secrets.token_hex(4)
    tmp = Path(tempfile.mkdtemp(prefix="ikt-ans-"))
    s = Site(f"ikt-ans-{suffix}", f"ikt-ans-{suffix}p", tmp, product_wheel, f"rad-{secrets.token_hex(8)}",
             f"bind-{secrets.token_hex(8)}")
    try:
        veth_gateway(s.ns, s.peer)
        yield s
    finally:
        for name in (s.ns, s.peer):
            if Path("/var/run/netns", name).exists():
                sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def charon() -> Iterator[CharonInstance]:
    """A prepared (not started) client charon in a throw-away namespace ``ikt-ans-<random>``."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespace, charon)")
    ns = f"ikt-ans-{secrets.token_hex(4)}"
    work = Path(tempfile.mkdtemp(prefix="ikt-ans-charon-"))
    inst = CharonInstance(work, netns=ns, plugins=[*BASE_PLUGINS, *NETLINK_PLUGINS, *INITIATOR_PLUGINS])
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
        inst.prepare()
        yield inst
    finally:
        inst.stop()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)
        shutil.rmtree(work, ignore_errors=True)

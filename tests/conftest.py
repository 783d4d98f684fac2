"""Markers follow the folders, one root check, and a CI run that skips nothing.

Every test is marked ``unit``, ``integration`` or ``e2e`` by the folder it lives in, so
``pytest -m unit`` is the fast loop. Tests marked ``root`` (namespaces, daemons) skip in
one place when not run as root. Under CI (``CI=true``) a skipped test fails the run: a
missing package must not turn a real-component test into a silent pass.

Tests marked ``slow`` wait on a daemon's own clock for minutes (FreeRADIUS reads a new
CRL after 300 s at the soonest); they are deselected, not skipped, unless ``IKEMGR_SLOW=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
LAYERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("IKEMGR_SLOW") != "1":
        slow = [i for i in items if i.get_closest_marker("slow") is not None]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [i for i in items if i.get_closest_marker("slow") is None]
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(TESTS).parts
        if parts and parts[0] in LAYERS:
            item.add_marker(getattr(pytest.mark, parts[0]))
        if parts and parts[0] == "e2e":
            item.add_marker(pytest.mark.root)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, daemons)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") != "true" or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; under CI every test must run:", red=True)
        for rep in skipped:
            reporter.write_line(f"  {rep.nodeid}: {rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else ''}")
        session.exitstatus = 1

"""One lab per test session: `Lab.up` once, everything torn down (and checked gone) at the end."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ikemgr_lab import procs
from ikemgr_lab.model import load_lab as load
from ikemgr_lab.runner import DEFAULT_LAB_CONFIG, Lab


def _skip_unless_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")


@pytest.fixture(scope="session")
def lab_config_path() -> Path:
    return Path(os.environ.get("IKEMGR_LAB_CONFIG", str(DEFAULT_LAB_CONFIG)))


@pytest.fixture(scope="session")
def lab_session(lab_config_path: Path) -> Iterator[tuple[Lab, dict]]:
    """The running lab and what `up` reported. Teardown removes it and checks nothing is left."""
    _skip_unless_root()
    the_lab = Lab(load(lab_config_path), lab_config_path)
    lines: list[str] = []
    try:
        result = the_lab.up(lines.append)
        yield the_lab, result
    finally:
        the_lab.down()
        left = procs.namespaces(the_lab.lab.prefix)
        assert left == [], f"namespaces left behind: {left}"
        assert not the_lab.state.exists(), f"{the_lab.state} left behind"
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
        assert str(the_lab.state) not in ps, "a lab process survived teardown"


@pytest.fixture(scope="session")
def lab(lab_session: tuple[Lab, dict]) -> Lab:
    return lab_session[0]


@pytest.fixture(scope="session")
def up_result(lab_session: tuple[Lab, dict]) -> dict:
    return lab_session[1]


@dataclass(frozen=True)
class Variant:
    """A second lab next to the session lab: own prefix, state dir and rt_tables file."""

    config: Path
    prefix: str
    state: Path
    rt_tables: Path


@pytest.fixture
def lab_variant(tmp_path: Path) -> Callable[..., Variant]:
    """Derive an isolated lab config from the example; ``replace`` edits its text further."""

    def make(replace: dict[str, str] | None = None) -> Variant:
        _skip_unless_root()
        tag = secrets.token_hex(2)
        v = Variant(tmp_path / "lab.yaml", f"ikt-l-{tag}-", Path(f"/tmp/ikt-l-{tag}"),
                    Path(f"/etc/iproute2/rt_tables.d/ikt-l-{tag}.conf"))
        text = (DEFAULT_LAB_CONFIG.read_text()
                .replace("/tmp/ikemgr-lab", str(v.state))
                .replace("prefix: ikl-", f"prefix: {v.prefix}")
                .replace("/etc/iproute2/rt_tables.d/ikemgr-lab.conf", str(v.rt_tables)))
        for old, new in (replace or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        v.config.write_text(text)
        return v

    return make


@pytest.fixture(autouse=True)
def _variant_leaves_nothing_behind() -> Iterator[None]:
    """After every e2e test: no variant namespace and no process of a variant's state dir.

    Variants (``lab_variant``) use the prefix ``ikt-l-`` and state dirs ``/tmp/ikt-l-*``; the
    session lab (``ikl-``) stays up between tests and is checked at the end of the session.
    """
    yield
    left = procs.namespaces("ikt-l-")
    assert left == [], f"namespaces left behind: {left}"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
    survivors = [ln for ln in ps.splitlines() if "/tmp/ikt-l-" in ln]
    assert survivors == [], f"processes left behind: {survivors[:5]}"

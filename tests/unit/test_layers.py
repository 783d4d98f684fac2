"""The package layout's import rules, read from the sources with ``ast`` (docs/architecture.md).

Every ``import``/``from … import`` of ikemgr code anywhere in a module counts, also the
ones inside functions (the CLI imports lazily): a layer may use only the layers below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "ikemgr"

#: a layer → the layers it may import (its own is always allowed)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "log": set(),
    "fsio": {"errors"},
    "result": {"errors"},
    "metrics": {"errors"},
    "config": {"errors"},
    "core": {"config", "errors"},
    "render": {"core", "config", "fsio", "errors"},
    "adapters": {"core", "config", "fsio", "errors", "log"},
    "allowlist": {"adapters", "core", "config", "fsio", "errors", "log"},
    "checks": {"adapters", "render", "core", "config", "fsio", "errors", "log"},
    "pki": {"core", "config", "fsio", "errors", "log"},
    "client": {"adapters", "checks", "render", "core", "config", "fsio", "errors", "log"},
    "engine": {"core", "adapters", "allowlist", "config", "fsio", "errors", "log", "metrics"},
}
#: the top: may import any layer of ikemgr (but never the lab)
TOP = {"commands", "cli", "__init__", "__main__"}
#: core is pure: config values in, frozen values out
CORE_FORBIDDEN = {"os", "subprocess", "socket", "jinja2", "time", "pyroute2", "sqlalchemy", "vici",
                  "nftables", "iptc", "ldap3", "pyrad", "fcntl", "tempfile", "shutil", "threading"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "ikemgr"
    return parts[1] if len(parts) > 1 else "__init__"


def modules() -> list[tuple[str, Path]]:
    out = []
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out.append((".".join(parts), p))
    return out


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # `from ikemgr import errors` names a module as well
            if name == "ikemgr":
                out += [(node.lineno, f"ikemgr.{a.name}") for a in node.names]
    return out


ALL = modules()


def test_every_module_has_a_layer() -> None:
    unknown = {layer_of(m) for m, _ in ALL} - set(ALLOWED) - TOP
    assert not unknown, f"modules outside the known layers: {sorted(unknown)}"


@pytest.mark.parametrize(("module", "path"), ALL, ids=[m for m, _ in ALL])
def test_imports_follow_the_layers(module: str, path: Path) -> None:
    mine = layer_of(module)
    bad = []
    for line, name in imports_of(path, module):
        top = name.split(".")[0]
        if top == "ikemgr_lab":
            bad.append(f"line {line}: {name} (nothing in ikemgr imports the lab)")
        if top != "ikemgr" or name == "ikemgr":
            if mine == "core" and top in CORE_FORBIDDEN:
                bad.append(f"line {line}: {name} (core is pure: no I/O, templates, clock or environment)")
            continue
        theirs = layer_of(name)
        if mine in TOP or theirs == mine:
            continue
        if theirs in TOP:
            bad.append(f"line {line}: {name} ({mine} may not import the CLI layer)")
        elif theirs not in ALLOWED[mine]:
            bad.append(f"line {line}: {name} ({mine} may import only {sorted(ALLOWED[mine])})")
    assert not bad, f"{module}:\n  " + "\n  ".join(bad)


def test_the_rules_have_teeth(tmp_path: Path) -> None:
    """The checker itself: an upward import is found, an allowed one is not."""
    p = tmp_path / "x.py"
    p.write_text("from ikemgr.engine.engine import Engine\nimport os\n")
    assert [n for _, n in imports_of(p, "ikemgr.core.x")] == ["ikemgr.engine.engine", "os"]
    assert "engine" not in ALLOWED["core"] and "os" in CORE_FORBIDDEN

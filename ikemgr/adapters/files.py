"""Atomic, idempotent file writes for rendered outputs.

A file is written only if its content or mode differs (temp file in the same directory,
fsync, rename), so rendering an unchanged config touches nothing and a reader never sees
half a file. A manifest of what ikemgr wrote lets a later render remove files it no
longer produces, and only those.
"""

from __future__ import annotations

import difflib
import grp
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ikemgr.adapters.templates import Output
from ikemgr.errors import ApplyFailed, ConfigError, ConfigProblem

MANIFEST = "ikemgr/manifest.json"


@dataclass(frozen=True)
class Change:
    path: str
    action: str  # created | updated | mode | unchanged | removed
    diff: str = ""


def group_id(group: str | None) -> int:
    if group is None:
        return -1
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ApplyFailed(f"group {group} does not exist (is the package that owns it installed?)") from None


def atomic_write(target: Path, data: bytes, mode: int, group: str | None = None) -> None:
    """Write via a temp file + rename: a symlink in the way is replaced, never followed."""
    gid = group_id(group)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        if gid != -1:
            os.fchown(fd, -1, gid)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _diff(path: str, old: str, new: str, secret: bool) -> str:
    if secret:
        return f"--- {path}\n+++ {path}\n(content holds a secret: diff not shown)\n"
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"a/{path}", tofile=f"b/{path}"))


def plan_one(root: Path, out: Output) -> Change:
    target = root / out.path
    try:
        st = target.lstat()
    except FileNotFoundError:
        return Change(out.path, "created", _diff(out.path, "", out.text, out.secret))
    if not stat.S_ISREG(st.st_mode):
        return Change(out.path, "updated", f"{out.path}: replaces a non-regular file\n")
    old = target.read_bytes().decode("utf-8", errors="replace")
    if old != out.text:
        return Change(out.path, "updated", _diff(out.path, old, out.text, out.secret))
    if stat.S_IMODE(st.st_mode) != out.mode:
        return Change(out.path, "mode", f"{out.path}: mode {stat.S_IMODE(st.st_mode):o} -> {out.mode:o}\n")
    if out.group is not None and st.st_gid != group_id(out.group):
        return Change(out.path, "mode", f"{out.path}: group -> {out.group}\n")
    return Change(out.path, "unchanged")


def read_manifest(root: Path) -> set[str]:
    try:
        data = json.loads((root / MANIFEST).read_text())
        return {str(p) for p in data.get("files", []) if isinstance(p, str)}
    except (FileNotFoundError, ValueError):
        return set()


def sync_outputs(root: Path, outputs: list[Output], dry_run: bool = False) -> list[Change]:
    """Write what changed, remove files of an earlier render that are no longer produced."""
    changes = [plan_one(root, o) for o in outputs]
    produced = {o.path for o in outputs}
    stale = sorted(read_manifest(root) - produced - {MANIFEST})
    changes += [Change(p, "removed") for p in stale if (root / p).exists()]
    if dry_run:
        return changes
    by_path = {o.path: o for o in outputs}
    for c in changes:
        if c.action in ("created", "updated", "mode"):
            o = by_path[c.path]
            atomic_write(root / o.path, o.text.encode(), o.mode, o.group)
        elif c.action == "removed":
            (root / c.path).unlink(missing_ok=True)
    manifest = json.dumps({"files": sorted(produced)}, indent=1) + "\n"
    if plan_one(root, Output(MANIFEST, manifest)).action != "unchanged":
        atomic_write(root / MANIFEST, manifest.encode(), 0o644)
    return changes


class SecretUnreadable(Exception):
    """A secret file that cannot be used; the message names the file and why."""


def secret_line(path: Path) -> str:
    """The first line of a secret file (a trailing newline is not part of the secret)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretUnreadable(f"{path}: no such file") from None
    except PermissionError:
        raise SecretUnreadable(f"{path}: permission denied") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SecretUnreadable(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    value = text.splitlines()[0] if text else ""
    if not value:
        raise SecretUnreadable(f"{path} is empty")
    return value


def config_secret(path: Path, field: str) -> str:
    """A secret file the config names; an unusable one is a config error on ``field``."""
    try:
        return secret_line(path)
    except SecretUnreadable as e:
        raise ConfigError([ConfigProblem(field, None, str(e))]) from None

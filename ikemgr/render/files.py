"""Writing rendered outputs: idempotent, atomic, with a manifest of what ikemgr owns.

A file is written only if its content or mode differs (``fsio.atomic_write``), so
rendering an unchanged config touches nothing and a reader never sees half a file. A
manifest of what ikemgr wrote lets a later render remove files it no longer produces,
and only those.
"""

from __future__ import annotations

import difflib
import json
import stat
from dataclasses import dataclass
from pathlib import Path

from ikemgr.fsio import atomic_symlink, atomic_write, group_id
from ikemgr.render.templates import Output

MANIFEST = "ikemgr/manifest.json"


@dataclass(frozen=True)
class Change:
    path: str
    action: str  # created | updated | mode | unchanged | removed | kept (a former conffile)
    diff: str = ""


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
        if out.link is not None:
            return Change(out.path, "created", f"{out.path} -> {out.link}\n")
        return Change(out.path, "created", _diff(out.path, "", out.text, out.secret))
    if out.link is not None:
        if stat.S_ISLNK(st.st_mode) and str(target.readlink()) == out.link:
            return Change(out.path, "unchanged")
        return Change(out.path, "updated", f"{out.path} -> {out.link}\n")
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


def write_output(root: Path, o: Output) -> Path:
    """One output below ``root``: a file (atomic, its mode and group) or a symlink."""
    dest = root / o.path
    if o.link is not None:
        atomic_symlink(dest, o.link)
    else:
        atomic_write(dest, o.text.encode(), o.mode, o.group)
    return dest


def read_manifest(root: Path) -> set[str]:
    try:
        data = json.loads((root / MANIFEST).read_text())
        return {str(p) for p in data.get("files", []) if isinstance(p, str)}
    except (FileNotFoundError, ValueError):
        return set()


#: Debian conffiles that ikemgr 0.1 rendered over (it now writes files of its own). A later
#: render never deletes them — strongSwan and FreeRADIUS include them — but says so: the
#: package's version comes back with `apt-get install --reinstall -o Dpkg::Options::=--force-confmiss`
#: after removing the file, or by hand from /usr/share.
FORMER_CONFFILES = frozenset({
    "strongswan.d/charon.conf", "strongswan.d/charon/eap-radius.conf", "strongswan.d/charon/farp.conf",
    "strongswan.d/charon/kernel-libipsec.conf", "strongswan.d/charon/updown.conf",
    "freeradius/3.0/clients.conf",
})


def sync_outputs(root: Path, outputs: list[Output], dry_run: bool = False) -> list[Change]:
    """Write what changed, remove files of an earlier render that are no longer produced.

    A package's conffile that an earlier version wrote is left in place (``kept``), never
    removed: the daemon that includes it would not start without it.
    """
    changes = [plan_one(root, o) for o in outputs]
    produced = {o.path for o in outputs}
    stale = sorted(read_manifest(root) - produced - {MANIFEST})
    changes += [Change(p, "kept" if p in FORMER_CONFFILES else "removed") for p in stale
                if (root / p).exists() or (root / p).is_symlink()]
    if dry_run:
        return changes
    by_path = {o.path: o for o in outputs}
    for c in changes:
        if c.action in ("created", "updated", "mode"):
            write_output(root, by_path[c.path])
        elif c.action == "removed":
            (root / c.path).unlink(missing_ok=True)
    manifest = json.dumps({"files": sorted(produced)}, indent=1) + "\n"
    if plan_one(root, Output(MANIFEST, manifest)).action != "unchanged":
        atomic_write(root / MANIFEST, manifest.encode(), 0o644)
    return changes

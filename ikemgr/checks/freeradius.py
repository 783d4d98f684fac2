"""Run a real FreeRADIUS on a rendered config: private dirs, optional netns, clean stop.

Used by the tests and the namespace lab. ``prepare_raddb`` copies Debian's stock tree,
lays the rendered ikemgr files over it (replacing the stock symlinks in mods-enabled/ and
sites-enabled/) and points logs, pid file and state at private directories, so several
instances run side by side without touching /etc or /var.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from ikemgr.checks.procs import stop_group
from ikemgr.errors import BackendUnavailable, CheckFailed
from ikemgr.render.files import write_output
from ikemgr.render.templates import Output

STOCK_RADDB = Path("/etc/freeradius/3.0")
RADIUSD = "freeradius"
READY_TEXT = "Ready to process requests"


def write_outputs(root: Path, outputs: Iterable[Output]) -> list[Path]:
    """Write rendered files below ``root``; a symlink in the way is replaced, never followed.

    A file with ``group`` set is chgrp'ed to it (0640 root:freerad for files with secrets).
    """
    return [write_output(root, out) for out in outputs]


def _set(text: str, key: str, value: str) -> str:
    """Set a top-level ``key = value`` line of radiusd.conf (the key must exist once)."""
    new, n = re.subn(rf"(?m)^{re.escape(key)}\s*=.*$", f"{key} = {value}", text, count=1)
    if n != 1:
        raise CheckFailed(f"radiusd.conf: no top-level {key} line to set")
    return new


def prepare_raddb(dest: Path, outputs: Iterable[Output], *, stock: Path = STOCK_RADDB,
                  state_dir: Path | None = None, drop_privileges: bool = False,
                  reject_delay: int | None = 0) -> Path:
    """Build a runnable config dir at ``dest`` from the stock tree plus rendered ``outputs``.

    ``state_dir`` (default: ``dest/../state``) gets log/, run/ and radacct/. With
    ``drop_privileges`` False the user/group lines are removed, so radiusd stays root and
    can read the root-owned private dirs (tests, lab). ``reject_delay`` (stock: 1 s)
    defaults to 0 so tests full of rejects stay fast; None keeps the stock value.
    """
    if dest.exists():
        raise CheckFailed(f"{dest} already exists")
    shutil.copytree(stock, dest, symlinks=True)
    write_outputs(dest, outputs)
    state = state_dir or dest.parent / "state"
    for sub in ("log", "run"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    conf = dest / "radiusd.conf"
    text = conf.read_text()
    text = _set(text, "raddbdir", str(dest))
    text = _set(text, "logdir", str(state / "log"))
    text = _set(text, "run_dir", str(state / "run"))
    if reject_delay is not None:
        text, n = re.subn(r"(?m)^(\s*)reject_delay\s*=.*$", rf"\g<1>reject_delay = {int(reject_delay)}", text)
        if n != 1:
            raise CheckFailed("radiusd.conf: no reject_delay line to set")
    if not drop_privileges:
        text = re.sub(r"(?m)^(\s*)(user|group)\s*=\s*freerad\s*$", r"\1# \2 = freerad", text)
    conf.write_text(text)
    return dest


class RadiusdInstance:
    """One FreeRADIUS process on ``raddb_dir``: check_config(), start(), stop()."""

    def __init__(self, raddb_dir: Path, workdir: Path, netns: str | None = None,
                 debug: bool = True) -> None:
        self.raddb_dir = Path(raddb_dir)
        self.workdir = Path(workdir)
        self.netns = netns
        self.debug = debug
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "radiusd.out"

    def _argv(self, *args: str) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, RADIUSD, "-d", str(self.raddb_dir), *args]

    def check_config(self) -> str:
        """``freeradius -XC``: parse and instantiate everything; raise CheckFailed with the tail."""
        r = subprocess.run(self._argv("-XC"), capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        if r.returncode != 0 or "Configuration appears to be OK" not in out:
            tail = "\n".join(out.strip().splitlines()[-25:])
            raise CheckFailed(f"freeradius config check failed (exit {r.returncode}):\n{tail}")
        return out

    def start(self, timeout: float = 20.0) -> RadiusdInstance:
        """Start in the foreground (-X, or -f with logging to stdout) and wait until ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = ("-X",) if self.debug else ("-f", "-l", "stdout")
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the child's lifetime
        try:
            self.proc = subprocess.Popen(self._argv(*args), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_TEXT in self.log_text():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = "\n".join(self.log_text().strip().splitlines()[-25:])
        self.stop()
        raise BackendUnavailable("radius", f"freeradius did not become ready:\n{tail}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group we started, then SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        stop_group(proc, timeout)

    def __enter__(self) -> RadiusdInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

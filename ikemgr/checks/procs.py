"""Stopping the daemons and processes ikemgr starts (slapd, FreeRADIUS, charon, a client
environment's programs) the same way everywhere."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path


def stop_group(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM the process group of a child started with start_new_session; SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie (a dead child nobody reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def terminate(pids: Iterable[int], timeout: float = 5.0) -> None:
    """SIGTERM each, wait up to ``timeout`` for all to go, SIGKILL the rest, reap our children."""
    pids = [p for p in pids if p > 1]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for p in pids:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    for p in pids:  # children of this process (up and down in one process, e.g. tests)
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass


def netns_pids(name: str, netns_dir: Path = Path("/run/netns")) -> list[int]:
    """Every process whose network namespace is the named one (what ``ip netns pids`` reports)."""
    try:
        st = os.stat(netns_dir / name)
    except FileNotFoundError:
        return []
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ns = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        if (ns.st_ino, ns.st_dev) == (st.st_ino, st.st_dev):
            out.append(int(entry.name))
    return out

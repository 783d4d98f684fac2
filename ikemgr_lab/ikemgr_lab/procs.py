"""Process supervision for the lab: start daemons in namespaces, find and stop them again.

Every daemon is started by ``start`` with its own log file and a pid file in the lab's
``pids/`` directory. ``down`` must work after a crash of ``lab up`` too, so it does not
trust the pid files alone: it also kills every process (a /proc scan, as ``ip netns pids``) in every
namespace that carries the lab's prefix, then deletes those namespaces.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ikemgr.checks import procs
from ikemgr.errors import ApplyFailed


def pid_dir(state_dir: Path) -> Path:
    return state_dir / "pids"


#: exists and is not a zombie (the product's helpers: one process scan, one way to stop)
alive = procs.alive


def start(state_dir: Path, name: str, netns: str, argv: list[str], log: Path,
          env: dict[str, str] | None = None) -> int:
    """Start ``argv`` inside ``netns`` (detached, survives this process); returns its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=env if env is not None else dict(os.environ))
    finally:
        out.close()
    record(state_dir, name, proc.pid)
    return proc.pid


def record(state_dir: Path, name: str, pid: int) -> None:
    d = pid_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.pid").write_text(f"{pid}\n")


def wait_until(what: str, check: Callable[[], bool], timeout: float, pid: int | None = None,
               log: Path | None = None, interval: float = 0.05) -> None:
    """Poll ``check`` until it is true; fail with the log tail if the daemon died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not alive(pid):
            raise ApplyFailed(f"{what}: the process exited; log tail: {tail(log)}")
        time.sleep(interval)
    raise ApplyFailed(f"{what}: not ready after {timeout:.0f}s; log tail: {tail(log)}")


def tail(path: Path | None, lines: int = 12) -> str:
    if path is None:
        return "(no log)"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path}: no log)"
    keep = [ln for ln in text.splitlines() if ln.strip() and "TPM 2.0" not in ln and "plugin 'tpm'" not in ln]
    return " | ".join(keep[-lines:]) or "(empty log)"


def namespaces(prefix: str) -> list[str]:
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False)
    out = []
    for line in r.stdout.splitlines():
        name = line.split(" ", 1)[0].strip()
        if name.startswith(prefix):
            out.append(name)
    return out


netns_pids = procs.netns_pids


def stop_everything(state_dir: Path, prefix: str) -> dict[str, int]:
    """Kill the lab's processes (pid files + namespace members) and delete its namespaces."""
    pids: set[int] = set()
    d = pid_dir(state_dir)
    if d.is_dir():
        for f in d.glob("*.pid"):
            try:
                pid = int(f.read_text().split()[0])
            except (ValueError, IndexError, OSError):
                continue
            if pid > 1 and alive(pid) and _in_lab(pid, prefix):
                pids.add(pid)
    nss = namespaces(prefix)
    for ns in nss:
        pids.update(netns_pids(ns))
    pids.discard(os.getpid())
    procs.terminate(sorted(pids), timeout=3.0)
    leftovers = set()
    for ns in nss:
        leftovers.update(netns_pids(ns))
    procs.terminate(sorted(leftovers), timeout=1.0)
    deleted = 0
    for ns in nss:
        r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)
        deleted += r.returncode == 0
    return {"processes": len(pids | leftovers), "namespaces": deleted}


def _in_lab(pid: int, prefix: str) -> bool:
    """A pid from a pid file is only killed if it still is one of ours (pids get reused)."""
    try:
        ns_link = os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return False
    for ns in namespaces(prefix):
        try:
            st = os.stat(f"/run/netns/{ns}")
        except OSError:
            continue
        if ns_link == f"net:[{st.st_ino}]":
            return True
    return False

"""How engine runs on one gateway stay consistent: the policy lock and the kernel generation.

``watch``, ``hook`` and ``reconcile`` serialise on one lock (``fsio.Lock``), so two of
them never change the kernel at the same time; the generation stamp tells a running
``watch`` that a one-shot run changed the kernel behind its index."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ikemgr.fsio import Lock

GENERATION_FILE = "kernel.generation"


class Generation:
    """A stamp every process that changes ikemgr's kernel state refreshes.

    ``watch`` keeps an in-memory index of the rules it owns; when it takes the lock and
    sees another process (``hook``, ``reconcile``) changed the kernel since, it re-reads
    the kernel before trusting its index. The stamp is the file's identity and mtime:
    a hint, not data, so it is written without fsync (a lost stamp after a power cut
    costs nothing: every start reads the kernel anyway).
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / GENERATION_FILE

    def read(self) -> str:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return ""
        return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"

    def bump(self) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(f"{os.getpid()} {time.time_ns()}\n", encoding="utf-8")
        os.replace(tmp, self.path)
        return self.read()


__all__ = ["GENERATION_FILE", "Generation", "Lock"]

"""watch's event path in this process: the engine, its backend in a namespace of its own, a
VICI event session on a socket pair fed with the events ``vici_server.py`` makes.

What ``event_path_cpu.py`` and ``idle_collect.py`` measure on: the session's frame decode,
``parse_batch`` and ``Engine.events`` as ``watch`` runs them, the JSON log to a file,
conntrack flushes on, the allow-list from a SQLite store filled by ``ikemgr sync``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_events as be
import vici_server as vs


@dataclass
class InProcess:
    engine: Any
    session: Any
    ns: str

    @staticmethod
    def frames(first: int, n: int, up: bool, uid: int | None = None) -> bytes:
        """The framed events of users ``first`` … ``first + n - 1`` connecting or leaving, their
        IKE_SAs numbered from ``uid`` (default ``1000 + first``: one number per user)."""
        base = 1000 + first if uid is None else uid
        return b"".join(len(p).to_bytes(4, "big") + p for k, i in enumerate(range(first, first + n))
                        for p in vs.transition(base + k, be.user(i), str(be.vip(i)), up))

    def run(self, first: int, n: int, up: bool, frames: bytes | None = None) -> None:
        """Those transitions (or ``frames`` made before) through the whole path, batch by batch."""
        from ikemgr.adapters.vici.codec import parse_batch

        self.session._pending = self.frames(first, n, up) if frames is None else frames
        while batch := self.session.batch(0.0):
            self.engine.events(parse_batch(batch), time.monotonic())

    def routed(self, backend: str) -> set[int]:
        return be.kernel_vips(self.ns, backend)


@contextmanager
def in_process(tag: str, backend: str, users: int,
               list_lines: int = 10_000) -> Iterator[tuple[InProcess, int]]:
    """The path ready for ``users`` users; yields it and the saved stderr (the log has fd 2)."""
    from ikemgr.adapters.vici.session import EventSession
    from ikemgr.config.load import load
    from ikemgr.config.schema import Config
    from ikemgr.engine.wiring import build_engine, close_engine
    from ikemgr.log import setup_logging

    ns = f"{be.NS_PREFIX}{tag}{os.urandom(3).hex()}"
    be.netns(ns)
    tmp = Path(tempfile.mkdtemp(prefix=f"ikemgr-{tag}-"))
    saved = os.dup(2)
    try:
        be.userlist(tmp, users, max(list_lines, users))
        be.fill_store(tmp, Path(sys.executable).parent / "ikemgr")
        (tmp / "cfg.json").write_text(be.config(tmp, backend))
        cfg = load(tmp / "cfg.json", Config)
        with (tmp / "watch.log").open("w") as logf:
            os.dup2(logf.fileno(), 2)  # the JSON lines go to a file, as watch's do
            setup_logging("json", "info")
            engine = build_engine(cfg, netns=ns, flush_conntrack=True, long_lived=True)
            engine.refresh_allow()
            a_sock, b_sock = socket.socketpair()
            try:
                yield InProcess(engine, EventSession(a_sock), ns), saved
            finally:
                close_engine(engine)
                a_sock.close()
                b_sock.close()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(tmp, ignore_errors=True)

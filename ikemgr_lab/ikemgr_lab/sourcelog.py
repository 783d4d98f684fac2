"""A destination that tells who it saw: logs and echoes the source address of each connection.

Run inside a lab namespace (``python -m ikemgr_lab.sourcelog serve ADDR PORT LOG``).
Each accepted TCP connection gets one line back, ``seen <source address>``, and the same
address is appended to the log file, so both the client and the lab's checks can prove
which address a packet really carried (the VIP, broadcast − 2 or the global address).
The client side (``probe``) runs in a thread that has entered the client's namespace.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def serve(address: str, port: int, log_path: str) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((address, port))
    srv.listen(64)
    print(f"listening on {address}:{port}", flush=True)
    with open(log_path, "a", buffering=1) as log:
        while True:
            conn, peer = srv.accept()
            with conn:
                log.write(f"{peer[0]}\n")
                try:
                    conn.sendall(f"seen {peer[0]}\n".encode())
                except OSError:
                    pass


def in_netns(ns: str, fn: Callable[[], T], timeout: float = 30.0) -> T:
    """Run ``fn`` in a fresh thread that has joined network namespace ``ns`` (setns is per thread)."""
    box: dict[str, object] = {}

    def worker() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)  # never created here: no O_CREAT
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {ns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=worker, name=f"netns-{ns}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"{ns}: no answer within {timeout:.0f}s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def probe(ns: str, address: str, port: int, timeout: float = 3.0) -> str | None:
    """Connect from namespace ``ns``; the source address the destination saw, or None."""

    def connect() -> str | None:
        try:
            with socket.create_connection((address, port), timeout=timeout) as s:
                s.settimeout(timeout)
                data = b""
                while not data.endswith(b"\n") and len(data) < 100:
                    chunk = s.recv(100)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return None
        text = data.decode(errors="replace").strip()
        return text[5:] if text.startswith("seen ") else None

    return in_netns(ns, connect, timeout=timeout + 5)


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "serve":
        serve(argv[1], int(argv[2]), argv[3])
        return 0
    print("usage: python -m ikemgr_lab.sourcelog serve ADDRESS PORT LOGFILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A tiny TCP server for the client tests: says who it is, then echoes lines.

``python echo.py ADDRESS PORT WORD``: each connection first receives ``WORD\\n`` (so a
test sees *which* 192.168.11.51 answered), then every line sent is echoed back until
the peer closes. Prints ``listening`` once bound.
"""

from __future__ import annotations

import socket
import sys
import threading


def serve(conn: socket.socket, word: str) -> None:
    with conn:
        conn.sendall(word.encode() + b"\n")
        f = conn.makefile("rb")
        for line in f:
            conn.sendall(line)


def main() -> None:
    addr, port, word = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(16)
    print("listening", flush=True)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn, word), daemon=True).start()


if __name__ == "__main__":
    main()

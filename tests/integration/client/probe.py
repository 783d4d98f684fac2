"""Run by the tests as an unprivileged program: connect, print the first line received.

``python probe.py ADDRESS PORT`` prints the server's greeting (``local`` / ``campus`` /
the lab's ``seen <source address>``); ``python probe.py --hold ADDRESS PORT`` keeps the
connection open and echoes stdin lines through it (the surviving-connection test).
"""

from __future__ import annotations

import socket
import sys


def main() -> None:
    hold = sys.argv[1] == "--hold"
    args = sys.argv[2:] if hold else sys.argv[1:]
    s = socket.create_connection((args[0], int(args[1])), timeout=5)
    f = s.makefile("rwb")
    print(f.readline().decode().strip(), flush=True)
    if not hold:
        return
    s.settimeout(30)
    for line in sys.stdin:
        f.write(line.encode())
        f.flush()
        print(f.readline().decode().strip(), flush=True)


if __name__ == "__main__":
    main()

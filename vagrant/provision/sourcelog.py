#!/usr/bin/env python3
"""Answer every TCP connection with the source address that arrived, and log it.

What the lab is about: a lab host must see 10.2.0.253 (the VLAN's SNAT address) for
alice@123456 and the client's own VIP for carol. Usage: sourcelog.py ADDRESS PORT
"""

import ipaddress
import socket
import sys
import time


def main() -> None:
    address = str(ipaddress.IPv4Address(sys.argv[1]))
    port = int(sys.argv[2])
    srv = socket.create_server((address, port), reuse_port=True)
    while True:
        conn, (peer, _) = srv.accept()
        with conn:
            conn.sendall(f"{peer}\n".encode())
        print(f"{time.strftime('%H:%M:%S')} {peer}", flush=True)


if __name__ == "__main__":
    main()

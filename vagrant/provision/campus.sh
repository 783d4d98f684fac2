#!/usr/bin/env bash
# The campus router (KUINS-III side of docs/lab.md): it routes between the client segment
# (ens2, 10.1.0.254), the lab VLAN (ens3.1, 10.2.0.254) and the campus server
# (10.5.0.10 on a dummy link, answered by sourcelog). The VIP pool lies inside ens2's
# subnet: the gateway's farp answers ARP for the VIPs, so no route to the pool is needed.
set -euo pipefail
printf 'net.ipv4.ip_forward = 1\n' >/etc/sysctl.d/90-ikemgr-lab.conf
sysctl -q -p /etc/sysctl.d/90-ikemgr-lab.conf

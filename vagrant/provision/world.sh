#!/usr/bin/env bash
# The hosts around the gateway on the "world" VM, one network namespace each (the VM's
# root namespace is the campus router, see campus.sh):
#   cr0 (root ns)  the campus router's address on lab VLAN 123456, 10.2.0.254/24
#   lab1           a host on lab VLAN 123456, 10.2.0.10/24, route 10.0.0.0/8 via 10.2.0.254
#   inet           "the Internet": 198.51.100.254/24 on the inet network (gw's outside gateway)
#                  and a server address 198.18.0.10/32
# Each namespace link is a macvlan (bridge mode) on the VM's NIC of that network; the
# router's own VLAN address is a macvlan too, because a macvlan cannot reach its parent
# device's addresses. A sourcelog server (sourcelog.py, uploaded by the Vagrantfile) on
# 10.2.0.10, 10.5.0.10 (the campus server) and 198.18.0.10, port 7070, answers every TCP
# connection with the source address it saw: what the smoke test compares.
# Installed as /usr/local/sbin/ikemgr-lab-world and run at every boot
# (ikemgr-lab-world.service); idempotent.
set -euo pipefail

macvlan() {  # macvlan NS PARENT ADDR [ROUTE VIA]: NS's eth0 on PARENT
  local ns=$1 parent=$2 addr=$3
  ip netns add "$ns" 2>/dev/null || true
  ip -n "$ns" link set lo up
  if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
    ip link add link "$parent" name "mv-$ns" type macvlan mode bridge
    ip link set "mv-$ns" netns "$ns"
    ip -n "$ns" link set "mv-$ns" name eth0
  fi
  ip -n "$ns" addr replace "$addr" dev eth0
  ip -n "$ns" link set eth0 up
  if [ $# -ge 5 ]; then ip -n "$ns" route replace "$4" via "$5"; fi
}

if [ "${1:-}" != --run ]; then
  # provisioning: install this script and its units, then run it through systemd
  install -m 0755 "$0" /usr/local/sbin/ikemgr-lab-world
  install -m 0755 /tmp/ikemgr-lab-sourcelog.py /usr/local/bin/ikemgr-lab-sourcelog
  cat >/etc/systemd/system/ikemgr-lab-world.service <<'UNIT'
[Unit]
Description=ikemgr lab: campus VLAN address, lab host, Internet as network namespaces
After=network-online.target networking.service
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/ikemgr-lab-world --run

[Install]
WantedBy=multi-user.target
UNIT
  cat >/etc/systemd/system/ikemgr-lab-sourcelog@.service <<'UNIT'
[Unit]
Description=ikemgr lab: sourcelog on %I:7070
After=ikemgr-lab-world.service
Requires=ikemgr-lab-world.service

[Service]
# %I is "NETNS ADDRESS" ("- ADDRESS" for the root namespace)
ExecStart=/bin/sh -c 'set -- %I; if [ "$1" = - ]; then exec /usr/local/bin/ikemgr-lab-sourcelog "$2" 7070; else exec /usr/sbin/ip netns exec "$1" /usr/local/bin/ikemgr-lab-sourcelog "$2" 7070; fi'
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
  # the VM's own charon is not part of the lab (the clients run theirs in namespaces)
  systemctl disable --now strongswan.service 2>/dev/null || true
  systemctl daemon-reload
  systemctl enable ikemgr-lab-world.service
  systemctl restart ikemgr-lab-world.service
  for u in "lab1 10.2.0.10" "- 10.5.0.10" "inet 198.18.0.10"; do
    unit="ikemgr-lab-sourcelog@$(systemd-escape -- "$u").service"
    systemctl enable "$unit"; systemctl restart "$unit"
  done
  ip -br addr; for ns in lab1 inet; do echo "[$ns]"; ip -n "$ns" -br addr; done
  exit 0
fi

# the campus router's address on the lab VLAN
if ! ip link show cr0 >/dev/null 2>&1; then ip link add link ens3.1 name cr0 type macvlan mode bridge; fi
ip addr replace 10.2.0.254/24 dev cr0
ip link set cr0 up
macvlan lab1 ens3.1 10.2.0.10/24 10.0.0.0/8 10.2.0.254
macvlan inet ens1 198.51.100.254/24
ip -n inet addr replace 198.18.0.10/32 dev lo

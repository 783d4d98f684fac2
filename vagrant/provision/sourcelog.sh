#!/usr/bin/env bash
# Run sourcelog.py (uploaded to /tmp by the Vagrantfile) on ADDRESS:PORT as a systemd
# service (ikemgr-lab-sourcelog).
set -euo pipefail
addr=${1:?address}
port=${2:-7070}
[[ $addr =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ && $port =~ ^[0-9]{1,5}$ ]] || { echo "sourcelog.sh: bad address or port" >&2; exit 2; }
install -m 0755 /tmp/ikemgr-lab-sourcelog.py /usr/local/bin/ikemgr-lab-sourcelog
cat >/etc/systemd/system/ikemgr-lab-sourcelog.service <<UNIT
[Unit]
Description=ikemgr lab: answer TCP connections with the source address seen
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/ikemgr-lab-sourcelog $addr $port
DynamicUser=yes
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now ikemgr-lab-sourcelog.service
systemctl restart ikemgr-lab-sourcelog.service

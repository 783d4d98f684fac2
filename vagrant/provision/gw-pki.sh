#!/usr/bin/env bash
# The lab's PKI on gw, before the role runs: a CA (it plays the national CA), the
# gateway's IKE certificate and FreeRADIUS' server certificate, at the paths the lab
# config names. The CA certificate is published on http://198.51.100.1:8080/ca.crt for
# the clients (the lab has no shared folder). Idempotent: existing keys are kept.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
FQDN=vpn.lab.test
ORG="Lab University"
PKI=/etc/ikemgr-lab/pki
PUB=/srv/ikemgr-lab/pub

# freeradius now, so its group exists for the key below (the role installs the rest)
missing=()
for p in strongswan-pki freeradius; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

install -d -m 0700 "$PKI"
cd "$PKI"
gen() { [ -s "$1" ] || { pki --gen --type ecdsa --size 256 --outform pem >"$1.tmp"; chmod 0600 "$1.tmp"; mv "$1.tmp" "$1"; }; }
issue() {  # issue KEY CERT DN SAN FLAG
  [ -s "$2" ] && return 0
  pki --pub --in "$1" | pki --issue --cacert ca.crt --cakey ca.key --dn "$3" --san "$4" \
    --flag "$5" --lifetime 1825 --outform pem >"$2"
}
gen ca.key
[ -s ca.crt ] || pki --self --ca --lifetime 3650 --in ca.key --dn "C=JP, O=$ORG, CN=ikemgr lab CA" \
  --outform pem >ca.crt
gen gateway.key
issue gateway.key gateway.crt "C=JP, O=$ORG, CN=$FQDN" "$FQDN" serverAuth
gen radius.key
issue radius.key radius.crt "C=JP, O=$ORG, CN=radius.lab.test" radius.lab.test serverAuth

# where the lab config (vagrant/gateway.yml) expects them
install -D -m 0644 ca.crt /etc/swanctl/x509ca/ca.crt
install -D -m 0644 gateway.crt /etc/swanctl/x509/gateway.crt
install -D -m 0600 gateway.key /etc/swanctl/private/gateway.key
install -D -m 0644 ca.crt /etc/freeradius/3.0/certs/ikemgr-ca.pem
install -D -m 0644 radius.crt /etc/freeradius/3.0/certs/ikemgr-server.pem
install -D -m 0640 -g freerad radius.key /etc/freeradius/3.0/certs/ikemgr-server.key

# publish the CA certificate (only that) for the clients
install -D -m 0644 ca.crt "$PUB/ca.crt"
cat >/etc/systemd/system/ikemgr-lab-pub.service <<UNIT
[Unit]
Description=ikemgr lab: publish the lab CA certificate for the clients
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/bin/python3 -m http.server --bind 198.51.100.1 --directory $PUB 8080
DynamicUser=yes
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now ikemgr-lab-pub.service

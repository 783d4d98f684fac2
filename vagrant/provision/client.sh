#!/usr/bin/env bash
# A Linux road-warrior client: charon-systemd with a swanctl connection "lab" to the
# gateway (EAP-MSCHAPv2 as IDENTITY, the gateway authenticated by its certificate from
# the lab CA), then connects. Usage: client.sh NAME IDENTITY PASSWORD
#
# The tunnel carries the campus (10.0.0.0/8), not 0.0.0.0/0 as in docs/lab.md: a full
# tunnel would also swallow the replies to `vagrant ssh` on the management interface.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
print_only=0
if [ "${1:-}" = --print-conf ]; then print_only=1; shift; fi
name=${1:?name} identity=${2:?identity} password=${3:?password}
GW=192.0.2.1
FQDN=vpn.lab.test
# the same grammar the gateway enforces (account, or account@NNNNNN); nothing else reaches the file
[[ $name =~ ^[a-z][a-z0-9-]{0,30}$ ]] || { echo "client.sh: bad name" >&2; exit 2; }
[[ $identity =~ ^[a-z][a-z0-9._-]{0,63}(@[0-9]{6})?$ ]] || { echo "client.sh: bad identity" >&2; exit 2; }
[[ $password =~ ^[A-Za-z0-9._-]{1,128}$ ]] || { echo "client.sh: bad password" >&2; exit 2; }

swanctl_conf() {
  cat <<CONF
# ikemgr lab client $name (vagrant/provision/client.sh)
connections {
    lab {
        version = 2
        remote_addrs = $GW
        vips = 0.0.0.0
        local {
            auth = eap-mschapv2
            eap_id = $identity
        }
        remote {
            auth = pubkey
            id = $FQDN
        }
        children {
            lab {
                remote_ts = 10.0.0.0/8
                start_action = start
            }
        }
    }
}
secrets {
    eap-$name {
        id = $identity
        secret = "$password"
    }
}
CONF
}
if [ "$print_only" = 1 ]; then swanctl_conf; exit 0; fi

pkgs=(charon-systemd strongswan-swanctl libcharon-extauth-plugins libstrongswan-standard-plugins)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# the lab CA, published by gw (vagrant/provision/gw-pki.sh); gw comes up first
ca=/etc/swanctl/x509ca/ikemgr-lab-ca.crt
for _ in $(seq 60); do
  python3 - "$GW" "$ca" <<'PY' && break
import sys, urllib.request
data = urllib.request.urlopen(f"http://{sys.argv[1]}:8080/ca.crt", timeout=5).read()
if b"-----BEGIN CERTIFICATE-----" not in data:
    sys.exit(1)
open(sys.argv[2], "wb").write(data)
PY
  sleep 5
done
[ -s "$ca" ] || { echo "client.sh: no CA certificate from http://$GW:8080/ca.crt" >&2; exit 1; }

umask 077
swanctl_conf >/etc/swanctl/conf.d/ikemgr-lab.conf

systemctl enable --now strongswan.service
swanctl --load-all --noprompt
# start_action = start: charon connects on load (and again at every boot)
for _ in $(seq 30); do
  swanctl --list-sas --ike lab 2>/dev/null | grep -q ESTABLISHED && break
  sleep 1
done
swanctl --list-sas --ike lab | grep -q ESTABLISHED \
  || { echo "client.sh: $identity did not connect; see journalctl -u strongswan" >&2; exit 1; }
swanctl --list-sas --ike lab

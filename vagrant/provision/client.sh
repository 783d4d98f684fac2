#!/usr/bin/env bash
# A Linux road-warrior client: a charon with a swanctl connection "lab" to the gateway
# (EAP-MSCHAPv2 as IDENTITY, the gateway authenticated by its certificate from the lab CA,
# kernel IPsec), then connects.
#   client.sh NAME IDENTITY PASSWORD                  the VM is the client (charon-systemd)
#   client.sh --netns NS ADDR NAME IDENTITY PASSWORD  the client lives in network namespace NS
#                                                     of this VM (a macvlan on ens1 with ADDR),
#                                                     its own charon as ikemgr-lab-charon@NS
#   client.sh --print-conf NAME IDENTITY PASSWORD     print the swanctl config only
#
# The tunnel carries the campus (10.0.0.0/8) and the lab's "Internet" (198.18.0.0/24), not
# 0.0.0.0/0 as in docs/lab.md: a full tunnel would also swallow the replies to
# `vagrant ssh` on the management interface. The client re-connects by itself when the
# gateway goes away (DPD every 5 s, dpd_action restart, endless keying tries).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
print_only=0 netns="" addr=""
if [ "${1:-}" = --print-conf ]; then print_only=1; shift; fi
if [ "${1:-}" = --netns ]; then netns=${2:?netns} addr=${3:?address}; shift 3; fi
name=${1:?name} identity=${2:?identity} password=${3:?password}
GW=198.51.100.1
FQDN=vpn.lab.test
# the same grammar the gateway enforces (account, or account@NNNNNN); nothing else reaches the file
[[ $name =~ ^[a-z][a-z0-9-]{0,30}$ ]] || { echo "client.sh: bad name" >&2; exit 2; }
[[ $identity =~ ^[a-z][a-z0-9._-]{0,63}(@[0-9]{6})?$ ]] || { echo "client.sh: bad identity" >&2; exit 2; }
[[ $password =~ ^[A-Za-z0-9._-]{1,128}$ ]] || { echo "client.sh: bad password" >&2; exit 2; }
if [ -n "$netns" ]; then
  [[ $netns =~ ^[a-z][a-z0-9]{0,9}$ ]] || { echo "client.sh: bad netns" >&2; exit 2; }
  [[ $addr =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$ ]] || { echo "client.sh: bad address" >&2; exit 2; }
fi

swanctl_conf() {
  cat <<CONF
# ikemgr lab client $name (vagrant/provision/client.sh)
connections {
    lab {
        version = 2
        remote_addrs = $GW
        vips = 0.0.0.0
        dpd_delay = 5s
        keyingtries = 0
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
                remote_ts = 10.0.0.0/8,198.18.0.0/24
                start_action = start
                dpd_action = restart
                close_action = start
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
fetch_ca() {  # fetch_ca DEST [ip netns exec NS]: the lab CA, published by gw (gw-pki.sh)
  local dest=$1; shift
  for _ in $(seq 60); do
    "$@" python3 - "$GW" "$dest" <<'PY' && return 0
import sys, urllib.request
data = urllib.request.urlopen(f"http://{sys.argv[1]}:8080/ca.crt", timeout=5).read()
if b"-----BEGIN CERTIFICATE-----" not in data:
    sys.exit(1)
open(sys.argv[2], "wb").write(data)
PY
    sleep 5
  done
  echo "client.sh: no CA certificate from http://$GW:8080/ca.crt" >&2; exit 1
}

if [ -n "$netns" ]; then
  # the namespace and its link: a macvlan (bridge mode) on ens1, the inet network
  ns_dir=/etc/netns/$netns          # `ip netns exec` binds these over /etc
  vici=unix:///var/lib/ikemgr-lab/$netns.vici
  install -d -m 0755 /var/lib/ikemgr-lab
  ip netns add "$netns" 2>/dev/null || true
  ip -n "$netns" link set lo up
  if ! ip -n "$netns" link show eth0 >/dev/null 2>&1; then
    ip link add link ens1 name "mv-$netns" type macvlan mode bridge
    ip link set "mv-$netns" netns "$netns"
    ip -n "$netns" link set "mv-$netns" name eth0
  fi
  ip -n "$netns" addr replace "$addr" dev eth0
  ip -n "$netns" link set eth0 up
  modprobe -a esp4 xfrm_user xfrm4_tunnel 2>/dev/null || true   # kernel IPsec (the VM's kernel has it)
  install -d -m 0755 "$ns_dir/swanctl" "$ns_dir/swanctl/conf.d" "$ns_dir/swanctl/x509ca"
  cp -a /etc/swanctl/. "$ns_dir/swanctl/" 2>/dev/null || true
  rm -f "$ns_dir"/swanctl/conf.d/*.conf
  cat >"$ns_dir/strongswan.conf" <<CONF
# ikemgr lab client $name in netns $netns (vagrant/provision/client.sh)
charon {
    load_modular = yes
    plugins {
        include strongswan.d/charon/*.conf
        vici {
            socket = $vici
        }
    }
    # the unit's private /run hides /dev/log: log to stderr (the unit's journal)
    filelog {
        stderr {
            default = 1
        }
    }
    # notice a rebooted gateway within seconds, not minutes
    retransmit_tries = 3
    retransmit_timeout = 2.0
    retransmit_base = 1.4
}
include strongswan.d/*.conf
CONF
  # the client's charon must not meet the VM's own (/run/charon.pid): a private /run
  cat >/etc/systemd/system/ikemgr-lab-charon@.service <<'UNIT'
[Unit]
Description=ikemgr lab client charon in network namespace %i
After=network-online.target ikemgr-lab-world.service
Wants=network-online.target

[Service]
ExecStart=/usr/sbin/ip netns exec %i /usr/bin/unshare --mount --propagation private /bin/sh -c 'mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon'
# charon opens its VICI socket a moment after it starts (a stale socket file may be there)
ExecStartPost=/bin/sh -c 'for i in $(seq 60); do /usr/sbin/ip netns exec %i /usr/sbin/swanctl --load-all --noprompt --uri unix:///var/lib/ikemgr-lab/%i.vici >/dev/null 2>&1 && exit 0; sleep 1; done; exit 1'
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
  fetch_ca "$ns_dir/swanctl/x509ca/ikemgr-lab-ca.crt" ip netns exec "$netns"
  umask 077
  swanctl_conf >"$ns_dir/swanctl/conf.d/ikemgr-lab.conf"
  umask 022
  systemctl daemon-reload
  systemctl enable "ikemgr-lab-charon@$netns.service"
  systemctl restart "ikemgr-lab-charon@$netns.service"
  for _ in $(seq 60); do
    grep -q ESTABLISHED <<<"$(ip netns exec "$netns" swanctl --list-sas --ike lab --uri "$vici" 2>/dev/null)" && break
    sleep 1
  done
  grep -q ESTABLISHED <<<"$(ip netns exec "$netns" swanctl --list-sas --ike lab --uri "$vici")" \
    || { echo "client.sh: $identity did not connect; see journalctl -u ikemgr-lab-charon@$netns" >&2; exit 1; }
  ip netns exec "$netns" swanctl --list-sas --ike lab --uri "$vici"
  exit 0
fi

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
fetch_ca "$ca"

umask 077
swanctl_conf >/etc/swanctl/conf.d/ikemgr-lab.conf

systemctl enable --now strongswan.service
swanctl --load-all --noprompt
# start_action = start: charon connects on load (and again at every boot)
for _ in $(seq 30); do
  grep -q ESTABLISHED <<<"$(swanctl --list-sas --ike lab 2>/dev/null)" && break
  sleep 1
done
grep -q ESTABLISHED <<<"$(swanctl --list-sas --ike lab)" \
  || { echo "client.sh: $identity did not connect; see journalctl -u strongswan" >&2; exit 1; }
swanctl --list-sas --ike lab

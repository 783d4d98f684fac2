#!/usr/bin/env bash
# Set up ikemgr on a Debian 12 machine as root: system packages + a venv with ikemgr installed.
# Idempotent and quiet when everything is already there. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${IKEMGR_VENV:-$ROOT/.venv}

PKGS=(
  # strongSwan: charon + swanctl/VICI + pki; openssl/gcm (standard), curve25519 (extra),
  # kernel-libipsec/eap-radius/farp (charon-extra), eap-mschapv2 (extauth)
  strongswan-charon strongswan-swanctl strongswan-pki
  libstrongswan-standard-plugins libstrongswan-extra-plugins
  libcharon-extra-plugins libcharon-extauth-plugins
  # authentication
  freeradius freeradius-utils freeradius-ldap slapd ldap-utils
  # eapol_test: the independent EAP peer (wpa_supplicant's) the RADIUS tests talk to FreeRADIUS with
  eapoltest
  # allow-list store (production backend, tested for real)
  postgresql
  # kernel state
  iproute2 iptables nftables libnftables1 conntrack
  # lab tools
  tcpdump iputils-ping procps psmisc ethtool
  # systemd-analyze verifies the rendered units (the package only; nothing starts systemd)
  systemd
  # libreswan's pluto for the interop test: its libraries and NSS tools only (the libreswan
  # package itself conflicts with strongSwan; the test unpacks its .deb with dpkg -x)
  libnss3-tools libldns3 libunbound8 libevent-core-2.1-7 libevent-pthreads-2.1-7 libcurl3-nss
  # client tests: a DNS server on each side of `ikemgr client`
  dnsmasq-base
  # client tests: the NetworkManager profile connects through the real NetworkManager and
  # charon-nm (started by the test on a private D-Bus in a namespace, never on the host)
  network-manager network-manager-strongswan strongswan-nm dbus
  # python
  python3 python3-venv python3-dev gcc
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Daemons are started by ikemgr/tests themselves, never by the package install.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.ikemgr-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ ikemgr_lab/pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing ikemgr, the namespace lab and their Python dependencies into $VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # the product (editable, with the test tools) and the lab beside it (its own package:
  # it registers `ikemgr lab` through an entry point and is never in the product wheel)
  "$VENV/bin/pip" install -q -e ".[test]" -e ./ikemgr_lab
  touch "$stamp"
fi
# bytecode for the editable tree, as pip writes it for an installed wheel: without it, a
# shell with PYTHONDONTWRITEBYTECODE=1 (this machine's) recompiles ikemgr in every command
# (measured: `ikemgr sync` 1.37 s instead of 0.88 s)
"$VENV/bin/python" -m compileall -q ikemgr ikemgr_lab/ikemgr_lab >/dev/null
echo "setup: ok ($("$VENV/bin/ikemgr" --version 2>/dev/null || echo 'ikemgr installed'))"

#!/usr/bin/env bash
# Name the lab interfaces like the ikemgr config (ens1, ens2, ens3, ens3.1 …) and give them
# their addresses, now and after a reboot. Vagrant leaves them unconfigured
# (auto_config: false); each one is found by the MAC the Vagrantfile gave it.
#
#   net.sh "name=ens1 mac=52:54:00:49:01:01 addr=198.51.100.1/24" \
#          "name=ens3.1 vlan=ens3:1 addr=10.2.0.253/24 flags=noprefixroute" \
#          "name=srv0 kind=dummy addr=10.5.0.10/32" "name=ens3.1 … route=10.0.0.0/8,10.2.0.254"
#
# Persistent state: /etc/systemd/network/10-ikemgr-lab-<name>.link (udev renames by MAC at
# boot) and /etc/network/interfaces.d/ikemgr-lab (ifupdown). Every value is checked
# against a strict pattern before it is written anywhere.
set -euo pipefail

IFACES=/etc/network/interfaces.d/ikemgr-lab
LINKDIR=/etc/systemd/network
re_name='^[a-z][a-z0-9]{0,9}(\.[0-9]{1,4})?$'
re_mac='^([0-9a-f]{2}:){5}[0-9a-f]{2}$'
re_cidr='^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$'
re_ip='^([0-9]{1,3}\.){3}[0-9]{1,3}$'
re_vlan='^[a-z][a-z0-9]{0,9}:[0-9]{1,4}$'

die() { echo "net.sh: $*" >&2; exit 2; }

ifname_by_mac() {
  local want=$1 dev
  for dev in /sys/class/net/*; do
    [ "$(cat "$dev/address" 2>/dev/null)" = "$want" ] && { basename "$dev"; return 0; }
  done
  return 1
}

stanzas=""
names=()
links_changed=0
mkdir -p "$LINKDIR" "$(dirname "$IFACES")"

for spec in "$@"; do
  name="" mac="" vlan="" kind="" addr="" flags="" routes=()
  read -r -a words <<<"$spec"
  for w in "${words[@]}"; do
    case "$w" in
      name=*) name=${w#name=}; [[ $name =~ $re_name ]] || die "bad name: $name" ;;
      mac=*) mac=${w#mac=}; [[ $mac =~ $re_mac ]] || die "bad mac: $mac" ;;
      vlan=*) vlan=${w#vlan=}; [[ $vlan =~ $re_vlan ]] || die "bad vlan: $vlan" ;;
      kind=dummy) kind=dummy ;;
      addr=*) addr=${w#addr=}; [[ $addr =~ $re_cidr ]] || die "bad address: $addr" ;;
      flags=noprefixroute) flags=noprefixroute ;;
      route=*) r=${w#route=}
               [[ ${r%,*} =~ $re_cidr && ${r#*,} =~ $re_ip ]] || die "bad route: $r"
               routes+=("$r") ;;
      *) die "unknown word: $w" ;;
    esac
  done
  [ -n "$name" ] || die "no name in: $spec"
  names+=("$name")

  if [ -n "$mac" ]; then
    link="$LINKDIR/10-ikemgr-lab-$name.link"
    want=$(printf '[Match]\nMACAddress=%s\n\n[Link]\nName=%s\n' "$mac" "$name")
    if [ "$(cat "$link" 2>/dev/null)" != "$want" ]; then
      printf '%s\n' "$want" >"$link"
      links_changed=1
    fi
    cur=$(ifname_by_mac "$mac") || die "no interface has MAC $mac (check the Vagrantfile)"
    if [ "$cur" != "$name" ]; then
      ip link set dev "$cur" down
      ip link set dev "$cur" name "$name"
    fi
  fi

  s="auto $name"$'\n'"iface $name inet manual"$'\n'
  if [ -n "$vlan" ]; then
    s+="    pre-up ip link show dev $name >/dev/null 2>&1 || ip link add link ${vlan%:*} name $name type vlan id ${vlan#*:}"$'\n'
    s+="    post-down ip link del dev $name"$'\n'
  elif [ "$kind" = dummy ]; then
    s+="    pre-up ip link show dev $name >/dev/null 2>&1 || ip link add name $name type dummy"$'\n'
    s+="    post-down ip link del dev $name"$'\n'
  fi
  s+="    up ip link set dev $name up"$'\n'
  [ -n "$addr" ] && s+="    up ip addr replace $addr dev $name${flags:+ $flags}"$'\n'
  for r in "${routes[@]}"; do
    s+="    up ip route replace ${r%,*} via ${r#*,}"$'\n'
  done
  stanzas+="$s"$'\n'
done

# VLANs need their parent up first: ifupdown brings interfaces up in file order
printf '# Written by vagrant/provision/net.sh (ikemgr lab); interfaces named like the ikemgr config.\n\n%s' \
  "$stanzas" >"$IFACES.new"
mv "$IFACES.new" "$IFACES"
grep -qs '^source /etc/network/interfaces.d/\*' /etc/network/interfaces \
  || echo 'source /etc/network/interfaces.d/*' >>/etc/network/interfaces

for n in "${names[@]}"; do
  ifdown --force "$n" >/dev/null 2>&1 || true
  ifup "$n"
done
# The initramfs is not rebuilt: it holds no ikemgr-lab .link file (the box boots with
# net.ifnames=0, so the NICs keep their kernel names there) and the real root's udev renames
# them by MAC at boot. Rebuilding it costs minutes under qemu's software emulation.
: "$links_changed"
ip -br addr

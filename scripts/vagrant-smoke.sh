#!/usr/bin/env bash
# The Vagrant lab, booted and checked (opt-in: minutes of CPU under qemu's software
# emulation). As root from a checkout:
#
#   IKEMGR_VAGRANT=1 bash scripts/vagrant-smoke.sh          # box → up → checks → reboot gw → checks → destroy
#   IKEMGR_VAGRANT=1 IKEMGR_VAGRANT_KEEP=1 bash scripts/vagrant-smoke.sh   # leave the lab running
#   bash scripts/vagrant-smoke.sh --cleanup                 # destroy the lab, stop what this script started
#
# Checks, inside the VMs (vagrant/README.md): the allow-listed user (alice@123456) reaches
# the lab host from the VLAN's broadcast − 2 address (10.2.0.253), the other (carol) through
# the campus path (the lab host sees her virtual IP), both reach "the Internet"
# (198.18.0.10) as the gateway's global address (198.51.100.1); the SAs are kernel IPsec
# (ESP states in gw's XFRM). Then gw reboots (no provisioning) and the same checks pass
# once the clients have reconnected by themselves. Last, `ikemgr client` on world: a client
# machine makes a per-program environment for bob@123456 with kernel IPsec, a program in
# it reaches the lab host from the VLAN's SNAT address, `client down` leaves nothing.
#
# libvirtd/virtlogd are started by hand when not running (no systemd as PID 1 here) and
# stopped again by their pid files at the end. Boxes live in $VAGRANT_HOME
# (/var/cache/ikemgr-ci/vagrant.d), the box build in /var/cache/ikemgr-ci/box.
# the whole script is one block: bash parses it before running, so editing the file
# during a run does not change the run
{
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CACHE=${IKEMGR_CI_CACHE:-/var/cache/ikemgr-ci}
export VAGRANT_HOME=${VAGRANT_HOME:-$CACHE/vagrant.d}
export LIBVIRT_DEFAULT_URI=qemu:///system
BOX=debian12-ikemgr
STATE=$CACHE/vagrant-smoke        # what this script started (pid markers), kept between runs
T0=$(date +%s); TS=$T0
log() { echo "vagrant-smoke: $*"; }
stage() { local now; now=$(date +%s); log "$1: $((now - TS)) s (total $((now - T0)) s)"; TS=$now; }
die() { log "FAILED: $*"; exit 1; }
V() { (cd "$REPO/vagrant" && vagrant "$@"); }

teardown() {
  if [ -e /run/libvirtd.pid ]; then
    V destroy -f || true
    for n in ikemgr-inet ikemgr-campus ikemgr-trunk vagrant-libvirt; do
      virsh net-destroy "$n" >/dev/null 2>&1 || true; virsh net-undefine "$n" >/dev/null 2>&1 || true
    done
    for v in $(virsh vol-list default 2>/dev/null | awk '/_vagrant_box_image_/{print $1}'); do
      virsh vol-delete --pool default "$v" >/dev/null 2>&1 || true
    done
    # the storage pool vagrant-libvirt defined, when this script's libvirtd did it
    if [ -e "$STATE/started-libvirtd" ]; then
      virsh pool-destroy default >/dev/null 2>&1 || true; virsh pool-undefine default >/dev/null 2>&1 || true
    fi
  fi
  # only the daemons this script started
  for d in libvirtd virtlogd; do
    if [ -e "$STATE/started-$d" ] && [ -s "/run/$d.pid" ]; then
      kill "$(cat "/run/$d.pid")" 2>/dev/null || true
      rm -f "$STATE/started-$d"
    fi
  done
  sleep 2
  # the firewall chains libvirtd left in the root namespace (its jumps first, then the chains)
  local ipt t r c
  for ipt in iptables ip6tables; do for t in filter nat mangle; do
    "$ipt" -t "$t" -S 2>/dev/null | grep -E '(-j|-g) LIBVIRT_' | grep -v '^-A LIBVIRT_' | sed 's/^-A/-D/' \
      | while read -r -a r; do "$ipt" -t "$t" "${r[@]}" || true; done
    for c in $("$ipt" -t "$t" -S 2>/dev/null | awk '/^-N LIBVIRT_/{print $2}'); do "$ipt" -t "$t" -F "$c"; done
    for c in $("$ipt" -t "$t" -S 2>/dev/null | awk '/^-N LIBVIRT_/{print $2}'); do "$ipt" -t "$t" -X "$c"; done
  done; done
  echo 0 > /proc/sys/net/ipv4/ip_forward 2>/dev/null || true
}
if [ "${1:-}" = --cleanup ]; then teardown; log "cleaned up"; exit 0; fi
if [ "${IKEMGR_VAGRANT:-0}" != 1 ]; then
  log "skipped (opt-in: IKEMGR_VAGRANT=1; boots VMs under qemu, ~20 min on 2 cores)"; exit 0
fi
[ "$(id -u)" = 0 ] || die "run as root"
for t in vagrant virsh libvirtd virtlogd qemu-system-x86_64 mmdebstrap; do
  command -v "$t" >/dev/null || die "$t missing: apt-get install vagrant vagrant-libvirt libvirt-daemon-system qemu-system-x86 qemu-utils dnsmasq-base mmdebstrap grub-pc-bin"
done
mkdir -p "$STATE"

# ---------------------------------------------------------------------------- libvirt
if ! virsh list >/dev/null 2>&1; then
  [ -s /run/virtlogd.pid ] && kill -0 "$(cat /run/virtlogd.pid)" 2>/dev/null || { virtlogd -d; touch "$STATE/started-virtlogd"; }
  libvirtd -d; touch "$STATE/started-libvirtd"
  for _ in $(seq 30); do virsh list >/dev/null 2>&1 && break; sleep 1; done
fi
virsh list >/dev/null || die "libvirtd does not answer"
stage "libvirtd"

# libvirtd starts qemu, so `nice vagrant` does not reach it: keep the lab's qemu threads at
# nice 10 (the machine is shared), checked every 5 s while this script runs
(
  while sleep 5; do
    for pid in $(pgrep -f '^/usr/bin/qemu-system-x86_64 -name guest=vagrant_' || true); do
      for t in /proc/"$pid"/task/*; do renice -n 10 -p "${t##*/}" >/dev/null 2>&1 || true; done
    done
  done
) &
RENICER=$!
trap 'kill $RENICER 2>/dev/null || true; [ "${IKEMGR_VAGRANT_KEEP:-0}" = 1 ] || teardown' EXIT

# ---------------------------------------------------------------------------- box
if ! grep -q "^$BOX " <<<"$(vagrant box list 2>/dev/null)"; then
  [ -s "$CACHE/box/$BOX.box" ] || nice -n 10 bash vagrant/build-box.sh "$CACHE/box"
  vagrant box add --force --name "$BOX" "$CACHE/box/$BOX.box"
fi
stage "box"

# ---------------------------------------------------------------------------- wheels, ansible
# gw gets ikemgr and its dependencies as wheels (no compiler, no PyPI inside the lab)
TOOLS=$CACHE/tools
if [ ! -x "$TOOLS/bin/ansible-playbook" ]; then python3 -m venv "$TOOLS"; "$TOOLS/bin/pip" install -q ansible ansible-lint; fi
export PATH="$TOOLS/bin:$PATH"
WH=$REPO/vagrant/.lab/wheelhouse
mkdir -p "$WH"; rm -f "$WH"/ikemgr-*.whl
[ -x "$CACHE/buildvenv/bin/pip" ] || python3 -m venv "$CACHE/buildvenv"
nice -n 10 "$CACHE/buildvenv/bin/pip" wheel -q -w "$WH" "$REPO"
stage "wheelhouse"

# ---------------------------------------------------------------------------- up
up() {  # up VM: vagrant up, the whole output in $STATE/up-VM.log, the milestones here
  local rc=0 cmd=(up --provider=libvirt)
  # a kept lab (IKEMGR_VAGRANT_KEEP=1) is reused: a running VM is only provisioned again
  # when named in IKEMGR_VAGRANT_PROVISION ("world", "gw world"), else left as it is
  if grep -q "^$1 *running" <<<"$(V status "$1" 2>/dev/null)"; then
    if [[ " ${IKEMGR_VAGRANT_PROVISION:-} " == *" $1 "* ]]; then cmd=(provision); else log "$1 is running: reused"; return 0; fi
  fi
  (cd "$REPO/vagrant" && nice -n 10 vagrant "${cmd[@]}" "$1") > "$STATE/up-$1.log" 2>&1 || rc=$?
  grep -E "^==> $1: (Running provisioner|Machine booted)|PLAY RECAP|^$1 +: ok=|fatal|ERROR|ESTABLISHED|did not connect" \
    "$STATE/up-$1.log" | grep -v WARNING || true
  [ "$rc" = 0 ] || { tail -30 "$STATE/up-$1.log"; die "vagrant up $1 (see $STATE/up-$1.log)"; }
}
up gw
stage "vagrant up gw (boot + net, pki, directory, role, grants)"
up world
stage "vagrant up world (boot + router, hosts, alice, carol connected)"

# ---------------------------------------------------------------------------- checks
# what a server saw as the source of a TCP connection from client NS
seen() { V ssh world -c "sudo ip netns exec $1 timeout 10 bash -c 'exec 3<>/dev/tcp/$2/7070; cat <&3'" 2>/dev/null | tr -d '\r' | tail -1; }
check_all() {  # check_all WHEN
  local a c
  a=$(seen alice 10.2.0.10); [ "$a" = 10.2.0.253 ] || die "$1: alice → lab host seen as '$a', want 10.2.0.253 (VLAN SNAT)"
  c=$(seen carol 10.2.0.10); [[ $c =~ ^10\.1\.0\.([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge 10 ] && [ "${BASH_REMATCH[1]}" -le 250 ] \
    || die "$1: carol → lab host seen as '$c', want her virtual IP from the pool (campus path)"
  [ "$(seen carol 10.5.0.10)" = "$c" ] || die "$1: carol → campus server not seen as her virtual IP"
  for u in alice carol; do
    [ "$(seen $u 198.18.0.10)" = 198.51.100.1 ] || die "$1: $u → Internet not seen as 198.51.100.1"
  done
  grep -q 'proto esp' <<<"$(V ssh gw -c 'sudo ip xfrm state' 2>/dev/null)" || die "$1: no kernel ESP state on gw"
  log "$1: alice → lab host as 10.2.0.253, carol as $c (campus path), both → Internet as 198.51.100.1, kernel ESP on gw"
}
wait_clients() {  # the clients re-connect by themselves (DPD, dpd_action restart)
  for _ in $(seq 60); do
    if [ "$(seen alice 10.2.0.10)" = 10.2.0.253 ] && [[ $(seen carol 10.2.0.10) =~ ^10\.1\.0\. ]]; then return 0; fi
    sleep 5
  done
  die "the clients did not reconnect within 5 min"
}
check_all "after up"
stage "checks"

# ---------------------------------------------------------------------------- reboot gw
V reload gw --no-provision > "$STATE/reload-gw.log" 2>&1 || die "vagrant reload gw (see $STATE/reload-gw.log)"
stage "gw reboot (vagrant reload --no-provision)"
wait_clients
stage "clients reconnected"
check_all "after gw reboot"

# ---------------------------------------------------------------------------- ikemgr client
# `ikemgr client` on a Linux client of the lab (vagrant/provision/client-env.sh): a client
# machine "dave" on world, in it the environment "bob" for bob@123456 (granted here), with
# kernel IPsec. A program in the environment reaches the lab host from the VLAN's SNAT
# address; dave itself reaches nothing of the campus; `client down` leaves nothing.
GWI=/opt/ikemgr/venv/bin/ikemgr
CLI=/opt/ikemgr-client/bin/ikemgr
V ssh gw -c "sudo $GWI grant add bob@123456 --note 'vagrant lab: ikemgr client' >/dev/null 2>&1; sudo rm -rf /tmp/bob-prof \
  && sudo $GWI profile --user bob@123456 --format swanctl --out /tmp/bob-prof --connect-to ip \
     --ca /etc/swanctl/x509ca/ca.crt >/dev/null && echo B64:\$(sudo tar -C /tmp -cz bob-prof | base64 -w0)" 2>/dev/null \
  | tr -d '\r' | sed -n 's/^B64://p' | base64 -d > "$STATE/bob-prof.tgz" || die "ikemgr profile for bob@123456 on gw"
V upload "$STATE/bob-prof.tgz" /tmp/bob-prof.tgz world >/dev/null
V upload "$WH" /tmp/wheelhouse world >/dev/null
V upload "$REPO/vagrant/provision/client-env.sh" /tmp/client-env.sh world >/dev/null
up_json=$(V ssh world -c "sudo tar -C /tmp -xzf /tmp/bob-prof.tgz && umask 077 && echo bob-pass > /tmp/bob.pw \
  && sudo bash /tmp/client-env.sh dave 198.51.100.70/24 bob /tmp/bob-prof /tmp/bob.pw /tmp/wheelhouse" 2>/dev/null | tr -d '\r')
grep -q '"ok": true' <<<"$up_json" || die "ikemgr client up bob on world: $up_json"
grep -q '"ipsec": "kernel"' <<<"$up_json" || die "ikemgr client up bob: not kernel IPsec: $up_json"
in_env=$(V ssh world -c "sudo ip netns exec dave $CLI client exec bob -- timeout 10 bash -c 'exec 3<>/dev/tcp/10.2.0.10/7070; cat <&3'" 2>/dev/null | tr -d '\r' | tail -1)
[ "$in_env" = 10.2.0.253 ] || die "ikemgr client: bob's environment → lab host seen as '$in_env', want 10.2.0.253"
V ssh world -c "sudo ip netns exec dave timeout 5 bash -c 'exec 3<>/dev/tcp/10.2.0.10/7070'" >/dev/null 2>&1 \
  && die "ikemgr client: the client machine itself reached the lab host"
grep -q 'proto esp' <<<"$(V ssh world -c 'sudo ip netns exec bob ip xfrm state' 2>/dev/null)" \
  || die "ikemgr client: no kernel ESP state in bob's environment"
V ssh world -c "sudo ip netns exec dave $CLI client down bob" >/dev/null 2>&1 || die "ikemgr client down bob"
[ -z "$(V ssh world -c 'ip netns list | grep -w bob' 2>/dev/null | tr -d '\r')" ] || die "ikemgr client down left the bob namespace"
log "ikemgr client: bob@123456's environment on world (kernel ESP) → lab host as 10.2.0.253; the machine itself: no way in; down: nothing left"
stage "ikemgr client on a lab client"
log "PASSED in $(( $(date +%s) - T0 )) s"
exit 0
}

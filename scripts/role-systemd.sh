#!/usr/bin/env bash
# The ikemgr_gateway role against real systemd: a Debian 12 systemd-nspawn machine with
# systemd as PID 1, built offline from Debian packages (mmdebstrap; no registry image, no
# Galaxy), every task of the role on. Run as root from a checkout:
#
#   bash scripts/role-systemd.sh            # build/reuse rootfs → check → converge → … → teardown
#   IKEMGR_KEEP=1 bash scripts/role-systemd.sh   # leave the machine running (then: --cleanup)
#   bash scripts/role-systemd.sh --cleanup  # tear down what a kept or interrupted run left
#
# Stages (each timed): rootfs (cached in $IKEMGR_CI_CACHE keyed by a hash of the package
# lists) → boot → `ansible-playbook --check` on the fresh machine → converge → idempotence
# (changed=0) → verify (connection loaded in the running charon over VICI, `ikemgr apply
# --dry-run` has nothing to do, units active) → handlers (one kind of setting at a time:
# which daemon's PID changed) → `systemctl restart nftables` keeps ikemgr's table →
# poweroff + boot → base state and services back without Ansible → teardown.
#
# The machine has no network (--private-network plus veth links named like the config's
# interfaces): the role's apt task installs from a local repository that the rootfs build
# downloaded from the Debian mirror, and pip installs ikemgr's dependencies from a
# wheelhouse built on the host. Ansible reaches it with community.docker.nsenter.
# the whole script is one block: bash parses it before running, so editing the file
# during a run does not change the run
{
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CACHE=${IKEMGR_CI_CACHE:-/var/cache/ikemgr-ci}
W=${IKEMGR_ROLE_DIR:-/tmp/ikh-role}
LOGS=${IKEMGR_ROLE_LOGS:-/tmp/ikh-role-logs}     # kept after teardown
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
TOOLS=$CACHE/tools
NAME=ikh-gw
VARS=$REPO/tests/integration/ansible/systemd/gateway.yml
# host ends of the machine's links (the machine's ends carry the config's names)
LINKS=(ikh-o:ens1 ikh-c:ens2 ikh-l1:lab1)
# what the machine boots with; the gateway's packages come from the role's defaults
# (strongswan-starter, as Debian's "strongswan" package brings it: enabled, its charon would
# take UDP 500/4500 at boot; the role must mask it)
BASE_PKGS=(systemd-sysv dbus python3 python3-apt python3-venv iproute2 procps apt-utils ca-certificates
           strongswan-starter)

T0=$(date +%s); TS=$T0
log() { echo "role-systemd: $*"; }
stage() { local now; now=$(date +%s); log "$1 done in $((now - TS)) s (total $((now - T0)) s)"; TS=$now; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------------------- teardown
cleanup() {
  local pid
  if [ -s "$W/nspawn.pid" ]; then
    pid=$(cat "$W/nspawn.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true        # nspawn: SIGTERM = orderly poweroff
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$W/nspawn.pid"
  fi
  for l in "${LINKS[@]}"; do ip link del "${l%%:*}" 2>/dev/null || true; done
  mountpoint -q "$W/root" && umount "$W/root"
  rm -rf "$W" "/run/systemd/nspawn/propagate/$NAME" 2>/dev/null || true
  # nspawn's runtime directory, when nothing else uses it
  rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn 2>/dev/null || true
}
if [ "${1:-}" = "--cleanup" ]; then cleanup; log "cleaned up"; exit 0; fi
[ "$(id -u)" = 0 ] || die "run as root (mounts, nspawn)"
for tool in mmdebstrap systemd-nspawn nsenter pki; do
  command -v "$tool" >/dev/null || die "$tool missing (apt-get install mmdebstrap systemd-container strongswan-pki)"
done
trap '[ "${IKEMGR_KEEP:-0}" = 1 ] || cleanup' EXIT
cleanup
rm -rf "$LOGS"; mkdir -p "$LOGS"

# ---------------------------------------------------------------------------- tools
# ansible (the PyPI bundle ships community.docker, Galaxy is not needed) and ansible-lint
if [ ! -x "$TOOLS/bin/ansible-playbook" ] || [ ! -x "$TOOLS/bin/ansible-lint" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q ansible ansible-lint
fi
mapfile -t GW_PKGS < <("$TOOLS/bin/python" - "$REPO/ansible/roles/ikemgr_gateway/defaults/main.yml" <<'EOF'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
print("\n".join(d["ikemgr_packages"] + d["ikemgr_build_packages"] + d["ikemgr_service_packages"]))
EOF
)
stage "tools"

# ---------------------------------------------------------------------------- rootfs
# bump RECIPE when the build steps below change (the key covers the package lists)
RECIPE=2
KEY=$(printf '%s\n' "$RECIPE" "${BASE_PKGS[@]}" -- "${GW_PKGS[@]}" | sha256sum | cut -c1-16)
ROOTFS=$CACHE/rootfs-$KEY
if [ ! -e "$ROOTFS/.ikemgr-complete" ]; then
  log "building $ROOTFS (${#BASE_PKGS[@]} base packages; gateway packages into a local repository)"
  rm -rf "$ROOTFS" "$ROOTFS.tmp"; mkdir -p "$CACHE"
  # the customize hook downloads what the role installs (with dependencies, against this
  # very rootfs) and indexes it: the role's apt task then runs offline for real
  nice -n 10 mmdebstrap --variant=minbase --components=main --include="$(IFS=,; echo "${BASE_PKGS[*]}")" \
    --customize-hook="chroot \"\$1\" apt-get install -y -q --download-only --no-install-recommends ${GW_PKGS[*]}" \
    --customize-hook='mkdir -p "$1/opt/ikemgr-ci/repo" && mv "$1"/var/cache/apt/archives/*.deb "$1/opt/ikemgr-ci/repo/"' \
    --customize-hook='chroot "$1" sh -c "cd /opt/ikemgr-ci/repo && apt-ftparchive packages . > Packages"' \
    bookworm "$ROOTFS.tmp" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY bookworm-security main"
  R=$ROOTFS.tmp
  echo 'deb [trusted=yes] file:/opt/ikemgr-ci/repo ./' > "$R/etc/apt/sources.list"
  rm -f "$R"/etc/apt/sources.list.d/*
  # package lists as a host that ran apt-get update has them (check mode does not update)
  rm -rf "$R"/var/lib/apt/lists/*; chroot "$R" apt-get update -q >/dev/null
  echo "$NAME" > "$R/etc/hostname"
  : > "$R/etc/machine-id"
  chroot "$R" systemctl enable systemd-networkd.service systemd-networkd-wait-online.service >/dev/null 2>&1
  mv "$ROOTFS.tmp" "$ROOTFS"; touch "$ROOTFS/.ikemgr-complete"
else
  log "reusing $ROOTFS"
fi
# a cache of older package lists is never used again
find "$CACHE" -maxdepth 1 -name 'rootfs-*' ! -name "rootfs-$KEY" -exec rm -rf {} +
stage "rootfs"

# ---------------------------------------------------------------------------- wheels
# ikemgr's dependencies, built once per dependency list with the interpreter the gateway's
# venv uses (Debian's python3); ikemgr itself is built fresh from the checkout every run
DEPKEY=$(sed -n '/^dependencies = \[/,/^\]/p' pyproject.toml | sha256sum | cut -c1-16)
WHEELHOUSE=$CACHE/wheelhouse-$DEPKEY
find "$CACHE" -maxdepth 1 -name 'wheelhouse-*' ! -name "wheelhouse-$DEPKEY" -exec rm -rf {} +
mkdir -p "$W/dist"
if [ ! -e "$WHEELHOUSE/.ikemgr-complete" ]; then
  rm -rf "$WHEELHOUSE"; python3 -m venv "$W/buildvenv"
  "$W/buildvenv/bin/pip" install -q --upgrade pip
  nice -n 10 "$W/buildvenv/bin/pip" wheel -q -w "$WHEELHOUSE" "$REPO"
  rm -f "$WHEELHOUSE"/ikemgr-*.whl; touch "$WHEELHOUSE/.ikemgr-complete"
fi
python3 -m venv "$W/buildvenv" 2>/dev/null || true
"$W/buildvenv/bin/pip" wheel -q --no-deps -w "$W/dist" "$REPO"
WHEEL=$(ls "$W"/dist/ikemgr-*.whl)
stage "wheels"

# ---------------------------------------------------------------------------- the machine
mkdir -p "$W/upper" "$W/work" "$W/root"
mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$W/upper,workdir=$W/work" "$W/root"
# the operator's part before the role: the gateway certificate, signed by a CA
P=$W/pki; mkdir -p "$P" "$W/root/etc/swanctl/x509ca" "$W/root/etc/swanctl/x509" "$W/root/etc/swanctl/private"
pki --gen --type ed25519 --outform pem > "$P/ca.key"
pki --self --ca --lifetime 30 --in "$P/ca.key" --dn "CN=ikemgr role test CA" --outform pem > "$P/ca.crt"
pki --gen --type ed25519 --outform pem > "$P/gw.key"
pki --pub --in "$P/gw.key" | pki --issue --lifetime 30 --cacert "$P/ca.crt" --cakey "$P/ca.key" \
  --dn "CN=vpn.example.test" --san vpn.example.test --flag serverAuth --outform pem > "$P/gw.crt"
install -m 0644 "$P/ca.crt" "$W/root/etc/swanctl/x509ca/ca.crt"
install -m 0644 "$P/gw.crt" "$W/root/etc/swanctl/x509/gateway.crt"
install -m 0600 "$P/gw.key" "$W/root/etc/swanctl/private/gateway.key"
# … and the gateway's links, configured by the host (networkd, static); the lab VLAN
# interface carries the VLAN's broadcast − 2 address without a prefix route
mkdir -p "$W/root/etc/systemd/network"
for spec in ens1=192.0.2.1/24=yes ens2=10.1.0.251/24=yes lab1=10.2.0.253/24=no; do
  IFS== read -r ifname addr prefixroute <<<"$spec"
  printf '[Match]\nName=%s\n[Network]\nConfigureWithoutCarrier=yes\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n[Address]\nAddress=%s\nAddPrefixRoute=%s\n' \
    "$ifname" "$addr" "$prefixroute" > "$W/root/etc/systemd/network/10-$ifname.network"
done

PID=
boot() {
  local veth=() l nspawn
  for l in "${LINKS[@]}"; do veth+=("--network-veth-extra=$l"); done
  nice -n 10 systemd-nspawn --register=no --keep-unit -q -M "$NAME" -D "$W/root" -b --private-network \
    "${veth[@]}" --bind-ro="$WHEELHOUSE:/opt/ikemgr-ci/wheelhouse" >> "$LOGS/console.log" 2>&1 &
  nspawn=$!; echo "$nspawn" > "$W/nspawn.pid"
  PID=
  for _ in $(seq 60); do
    PID=$(pgrep -P "$nspawn" -x systemd || true)
    [ -n "$PID" ] && break; sleep 1
  done
  [ -n "$PID" ] || die "the machine's systemd did not start (see $LOGS/console.log)"
  for l in "${LINKS[@]}"; do ip link set "${l%%:*}" up 2>/dev/null || true; done
  local state
  state=$(timeout 180 nsenter -t "$PID" -m -u -i -n -p systemctl is-system-running --wait || true)
  log "machine up (systemd pid $PID on the host): $state"
}
in_machine() { nsenter -t "$PID" -m -u -i -n -p "$@"; }
poweroff() {
  local nspawn; nspawn=$(cat "$W/nspawn.pid")
  in_machine systemctl poweroff || true
  for _ in $(seq 120); do kill -0 "$nspawn" 2>/dev/null || break; sleep 1; done
  kill -0 "$nspawn" 2>/dev/null && die "the machine did not power off"
  rm -f "$W/nspawn.pid"
}

boot
stage "boot"

# ---------------------------------------------------------------------------- ansible
RADIUS_SECRET=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
BIND_PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
umask 077
printf 'ikemgr_package_src: %s\nikemgr_radius_secret: "%s"\nikemgr_ldap_bind_password: "%s"\n' \
  "$WHEEL" "$RADIUS_SECRET" "$BIND_PASSWORD" > "$W/secrets.yml"
umask 022
export ANSIBLE_CONFIG=$REPO/ansible/ansible.cfg ANSIBLE_HOME=$W/ansible-home ANSIBLE_LOCAL_TEMP=$W/ansible-tmp \
  ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_FORCE_COLOR=0
play() {  # play LOGNAME VARSFILE [ansible-playbook args…]; sets CHANGED
  local name=$1 vars=$2; shift 2
  printf '[gateways]\n%s ansible_connection=community.docker.nsenter ansible_nsenter_pid=%s ansible_python_interpreter=/usr/bin/python3 ansible_become=false\n' \
    "$NAME" "$PID" > "$W/inventory.ini"
  if ! "$TOOLS/bin/ansible-playbook" -i "$W/inventory.ini" -e "@$vars" -e "@$W/secrets.yml" "$@" \
      "$REPO/ansible/site.yml" > "$LOGS/$name.log" 2>&1; then
    tail -40 "$LOGS/$name.log"; die "ansible-playbook ($name) failed: $LOGS/$name.log"
  fi
  grep -q -e "$RADIUS_SECRET" -e "$BIND_PASSWORD" "$LOGS/$name.log" && die "a secret shows in $LOGS/$name.log"
  CHANGED=$(sed -n "s/^$NAME *: ok=[0-9]* *changed=\([0-9]*\).*failed=0.*/\1/p" "$LOGS/$name.log")
  [ -n "$CHANGED" ] || { tail -20 "$LOGS/$name.log"; die "no recap in $LOGS/$name.log"; }
  log "$name: changed=$CHANGED"
}
# a copy of the variables in use ($CURRENT) with one setting of ikemgr_config changed:
# variant OUT KEY.PATH VALUE. The cases build on each other, so each run differs from the
# one before in exactly that setting.
CURRENT=$VARS
variant() {
  "$TOOLS/bin/python" - "$CURRENT" "$@" <<'EOF'
import sys, yaml
src, out, path, value = sys.argv[1:5]
d = yaml.safe_load(open(src))
node = d["ikemgr_config"]
*parents, last = path.split(".")
for p in parents:
    node = node[p]
node[last] = yaml.safe_load(value)
yaml.safe_dump(d, open(out, "w"), sort_keys=False)
EOF
}

play check "$VARS" --check
stage "check mode on the fresh machine"
play converge "$VARS"
[ "$CHANGED" -gt 0 ] || die "converge changed nothing"
stage "converge"
play idempotence "$VARS"
[ "$CHANGED" = 0 ] || { grep -B3 '^changed:' "$LOGS/idempotence.log" | tail -30; die "second run changed=$CHANGED"; }
stage "idempotence"

# ---------------------------------------------------------------------------- verify
UNITS=(strongswan.service freeradius.service ikemgr-watch.service ikemgr-sync.timer ikemgr-apply.service)
IKEMGR=/opt/ikemgr/venv/bin/ikemgr
verify() {  # verify WHAT: units active, connection in charon (VICI), apply has nothing to do, base state
  local what=$1 u conns socks dry rules routes
  for u in "${UNITS[@]}"; do
    [ "$(in_machine systemctl is-active "$u")" = active ] || { in_machine systemctl status "$u" | tail -20; die "$what: $u not active"; }
    [ "$(in_machine systemctl is-enabled "$u")" = enabled ] || die "$what: $u not enabled"
  done
  conns=$(in_machine swanctl --list-conns --uri unix:///var/run/charon.vici)
  grep -q '^kuins: IKEv2' <<<"$conns" || die "$what: connection kuins not loaded in charon: $conns"
  # the charon that has the connection is the one on the IKE ports (not a second one)
  socks=$(in_machine ss -Hulpn 'sport = :500')
  grep -q '"charon-systemd"' <<<"$socks" || die "$what: UDP 500 is not charon-systemd's: $socks"
  [ "$(in_machine systemctl is-enabled strongswan-starter.service || true)" = masked ] \
    || die "$what: strongswan-starter.service is not masked"
  dry=$(in_machine "$IKEMGR" apply --dry-run --json --config /etc/ikemgr/ikemgr.yaml)
  "$TOOLS/bin/python" -c 'import json,sys; c=json.load(sys.stdin)["data"]["changes"]; sys.exit(1 if c else 0)' \
    <<<"$dry" || die "$what: apply --dry-run would change: $dry"
  rules=$(in_machine ip -4 rule show priority 30001)
  grep -q 'from 10.1.0.0/24 to 10.0.0.0/8 lookup gwk3' <<<"$rules" || die "$what: base rule missing: $rules"
  # (captured first: with pipefail, grep -q closing the pipe early would fail the ip command)
  routes=$(in_machine ip -4 route show table 200)
  grep -q 'default via 10.1.0.254 dev ens2' <<<"$routes" || die "$what: campus table 200: $routes"
  routes=$(in_machine ip -4 route show table 123456)
  grep -q 'default via 10.2.0.254 dev lab1' <<<"$routes" || die "$what: VLAN table 123456: $routes"
  in_machine nft list table ip ikemgr >/dev/null || die "$what: nftables table ip ikemgr missing"
  log "$what: units active+enabled, kuins loaded in charon over VICI, UDP 500 charon-systemd's, starter masked, apply --dry-run: no change, base state present"
}
verify "after converge"
stage "verify"

# ---------------------------------------------------------------------------- handlers
mainpid() { in_machine systemctl show -p MainPID --value "$1"; }
pids() { echo "charon=$(mainpid strongswan.service) freeradius=$(mainpid freeradius.service)"; }
expect_pids() {  # expect_pids CASE CHARON(same|new) RADIUS(same|new) BEFORE AFTER
  local b_c b_r a_c a_r
  read -r b_c b_r <<<"$(sed 's/[a-z]*=//g' <<<"$4")"; read -r a_c a_r <<<"$(sed 's/[a-z]*=//g' <<<"$5")"
  [ "$2" = same ] && [ "$b_c" != "$a_c" ] && die "$1: charon was restarted ($4 → $5)"
  [ "$2" = new ] && [ "$b_c" = "$a_c" ] && die "$1: charon was not restarted ($4 → $5)"
  [ "$3" = same ] && [ "$b_r" != "$a_r" ] && die "$1: FreeRADIUS was restarted ($4 → $5)"
  [ "$3" = new ] && [ "$b_r" = "$a_r" ] && die "$1: FreeRADIUS was not restarted ($4 → $5)"
  log "$1: $4 → $5 (charon $2, FreeRADIUS $3)"
}
handler_case() {  # handler_case NAME KEY VALUE CHARON RADIUS HANDLER-THAT-MUST-RUN
  local before after
  variant "$W/vars-$1.yml" "$2" "$3"; CURRENT=$W/vars-$1.yml
  before=$(pids); play "$1" "$CURRENT" --skip-tags ikemgr_install; after=$(pids)
  grep -q "RUNNING HANDLER \[ikemgr_gateway : $6\]" "$LOGS/$1.log" || die "$1: handler '$6' did not run"
  expect_pids "$1" "$4" "$5" "$before" "$after"
}
# a connection setting: swanctl --load-all, no restart
handler_case connection strongswan.dpd_delay 45 same same "Load the swanctl connection and pool"
grep -q 'dpd_delay=45' <<<"$(in_machine swanctl --list-conns --uri unix:///var/run/charon.vici --raw)" \
  || die "connection: the running charon does not have dpd_delay=45"
# a charon setting (strongswan.d): restart charon, FreeRADIUS untouched
handler_case charon strongswan.threads 24 new same "Restart strongSwan"
# a FreeRADIUS file only (the LDAP module): restart FreeRADIUS, charon untouched
handler_case freeradius ldap.base_dn '"ou=staff,dc=example,dc=test"' same new "Restart the FreeRADIUS service"
# back to the converged config (restarts both; then the base for the reboot)
play restore "$VARS" --skip-tags ikemgr_install
verify "after the handler cases"
stage "handlers"

# ---------------------------------------------------------------------------- nftables restart
APPLY_RUNS=$(in_machine systemctl show -p ExecMainStartTimestampMonotonic --value ikemgr-apply.service)
in_machine systemctl restart nftables.service
for _ in $(seq 60); do
  [ "$(in_machine systemctl show -p ExecMainStartTimestampMonotonic --value ikemgr-apply.service)" != "$APPLY_RUNS" ] \
    && [ "$(in_machine systemctl is-active ikemgr-apply.service)" = active ] && break
  sleep 1
done
if ! in_machine nft list table ip ikemgr >/dev/null; then
  in_machine systemctl status --no-pager nftables.service ikemgr-apply.service | tail -30
  in_machine journalctl --no-pager -n 30 -u ikemgr-apply.service
  die "systemctl restart nftables dropped ikemgr's table"
fi
log "systemctl restart nftables: table ip ikemgr is back (ikemgr-apply.service PartOf=nftables.service)"
stage "nftables restart"

# ---------------------------------------------------------------------------- reboot
poweroff
stage "poweroff"
boot
verify "after reboot (no Ansible run)"
stage "reboot"
log "PASSED in $(( $(date +%s) - T0 )) s"
exit 0
}

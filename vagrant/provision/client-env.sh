#!/usr/bin/env bash
# `ikemgr client` on a Linux client of the Vagrant lab, with kernel IPsec (the VM's kernel
# has ESP, unlike the namespace lab). Runs on world, as root:
#
#   client-env.sh NS ADDR ENV PROFILE_DIR PASSWORD_FILE WHEELHOUSE
#
# NS is a client machine (a network namespace with a macvlan on ens1, the inet network,
# address ADDR); ikemgr is installed into /opt/ikemgr-client from WHEELHOUSE (no PyPI in
# the lab). Inside NS, `ikemgr client up ENV --profile PROFILE_DIR` makes the per-program
# environment ENV and connects it; the script prints `client up`'s JSON.
set -euo pipefail
ns=${1:?netns} addr=${2:?address} env=${3:?environment} profile=${4:?profile dir}
password=${5:?password file} wheelhouse=${6:?wheelhouse}
[[ $ns =~ ^[a-z][a-z0-9]{0,9}$ ]] || { echo "client-env.sh: bad netns" >&2; exit 2; }
[[ $env =~ ^[a-z][a-z0-9-]{0,10}$ ]] || { echo "client-env.sh: bad environment name" >&2; exit 2; }
[[ $addr =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$ ]] || { echo "client-env.sh: bad address" >&2; exit 2; }
VENV=/opt/ikemgr-client
[ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --no-index --find-links "$wheelhouse" ikemgr
# the wheelhouse's ikemgr even when the version number did not change (a lab kept running)
"$VENV/bin/pip" install -q --no-index --find-links "$wheelhouse" --force-reinstall --no-deps ikemgr
modprobe -a esp4 xfrm_user xfrm4_tunnel 2>/dev/null || true
ip netns add "$ns" 2>/dev/null || true
ip -n "$ns" link set lo up
if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
  ip link add link ens1 name "mv-$ns" type macvlan mode bridge
  ip link set "mv-$ns" netns "$ns"
  ip -n "$ns" link set "mv-$ns" name eth0
fi
ip -n "$ns" addr replace "$addr" dev eth0
ip -n "$ns" link set eth0 up
ip -n "$ns" route replace default via 198.51.100.254
# the client machine forwards for its environment's uplink (ikemgr client switches it on
# and restores it at `down`)
ip netns exec "$ns" "$VENV/bin/ikemgr" client up "$env" --profile "$profile" --password-file "$password" --json

#!/usr/bin/env bash
# After the role: the registration database's allow-list for the lab (alice on VLAN
# 123456; carol has no VLAN suffix and needs no grant), then the state ikemgr sees.
set -euo pipefail
IKEMGR=/opt/ikemgr/venv/bin/ikemgr
install -d -m 0750 /var/lib/ikemgr        # the SQLite store of the lab config
for identity in "$@"; do
  [[ $identity =~ ^[a-z][a-z0-9._-]{0,63}@[0-9]{6}$ ]] || { echo "gw-grants.sh: bad identity: $identity" >&2; exit 2; }
  "$IKEMGR" grant add "$identity" --note "vagrant lab"
done
"$IKEMGR" status || true

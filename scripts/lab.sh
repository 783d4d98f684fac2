#!/usr/bin/env bash
# The namespace lab in one command, as root on Debian 12: install what is missing
# (scripts/setup.sh: Debian packages + the venv), then `ikemgr lab <command>`.
#   scripts/lab.sh            = up: build the lab, connect the clients, print the proof table
#   scripts/lab.sh status|test|down [--json] [-c CONFIG]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${IKEMGR_VENV:-$(pwd)/.venv}
cmd=${1:-up}
[ $# -gt 0 ] && shift
case "$cmd" in
  up|status|test|down) ;;
  *) echo "usage: $0 [up|status|test|down] [options]" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the lab needs root (network namespaces, daemons)" >&2; exit 2
fi
if [ "$cmd" = up ] || [ ! -x "$VENV/bin/ikemgr" ]; then
  bash scripts/setup.sh
fi
exec "$VENV/bin/ikemgr" lab "$cmd" "$@"

#!/usr/bin/env bash
# Set up (Debian packages + venv) and run the whole test suite: lint, unit, integration against
# real daemons and the kernel, and the end-to-end namespace lab. Needs root (namespaces, daemons).
# Usage: bash scripts/test.sh [pytest args…]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${IKEMGR_VENV:-$(pwd)/.venv}
echo "== ruff"
"$VENV/bin/ruff" check ikemgr ikemgr_lab tests bench
echo "== mypy"
"$VENV/bin/mypy" ikemgr ikemgr_lab/ikemgr_lab
echo "== pytest"
exec "$VENV/bin/pytest" -p no:cacheprovider --durations=25 "$@"

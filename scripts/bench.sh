#!/usr/bin/env bash
# Run every benchmark in bench/ and print its figures against the baseline measured in the
# same run. Benchmarks are measurements, not tests: a figure that misses its goal does not
# fail this script; a benchmark that cannot run does (exit 1). Needs root (namespaces).
# Usage: bash scripts/bench.sh
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${IKEMGR_VENV:-$(pwd)/.venv}
rc=0
for b in bench_events bench_forwarding bench_sync idle_collect; do
  echo "== bench/$b.py"
  start=$(date +%s)
  if ! "$VENV/bin/python" "bench/$b.py"; then
    echo "bench/$b.py did not complete" >&2
    rc=1
  fi
  echo "(bench/$b.py: $(( $(date +%s) - start ))s)"
done
exit $rc

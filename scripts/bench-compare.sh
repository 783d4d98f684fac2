#!/usr/bin/env bash
# The event benchmark for this checkout beside another commit's build, in one run: the other
# commit is checked out into a temporary worktree with a venv of its own, and
# bench/bench_events.py runs its `ikemgr watch` burst and paced runs before this build's.
# A measurement, not a test (nothing here fails on a figure). Needs root (namespaces).
# Usage: bash scripts/bench-compare.sh REV [bench_events.py args…]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bash scripts/bench-compare.sh REV [bench_events.py args...]}; shift
VENV=${IKEMGR_VENV:-$(pwd)/.venv}
other=$(mktemp -d "${TMPDIR:-/tmp}/ikemgr-compare-XXXXXX")
cleanup() { git worktree remove --force "$other" 2>/dev/null || rm -rf "$other"; }
trap cleanup EXIT
git worktree add -q --detach "$other" "$rev"
echo "bench-compare: building $(git rev-parse --short "$rev") in $other"
(cd "$other" && IKEMGR_VENV="$other/.venv" bash scripts/setup.sh >/dev/null)
"$VENV/bin/python" bench/bench_events.py --compare "$other/.venv/bin/ikemgr" "$@"

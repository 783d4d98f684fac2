#!/usr/bin/env bash
# The event benchmark for this checkout beside another commit's build, in one run: the other
# commit is checked out into a temporary worktree with a venv of its own, and
# bench/bench_events.py runs its `ikemgr watch` burst and paced runs before this build's.
# A measurement, not a test (nothing here fails on a figure). Needs root (namespaces).
# Usage: bash scripts/bench-compare.sh REV [bench_events.py args…]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bash scripts/bench-compare.sh REV [bench_events.py args...]}; shift
here=$(pwd)
VENV=${IKEMGR_VENV:-$here/.venv}
other=$(mktemp -d "${TMPDIR:-/tmp}/ikemgr-compare-XXXXXX")
cleanup() { cd "$here"; git worktree remove --force "$other" 2>/dev/null || rm -rf "$other"; }
trap cleanup EXIT
git worktree add -q --detach "$other" "$rev"
echo "bench-compare: building $(git rev-parse --short "$rev") in $other"
(cd "$other" && IKEMGR_VENV="$other/.venv" bash scripts/setup.sh >/dev/null)
# from the other tree: a build older than aa0f2b3 starts its conntrack child with `python -m`,
# which imports from the working directory first; there it finds its own code
cd "$other"
"$VENV/bin/python" "$here/bench/bench_events.py" --compare "$other/.venv/bin/ikemgr" "$@"

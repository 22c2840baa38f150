#!/usr/bin/env bash
# The first minutes of a new user, timed: a fresh clone, then `make demo` (a new venv, the
# install, the quickstart run), with the install and the run timed apart.
#
#     bash benchmarks/bench_demo.sh [REPO]      # REPO: what to clone (default: this checkout)
#
# Prints the install's and the run's wall time and the stage lines of the run. The targets and
# the results, with the machine's load, are in benchmarks/RESULTS.md. Run it on a quiet machine:
# the run is CPU-bound and another job on the same cores slows it several times.
set -euo pipefail
repo=${1:-$(cd "$(dirname "$0")/.." && pwd)}
work=$(mktemp -d /tmp/bench_demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone --quiet "$repo" "$work/clone"
cd "$work/clone"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s.%N)
make .venv/.installed >"$work/install.log" 2>&1
t1=$(date +%s.%N)
make demo >"$work/run.log" 2>&1
t2=$(date +%s.%N)
tr '\r' '\n' <"$work/run.log" | grep -E "100%|done|test accuracy" | grep -v epoch || true
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
    printf "install: %.1f s\nsmoothstab run: %.1f s\nmake demo in all: %.1f s\n", b - a, c - b, c - a
}'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

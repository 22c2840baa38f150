#!/usr/bin/env bash
# Two versions of the code, the same trained run: the attribute + evaluate stages of each,
# alternating, timed apart (wall clock, start-up included).
#
#     bash benchmarks/ab_stages.sh OLD_TREE NEW_TREE TRAINED_RUN [CONFIG] [REPEATS] [--set ...]
#
# OLD_TREE and NEW_TREE are checkouts (each put first on PYTHONPATH); TRAINED_RUN a run
# directory whose train stage is done (its model_*.pt, splits.json and train_metrics.json are
# copied into a fresh directory for each run); CONFIG the config it was trained with (default
# quickstart); REPEATS the alternations (default 3); further arguments go to `smoothstab run`.
# Run it on a quiet machine: another job on the same cores slows a run several times.
set -euo pipefail
old=${1:?OLD_TREE} new=${2:?NEW_TREE} trained=${3:?TRAINED_RUN} cfg=${4:-quickstart} n=${5:-3}
shift $(( $# < 5 ? $# : 5 ))
py=${PYTHON:-python3}
work=$(mktemp -d /tmp/ab_stages.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$n"); do
    for which in old new; do
        tree=$old; [ "$which" = new ] && tree=$new
        d="$work/$which$i"
        mkdir "$d"
        cp "$trained"/model_*.pt "$trained"/splits.json "$trained"/train_metrics.json "$d"/
        t0=$(date +%s.%N)
        PYTHONPATH=$tree OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} CI=true "$py" -m smoothstab run \
            "$cfg" --out "$d" --quiet --stages attribute evaluate "$@" >/dev/null
        t1=$(date +%s.%N)
        awk -v w="$which" -v a="$t0" -v b="$t1" 'BEGIN { printf "%s %.1f s\n", w, b - a }'
        rm -rf "$d"
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

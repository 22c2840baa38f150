"""The numbers docs/quickstart.md and docs/reading_stability.md quote, from one quickstart run.

    .venv/bin/python -m smoothstab run --out /tmp/qs          # the quickstart
    .venv/bin/python benchmarks/quickstart_numbers.py /tmp/qs

The verdict table (the report's first table) is copied from ``/tmp/qs/report.md``.
"""

import json
import sys

from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.table1_file import read_table1

run = RunDir(sys.argv[1])
s = run.summary()
advice = run.advice()
print("quickstart.md table: method | stability r=0 -> 0.4 (plain) | fidelity r=0.4 |")
print("  SSIM / smoothed | top-k / smoothed | knee r | advice")
t1 = {row["method"]: row for row in read_table1(run.table1)}
for m in ("grad", "ig", "gradcam", "gradcampp"):
    st0, st1 = s.get(m, "stability", 0.0), s.get(m, "stability", 0.4)
    fid = s.get(m, "fidelity", 0.4)
    row = t1[m]
    a = advice.of(m)
    print(
        m,
        f"{st0.mean:.3g} -> {st1.mean:.3g}",
        f"{fid.mean:.3g}",
        f"{row['ssim'].mean:.3f} / {row['smoothed_ssim'].mean:.3f}",
        f"{row['topk_miou'].mean:.3f} / {row['smoothed_topk_miou'].mean:.3f}",
        a.knee_r,
        a.status,
        a.recommended_r,
    )
print("reading_stability: method | raw L2 | map norm | unit | rank (plain, r=0 -> 0.4)")
for m in ("grad", "gradcam"):
    out = [m]
    for metric in ("stability", "map_norm", "unit_distance", "rank_agreement"):
        a0, a1 = s.get(m, metric, 0.0).mean, s.get(m, metric, 0.4).mean
        out.append(f"{a0:.3f} -> {a1:.3f} ({100 * (a1 / a0 - 1):+.0f}%)")
    print(" | ".join(out))
print(
    "accuracies:",
    [round(x["test_accuracy"], 3) for x in json.load(open(run.train_metrics))["models"]],
)

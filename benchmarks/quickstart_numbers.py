"""The numbers docs/quickstart.md, docs/reading_stability.md and docs/agreement_high.md quote,
from one quickstart run.

    .venv/bin/python -m smoothstab run --out /tmp/qs          # the quickstart
    .venv/bin/python benchmarks/quickstart_numbers.py /tmp/qs

The verdict table (the report's first table) is copied from ``/tmp/qs/report.md``; the pictures
of docs/agreement_high.md come from ``python docs/figures.py --run /tmp/qs``.
"""

import json
import math
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


# docs/agreement_high.md: floors, the worked case, the split, reliability
from smoothstab.experiments.analysis import meaning  # noqa: E402


def est(e, point):
    if e is None:
        return f"{point:.3f}"
    lo, hi = e.interval()
    return f"{e.estimate:.3f} [{lo:.3f}, {hi:.3f}] ({e.scope})"


print("agreement_high: method | measure | observed | floor | corrected [interval], r = 0")
for m in ("grad", "gradcam", "gradcampp"):
    for f in meaning.floors(s, m, 0.0):
        print(m, f.metric, f"{f.point[0]:.3f}", f"{f.point[1]:.3f}", est(f.corrected, f.point[2]))
rs = s.levels("gradcampp", "rank_agreement")
print("agreement_high: Grad-CAM++ rank agreement by r: observed | floor | corrected")
for r in rs:
    f = meaning.floor_of(s, "gradcampp", "rank_agreement", r)
    print(r, f"{f.point[0]:.3f}", f"{f.point[1]:.3f}", est(f.corrected, f.point[2]))
r1 = advice.of("grad").recommended_r or max(rs)
for m in ("grad", "ig", "gradcam", "gradcampp"):
    split = meaning.prediction_split(s, m, r1, debiased=True, measure="unit_distance")
    if split is None:
        continue
    same = split.group("same prediction")
    print(f"agreement_high split {m} r={r1}: same prediction share {same.share:.2f},",
          {k: est(v, math.nan) if hasattr(v, "interval") else v for k, v in same.values.items()},
          "holds:", split.holds_within())  # fmt: skip
    ch = meaning.reliability_change(s, m, 0.0, r1)
    if ch is not None:
        print(f"  reliability {m} 0 -> {r1}: rises on {ch.rises:.2f}, mean change",
              est(ch.change, ch.mean_change), f"rho {ch.rank_rho:.2f}")  # fmt: skip

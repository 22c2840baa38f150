"""A run's numbers in pandas: ``smoothstab.load_run`` reads a run directory (here the quickstart's,
``smoothstab run``) into DataFrames through the readers the report uses, so a question the report
does not answer is a few lines of pandas. Give the run directory as the first argument (default
``runs/quickstart``); ``pip install 'smoothstab[frames]'`` installs pandas.
"""

import sys

import matplotlib.pyplot as plt

import smoothstab as ss

run = ss.load_run(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart")

metrics = run.metrics  # metrics.parquet: one row per method, r, metric, pair or model and image
print(f"metrics.parquet: {len(metrics):,} rows; columns {list(metrics.columns)}")
print(f"metrics: {sorted(metrics['metric'].unique())}")

# The scale-free stability curve of each method: the debiased unit-map distance between two
# models' maps, mean over model pairs and images of one training-set size, with its 95% interval
# (over retraining, the test images and their draws from four models on: `interval_over`)
summary = run.summary()
print(f"\nsummary(): {len(summary):,} rows; columns {list(summary.columns)}")
n = summary["n"].max()
unit = summary[(summary["metric"] == "unit_distance_debiased") & (summary["n"] == n)]
curves = unit.pivot_table(index="r", columns="method", values="mean")
print(f"\ndebiased unit-map distance between models at n = {n}, by r (rows) and method:")
print(curves.round(3).to_string())

# Table 1: SSIM and top-k mIoU of two models' maps, unsmoothed and smoothed
table1 = run.table1[["method", "ssim", "smoothed_ssim", "topk_miou", "smoothed_topk_miou"]]
print("\ntable1 (means over pairs; the _lo and _hi columns hold the intervals):")
print(table1.round(3).to_string(index=False))

print("\nrecommendation:")
print(run.recommendation.to_string(index=False))

fig, ax = plt.subplots(figsize=(6, 3.5))
for method, row in unit.groupby("method"):
    ax.plot(row["r"], row["mean"], marker="o", label=method)
    ax.fill_between(row["r"], row["lo"], row["hi"], alpha=0.2)
ax.set(xlabel="noise level r", ylabel="unit-map distance", title=f"between models, n = {n}")
ax.legend(fontsize=8)
fig.savefig("load_run.png", dpi=80, bbox_inches="tight")

"""The paper's Figure 2 on the quickstart: the stability error between two models' saliency
maps against the noise level r, per method, as the paper plots it (the plain Monte-Carlo
estimate of the raw L2 distance, mean over model pairs) beside the debiased estimate, each with
its 95% interval over retraining, the test images and their draws. Below it the same curve
split into what it mixes: each model's map norm (smoothing shrinks maps) and the scale-free
unit-map distance (whether the maps agree more). Give the run directory as the first argument
(default ``runs/quickstart``).
"""

import sys

import matplotlib.pyplot as plt

import smoothstab as ss

run = ss.load_run(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart")
summary = run.summary()
n = summary["n"].max()
summary = summary[summary["n"] == n]
methods = list(dict.fromkeys(run.recommendation["method"]))  # the run's order
rows = [
    ("stability", "raw L2 stability error (Fig. 2)"),
    ("map_norm", "each model's map norm"),
    ("unit_distance", "unit-map distance"),
]

print(f"n = {n}; per method, from r = 0 to the largest r (plain estimate, as the paper):")
for method in methods:
    parts = []
    for metric, label in rows:
        curve = summary[(summary["method"] == method) & (summary["metric"] == metric)]
        first, last = curve.iloc[0], curve.iloc[-1]
        parts.append(
            f"{label.split(' (')[0]} {first['mean']:.4g} -> {last['mean']:.4g} "
            f"({100 * (last['mean'] / first['mean'] - 1):+.0f}%)"
        )
    print(f"  {method}: " + "; ".join(parts))

fig, axes = plt.subplots(3, len(methods), figsize=(3.0 * len(methods), 7.2), layout="constrained")
for i, (metric, label) in enumerate(rows):
    for ax, method in zip(axes[i], methods, strict=True):
        for name, style in ((metric, "--"), (f"{metric}_debiased", "-")):
            curve = summary[(summary["method"] == method) & (summary["metric"] == name)]
            kind = "debiased" if name.endswith("_debiased") else "plain (the paper's)"
            ax.plot(curve["r"], curve["mean"], style, marker="o", ms=3, color="C0", label=kind)
            ax.fill_between(curve["r"], curve["lo"], curve["hi"], color="C0", alpha=0.1)
        if i == 0:
            ax.set_title(method)
        if i == len(rows) - 1:
            ax.set_xlabel("noise level r")
    axes[i][0].set_ylabel(label)
fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
fig.savefig("paper_figure2.png", dpi=80)

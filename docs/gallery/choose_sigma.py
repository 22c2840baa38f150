"""Choosing sigma from a finished run: the advice the report gives per method
(``recommendation.json``) and the curves it is read from (``curves``: per r the stability the
advice minimises with its 95% interval, its paired change from r = 0 and the fidelity error
against the budget). Give the run directory as the first argument (default
``runs/quickstart``); ``pip install 'smoothstab[frames]'`` installs pandas.
"""

import sys

import matplotlib.pyplot as plt

import smoothstab as ss

run = ss.load_run(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart")

advice = run.recommendation
columns = ["method", "n", "status", "recommended_r", "best_r", "knee_r", "k", "m"]
print("the advice per method (the largest training-set size):")
print(advice[columns].to_string(index=False))
budget = advice["fidelity_budget"].iloc[0]
print(
    f"\nmeasured by: {advice['measure'].iloc[0]}; fidelity budget: {budget:g} x ||unsmoothed map||"
)

# An r is measurably more stable than r = 0 where the 95% interval of its paired change lies
# below 0 (`better`); the recommended r is the smallest such r within the fidelity budget that
# cannot be told from the most stable one within it (`near_best`).
curves = run.curves
for method, rows in curves.groupby("method", sort=False):
    print(f"\n{method}:")
    shown = rows[["r", "stability", "change", "change_lo", "change_hi", "fidelity"]]
    shown = shown.assign(within_budget=rows["within_budget"], better=rows["better"])
    print(shown.round(4).to_string(index=False))

methods = list(dict.fromkeys(curves["method"]))
fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.2), layout="constrained")
for ax, method in zip(axes, methods, strict=True):
    rows = curves[curves["method"] == method]
    ax.plot(rows["r"], rows["stability"], "o-", ms=3, label="stability (unit-map distance)")
    ax.fill_between(rows["r"], rows["stability_lo"], rows["stability_hi"], alpha=0.2)
    over = rows[~rows["within_budget"]]
    ax.plot(over["r"], over["stability"], "o", mfc="white", color="grey", label="over budget")
    rec = advice[advice["method"] == method].iloc[0]
    if rec["status"] == "smooth":
        ax.axvline(rec["recommended_r"], color="k", ls="--", lw=1, label="recommended r")
    ax.set(xlabel="noise level r", title=f"{method}: {rec['status']}")
axes[0].set_ylabel("unit-map distance between models")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3)
fig.savefig("choose_sigma.png", dpi=80)

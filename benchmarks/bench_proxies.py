"""Proxies for retraining (setting FT) against real retraining on disjoint splits (setting DT).

    OMP_NUM_THREADS=1 python benchmarks/bench_proxies.py [--out DIR] [--quick]

(About 6 minutes on the project's 2 shared CPU cores: 359 s for the 2026-11-30 run; the
scale-free scoring reads rows the evaluate stage already writes, so it adds no model work.)

For each data set (digits to choose the proxies' hyperparameters, the quickstart's shapes to
score them) the pipeline runs (``stages.run_all`` with config overrides; nothing re-implemented):

1. *Truth*: ``k`` small CNNs trained from scratch on disjoint parts (setting DT), all four
   methods attributed over a trimmed r grid; the stability error per (method, r) is the mean
   over images and model pairs of the metrics table's plain ``stability`` rows.
2. *Proxies*: model 0 of the truth is the one given model; each proxy (setting FT) makes ``k``
   replicas of it; the same images, methods, r grid and attribution seeds.
3. Scores: Spearman's rank correlation between truth and proxy over the (method, r) points, and
   within each method over r (the pooled one also reflects the methods' different map scales);
   the ratio proxy / truth (geometric mean over r > 0, and its range); beside them a zero-cost
   baseline from the given model alone, ``sqrt(2) x`` the norm of its own smoothed map (what two
   uncorrelated maps of that size would differ by), scored the same way;
   95% intervals by
   bootstrapping the test images (the same resampled images for truth and proxy, 1000 draws).
   Cost: optimizer steps and examples of the proxy's runs over those of training the ``k``
   truth models, and wall time of the train stage likewise.
4. The same scores against a scale-free truth (Issue 21): the raw L2 error of step 3 is decided
   by the maps' sizes (the baseline shows it), so per (method, r) the unit-map distance
   ``||a/||a|| - b/||b|| ||`` between the retrained models' maps is scored against the same
   distance between each proxy's replicas (the metrics table's ``unit_distance_debiased`` rows,
   :func:`smoothstab.agreement.debiased_unit_distance`; the plain ``unit_distance`` where a run
   has no debiased rows). The baseline has no scale-free analogue: ``sqrt(2) x ||a|| / ||a||``
   is the constant ``sqrt(2)`` at every (method, r), so its Spearman is undefined (printed as
   such; NaN in the JSON lines) and only its ratio to the truth is reported. The digits choice
   of each proxy is still made on step 3's Spearman; the one the unit-map Spearman would make is
   printed beside it.

The hyperparameter grid of each proxy is run on digits only. A setting fails if its training
diverges or its replicas' mean test accuracy is more than ``ACCURACY_DROP`` below the base
model's (they are no longer replicas of it). Of the others, the one with the highest pooled
Spearman on digits (ties: ratio closest to 1) is scored on shapes; if it fails there, the next
in the digits ranking is run instead (only training and test accuracy are looked at on shapes
before scoring, never a stability score). Cost columns: the proxy's optimizer steps,
training examples and training seconds (the trainer's own timing, test evaluation included;
for SWAG also drawing and evaluating the replicas) over those of the k truth models, and the
wall time of the whole train stage (data generation and loading included) over the truth's.
Prints markdown tables for ``benchmarks/RESULTS.md``: the old (raw L2) table, then both
scorings side by side, then the errors on shapes (raw L2 and unit-map).

``--quick`` is a smoke test of the script, not a measurement: one grid point per proxy, tiny
models, data, images, draws and r grid (a minute or two on one core).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from smoothstab.experiments import pipeline as stages
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.metrics_table import read_rows

METHODS = ("grad", "ig", "gradcam", "gradcampp")
R_GRID = (0.0, 0.016, 0.064, 0.144, 0.256, 0.4)  # 6 of the quickstart's 11 levels (+ table_r 0.15)
K = 3  # models (truth) and replicas (proxies): 3 pairs each
# Data set -> training overrides of the truth (its epochs and part size set the proxies' budget).
DATA = {
    "digits": ["train.dataset=digits", "train.epochs=20", "train.part_size=400"],
    "shapes": ["train.dataset=shapes", "train.epochs=10", "train.part_size=800"],
}
SIZES = {"n_images": 16, "n_samples": 16, "ig_steps": 8}
N_BOOT = 1000
UNIT = ("unit_distance_debiased", "unit_distance")  # the scale-free truth; plain as a fallback


def quick() -> None:
    """--quick: tiny sizes everywhere (a smoke test of the code, not a measurement)."""
    global R_GRID, SIZES, N_BOOT
    R_GRID, SIZES, N_BOOT = (0.0, 0.144, 0.4), {"n_images": 4, "n_samples": 4, "ig_steps": 2}, 50
    DATA["digits"][1:] = ["train.epochs=2", "train.part_size=100"]
    DATA["shapes"][1:] = ["train.epochs=1", "train.part_size=100"]


def common() -> list[str]:
    return [
        "quiet=true",
        "train.lr=0.03",
        f"train.parts={K}",
        f"attribution.methods={json.dumps(list(METHODS))}",
        f"attribution.stability_r={list(R_GRID)}",
        f"attribution.fidelity_r={list(R_GRID)}",
        f"attribution.n_images={SIZES['n_images']}",
        f"attribution.image_batch={SIZES['n_images']}",
        f"attribution.n_samples={SIZES['n_samples']}",
        f"attribution.ig_steps={SIZES['ig_steps']}",
        "evaluation.topk=20",
    ]


# The grid tried on digits, per proxy (each with ~1/10 of the truth's training examples).
GRID = {
    "finetune": [
        {"models.lr": 0.003, "models.layers": "all"},
        {"models.lr": 0.01, "models.layers": "all"},
        {"models.lr": 0.03, "models.layers": "all"},
        {"models.lr": 0.01, "models.layers": "last_block"},
    ],
    "swag": [
        {"models.lr": 0.003, "models.swag_scale": 1.0},
        {"models.lr": 0.003, "models.swag_scale": 4.0},
        {"models.lr": 0.01, "models.swag_scale": 1.0},
        {"models.lr": 0.01, "models.swag_scale": 4.0},
    ],
    "noisy_sgd": [
        {"models.lr": 0.003, "models.noise_std": 0.01},
        {"models.lr": 0.003, "models.noise_std": 0.03},
        {"models.lr": 0.01, "models.noise_std": 0.01},
        {"models.lr": 0.01, "models.noise_std": 0.03},
    ],
}
ACCURACY_DROP = 0.05  # replicas whose mean test accuracy falls further below the base's fail


def budget(data: str, proxy: str) -> list[str]:
    """A tenth of the truth's training examples (k x epochs x part size): each proxy run sees
    parts of the truth's size; fine-tuning and noisy SGD make k runs of epochs / 10 epochs,
    SWAG one run of k x epochs / 10 epochs."""
    epochs = int(DATA[data][1].split("=")[1])
    part = int(DATA[data][2].split("=")[1])
    runs = 1 if proxy == "swag" else K
    return [f"models.epochs={max(1, K * epochs // (10 * runs))}", f"models.part_size={part}"]


def run(overrides: list[str], out: Path) -> tuple[RunDir, float]:
    # maps.keep = "means": the zero-cost baseline reads model 0's maps of every image
    cfg = load_config("quickstart", [*overrides, "maps.keep=means"])
    out.mkdir(parents=True, exist_ok=True)  # the stages lock an existing run directory
    t0 = time.perf_counter()
    stages.run_all(cfg, out, stages=("train",))
    train_s = time.perf_counter() - t0
    stages.run_all(cfg, out, stages=("attribute", "evaluate"))
    return RunDir(out), train_s


def per_image(
    run: RunDir, metrics: tuple[str, ...] = ("stability",)
) -> dict[tuple[str, float], np.ndarray]:
    """(method, r) -> a pair metric per test image (mean over pairs): the first of ``metrics``
    that the run has (plain ``stability`` by default)."""
    rows = [r for r in read_rows(run.metrics) if r["pair"]]
    metric = next((m for m in metrics if any(r["metric"] == m for r in rows)), None)
    if metric is None:  # a run directory from before these rows: use a fresh --out
        raise SystemExit(f"{run.metrics}: no {' or '.join(metrics)} rows")
    acc: dict = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["metric"] == metric:
            acc[(row["method"], float(row["r"]))][int(row["image"])].append(float(row["value"]))
    return {key: np.array([np.mean(v[i]) for i in sorted(v)]) for key, v in acc.items()}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (ties get their mean rank); NaN where either side is constant (no
    ranking: the baseline's constant sqrt(2) unit-map distance)."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def constant_unit(truth: dict) -> dict[tuple[str, float], np.ndarray]:
    """The baseline's scale-free analogue: ``sqrt(2) x ||a|| / ||a||`` = sqrt(2) everywhere."""
    return {k: np.full_like(v, math.sqrt(2)) for k, v in truth.items()}


def own_norm(truth: RunDir) -> dict[tuple[str, float], np.ndarray]:
    """A zero-cost baseline from the given model alone: ``sqrt(2) x ||its smoothed map||`` per
    image at each (method, r) -- the distance between two maps of that norm that were
    uncorrelated. Model 0 of the truth is the given model; its maps are read from the run."""
    rs = sorted({float(r) for r in R_GRID} | {0.15})
    return {
        (m, r): math.sqrt(2) * run_map(truth, m, r).flatten(1).norm(dim=1).double().numpy()
        for m in METHODS
        for r in rs
    }


def run_map(run: RunDir, method: str, r: float):
    return run.load_map(0, method, r).mean


def scores(truth: dict, proxy: dict, idx: np.ndarray | None = None) -> dict[str, float]:
    keys = sorted(truth)
    pick = (lambda v: v) if idx is None else (lambda v: v[idx])  # noqa: E731
    t = np.array([pick(truth[k]).mean() for k in keys])
    p = np.array([pick(proxy[k]).mean() for k in keys])
    within = [
        spearman(
            t[[i for i, k in enumerate(keys) if k[0] == m]],
            p[[i for i, k in enumerate(keys) if k[0] == m]],
        )
        for m in METHODS
    ]
    ratios = np.array([pi / ti for (m, r), pi, ti in zip(keys, p, t, strict=True) if r > 0])
    return {
        "spearman": spearman(t, p),
        "within": float(np.mean(within)),
        "ratio": float(np.exp(np.log(ratios).mean())),
        "ratio_min": float(ratios.min()),
        "ratio_max": float(ratios.max()),
    }


def bootstrap(truth: dict, proxy: dict, n: int | None = None, seed: int = 0) -> dict[str, tuple]:
    n = N_BOOT if n is None else n
    rng = np.random.default_rng(seed)
    n_img = len(next(iter(truth.values())))
    draws = [scores(truth, proxy, rng.integers(0, n_img, n_img)) for _ in range(n)]
    return {
        k: (
            tuple(np.nanpercentile(v, [2.5, 97.5]))
            if not np.isnan(v := [d[k] for d in draws]).all()
            else (math.nan, math.nan)
        )
        for k in ("spearman", "within", "ratio")
    }


def accuracy_drop(truth: RunDir, proxy: RunDir) -> float:
    """The base model's (truth model 0's) test accuracy minus the replicas' mean."""
    base = truth.read_json(truth.train_metrics)["models"][0]["test_accuracy"]
    reps = [m["test_accuracy"] for m in proxy.read_json(proxy.train_metrics)["models"]]
    return base - sum(reps) / len(reps)


def cost(truth: RunDir, proxy: RunDir, t_s: float, p_s: float) -> dict[str, float]:
    tm = truth.read_json(truth.train_metrics)
    cfg = tm["config"]
    steps = sum(
        cfg["epochs"] * math.ceil(m["train_size"] / cfg["batch_size"]) for m in tm["models"]
    )
    examples = sum(cfg["epochs"] * m["train_size"] for m in tm["models"])
    pc = proxy.read_json(proxy.train_metrics)["cost"]
    return {
        "steps": pc["steps"] / steps,
        "examples": pc["examples"] / examples,
        "wall": p_s / t_s,
        "train_s": pc["seconds"] / sum(m["seconds"] for m in tm["models"]),
        "truth_steps": steps,
        "proxy_steps": pc["steps"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench_proxies"))
    p.add_argument(
        "--quick", action="store_true", help="smoke test: one grid point per proxy, tiny sizes"
    )
    args = p.parse_args()
    if args.quick:
        quick()
    start = time.perf_counter()
    table = []
    values: dict[str, dict] = {}  # shapes: name -> (method, r) -> mean stability
    chosen: dict[str, list[dict]] = {}  # per proxy, the digits grid ranked best first
    failed: list[tuple] = []
    baselines: dict[str, tuple] = {}
    units: dict[str, dict] = {}  # shapes: name -> (method, r) -> mean unit-map distance
    by_unit: dict[str, list] = defaultdict(list)  # digits: proxy -> (unit Spearman, hp)
    for data in ("digits", "shapes"):
        base = [*common(), *DATA[data]]
        truth, truth_s = run(base, args.out / data / "truth")
        t_maps = per_image(truth)
        t_unit = per_image(truth, UNIT)
        own = own_norm(truth)
        const = constant_unit(t_unit)
        if data == "shapes":
            values["truth"] = {k: float(v.mean()) for k, v in t_maps.items()}
            values["own norm"] = {k: float(v.mean()) for k, v in own.items()}
            units["truth"] = {k: float(v.mean()) for k, v in t_unit.items()}
            units["own norm"] = {k: math.sqrt(2) for k in t_unit}
        baselines[data] = (
            scores(t_maps, own),
            bootstrap(t_maps, own),
            scores(t_unit, const),
            bootstrap(t_unit, const),
        )
        b = {"data": data, "baseline": "own norm", **baselines[data][0]}
        b["unit"] = baselines[data][2]
        print(json.dumps(b), flush=True)
        weights = str((args.out / data / "truth" / "model_0.pt").resolve())
        spec = f'models.specs=[{{name="small_cnn", weights="{weights}"}}]'
        for proxy, grid in GRID.items():
            points = grid[:1] if args.quick else grid
            if data == "shapes":
                points = chosen[proxy]
            results = []
            for g, hp in enumerate(points):
                if data == "shapes" and results:
                    break  # the best digits setting that trains well on shapes is scored
                ft = [
                    *base,
                    "models.setting=FT",
                    spec,
                    f"models.proxy={proxy}",
                    f"models.replicas={K}",
                ]
                ft += [*budget(data, proxy), *(f"{k}={v}" for k, v in hp.items())]
                name = f"{proxy}_{g}"
                try:
                    prun, prox_s = run(ft, args.out / data / name)
                except ValueError as e:  # a grid point whose training diverged: recorded
                    print(json.dumps({"data": data, "proxy": proxy, "hp": hp, "failed": str(e)}))
                    failed.append((data, proxy, hp, str(e)))
                    continue
                acc = accuracy_drop(truth, prun)
                if acc > ACCURACY_DROP:  # not replicas of the model any more: recorded, skipped
                    why = f"replicas lose {acc:.3f} of the base model's test accuracy"
                    print(json.dumps({"data": data, "proxy": proxy, "hp": hp, "failed": why}))
                    failed.append((data, proxy, hp, why))
                    continue
                p_maps = per_image(prun)
                p_unit = per_image(prun, UNIT)
                if data == "shapes":
                    values[proxy] = {k: float(v.mean()) for k, v in p_maps.items()}
                    units[proxy] = {k: float(v.mean()) for k, v in p_unit.items()}
                s = scores(t_maps, p_maps)
                results.append((s["spearman"], -abs(math.log(s["ratio"])), g, hp, s, prun, prox_s))
                row = {
                    "data": data,
                    "proxy": proxy,
                    "hp": hp,
                    **s,
                    **cost(truth, prun, truth_s, prox_s),
                }
                row["ci"] = bootstrap(t_maps, p_maps)
                row["unit"] = scores(t_unit, p_unit)
                row["unit_ci"] = bootstrap(t_unit, p_unit)
                if data == "digits":
                    by_unit[proxy].append((row["unit"]["spearman"], hp))
                row["role"] = "tuning" if data == "digits" else "scored"
                table.append(row)
                print(json.dumps(row, default=str), flush=True)
            if data == "digits":
                ranked = sorted(results, key=lambda x: (x[0], x[1]), reverse=True)
                chosen[proxy] = [x[3] for x in ranked]
    best = {p: c[0] for p, c in chosen.items() if c}
    print(f"\ntotal {time.perf_counter() - start:.0f} s; chosen on digits: {json.dumps(best)}")
    alt = {
        p: max(v, key=lambda x: -math.inf if math.isnan(x[0]) else x[0])[1]
        for p, v in by_unit.items()
    }
    print(f"(the unit-map Spearman on digits would choose: {json.dumps(alt)})\n")
    print(
        "| data | role | proxy | hyperparameters | Spearman (method, r) [95% CI] | within-method "
        "Spearman [95% CI] | ratio proxy/truth, geo. mean [95% CI] (range over r>0) | steps "
        "| examples | train seconds | wall (train stage) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        ci = row["ci"]
        hp = ", ".join(f"{k.split('.')[1]}={v}" for k, v in row["hp"].items())
        print(
            f"| {row['data']} | {row['role']} | {row['proxy']} | {hp} | {row['spearman']:.3f} "
            f"[{ci['spearman'][0]:.2f}, {ci['spearman'][1]:.2f}] | {row['within']:.3f} "
            f"[{ci['within'][0]:.2f}, {ci['within'][1]:.2f}] | {row['ratio']:.2f} "
            f"[{ci['ratio'][0]:.2f}, {ci['ratio'][1]:.2f}] ({row['ratio_min']:.2f}-"
            f"{row['ratio_max']:.2f}) | {row['steps']:.3f} ({row['proxy_steps']}/"
            f"{row['truth_steps']}) | {row['examples']:.3f} | {row['train_s']:.3f} | "
            f"{row['wall']:.3f} |"
        )

    for data, proxy, hp, why in failed:
        hp = ", ".join(f"{k.split('.')[1]}={v}" for k, v in hp.items())
        print(
            f"| {data} | {'tuning' if data == 'digits' else 'scored'} | {proxy} | {hp} | "
            f"failed: {why} |"
        )
    for data, (b, ci, _, _) in baselines.items():
        print(
            f"| {data} | baseline | sqrt(2) x own smoothed-map norm (no replicas) | - | "
            f"{b['spearman']:.3f} [{ci['spearman'][0]:.2f}, {ci['spearman'][1]:.2f}] | "
            f"{b['within']:.3f} [{ci['within'][0]:.2f}, {ci['within'][1]:.2f}] | {b['ratio']:.2f} "
            f"[{ci['ratio'][0]:.2f}, {ci['ratio'][1]:.2f}] ({b['ratio_min']:.2f}-"
            f"{b['ratio_max']:.2f}) | 0 | 0 | 0 | 0 |"
        )
    print_unit_table(table, baselines)
    print("\nStability error on shapes (mean over images and pairs), truth and each proxy:\n")
    names = list(values)
    print("| method | r | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for key in sorted(values["truth"]):
        print(
            f"| {key[0]} | {key[1]:g} | "
            + " | ".join(f"{values[n][key]:.4g}" for n in names)
            + " |"
        )
    print("\nUnit-map distance on shapes (mean over images and pairs; own norm: the constant):\n")
    print("| method | r | " + " | ".join(units) + " |")
    print("|---|---|" + "---|" * len(units))
    for key in sorted(units["truth"]):
        print(
            f"| {key[0]} | {key[1]:g} | " + " | ".join(f"{units[n][key]:.4g}" for n in units) + " |"
        )


def _cell(v: float, ci: tuple, digits: int = 3) -> str:
    if math.isnan(v):
        return "undefined (constant)"
    return f"{v:.{digits}f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def print_unit_table(table: list[dict], baselines: dict[str, tuple]) -> None:
    """Both scorings side by side: old (raw L2 stability error) and new (unit-map distance)."""
    print("\nBoth scorings: old = raw L2 stability error; new = unit-map distance\n")
    print(
        "| data | role | proxy | hyperparameters | old: Spearman (method, r) [95% CI] | new: "
        "Spearman (method, r) [95% CI] | new: within-method Spearman [95% CI] | new: ratio "
        "proxy/truth, geo. mean [95% CI] (range over r>0) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in table:
        hp = ", ".join(f"{k.split('.')[1]}={v}" for k, v in row["hp"].items())
        u, uci = row["unit"], row["unit_ci"]
        print(
            f"| {row['data']} | {row['role']} | {row['proxy']} | {hp} | "
            f"{_cell(row['spearman'], row['ci']['spearman'])} | "
            f"{_cell(u['spearman'], uci['spearman'])} | {_cell(u['within'], uci['within'])} | "
            f"{_cell(u['ratio'], uci['ratio'], 2)} ({u['ratio_min']:.2f}-{u['ratio_max']:.2f}) |"
        )
    for data, (b, ci, u, uci) in baselines.items():
        print(
            f"| {data} | baseline | sqrt(2) x own smoothed-map norm; scale-free: the constant "
            f"sqrt(2) | - | {_cell(b['spearman'], ci['spearman'])} | "
            f"{_cell(u['spearman'], uci['spearman'])} | {_cell(u['within'], uci['within'])} | "
            f"{_cell(u['ratio'], uci['ratio'], 2)} ({u['ratio_min']:.2f}-{u['ratio_max']:.2f}) |"
        )


if __name__ == "__main__":
    main()

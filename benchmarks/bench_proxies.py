"""Proxies for retraining (setting FT) against real retraining on disjoint splits (setting DT).

    OMP_NUM_THREADS=1 python benchmarks/bench_proxies.py [--out DIR] [--quick]

For each data set (digits to choose the proxies' hyperparameters, the quickstart's shapes to
score them) the pipeline runs (``stages.run_all`` with config overrides; nothing re-implemented):

1. *Truth*: ``k`` small CNNs trained from scratch on disjoint parts (setting DT), all four
   methods attributed over a trimmed r grid; the stability error per (method, r) is the mean
   over images and model pairs of ``metrics.csv``'s plain ``stability`` rows.
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

The hyperparameter grid of each proxy is run on digits only. A setting fails if its training
diverges or its replicas' mean test accuracy is more than ``ACCURACY_DROP`` below the base
model's (they are no longer replicas of it). Of the others, the one with the highest pooled
Spearman on digits (ties: ratio closest to 1) is scored on shapes; if it fails there, the next
in the digits ranking is run instead (only training and test accuracy are looked at on shapes
before scoring, never a stability score). Cost columns: the proxy's optimizer steps,
training examples and training seconds (the trainer's own timing, test evaluation included;
for SWAG also drawing and evaluating the replicas) over those of the k truth models, and the
wall time of the whole train stage (data generation and loading included) over the truth's.
Prints markdown tables for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from smoothstab.experiments import stages
from smoothstab.experiments.experiment import load_config
from smoothstab.experiments.rundir import RunDir, read_csv

METHODS = ("grad", "ig", "gradcam", "gradcampp")
R_GRID = (0.0, 0.016, 0.064, 0.144, 0.256, 0.4)  # 6 of the quickstart's 11 levels (+ table_r 0.15)
K = 3  # models (truth) and replicas (proxies): 3 pairs each
# Data set -> training overrides of the truth (its epochs and part size set the proxies' budget).
DATA = {
    "digits": ["train.dataset=digits", "train.epochs=20", "train.part_size=400"],
    "shapes": ["train.dataset=shapes", "train.epochs=10", "train.part_size=800"],
}
COMMON = [
    "quiet=true",
    "train.lr=0.03",
    f"train.parts={K}",
    f"attribution.methods={json.dumps(list(METHODS))}",
    f"attribution.stability_r={list(R_GRID)}",
    f"attribution.fidelity_r={list(R_GRID)}",
    "attribution.n_images=16",
    "attribution.image_batch=16",
    "attribution.n_samples=16",
    "attribution.ig_steps=8",
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
    return [f"models.epochs={K * epochs // (10 * runs)}", f"models.part_size={part}"]


def run(overrides: list[str], out: Path) -> tuple[RunDir, float]:
    cfg = load_config("quickstart", overrides)
    t0 = time.perf_counter()
    stages.run_all(cfg, out, stages=("train",))
    train_s = time.perf_counter() - t0
    stages.run_all(cfg, out, stages=("attribute", "evaluate"))
    return RunDir(out), train_s


def per_image(run: RunDir) -> dict[tuple[str, float], np.ndarray]:
    """(method, r) -> stability per test image (mean over pairs)."""
    acc: dict = defaultdict(lambda: defaultdict(list))
    for row in read_csv(run.metrics):
        if row["metric"] == "stability" and row["pair"]:
            acc[(row["method"], float(row["r"]))][int(row["image"])].append(float(row["value"]))
    return {key: np.array([np.mean(v[i]) for i in sorted(v)]) for key, v in acc.items()}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (ties get their mean rank)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


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


def bootstrap(truth: dict, proxy: dict, n: int = 1000, seed: int = 0) -> dict[str, tuple]:
    rng = np.random.default_rng(seed)
    n_img = len(next(iter(truth.values())))
    draws = [scores(truth, proxy, rng.integers(0, n_img, n_img)) for _ in range(n)]
    return {
        k: tuple(np.nanpercentile([d[k] for d in draws], [2.5, 97.5]))
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
    p.add_argument("--quick", action="store_true", help="one grid point per proxy (the first)")
    args = p.parse_args()
    start = time.perf_counter()
    table = []
    values: dict[str, dict] = {}  # shapes: name -> (method, r) -> mean stability
    chosen: dict[str, list[dict]] = {}  # per proxy, the digits grid ranked best first
    failed: list[tuple] = []
    baselines: dict[str, tuple] = {}
    for data in ("digits", "shapes"):
        base = [*COMMON, *DATA[data]]
        truth, truth_s = run(base, args.out / data / "truth")
        t_maps = per_image(truth)
        own = own_norm(truth)
        if data == "shapes":
            values["truth"] = {k: float(v.mean()) for k, v in t_maps.items()}
            values["own norm"] = {k: float(v.mean()) for k, v in own.items()}
        baselines[data] = (scores(t_maps, own), bootstrap(t_maps, own))
        print(json.dumps({"data": data, "baseline": "own norm", **baselines[data][0]}), flush=True)
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
                if data == "shapes":
                    values[proxy] = {k: float(v.mean()) for k, v in p_maps.items()}
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
                row["role"] = "tuning" if data == "digits" else "scored"
                table.append(row)
                print(json.dumps(row, default=str), flush=True)
            if data == "digits":
                ranked = sorted(results, key=lambda x: (x[0], x[1]), reverse=True)
                chosen[proxy] = [x[3] for x in ranked]
    best = {p: c[0] for p, c in chosen.items()}
    print(f"\ntotal {time.perf_counter() - start:.0f} s; chosen on digits: {json.dumps(best)}\n")
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
    for data, (b, ci) in baselines.items():
        print(
            f"| {data} | baseline | sqrt(2) x own smoothed-map norm (no replicas) | - | "
            f"{b['spearman']:.3f} [{ci['spearman'][0]:.2f}, {ci['spearman'][1]:.2f}] | "
            f"{b['within']:.3f} [{ci['within'][0]:.2f}, {ci['within'][1]:.2f}] | {b['ratio']:.2f} "
            f"[{ci['ratio'][0]:.2f}, {ci['ratio'][1]:.2f}] ({b['ratio_min']:.2f}-"
            f"{b['ratio_max']:.2f}) | 0 | 0 | 0 | 0 |"
        )
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


if __name__ == "__main__":
    main()

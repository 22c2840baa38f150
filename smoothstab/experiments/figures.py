"""The figures stage: PNGs of the paper's figures from ``metrics.csv`` and the map files.

* ``stability.png`` / ``fidelity.png``: error vs noise level r per method, mean over model pairs
  (models) with the configured band (Figs 2-5).
* ``ssim_topk.png``: SSIM and top-k mIoU between the two models of a pair vs r (Fig 6).
* ``tradeoff.png``: fidelity vs stability error, one point per r, the recommended r marked.
* ``grid_{method}.png``: input, two models' maps, unsmoothed and smoothed (Figs 7-9).
* ``sigma_{method}.png``: one image's map as the noise level grows (Figs 10-16).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from smoothstab.experiments.data import dataset_info  # noqa: E402
from smoothstab.experiments.io import atomic_write  # noqa: E402
from smoothstab.experiments.names import NAMES, SMOOTHED  # noqa: E402
from smoothstab.experiments.rundir import Metric, RunDir, Summary, noise_grid  # noqa: E402
from smoothstab.views import to_gray  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from smoothstab.experiments.aggregate import Band
    from smoothstab.experiments.experiment import ExperimentConfig, TrainConfig


def save(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buf.getvalue()))


def _curve(summary: Summary, method: str, metric: Metric) -> tuple[list[float], list[Band]]:
    pts = summary.curve(method, metric)
    return [p[0] for p in pts], [p[1] for p in pts]


def error_figure(
    summary: Summary, methods: Sequence[str], metric: str, ylabel: str, band: str, path: Path
) -> Path:
    """``metric``: ``stability`` or ``fidelity``; plain and debiased curves with their bands."""
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.2), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        for debiased, style in ((False, "--"), (True, "-")):
            rs, bands = _curve(summary, method, getattr(Metric, metric)(debiased))
            if not rs:
                continue
            label = "debiased" if debiased else "plain (paper)"
            ax.plot(rs, [b.mean for b in bands], style, marker="o", ms=3, label=label)
            ax.fill_between(rs, [b.lo for b in bands], [b.hi for b in bands], alpha=0.2)
        ax.set_title(f"{NAMES[method]} / {SMOOTHED[method]}", fontsize=9)
        ax.set_xlabel("noise level r = sigma / (x_max - x_min)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{ylabel} (band: {band})")
    axes[0][0].legend(fontsize=8)
    return save(fig, path)


def similarity_figure(summary: Summary, methods: Sequence[str], topk: int, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    panels = ((axes[0], Metric.SSIM, "SSIM"), (axes[1], Metric.TOPK_IOU, f"top-{topk} mIoU"))
    for ax, metric, title in panels:
        for method in methods:
            rs, bands = _curve(summary, method, metric)
            ax.plot(rs, [b.mean for b in bands], marker="o", ms=3, label=NAMES[method])
            ax.fill_between(rs, [b.lo for b in bands], [b.hi for b in bands], alpha=0.15)
        ax.set_title(f"{title} between the models of a pair", fontsize=9)
        ax.set_xlabel("noise level r")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save(fig, path)


def tradeoff_figure(advice: dict, path: Path) -> Path:
    """Fidelity against stability error per method (own axes: their scales differ widely)."""
    methods = [m for m, rec in advice.items() if rec["curve"]]
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.3), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        rec = advice[method]
        curve = rec["curve"]
        s, f = [c["stability"] for c in curve], [c["fidelity"] for c in curve]
        ax.plot(s, f, marker="o", ms=3)
        for c in curve:
            ax.annotate(f"{c['r']:g}", (c["stability"], c["fidelity"]), fontsize=7)
        for key, marker, label in (("knee_r", "*", "knee"), ("budget_r", "s", "within budget")):
            hit = [c for c in curve if c["r"] == rec[key]]
            if hit:
                ax.plot(
                    hit[0]["stability"],
                    hit[0]["fidelity"],
                    marker,
                    ms=12,
                    mfc="none",
                    color="k",
                    label=f"{label}: r={rec[key]:g}",
                )
        ax.set_title(NAMES[method], fontsize=9)
        ax.set_xlabel("stability error")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("fidelity error (r annotated)")
    return save(fig, path)


def _show_input(x: torch.Tensor, data: TrainConfig) -> np.ndarray:
    info = dataset_info(data.dataset)
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    img = (x * std + mean).clamp(0, 1)
    return (img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).float().numpy()


def _map(run: RunDir, k: int, method: str, r: float, images: list[int]) -> np.ndarray:
    """The Table-1 grayscale view of the saved maps of these images (numpy for matplotlib)."""
    return to_gray(run.load_map(k, method, r).mean[images]).float().numpy()


def _distinct(labels: torch.Tensor, n: int) -> list[int]:
    """Up to ``n`` image indices, one per class first (in order), then the rest in order."""
    first = {}
    for i, y in enumerate(labels.tolist()):
        first.setdefault(y, i)
    picks = sorted(first.values())[:n]
    return picks + [i for i in range(len(labels)) if i not in picks][: n - len(picks)]


def grid_figure(
    cfg: ExperimentConfig,
    run: RunDir,
    x: torch.Tensor,
    labels: torch.Tensor,
    method: str,
    pair: tuple[int, int],
    path: Path,
) -> Path:
    """Rows: images; columns: input, A, B, A smoothed, B smoothed (at the Table-1 r)."""
    images = _distinct(labels, cfg.evaluation.grid_images)
    n = len(images)
    r = round(float(cfg.attribution.table_r), 6)
    cols = [(pair[0], 0.0), (pair[1], 0.0), (pair[0], r), (pair[1], r)]
    maps = [_map(run, k, method, rr, images) for k, rr in cols]
    fig, axes = plt.subplots(n, 5, figsize=(7.5, 1.6 * n), squeeze=False)
    titles = ["input"] + [f"model {k}" + (f", r={rr:g}" if rr else "") for k, rr in cols]
    for row, i in enumerate(images):
        axes[row][0].imshow(_show_input(x[i], cfg.train), cmap="gray")
        for j, m in enumerate(maps, start=1):
            axes[row][j].imshow(m[row], cmap="gray", vmin=0, vmax=1)
    for j, title in enumerate(titles):
        axes[0][j].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"{NAMES[method]} (left) and {SMOOTHED[method]} (right)", fontsize=9)
    return save(fig, path)


def sigma_figure(
    cfg: ExperimentConfig, run: RunDir, x: torch.Tensor, method: str, path: Path, image: int = 0
) -> Path:
    grid = noise_grid(cfg.attribution)
    picks = grid[:: max(1, len(grid) // 6)][:7]
    fig, axes = plt.subplots(1, len(picks) + 1, figsize=(1.6 * (len(picks) + 1), 1.9))
    axes[0].imshow(_show_input(x[image], cfg.train), cmap="gray")
    axes[0].set_title("input", fontsize=8)
    for ax, r in zip(axes[1:], picks, strict=True):
        ax.imshow(_map(run, 0, method, r, [image])[0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"r={r:g}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{NAMES[method]} of model 0 as the noise level grows", fontsize=9)
    return save(fig, path)


def make_figures(cfg: ExperimentConfig, run: RunDir, summary: Summary, advice: dict) -> list[Path]:
    """Every figure of the run into ``run.figures`` (existing ones are redrawn: cheap)."""
    a, e = cfg.attribution, cfg.evaluation
    x, labels = run.load_test_images()
    paths = [
        error_figure(
            summary, a.methods, "stability", "stability error", e.band, run.figure("stability")
        ),
        error_figure(
            summary, a.methods, "fidelity", "fidelity error", e.band, run.figure("fidelity")
        ),
        similarity_figure(summary, a.methods, e.topk, run.figure("ssim_topk")),
        tradeoff_figure(advice, run.figure("tradeoff")),
    ]
    for method in a.methods:
        paths.append(grid_figure(cfg, run, x, labels, method, (0, 1), run.figure(f"grid_{method}")))
        paths.append(sigma_figure(cfg, run, x, method, run.figure(f"sigma_{method}")))
    return paths


def bounds_figure(res: dict, path: Path) -> Path:
    """Bounds of Theorem 6 and Proposition 7 beside the measured errors, log scale."""
    log = lambda v: None if v is None or v <= 0 else math.log10(v)  # noqa: E731
    rows = res["rows"]
    r = [row["r"] for row in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    pairs = [
        (axes[0], "stability_grad", "stability_bound_log10", "Smooth-Grad stability", "Theorem 6"),
        (axes[1], "fidelity_grad", "fidelity_bound_grad_log10", "Smooth-Grad fidelity", "Prop. 7"),
        (axes[1], "fidelity_ig", "fidelity_bound_ig_log10", "smoothed-IG fidelity", "Prop. 7 (IG)"),
    ]
    for ax, meas, bound, label, blabel in pairs:
        if rows[0][bound] is not None:
            ax.plot(r, [row[bound] for row in rows], "--", label=f"{blabel} bound")
        ax.plot(r, [log(row[meas]) for row in rows], "o-", ms=3, label=f"measured {label}")
    for ax, title in zip(axes, ("stability", "fidelity"), strict=True):
        ax.set_xlabel("noise level r")
        ax.set_ylabel("log10 error")
        ax.set_title(title + (" (heuristic)" if res["heuristic"] else ""), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)

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
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from smoothstab.experiments.attribute import map_path, noise_grid  # noqa: E402
from smoothstab.experiments.data import dataset_info  # noqa: E402
from smoothstab.experiments.io import atomic_write  # noqa: E402
from smoothstab.views import to_gray  # noqa: E402

NAMES = {
    "grad": "Simple-Grad",
    "ig": "Integrated-Gradients",
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
}
SMOOTHED = {
    "grad": "Smooth-Grad",
    "ig": "smoothed IG",
    "gradcam": "smoothed Grad-CAM",
    "gradcampp": "smoothed Grad-CAM++",
}


def save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buf.getvalue()))


def _curve(summary, method, metric, grid):
    pts = [(r, summary[(method, metric, r)]) for r in grid if (method, metric, r) in summary]
    return [p[0] for p in pts], [p[1] for p in pts]


def error_figure(summary, methods, grid, metric: str, ylabel: str, band: str, path: Path):
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.2), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        for suffix, style in (("", "--"), ("_debiased", "-")):
            rs, bands = _curve(summary, method, metric + suffix, grid)
            if not rs:
                continue
            label = "debiased" if suffix else "plain (paper)"
            ax.plot(rs, [b.mean for b in bands], style, marker="o", ms=3, label=label)
            ax.fill_between(rs, [b.lo for b in bands], [b.hi for b in bands], alpha=0.2)
        ax.set_title(f"{NAMES[method]} / {SMOOTHED[method]}", fontsize=9)
        ax.set_xlabel("noise level r = sigma / (x_max - x_min)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{ylabel} (band: {band})")
    axes[0][0].legend(fontsize=8)
    return save(fig, path)


def similarity_figure(summary, methods, grid, topk: int, path: Path):
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, metric, title in ((axes[0], "ssim", "SSIM"), (axes[1], "topk_iou", f"top-{topk} mIoU")):
        for method in methods:
            rs, bands = _curve(summary, method, metric, grid)
            ax.plot(rs, [b.mean for b in bands], marker="o", ms=3, label=NAMES[method])
            ax.fill_between(rs, [b.lo for b in bands], [b.hi for b in bands], alpha=0.15)
        ax.set_title(f"{title} between the models of a pair", fontsize=9)
        ax.set_xlabel("noise level r")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save(fig, path)


def tradeoff_figure(advice: dict, path: Path):
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


def _show_input(x: torch.Tensor, data) -> np.ndarray:
    info = dataset_info(data.dataset)
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    img = (x * std + mean).clamp(0, 1)
    return (img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).float().numpy()


def _map(run_dir, k, method, r, images) -> np.ndarray:
    """The Table-1 grayscale view of the saved maps of these images (numpy for matplotlib)."""
    saved = torch.load(map_path(run_dir, k, method, r), weights_only=True)["mean"][images]
    return to_gray(saved).float().numpy()


def _distinct(labels: torch.Tensor, n: int) -> list[int]:
    """Up to ``n`` image indices, one per class first (in order), then the rest in order."""
    first = {}
    for i, y in enumerate(labels.tolist()):
        first.setdefault(y, i)
    picks = sorted(first.values())[:n]
    return picks + [i for i in range(len(labels)) if i not in picks][: n - len(picks)]


def grid_figure(cfg, run_dir: Path, x, labels, method: str, pair: tuple[int, int], path: Path):
    """Rows: images; columns: input, A, B, A smoothed, B smoothed (at the Table-1 r)."""
    images = _distinct(labels, cfg.evaluation.grid_images)
    n = len(images)
    r = round(float(cfg.attribution.table_r), 6)
    cols = [(pair[0], 0.0), (pair[1], 0.0), (pair[0], r), (pair[1], r)]
    maps = [_map(run_dir, k, method, rr, images) for k, rr in cols]
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


def sigma_figure(cfg, run_dir: Path, x, method: str, path: Path, image: int = 0):
    grid = noise_grid(cfg.attribution)
    picks = grid[:: max(1, len(grid) // 6)][:7]
    fig, axes = plt.subplots(1, len(picks) + 1, figsize=(1.6 * (len(picks) + 1), 1.9))
    axes[0].imshow(_show_input(x[image], cfg.train), cmap="gray")
    axes[0].set_title("input", fontsize=8)
    for ax, r in zip(axes[1:], picks, strict=True):
        ax.imshow(_map(run_dir, 0, method, r, [image])[0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"r={r:g}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{NAMES[method]} of model 0 as the noise level grows", fontsize=9)
    return save(fig, path)


def make_figures(cfg, run_dir: Path, summary: dict, advice: dict) -> list[Path]:
    """Every figure of the run into ``run_dir/figures`` (existing ones are redrawn: cheap)."""
    run_dir = Path(run_dir)
    out = run_dir / "figures"
    a, e = cfg.attribution, cfg.evaluation
    grid = noise_grid(a)
    saved = torch.load(run_dir / "test_images.pt", weights_only=True)
    x, labels = saved["x"], saved["y"]
    paths = [
        error_figure(
            summary, a.methods, grid, "stability", "stability error", e.band, out / "stability.png"
        ),
        error_figure(
            summary, a.methods, grid, "fidelity", "fidelity error", e.band, out / "fidelity.png"
        ),
        similarity_figure(summary, a.methods, grid, e.topk, out / "ssim_topk.png"),
        tradeoff_figure(advice, out / "tradeoff.png"),
    ]
    for method in a.methods:
        paths.append(
            grid_figure(cfg, run_dir, x, labels, method, (0, 1), out / f"grid_{method}.png")
        )
        paths.append(sigma_figure(cfg, run_dir, x, method, out / f"sigma_{method}.png"))
    return paths

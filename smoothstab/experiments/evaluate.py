"""The evaluate stage: maps in the run directory -> ``metrics.csv``, Table 1 and the sigma advice.

``metrics.csv`` (:mod:`.rundir`) has one row per (method, r, metric, model pair or model, image):
stability, SSIM and top-k IoU per model pair, fidelity per model, each stability and fidelity
row plain (as the paper computes it) and, when asked, debiased (split-half, see
:mod:`smoothstab.debias`), with the Monte-Carlo standard error in ``stderr``. No SSIM for maps
smaller than its 11x11 window (such as digits). ``map_norm`` (the unsmoothed map's L2 norm) is the
scale for a relative fidelity budget. The sigma advice (the knee of the trade-off curve and the
most stable r within the budget) is :mod:`.advice`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from smoothstab import metrics
from smoothstab.debias import debiased_distance
from smoothstab.experiments.advice import recommend
from smoothstab.experiments.aggregate import model_pairs
from smoothstab.experiments.rundir import Metric, RunDir, Summary, csv_text, noise_grid
from smoothstab.montecarlo import SmoothStats

if TYPE_CHECKING:
    from smoothstab.experiments.experiment import ExperimentConfig


def _mean(x: SmoothStats | torch.Tensor) -> torch.Tensor:
    return x.mean if isinstance(x, SmoothStats) else x


def _rows(
    base: dict, metric: Metric, values: torch.Tensor, stderr: torch.Tensor | None = None
) -> Iterator[dict]:
    for i, v in enumerate(values.tolist()):
        se = "" if stderr is None else float(stderr[i])
        yield {**base, "metric": str(metric), "image": i, "value": float(v), "stderr": se}


def pair_rows(
    base: dict,
    a: SmoothStats | torch.Tensor,
    b: SmoothStats | torch.Tensor,
    *,
    debiased: bool,
    topk: int,
) -> Iterator[dict]:
    """Stability, SSIM and top-k IoU rows for one model pair at one r."""
    est = debiased_distance(a, b)
    yield from _rows(base, Metric.STABILITY, est.plain, est.stderr)
    if debiased:
        yield from _rows(base, Metric.STABILITY_DEBIASED, est.value, est.stderr)
    ma, mb = _mean(a), _mean(b)
    # scikit-image's SSIM needs the 11x11 Gaussian window inside the map: none for 8x8 digits.
    if min(ma.shape[-2:]) >= metrics.SSIM_WIN:
        yield from _rows(base, Metric.SSIM, metrics.ssim_maps(ma, mb))
    yield from _rows(base, Metric.TOPK_IOU, metrics.topk_iou(ma, mb, k=topk))


def model_rows(
    base: dict,
    smoothed: SmoothStats | torch.Tensor,
    unsmoothed: torch.Tensor,
    *,
    debiased: bool,
    r: float,
) -> Iterator[dict]:
    """Fidelity rows for one model at one r (and its unsmoothed map norm at r = 0)."""
    if r == 0:
        yield from _rows(base, Metric.MAP_NORM, unsmoothed.flatten(1).norm(dim=1))
    est = debiased_distance(smoothed, unsmoothed)
    yield from _rows(base, Metric.FIDELITY, est.plain, est.stderr)
    if debiased:
        yield from _rows(base, Metric.FIDELITY_DEBIASED, est.value, est.stderr)


def table1(summary: Summary, methods: Sequence[str], r_smooth: float) -> list[dict]:
    """Table 1 of the paper: SSIM / smoothed SSIM / top-k mIoU / smoothed top-k mIoU."""
    return [
        {
            "method": method,
            "ssim": summary.get(method, Metric.SSIM, 0.0),
            "smoothed_ssim": summary.get(method, Metric.SSIM, r_smooth),
            "topk_miou": summary.get(method, Metric.TOPK_IOU, 0.0),
            "smoothed_topk_miou": summary.get(method, Metric.TOPK_IOU, r_smooth),
        }
        for method in methods
    ]


def _load(run: RunDir, n_models: int, method: str, r: float) -> tuple[list, float]:
    """Every model's maps of ``method`` at ``r``, and the absolute sigma they were made with."""
    files = [run.load_map(k, method, r) for k in range(n_models)]
    return [f.estimate() for f in files], files[0].sigma


def metric_rows(cfg: ExperimentConfig, run: RunDir, n_models: int) -> list[dict]:
    """Every per-image metric of the run (stability and similarity per pair, fidelity per model)."""
    e = cfg.evaluation
    rows = []
    for method in cfg.attribution.methods:
        reference, _ = _load(run, n_models, method, 0.0)
        for r in noise_grid(cfg.attribution):
            maps, sigma = (reference, 0.0) if r == 0 else _load(run, n_models, method, r)
            base = {"setting": cfg.models.setting, "method": method, "r": r, "sigma": sigma}
            for i, j in model_pairs(n_models):
                pair = {**base, "pair": f"{i}-{j}", "model": ""}
                rows += pair_rows(pair, maps[i], maps[j], debiased=e.debiased, topk=e.topk)
            for k in range(n_models):
                one = {**base, "pair": "", "model": str(k)}
                rows += model_rows(one, maps[k], reference[k], debiased=e.debiased, r=r)
    return rows


def evaluate_run(cfg: ExperimentConfig, run: RunDir, n_models: int) -> None:
    """Write ``metrics.csv`` (skipped if present), ``table1.csv`` and ``recommendation.json``."""
    if not run.metrics.is_file():
        run.write_text(run.metrics, csv_text(metric_rows(cfg, run, n_models)))
    summary = run.summary(cfg.evaluation.band)
    rows = table1(summary, cfg.attribution.methods, round(float(cfg.attribution.table_r), 6))
    flat = [
        {
            "method": row["method"],
            **{k: "" if v is None else f"{v.mean:.6g}" for k, v in row.items() if k != "method"},
        }
        for row in rows
    ]
    run.write_text(run.table1, csv_text(flat, columns=list(flat[0])))
    advice = recommend(
        summary,
        cfg.attribution.methods,
        debiased=cfg.evaluation.debiased,
        budget=cfg.evaluation.fidelity_budget,
    )
    run.write_json(run.recommendation, advice)

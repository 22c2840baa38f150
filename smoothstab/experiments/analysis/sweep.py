"""What a sweep shows, in numbers: the noise level where similarity between models peaks
(Fig. 6) and the paper's Table 1 (SSIM and top-k mIoU, raw and smoothed, with the scale-free
unit-map distance beside them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from smoothstab.experiments.analysis.aggregate import Band, band
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Summary

if TYPE_CHECKING:
    pass


def best_level(
    summary: Summary, method: str, metric: Metric, kind: str = "t95"
) -> tuple[float, Band] | None:
    """The r where the mean of ``metric`` (SSIM, top-k mIoU) peaks, and the interval of the
    per-pair peak locations over model pairs (at the largest training-set size)."""
    curve = summary.curve(method, metric)
    if not curve:
        return None
    best = max(curve, key=lambda p: (p[1].mean, -p[0]))[0]
    per_pair: dict[str, list[tuple[float, float]]] = {}
    for r, _ in curve:
        for pair, value in summary.per_pair_or_model(method, metric, r).items():
            per_pair.setdefault(pair, []).append((value, -r))
    peaks = [-max(values)[1] for values in per_pair.values()]
    return best, band(peaks, kind)


TABLE1 = {  # column: (metric, smoothed?); the unit-map distance debiased where the run has it
    "ssim": (Metric.SSIM, False),
    "smoothed_ssim": (Metric.SSIM, True),
    "topk_miou": (Metric.TOPK_IOU, False),
    "smoothed_topk_miou": (Metric.TOPK_IOU, True),
    "unit_distance": (Metric.UNIT_DISTANCE, False),
    "smoothed_unit_distance": (Metric.UNIT_DISTANCE, True),
}


MEAN = "mean over pairs"


TABLE1_BANDS = tuple(f"{col}_{end}" for col in TABLE1 for end in ("lo", "hi"))


TABLE1_COLUMNS = ("method", "pair", *TABLE1, *TABLE1_BANDS)


def table1(
    summary: Summary, methods: Sequence[str], r_smooth: float, labels: dict[str, str]
) -> list[dict]:
    """Table 1 of the paper: SSIM / smoothed SSIM / top-k mIoU / smoothed top-k mIoU at the
    largest training-set size, and beside them the scale-free unit-map distance of the raw maps
    (lower: more alike); a row per labelled pair (floats) and, unless there is only one, the
    mean over pairs (a Band)."""

    def honest(method: str, metric: Metric, r: float) -> Metric:
        """The metric's debiased version where the run has one."""
        debiased = f"{metric}_debiased"
        return Metric(debiased) if summary.get(method, debiased, r) is not None else metric

    rows = []
    for method in methods:
        cols = {
            col: (honest(method, metric, r), r)
            for col, (metric, smoothed) in TABLE1.items()
            for r in [r_smooth if smoothed else 0.0]
        }
        for pair, label in labels.items() if len(labels) > 1 else ():
            cells = {
                col: summary.per_pair_or_model(method, m, r).get(pair)
                for col, (m, r) in cols.items()
            }
            rows.append({"method": method, "pair": label, **cells})
        cells = {col: summary.get(method, m, r) for col, (m, r) in cols.items()}
        only = next(iter(labels.values())) if len(labels) == 1 else MEAN
        rows.append({"method": method, "pair": only, **cells})
    return rows

"""What a sweep shows, in words and small tables: trends with the noise level, the effect of the
training-set size, the noise level where similarity between models peaks (Fig. 6) and the paper's
Table 1 (the evaluate stage writes it as ``table1.csv``, the report reads it); whether a falling raw
stability error means maps more alike or only smaller is
:mod:`~smoothstab.experiments.pages.answer`.

Pure functions of a :class:`~smoothstab.experiments.analysis.summary.Summary`; the report lays them
out.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from smoothstab.experiments.analysis.aggregate import Band
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.analysis.sweep import best_level
from smoothstab.experiments.pages.blocks import Table
from smoothstab.experiments.pages.names import NAMES

if TYPE_CHECKING:
    pass


def fmt(value: Band | float | None) -> str:
    """``mean [lo, hi]`` of a Band, a float as is, or a dash when missing."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value.lo == value.hi:
        return f"{value.mean:.4g}"
    return f"{value.mean:.4g} [{value.lo:.4g}, {value.hi:.4g}]"


def trend(summary: Summary, method: str, metric: Metric, n: int | None = None) -> str:
    """Whether the mean of ``metric`` falls or rises with r (first vs last, and step by step)."""
    pts = [(r, b.mean) for r, b in summary.curve(method, metric, n)]
    if len(pts) < 2:
        return "not measured"
    steps = [b - a for (_, a), (_, b) in itertools.pairwise(pts)]
    direction = "falls" if pts[-1][1] < pts[0][1] else "rises"
    mono = all(s < 0 for s in steps) if direction == "falls" else all(s > 0 for s in steps)
    return (
        f"{direction} from {pts[0][1]:.4g} (r={pts[0][0]:g}) to {pts[-1][1]:.4g} "
        f"(r={pts[-1][0]:g}){', monotonically' if mono else ', not monotonically'}"
    )


def trends(summary: Summary, methods: list[str], debiased: bool) -> list[str]:
    """Per method and training-set size: the trends of the paper's plain curves and, when the
    run has them, of our debiased ones."""
    out = []
    for method in methods:
        for n in summary.sizes:
            at = f" (n = {n})" if len(summary.sizes) > 1 else ""
            kinds = [("paper's plain estimate", False)]
            kinds += [("our debiased estimate", True)] if debiased else []
            for label, d in kinds:
                out.append(
                    f"{NAMES[method]}{at}, {label}: stability error "
                    f"{trend(summary, method, Metric.stability(d), n)}; fidelity error "
                    f"{trend(summary, method, Metric.fidelity(d), n)}."
                )
    return out


def size_verdict(bands: list[Band]) -> str:
    """How a metric moves from the smallest to the largest training-set size."""
    means = [b.mean for b in bands]
    steps = [b - a for a, b in itertools.pairwise(means)]
    if all(s < 0 for s in steps):
        word = "falls"
    elif all(s > 0 for s in steps):
        word = "rises"
    else:
        return "no monotone change"
    apart = all(
        (b.hi < a.lo) if word == "falls" else (b.lo > a.hi) for a, b in itertools.pairwise(bands)
    )
    return f"{word} with n" + (" (intervals apart)" if apart else " (intervals overlap)")


def size_table(summary: Summary, method: str, metric: Metric) -> Table | None:
    """Per r: ``metric`` at each training-set size with its interval, and whether it falls with
    n; ``None`` when the run has one size."""
    sizes = summary.sizes
    if len(sizes) < 2:
        return None
    rows = []
    for r, _ in summary.curve(method, metric):
        bands = [summary.get(method, metric, r, n) for n in sizes]
        if None in bands:
            continue
        rows.append([f"{r:g}", *(fmt(b) for b in bands), size_verdict(bands)])
    return Table(["r", *(f"n = {n}" for n in sizes), "with more training data"], rows)


def best_levels(summary: Summary, methods: list[str], topk: int, kind: str) -> list[str]:
    """Fig. 6 in words: where SSIM and top-k mIoU peak, per method."""
    out = []
    for method in methods:
        parts = []
        for metric, name in ((Metric.SSIM, "SSIM"), (Metric.TOPK_IOU, f"top-{topk} mIoU")):
            found = best_level(summary, method, metric, kind)
            if found is not None:
                r, peaks = found
                parts.append(
                    f"{name} is highest at r = {r:g} (the peak of each pair: {fmt(peaks)})"
                )
        if parts:
            out.append(f"{NAMES[method]}: " + "; ".join(parts) + ".")
    return out

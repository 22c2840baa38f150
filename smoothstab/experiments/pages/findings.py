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
from smoothstab.experiments.analysis.sweep import Peak, best_level, size_change
from smoothstab.experiments.pages.blocks import Table
from smoothstab.experiments.pages.names import NAMES

if TYPE_CHECKING:
    from smoothstab.inference import MeanEstimate


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


def size_verdict(change: MeanEstimate | None, means: list[float]) -> str:
    """How a metric moves from the smallest to the largest training-set size: the direction of
    the means, and whether the difference between the largest and smallest n is measurable
    (:func:`~smoothstab.experiments.analysis.sweep.size_change`)."""
    steps = [b - a for a, b in itertools.pairwise(means)]
    if all(s < 0 for s in steps):
        word = "falls"
    elif all(s > 0 for s in steps):
        word = "rises"
    else:
        return "no monotone change"
    if change is None:
        return f"{word} with n (no interval)"
    lo, hi = change.interval()
    d = f"{change.estimate:+.3g} [{lo:+.3g}, {hi:+.3g}]"
    if change.scope != "retraining":
        return f"{word} with n ({d}; images only, these models)"
    return f"{word} with n" + (" (measurably: " if change.sign() else " (cannot tell: ") + d + ")"


def size_table(summary: Summary, method: str, metric: Metric) -> Table | None:
    """Per r: ``metric`` at each training-set size with its interval, and whether it falls with
    n (the largest n minus the smallest, with its interval); ``None`` when the run has one
    size."""
    sizes = summary.sizes
    if len(sizes) < 2:
        return None
    rows = []
    for r, _ in summary.curve(method, metric):
        bands = [summary.get(method, metric, r, n) for n in sizes]
        if None in bands:
            continue
        change = size_change(summary, method, metric, r)
        verdict = size_verdict(change, [b.mean for b in bands])
        rows.append([f"{r:g}", *(fmt(b) for b in bands), verdict])
    header = ["r", *(f"n = {n}" for n in sizes), f"n = {sizes[-1]} vs n = {sizes[0]}"]
    return Table(header, rows)


def peak_sentence(name: str, peak: Peak) -> str:
    """'SSIM is highest at r = 0.1 (0.064-0.144 cannot be told from it), +0.021 [+0.004, +0.038]
    above r = 0'."""
    text = f"{name} is highest at r = {peak.r:g}"
    if peak.at_edge:
        return text + " (at the edge of the sweep: the peak may lie beyond it, no range given)"
    near = [r for r in peak.near if r != peak.r]
    if near:
        text += f" (r = {min(peak.near):g} to {max(peak.near):g} cannot be told from it)"
    if peak.gain is not None:
        lo, hi = peak.gain.interval()
        word = "measurably " if peak.gain.sign() > 0 else ""
        text += f", {word}above r = 0 by {peak.gain.estimate:+.3g} [{lo:+.3g}, {hi:+.3g}]"
    return text


def best_levels(summary: Summary, methods: list[str], topk: int) -> list[str]:
    """Fig. 6 in words: where SSIM and top-k mIoU peak, per method, with the r the data cannot
    tell from the peak (paired 95% intervals over retraining, images and draws)."""
    out = []
    for method in methods:
        parts = []
        for metric, name in ((Metric.SSIM, "SSIM"), (Metric.TOPK_IOU, f"top-{topk} mIoU")):
            found = best_level(summary, method, metric)
            if found is not None:
                parts.append(peak_sentence(name, found))
        if parts:
            out.append(f"{NAMES[method]}: " + "; ".join(parts) + ".")
    return out

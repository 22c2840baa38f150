"""What a sweep shows, in words and small tables: trends with the noise level, the effect of the
training-set size, the noise level where similarity between models peaks (Fig. 6) and the
paper's Table 1 (the evaluate stage writes it as ``table1.csv``, the report reads it); whether
a falling raw stability error means maps more alike or only smaller is :mod:`.verdicts`.

Pure functions of a :class:`~.metrics_table.Summary`; the report lays them out.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from smoothstab.experiments.aggregate import Band, band
from smoothstab.experiments.blocks import Table
from smoothstab.experiments.measures import Metric
from smoothstab.experiments.metrics_table import Summary, csv_text, read_csv
from smoothstab.experiments.names import NAMES

if TYPE_CHECKING:
    from pathlib import Path


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


def table1_csv(rows: list[dict]) -> str:
    """``table1.csv`` of :func:`table1`'s rows: each cell's mean as the float it is (it reads
    back exactly) and, where the cell is a band (the mean over pairs), its ``_lo`` and ``_hi``
    in the last columns; a missing cell is empty."""
    flat = []
    for row in rows:
        out = {"method": row["method"], "pair": row["pair"]}
        for col in TABLE1:
            value = row[col]
            out[col] = getattr(value, "mean", value)
            if isinstance(value, Band):
                out[f"{col}_lo"], out[f"{col}_hi"] = value.lo, value.hi
        flat.append(out)
    return csv_text(flat, TABLE1_COLUMNS)


def read_table1(path: str | Path) -> list[dict]:
    """:func:`table1`'s rows from ``table1.csv`` as :func:`table1_csv` wrote them (a damaged
    file is one :class:`~.io.DamagedFile` line). A file written before the bands were kept
    gives each mean over pairs as a float, shown without its band."""
    numbers = (*TABLE1, *TABLE1_BANDS)
    found = read_csv(path, TABLE1_COLUMNS, TABLE1_BANDS, numbers=numbers, blank=numbers)
    rows = []
    for row in found:
        cells = {}
        for col in TABLE1:
            lo, hi = row.get(f"{col}_lo"), row.get(f"{col}_hi")
            banded = row[col] is not None and lo is not None and hi is not None
            cells[col] = Band(row[col], lo, hi) if banded else row[col]
        rows.append({"method": row["method"], "pair": row["pair"], **cells})
    return rows

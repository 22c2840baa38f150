"""What a sweep shows, in numbers: the noise level where similarity between models peaks
(Fig. 6) and the paper's Table 1 (SSIM and top-k mIoU, raw and smoothed, with the scale-free
unit-map distance beside them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smoothstab import inference
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Summary


@dataclass(frozen=True)
class Peak:
    """Where the mean of a similarity (SSIM, top-k mIoU) peaks over the sweep: ``r``, whether
    that is the sweep's last r, or its first above 0 (``at_edge``: the peak may lie beyond, so
    no range is given), the r whose paired difference to the peak's has a 95% interval holding 0
    (``near``: the data cannot tell them from the peak), and the peak's gain over r = 0
    (``None`` where the peak is at 0 or r = 0 was not measured); intervals over retraining from
    four models, else over images for these models (``scope``)."""

    r: float
    at_edge: bool
    near: tuple[float, ...]
    gain: inference.MeanEstimate | None
    scope: str


def best_level(summary: Summary, method: str, metric: Metric) -> Peak | None:
    """The :class:`Peak` of ``metric`` at the largest training-set size (``None``: not
    measured, or too few r or images)."""
    found = summary.sweep(method, metric)
    if found is None or len(found[0]) < 2 or found[1].shape[2] < 2:
        return None
    rs, v = found
    if not np.all(np.isfinite(v)):
        return None
    cells = summary.cells(method, metric, rs[0])
    per_model = not (cells.pairs and cells.complete)
    scope = "these models" if per_model else "auto"
    best = inference.best_level(v, lower_is_better=False, per_model=per_model, scope=scope)
    gain = None
    if rs[0] == 0 and best.index != 0:
        if per_model:
            gain = inference.model_difference(v[best.index], v[0], scope=scope)
        else:
            gain = inference.pair_difference(v[best.index], v[0])
    near = tuple(r for r, same in zip(rs, best.indistinguishable, strict=True) if same)
    scope = next(e.scope for e in best.to_best if e is not None)
    # at r = 0 the sweep cannot miss a peak below it: only a peak at its last (or a first r
    # above 0) may lie beyond the sweep
    edge = best.index == len(rs) - 1 or (best.index == 0 and rs[0] > 0)
    return Peak(rs[best.index], edge, near, gain, scope)


def size_change(
    summary: Summary, method: str, metric: Metric, r: float
) -> inference.MeanEstimate | None:
    """``metric`` at the largest training-set size minus at the smallest, at ``r``: two
    independent sets of models on the same images (:func:`smoothstab.inference.sets_difference`;
    over retraining where both have four models, else over images for these models). ``None``
    with one size, or without per-image values on common images."""
    if len(summary.sizes) < 2:
        return None
    big, small = (
        summary.cells(method, metric, r, n) for n in (summary.sizes[-1], summary.sizes[0])
    )
    if big is None or small is None or not (big.rectangular and small.rectangular):
        return None
    if big.images != small.images or big.m < 2 or big.pairs != small.pairs:
        return None
    if not (np.all(np.isfinite(big.values)) and np.all(np.isfinite(small.values))):
        return None
    complete = big.complete and small.complete
    return inference.sets_difference(
        big.values,
        small.values,
        per_model=not big.pairs or not complete,
        scope="auto" if complete else "these models",
    )


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


TABLE1_COLUMNS = ("method", "pair", *TABLE1, *TABLE1_BANDS, "interval_over")
"""``interval_over``: what the mean row's intervals are over, ``retraining`` (models, images and
draws) or ``these models`` (images and draws); empty on a pair's row, or where there is none."""


def table1(
    summary: Summary, methods: Sequence[str], r_smooth: float, labels: dict[str, str]
) -> list[dict]:
    """Table 1 of the paper: SSIM / smoothed SSIM / top-k mIoU / smoothed top-k mIoU at the
    largest training-set size, and beside them the scale-free unit-map distance of the raw maps
    (lower: more alike); a row per labelled pair (floats) and, unless there is only one, the
    mean over pairs (a Band: the mean with its 95% interval, :meth:`Summary.get`), whose
    ``interval_over`` says what its intervals are over."""

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
            rows.append({"method": method, "pair": label, **cells, "interval_over": ""})
        cells = {col: summary.get(method, m, r) for col, (m, r) in cols.items()}
        only = next(iter(labels.values())) if len(labels) == 1 else MEAN
        est = summary.estimate(method, *cols["unit_distance"])
        over = "" if est is None else est.scope
        rows.append({"method": method, "pair": only, **cells, "interval_over": over})
    return rows

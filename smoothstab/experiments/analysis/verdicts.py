"""Agreement or shrinkage, in numbers: how the raw stability error of a method and training-set
size changes from r = 0 to the largest r, split into the map norm and the scale-free unit-map
distance, the latter's relative change with its interval (:func:`smoothstab.inference.
relative_change`: over retraining, the images and their draws from four models on; over images
and draws for these models below that). The report's words for it are in
:mod:`smoothstab.experiments.pages.answer`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from smoothstab import inference
from smoothstab.experiments.analysis.aggregate import Band
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import LEVEL, Summary


@dataclass(frozen=True)
class Split:
    """How the raw stability error of one method and training-set size changes from r = 0 to
    ``r1``, split into the models' map norm (size) and the unit-map distance (direction).

    ``l2``, ``norm``: relative changes of the means over pairs and models; ``unit``: the
    relative change of the unit-map distance with its 95% interval (a band of width 0 where
    there is none), ``change`` its estimate (``None``: no interval, e.g. one image),
    ``per_pair`` each pair's own relative change; ``k`` models, ``m`` images. Since ``||a -
    b||^2 = (||a|| - ||b||)^2 + ||a|| ||b|| u^2``, the raw change is about the product of the
    other two when the models' norms are alike.
    """

    method: str
    n: int | None
    r1: float
    l2: float
    norm: float
    unit: Band
    change: inference.MeanEstimate | None
    per_pair: dict[str, float]
    k: int
    m: int

    @property
    def decided(self) -> bool:
        """The interval is over retraining (four models or more): it may carry a verdict."""
        return self.change is not None and self.change.scope == "retraining"

    @property
    def sign(self) -> int | None:
        """-1: the maps agree more, +1: less, 0: the interval cannot tell; ``None``: no verdict
        (fewer than four models, or no interval)."""
        return self.change.sign(LEVEL) if self.decided else None

    @property
    def shrinkage_only(self) -> bool:
        """The raw distance falls while the maps do not measurably come to agree more (with
        four models or more: below that nothing is measurable)."""
        return self.l2 < 0 and self.decided and self.sign != -1


def split(summary: Summary, method: str, n: int | None, debiased: bool) -> Split | None:
    """The :class:`Split` from r = 0 to the largest r of the stability sweep (``None`` when the
    run lacks a curve)."""
    unit_metric = Metric.of("unit_distance", debiased)
    rs = summary.levels(method, unit_metric, n)
    if len(rs) < 2 or rs[0] != 0:
        return None
    r1 = rs[-1]
    at0, at1 = (summary.cells(method, unit_metric, r, n) for r in (0.0, r1))
    means0, means1 = at0.unit_means(), at1.unit_means()
    per_pair = {p: means1[p] / means0[p] - 1 for p in means0 if p in means1 and means0[p] > 0}
    if not per_pair:
        return None
    change = None
    same = (at0.units, at0.images) == (at1.units, at1.images) and at0.rectangular
    if same and at0.m >= 2 and np.all(np.isfinite(at0.values)) and np.all(np.isfinite(at1.values)):
        try:
            if at0.pairs and at0.complete:
                change = inference.relative_change(at1.values, at0.values)
            else:  # hand-picked pairs: each a fixed unit, over images only
                change = inference.relative_change(
                    at1.values, at0.values, per_model=True, scope="these models"
                )
        except ValueError:  # a baseline of 0
            change = None
    if change is None:
        mean = float(np.mean(at1.values) / np.mean(at0.values) - 1)
        unit = Band(mean, mean, mean)
    else:
        unit = Band(change.estimate, *change.interval(LEVEL))

    def rel(metric: Metric) -> float:
        a, b = summary.get(method, metric, r1, n), summary.get(method, metric, 0.0, n)
        return math.nan if a is None or b is None else a.mean / b.mean - 1

    l2, norm = rel(Metric.stability(debiased)), rel(Metric.of("map_norm", debiased))
    return Split(method, n, r1, l2, norm, unit, change, per_pair, at0.k, at0.m)


def splits(summary: Summary, methods: list[str], debiased: bool) -> list[Split]:
    found = (split(summary, m, n, debiased) for m in methods for n in summary.sizes)
    return [s for s in found if s is not None]

"""Agreement or shrinkage, in numbers: how the raw stability error of a method and training-set
size changes from r = 0 to the largest r, split into the map norm and the scale-free unit-map
distance, with the latter's interval deciding the verdict. The report's words for it are in
:mod:`smoothstab.experiments.pages.answer`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoothstab.experiments.analysis.aggregate import Band, band
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Summary

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Split:
    """How the raw stability error of one method and training-set size changes from r = 0 to
    ``r1``, split into the models' map norm (size) and the unit-map distance (direction).

    ``l2``, ``norm``: relative changes of the means over pairs and models; ``unit``: the
    relative change of the unit-map distance, its mean over pairs and the interval (``how``
    says of what: the spread over model pairs, or the Monte-Carlo error when there is one pair).
    Since ``||a - b||^2 = (||a|| - ||b||)^2 + ||a|| ||b|| u^2``, the raw change is about the
    product of the other two when the models' norms are alike.
    """

    method: str
    n: int | None
    r1: float
    l2: float
    norm: float
    unit: Band
    how: str
    bounded: bool = True  # False: one pair and no Monte-Carlo error, so no interval

    @property
    def verdict(self) -> str:
        if not self.bounded:
            return "no interval to tell"
        if self.unit.hi < 0:
            return "the maps agree more"
        if self.unit.lo > 0:
            return "the maps agree less"
        return "no more or less than the interval can tell"

    @property
    def shrinkage_only(self) -> bool:
        """The raw distance falls while the maps do not measurably come to agree more."""
        return self.l2 < 0 and self.verdict != "the maps agree more"


def split(
    summary: Summary, method: str, n: int | None, debiased: bool, kind: str = "t95"
) -> Split | None:
    """The :class:`Split` from r = 0 to the largest r of the stability sweep (``None`` when the
    run lacks a curve)."""
    unit_metric = Metric.of("unit_distance", debiased)
    curve = summary.curve(method, unit_metric, n)
    if len(curve) < 2 or curve[0][0] != 0:
        return None
    r1 = curve[-1][0]
    at0, at1 = (summary.per_pair_or_model(method, unit_metric, r, n) for r in (0.0, r1))
    per_pair = [at1[p] / at0[p] - 1 for p in at0 if p in at1 and at0[p] > 0]
    if not per_pair:
        return None
    if len(per_pair) > 1:
        unit, how = band(per_pair, kind), f"interval over {len(per_pair)} model pairs"
    else:  # no spread over pairs to show: the Monte-Carlo error alone, when the run has it
        se = summary.mc_stderr(method, unit_metric, r1, n)
        half = 0.0 if se is None else 1.96 * se / curve[0][1].mean
        unit = Band(per_pair[0], per_pair[0] - half, per_pair[0] + half)
        how = "one model pair, " + ("no interval" if se is None else "Monte-Carlo interval only")

    def change(metric: Metric) -> float:
        return (
            summary.get(method, metric, r1, n).mean / summary.get(method, metric, 0.0, n).mean - 1
        )

    l2, norm = change(Metric.stability(debiased)), change(Metric.of("map_norm", debiased))
    bounded = len(per_pair) > 1 or summary.mc_stderr(method, unit_metric, r1, n) is not None
    return Split(method, n, r1, l2, norm, unit, how, bounded)


def splits(summary: Summary, methods: list[str], debiased: bool, kind: str) -> list[Split]:
    found = (split(summary, m, n, debiased, kind) for m in methods for n in summary.sizes)
    return [s for s in found if s is not None]

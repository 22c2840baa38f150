"""Per-image measures of one image block at one noise level: the rows of the metrics table.

The attribute stage holds one image block's maps of one method in memory, every model at one noise
level at a time, with their Monte-Carlo halves and groups (:class:`LevelMaps`), and hands them to
each function of :data:`MEASURES`; each yields :class:`RowGroup` s, one value per image of the
block (with its Monte-Carlo standard error where it has one):

* :func:`pair_measures`, per model pair: stability (Eq. 12, plain as the paper computes it, and
  when asked debiased, cross-half, :mod:`smoothstab.debias`), SSIM (none for maps smaller than its
  11x11 window, such as digits), top-k IoU, rank agreement and the unit-map distance
  (:mod:`smoothstab.agreement`);
* :func:`model_measures`, per model: fidelity (Eq. 13, against the model's unsmoothed map) and the
  map's norm (at r = 0 the unsmoothed map's: the scale of a relative fidelity budget);
* :func:`cost_measures`, per model: each map's relative Monte-Carlo standard error and the model
  evaluations it took;
* :func:`floor_measures`, per model pair: each between-model similarity's chance floor, the same
  metric between model A's map of an image and model B's map of its partner, another image of the
  block (:func:`~smoothstab.disagreement.derangement`; a block of one image has no partner: NaN);
* :func:`disagreement_measures`, over the models compared together (those of the largest
  training-set size): the total of the k maps' disagreement map
  (:func:`~smoothstab.disagreement.disagreement_map`), plain and, when the run debiases, with the
  Monte-Carlo noise removed by the groups (without them, only the plain total: the noise inflates
  it);
* :func:`prediction_measures`, per model, once (at r = 0): the class each model predicts for each
  image and whether it is its label (NaN where the image has none).

A new per-block computation is one more function ``fn(level) -> Iterable[RowGroup]`` in
:data:`MEASURES`: it sees every model's maps of the block at one r and their unsmoothed maps, on the
device they were computed on, before any is discarded. Levels come one at a time (all of them at
once would hold models x levels x groups maps: 26 GiB for the ImageNet preset's 16-image blocks).
The metric names are :class:`~smoothstab.experiments.analysis.measures.Metric`; where the rows are
stored is :mod:`~smoothstab.experiments.rundir.metrics_table`'s business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from smoothstab import metrics
from smoothstab.debias import debiased_distance
from smoothstab.disagreement import chance_floor, disagreement_map
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.stats import SmoothStats

Maps = SmoothStats | torch.Tensor  # what distances take: stats with halves (groups), or exact maps


@dataclass(frozen=True)
class RowGroup:
    """One measure of one model pair (``pair``) or one model (``model``) at one noise level: a
    value per image of the block ``[B]`` and, where it has one, its Monte-Carlo standard error."""

    metric: Metric
    values: torch.Tensor
    stderr: torch.Tensor | None = None
    pair: tuple[int, int] | None = None
    model: int | None = None


@dataclass(frozen=True)
class LevelMaps:
    """One image block's maps of one method at noise level ``r``, every model at once.

    Attributes:
        maps: per model, what distances take: :class:`~smoothstab.stats.SmoothStats` with the
            halves (and groups) when the run debiases, else the mean maps ``[B, ...]``; exact maps
            at r = 0.
        reference: per model, the unsmoothed maps ``[B, ...]`` (r = 0).
        rel_se, evals: per model, ``[B]`` each map's relative Monte-Carlo standard error (0 at
            r = 0) and the model evaluations it took.
        pairs: the model pairs compared.
        partner: ``[B]`` each image's partner in the block for the chance floors (-1: none);
            ``None``: no floors.
        consensus: the models whose maps are compared all together (the disagreement map).
        predicted: per model, ``[B]`` the class it predicts for each image (``None``: not asked).
        labels: ``[B]`` the images' labels (-1: none).
    """

    method: str
    r: float
    sigma: float
    maps: Sequence[Maps]
    reference: Sequence[torch.Tensor]
    rel_se: Sequence[torch.Tensor]
    evals: Sequence[torch.Tensor]
    pairs: Sequence[tuple[int, int]]
    debiased: bool
    topk: int
    partner: torch.Tensor | None = None
    consensus: Sequence[int] = ()
    predicted: Sequence[torch.Tensor] | None = None
    labels: torch.Tensor | None = None

    def mean(self, k: int) -> torch.Tensor:
        """Model ``k``'s (smoothed) maps ``[B, ...]``."""
        return mean_of(self.maps[k])

    @cached_property
    def ranks(self) -> list[torch.Tensor]:
        """Every model's :func:`~smoothstab.metrics.pixel_ranks`, computed once per level."""
        return [metrics.pixel_ranks(self.mean(k)) for k in range(len(self.maps))]

    @cached_property
    def disagreement(self):
        """The :func:`~smoothstab.disagreement.disagreement_map` of the :attr:`consensus` models
        (debiased when the run debiases; ``None`` with fewer than two)."""
        if len(self.consensus) < 2:
            return None
        return disagreement_map([self.maps[k] for k in self.consensus], debiased=self.debiased)


Measure = Callable[[LevelMaps], Iterable[RowGroup]]


def mean_of(x: Maps) -> torch.Tensor:
    return x.mean if isinstance(x, SmoothStats) else x


def pair_groups(
    a: Maps,
    b: Maps,
    *,
    debiased: bool,
    topk: int,
    ranks: tuple[torch.Tensor, torch.Tensor] | None = None,
    pair: tuple[int, int] | None = None,
) -> Iterator[RowGroup]:
    """Stability, SSIM, top-k IoU, rank agreement and unit-map distance of one model pair at one
    r; ``ranks``: both maps' :func:`~smoothstab.metrics.pixel_ranks`, if at hand."""
    est = debiased_distance(a, b)
    yield RowGroup(Metric.STABILITY, est.plain, est.stderr, pair=pair)
    if debiased:
        yield RowGroup(Metric.STABILITY_DEBIASED, est.value, est.stderr, pair=pair)
    ma, mb = mean_of(a), mean_of(b)
    # scikit-image's SSIM needs the 11x11 Gaussian window inside the map: none for 8x8 digits.
    if min(ma.shape[-2:]) >= metrics.SSIM_WIN:
        yield RowGroup(Metric.SSIM, metrics.ssim_maps(ma, mb), pair=pair)
    yield RowGroup(Metric.TOPK_IOU, metrics.topk_iou(ma, mb, k=topk), pair=pair)
    ra, rb = ranks or (metrics.pixel_ranks(ma), metrics.pixel_ranks(mb))
    yield RowGroup(Metric.RANK_AGREEMENT, metrics.rank_correlation(ra, rb), pair=pair)
    unit = metrics.debiased_unit_distance(a, b)  # the cosine is 1 - unit^2 / 2 of these rows
    yield RowGroup(Metric.UNIT_DISTANCE, unit.plain, pair=pair)
    if debiased:
        yield RowGroup(Metric.UNIT_DISTANCE_DEBIASED, unit.value, unit.stderr, pair=pair)


def model_groups(
    smoothed: Maps, unsmoothed: torch.Tensor, *, debiased: bool, model: int | None = None
) -> Iterator[RowGroup]:
    """Fidelity of one model at one r, and its map's norm (at r = 0 the unsmoothed map's, the
    scale of the fidelity budget and of a relative fidelity error)."""
    est = debiased_distance(smoothed, unsmoothed)
    yield RowGroup(Metric.FIDELITY, est.plain, est.stderr, model=model)
    if debiased:
        yield RowGroup(Metric.FIDELITY_DEBIASED, est.value, est.stderr, model=model)
    norm = metrics.debiased_norm(smoothed)
    yield RowGroup(Metric.MAP_NORM, norm.plain, model=model)
    if debiased:
        yield RowGroup(Metric.MAP_NORM_DEBIASED, norm.value, norm.stderr, model=model)


def pair_measures(level: LevelMaps) -> Iterator[RowGroup]:
    """:func:`pair_groups` of every pair compared (each map's pixel ranks computed once)."""
    ranks = level.ranks
    for i, j in level.pairs:
        kw = dict(debiased=level.debiased, topk=level.topk, ranks=(ranks[i], ranks[j]))
        yield from pair_groups(level.maps[i], level.maps[j], **kw, pair=(i, j))


def model_measures(level: LevelMaps) -> Iterator[RowGroup]:
    """:func:`model_groups` of every model."""
    for k, (maps, reference) in enumerate(zip(level.maps, level.reference, strict=True)):
        yield from model_groups(maps, reference, debiased=level.debiased, model=k)


def cost_measures(level: LevelMaps) -> Iterator[RowGroup]:
    """Each model's Monte-Carlo error and cost at this r."""
    for k, (rel_se, evals) in enumerate(zip(level.rel_se, level.evals, strict=True)):
        yield RowGroup(Metric.REL_SE, rel_se, model=k)
        yield RowGroup(Metric.MODEL_EVALS, evals.round(), model=k)


FLOORS = (Metric.STABILITY, Metric.SSIM, Metric.TOPK_IOU, Metric.RANK_AGREEMENT,
          Metric.UNIT_DISTANCE)  # fmt: skip
"""The between-model measures that get a chance floor (plain: on the mean maps)."""


def floor_measures(level: LevelMaps) -> Iterator[RowGroup]:
    """Each pair's chance floors (:data:`FLOORS`): model i's map of each image against model j's
    map of the image's partner (``level.partner``). The partner's pixel ranks are the ranks
    already computed, reindexed: no map is made or ranked again."""
    if level.partner is None:
        return
    partner = level.partner.to(level.mean(0).device)
    has = partner >= 0
    safe = partner.clamp(min=0)
    for i, j in level.pairs:
        a, b = level.mean(i), level.mean(j)

        def floor(fn, a=a, b=b):
            return chance_floor(fn, a, b, partner)

        yield RowGroup(Metric.floor(Metric.STABILITY), floor(metrics.l2_distance), pair=(i, j))
        if min(a.shape[-2:]) >= metrics.SSIM_WIN:
            yield RowGroup(Metric.floor(Metric.SSIM), floor(metrics.ssim_maps), pair=(i, j))
        topk = floor(lambda x, y: metrics.topk_iou(x, y, k=level.topk))
        yield RowGroup(Metric.floor(Metric.TOPK_IOU), topk, pair=(i, j))
        rho = metrics.rank_correlation(level.ranks[i], level.ranks[j][safe])
        rho = rho.where(has, torch.nan)
        yield RowGroup(Metric.floor(Metric.RANK_AGREEMENT), rho, pair=(i, j))
        unit = floor(metrics.unit_distance)
        yield RowGroup(Metric.floor(Metric.UNIT_DISTANCE), unit, pair=(i, j))


def disagreement_measures(level: LevelMaps) -> Iterator[RowGroup]:
    """The total disagreement of the :attr:`~LevelMaps.consensus` models' maps of each image:
    plain (the mean over their pairs of ``unit_distance^2 / 2``) and, when the run debiases,
    debiased with the Monte-Carlo groups. One value per image, of no pair or model."""
    d = level.disagreement
    if d is None:
        return
    plain = (
        d.total
        if not d.debiased
        else disagreement_map([level.mean(k) for k in level.consensus]).total
    )
    yield RowGroup(Metric.DISAGREEMENT, plain)
    if level.debiased:  # exact maps (r = 0): the plain total, which no noise inflates
        yield RowGroup(Metric.DISAGREEMENT_DEBIASED, d.total)


def prediction_measures(level: LevelMaps) -> Iterator[RowGroup]:
    """At r = 0 only, per model: the class predicted for each image and whether it is the label
    (1 or 0; NaN where the image has no label)."""
    if level.r != 0 or level.predicted is None:
        return
    for k, pred in enumerate(level.predicted):
        yield RowGroup(Metric.PREDICTED, pred.double(), model=k)
        labels = level.labels.to(pred.device)
        hit = (pred == labels).double().where(labels >= 0, torch.nan)
        yield RowGroup(Metric.CORRECT, hit, model=k)


MEASURES: list[Measure] = [
    pair_measures, model_measures, cost_measures, floor_measures, disagreement_measures,
    prediction_measures,
]  # fmt: skip
"""The per-block computations, in the order of their rows: pairs, then models, then costs, then
what gives the similarities their meaning (floors, disagreement, predictions), as every model of
the block at one r leaves them."""


def measure(level: LevelMaps, measures: Sequence[Measure] = MEASURES) -> list[RowGroup]:
    """Every row group of ``level``, one measure after another."""
    return [group for fn in measures for group in fn(level)]

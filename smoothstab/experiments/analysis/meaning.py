"""What a similarity means, in numbers: each between-model measure beside its chance floor and
its chance-corrected score, the same-prediction split, the disagreement totals and the per-image
reliability score, from a run's :class:`~smoothstab.experiments.analysis.summary.Summary`.

Every interval comes from :mod:`smoothstab.inference`: over retraining, the test images and their
draws from :data:`~smoothstab.inference.MIN_MODELS` models on, over the images and draws of these
models below that (``scope`` says which); the pairs share models. Floors, corrected scores and the
split are of the plain measures (the floors are computed on the mean maps, as SSIM and the ranks
are); the split's stability is the run's stability measure. The report's words are in
:mod:`~smoothstab.experiments.pages.meaning_page`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from smoothstab import inference
from smoothstab.disagreement import IDEAL
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Cells, Summary

FLOORED = (Metric.SSIM, Metric.TOPK_IOU, Metric.RANK_AGREEMENT, Metric.UNIT_DISTANCE,
           Metric.STABILITY)  # fmt: skip
"""The measures shown beside their floors, similarities first."""


@dataclass(frozen=True)
class Floor:
    """One measure of one method at one r beside its chance floor.

    ``observed``, ``floor``: the means over pairs and images (images with a partner only), and
    ``corrected`` the chance-corrected score ``(observed - floor) / (ideal - floor)``, each with
    its interval (``None``: fewer than two images); ``per_pair``: each pair's ``(observed,
    floor, corrected)``; ``m`` images used, ``k`` models."""

    method: str
    metric: Metric
    r: float
    ideal: float
    observed: inference.MeanEstimate | None
    floor: inference.MeanEstimate | None
    corrected: inference.MeanEstimate | None
    point: tuple[float, float, float]
    per_pair: dict[str, tuple[float, float, float]]
    m: int
    k: int


def _options(cells: Cells) -> dict:
    """How :mod:`smoothstab.inference` treats these cells: every pair of the models (crossed),
    else fixed units over images."""
    if cells.pairs and cells.complete:
        return {}
    return {"per_model": True, "scope": "these models"}


def _paired(summary: Summary, method: str, a, b, r: float, n: int | None):
    ca, cb = summary.cells(method, a, r, n), summary.cells(method, b, r, n)
    if ca is None or cb is None or not (ca.rectangular and cb.rectangular):
        return None
    if (ca.units, ca.images) != (cb.units, cb.images):
        return None
    return ca, cb


def _corrected(o: float, f: float, ideal: float) -> float:
    return (o - f) / (ideal - f) if ideal != f else math.nan


def floor_of(
    summary: Summary, method: str, metric: Metric, r: float, n: int | None = None
) -> Floor | None:
    """``metric`` (plain) of ``method`` at ``r`` beside its floor (``None``: not measured)."""
    metric = Metric(metric)
    found = _paired(summary, method, metric, Metric.floor(metric), r, n)
    if found is None:
        return None
    obs_cells, floor_cells = found
    ok = np.all(np.isfinite(floor_cells.values), axis=0)
    v, f = obs_cells.values[:, ok], floor_cells.values[:, ok]
    if v.shape[1] == 0:
        return None
    ideal = IDEAL[str(metric)]
    per_pair = {
        u: (float(a.mean()), float(b.mean()), _corrected(a.mean(), b.mean(), ideal))
        for u, a, b in zip(obs_cells.units, v, f, strict=True)
    }
    point = (float(v.mean()), float(f.mean()), _corrected(v.mean(), f.mean(), ideal))
    obs = flo = cor = None
    if v.shape[1] >= 2 and np.all(np.isfinite(v)):
        opts = _options(obs_cells)
        ones = np.ones_like(v)
        obs = inference.ratio_mean(v, ones, **opts)
        flo = inference.ratio_mean(f, ones, **opts)
        if abs(ideal - f.mean()) > 0:
            cor = inference.ratio_mean(v - f, ideal - f, **opts)
    return Floor(method, metric, r, ideal, obs, flo, cor, point, per_pair, v.shape[1],
                 obs_cells.k)  # fmt: skip


def floors(summary: Summary, method: str, r: float, n: int | None = None) -> list[Floor]:
    """:func:`floor_of` of every measure of :data:`FLOORED` measured."""
    return [f for m in FLOORED if (f := floor_of(summary, method, m, r, n)) is not None]


def shown_levels(attr, summary: Summary, advice=None) -> dict[str, list[float]]:
    """Per method, the levels the report and figures show: r = 0 and the recommended r (the
    Table-1 r, ``attr.table_r``, where none is recommended or it was not measured)."""
    out = {}
    for m in attr.methods:
        a = None if advice is None else advice.of(m, summary.default_n)
        r1 = a.recommended_r if a is not None and a.recommended_r else None
        rs = summary.levels(m, Metric.RANK_AGREEMENT)
        if r1 is None or r1 not in rs:
            r1 = round(float(attr.table_r), 6)
        out[m] = [r for r in dict.fromkeys([0.0, r1]) if r in rs]
    return out


# --- the same-prediction split -----------------------------------------------------------------

SPLIT_MEASURES = ("stability", Metric.UNIT_DISTANCE, Metric.SSIM, Metric.RANK_AGREEMENT)
"""The measures of the split: the run's stability measure, then the unit-map distance, SSIM and
rank agreement."""


@dataclass(frozen=True)
class Group:
    """The pair x image cells of one group (``"same prediction"``, ``"different prediction"``,
    ``"both correct"``, ``"not both correct"``): ``share`` of the cells, ``cells`` their count;
    per metric (by its name in the metrics table) its mean over the group's cells with its
    interval at ``r`` (``None``: no
    interval); ``change``: the change of the unit-map distance from r = 0 to ``r`` within the
    group, with its interval."""

    name: str
    share: float
    cells: int
    values: dict[str, inference.MeanEstimate | float]
    change: inference.MeanEstimate | None


@dataclass(frozen=True)
class PredictionSplit:
    method: str
    r: float
    groups: list[Group]
    overall_change: inference.MeanEstimate | None
    k: int
    m: int

    def group(self, name: str) -> Group | None:
        return next((g for g in self.groups if g.name == name), None)

    def holds_within(self, name: str = "same prediction", level: float = 0.95) -> str:
        """Whether the effect of smoothing on the unit-map distance (its sign, from r = 0 to
        ``r``) holds within a group: ``"holds"`` (the same sign, both intervals clear of 0),
        ``"reverses"``, ``"cannot tell"`` (either interval covers 0), or ``"no cells"``."""
        g = self.group(name)
        if g is None or g.change is None or self.overall_change is None:
            return "no cells"
        a, b = self.overall_change.sign(level), g.change.sign(level)
        if a == 0 or b == 0:
            return "cannot tell"
        return "holds" if a == b else "reverses"


def _model_rows(summary: Summary, method: str, metric: Metric, n: int | None) -> dict | None:
    cells = summary.cells(method, metric, 0.0, n)
    if cells is None or cells.pairs or not cells.rectangular:
        return None
    return {u: row for u, row in zip(cells.units, cells.values, strict=True)} | {
        "_images": cells.images
    }


def _masks(summary: Summary, method: str, cells: Cells, n: int | None) -> dict[str, np.ndarray]:
    pred = _model_rows(summary, method, Metric.PREDICTED, n)
    hit = _model_rows(summary, method, Metric.CORRECT, n)
    if pred is None or pred["_images"] != cells.images:
        return {}
    ends = [u.split("-") for u in cells.units]
    same = np.array([pred[a] == pred[b] for a, b in ends])
    out = {"same prediction": same, "different prediction": ~same}
    if hit is not None and hit["_images"] == cells.images:
        both = np.array([(hit[a] == 1) & (hit[b] == 1) for a, b in ends])
        labelled = np.array([np.isfinite(hit[a]) & np.isfinite(hit[b]) for a, b in ends])
        if labelled.all():
            out |= {"both correct": both, "not both correct": ~both}
    return out


def _masked(v: np.ndarray, mask: np.ndarray, opts: dict) -> inference.MeanEstimate | float:
    w = mask.astype(np.float64)
    if v.shape[1] >= 2 and np.all(np.isfinite(v)):
        return inference.ratio_mean(v * w, w, **opts)
    return float((v * w).sum() / w.sum())


def prediction_split(
    summary: Summary, method: str, r: float, debiased: bool, measure: str = "l2",
    n: int | None = None,
) -> PredictionSplit | None:  # fmt: skip
    """Every pair x image of ``method`` at ``r`` split by whether both models predict the same
    class (and, where every image has a label, whether both are correct); ``None`` where the run
    has no predictions."""
    unit = Metric.of("unit_distance", debiased)
    found = _paired(summary, method, unit, unit, r, n)
    base = _paired(summary, method, unit, unit, 0.0, n)
    if found is None or base is None:
        return None
    cells = found[0]
    masks = _masks(summary, method, cells, n)
    if not masks:
        return None
    opts = _options(cells)
    v1, v0 = cells.values, base[0].values
    change_ok = v1.shape[1] >= 2 and base[0].images == cells.images
    overall = inference.ratio_difference(v1, np.ones_like(v1), v0, np.ones_like(v0), **opts) \
        if change_ok else None  # fmt: skip
    groups = []
    for name, mask in masks.items():
        if not mask.any():
            groups.append(Group(name, 0.0, 0, {}, None))
            continue
        values: dict[str, inference.MeanEstimate | float] = {}
        for m in SPLIT_MEASURES:
            metric = Metric.measure(measure, debiased) if m == "stability" else Metric(m)
            c = summary.cells(method, metric, r, n)
            if c is None or c.units != cells.units or c.images != cells.images:
                continue
            if str(metric) not in values:  # the stability measure may be the unit distance
                values[str(metric)] = _masked(c.values, mask, opts)
        w = mask.astype(np.float64)
        change = None
        if change_ok:
            change = inference.ratio_difference(v1 * w, w, v0 * w, w, **opts)
        groups.append(Group(name, float(mask.mean()), int(mask.sum()), values, change))
    return PredictionSplit(method, r, groups, overall, cells.k, cells.m)


# --- disagreement and reliability ----------------------------------------------------------------


def disagreement_curve(
    summary: Summary, method: str, debiased: bool, n: int | None = None
) -> list[tuple[float, float]]:
    """``[(r, mean total disagreement over images)]`` of the consensus models, by r."""
    metric = Metric.of("disagreement", debiased)
    return [(r, b.mean) for r, b in summary.curve(method, metric, n)]


@dataclass(frozen=True)
class Reliability:
    """Per test image, the reliability score at ``r`` (the mean over model pairs of the rank
    agreement of their maps) with its interval over retraining (NaN bounds below four models:
    ``per_pair`` holds each pair's value); ``images`` their indices."""

    method: str
    r: float
    images: tuple[int, ...]
    score: inference.PerImage
    per_pair: dict[str, np.ndarray]

    def order(self) -> np.ndarray:
        """Image positions from the least to the most reliable."""
        return np.argsort(self.score.mean, kind="stable")


def reliability(
    summary: Summary, method: str, r: float, n: int | None = None
) -> Reliability | None:
    """The per-image reliability score of ``method`` at ``r`` (``None``: not measured)."""
    cells = summary.cells(method, Metric.RANK_AGREEMENT, r, n)
    if cells is None or not cells.rectangular or not cells.pairs:
        return None
    k = cells.k if cells.complete else None
    values = cells.values
    score = (
        inference.per_image_pair_mean(values, k)
        if cells.complete
        else inference.PerImage(values.mean(0), *(np.full(cells.m, np.nan),) * 2, cells.k)
    )
    per_pair = dict(zip(cells.units, values, strict=True))
    return Reliability(method, r, cells.images, score, per_pair)


@dataclass(frozen=True)
class ReliabilityChange:
    """How the reliability score moves from ``r0`` to ``r1``: its mean change over images with
    its interval (pairs and images), the share of images whose score rises, and Spearman's rho
    between the images' scores at the two levels (do the same images stay the least
    reliable)."""

    r0: float
    r1: float
    change: inference.MeanEstimate | None
    mean_change: float
    rises: float
    rank_rho: float
    m: int


def reliability_change(
    summary: Summary, method: str, r0: float, r1: float, n: int | None = None
) -> ReliabilityChange | None:
    a, b = reliability(summary, method, r0, n), reliability(summary, method, r1, n)
    if a is None or b is None or a.images != b.images:
        return None
    found = _paired(summary, method, Metric.RANK_AGREEMENT, Metric.RANK_AGREEMENT, r1, n)
    c0 = summary.cells(method, Metric.RANK_AGREEMENT, r0, n)
    change = None
    if found is not None and c0 is not None and c0.m >= 2 and np.all(np.isfinite(c0.values)):
        cells = found[0]
        opts = _options(cells)
        ones = np.ones_like(cells.values)
        change = inference.ratio_difference(cells.values, ones, c0.values, ones, **opts)
    d = b.score.mean - a.score.mean
    from scipy.stats import spearmanr

    rho = float(spearmanr(a.score.mean, b.score.mean)[0]) if len(d) >= 3 else math.nan
    return ReliabilityChange(r0, r1, change, float(d.mean()), float((d > 0).mean()), rho, len(d))

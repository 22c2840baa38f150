"""Choosing sigma, with its uncertainty: per method and training-set size, the stability curve
with its intervals, each r's paired change from r = 0, the fidelity budget, the recommended r
(:func:`smoothstab.inference.recommend`: the smallest r measurably better than none and not
distinguishable from the best within the budget, else no smoothing), the knee of the trade-off
curve where the curve falls measurably, with its range over leave-one-model-out replicates, and
how many models and images would decide the method's change (:class:`SizePlan`). The evaluate
stage writes it as ``recommendation.json`` (:mod:`smoothstab.experiments.rundir.advice_record`);
the report and the figures read it.

Stability is measured as ``evaluation.stability_measure`` says: the scale-free unit-map
distance by default, since smoothing shrinks maps and the raw distance falls with their size
(:mod:`smoothstab.agreement`), or the paper's raw L2 distance. The fidelity budget is read from
point estimates (no interval).

The sanity check's pass rule (:func:`sanity_levels`) is here too: the difference between
retrained models' agreement and the agreement with the randomised model, per image, with its
interval over the retrained models and images.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from smoothstab import inference
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import LEVEL, Summary

VERSION = 2  # of recommendation.json; version 1 had no intervals (an older file is refused)
K_VALUES = tuple(range(inference.MIN_MODELS, 41))  # what a plan may ask for
M_VALUES = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval, as a file holds it: ``scope`` ``"retraining"``
    (over models, images and draws) or ``"these models"`` (images and draws only), ``k``
    models, ``m`` images."""

    estimate: float
    lo: float
    hi: float
    se: float
    df: float
    scope: str
    k: int
    m: int

    @classmethod
    def of(cls, e: inference.MeanEstimate, level: float = LEVEL) -> Interval:
        lo, hi = e.interval(level)
        return cls(e.estimate, lo, hi, e.se, e.df, e.scope, e.k, e.m)

    @property
    def sign(self) -> int:
        """-1 where the interval lies below 0, +1 above, 0 where it holds 0."""
        return -1 if self.hi < 0 else 1 if self.lo > 0 else 0


@dataclass(frozen=True)
class LevelAdvice:
    """One r of a method's sweep: its stability (mean and interval), fidelity error (mean),
    whether it is within the budget, its paired change from r = 0 (``None`` at 0), whether
    that change is measurably below 0 (``better``), and whether it cannot be told from the
    best level within the budget (``near_best``)."""

    r: float
    stability: Interval | None
    fidelity: float
    within_budget: bool
    change: Interval | None
    better: bool
    near_best: bool


@dataclass(frozen=True)
class SizePlan:
    """How many models per n and images would give the relative change of the unit-map
    distance from r = 0 to ``r1`` a 95% interval of half-width ``target`` (a fraction of its
    value at r = 0; ``observed``: this run's change): ``k``, ``m`` and the predicted median
    ``halfwidth`` of the cheapest such
    design (``None``: none with up to 40 models and 1024 images), from this run's variance
    components (``source``; ``pilot_k`` models, ``pilot_m`` images) and costs in model
    evaluations (``cost_per_model``: training one model; ``cost_per_image``: attributing one
    image with one model); ``current`` is this run's half-width."""

    r1: float
    target: float
    observed: float
    current: float
    k: int | None
    m: int | None
    halfwidth: float | None
    pilot_k: int
    pilot_m: int
    source: str
    cost_per_model: float
    cost_per_image: float


@dataclass(frozen=True)
class MethodAdvice:
    """The advice for one method and training-set size ``n``.

    ``status``: ``"smooth"`` (``recommended_r``), ``"no smoothing"`` (no r within the budget is
    measurably more stable than r = 0), ``"too few models"`` (fewer than four: no verdict) or
    ``"not measured"``. ``best_r``: the most stable r within the budget (point estimate);
    ``best_at_sweep_edge``: it is the sweep's largest r, so the curve may keep falling beyond;
    ``best_at_budget_edge``: the next r is outside the budget. ``knee_r``: the knee of the
    trade-off curve, only where the curve falls measurably and the fall at the knee is
    measurable; ``knee_range``: the knee's range over the leave-one-model-out curves.
    ``plans``: :class:`SizePlan` for the configured target and, where this run cannot tell its
    change from 0 and the change is larger than the target, for the observed change.
    """

    method: str
    n: int | None
    k: int
    m: int
    measure: str
    debiased: bool
    fidelity_budget: float
    map_norm: float
    status: str
    recommended_r: float | None
    best_r: float | None
    best_at_sweep_edge: bool
    best_at_budget_edge: bool
    knee_r: float | None
    knee_range: tuple[float, float] | None
    levels: tuple[LevelAdvice, ...]
    plans: tuple[SizePlan, ...] = ()

    def level(self, r: float) -> LevelAdvice | None:
        return next((lv for lv in self.levels if lv.r == r), None)


@dataclass(frozen=True)
class Advice:
    """``recommendation.json``: every method's :class:`MethodAdvice` per training-set size, at
    interval ``level``, with ``multiplicity`` (``"none"``: each r's interval at the level) and
    the planned ``target_halfwidth``."""

    level: float
    multiplicity: str
    target_halfwidth: float
    methods: tuple[MethodAdvice, ...]
    version: int = VERSION

    def of(self, method: str, n: int | None = None) -> MethodAdvice | None:
        """The advice for ``method`` at size ``n`` (``None``: the largest size it has)."""
        found = [a for a in self.methods if a.method == method]
        if n is not None:
            found = [a for a in found if a.n == n]
        return max(found, key=lambda a: -1 if a.n is None else a.n, default=None)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Advice:
        """The record of :meth:`to_json`'s dict (``TypeError``/``KeyError``/``ValueError`` on
        anything else)."""
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError(f"not version {VERSION} of the advice")

        def interval(x: dict | None) -> Interval | None:
            return None if x is None else Interval(**x)

        def level(x: dict) -> LevelAdvice:
            return LevelAdvice(
                **{**x, "stability": interval(x["stability"]), "change": interval(x["change"])}
            )

        def method(x: dict) -> MethodAdvice:
            knee = x["knee_range"]
            return MethodAdvice(
                **{
                    **x,
                    "knee_range": None if knee is None else (knee[0], knee[1]),
                    "levels": tuple(level(lv) for lv in x["levels"]),
                    "plans": tuple(SizePlan(**p) for p in x["plans"]),
                }
            )

        return cls(**{**data, "methods": tuple(method(m) for m in data["methods"])})


# --- the trade-off curve and its knee ---------------------------------------------------------


def tradeoff(
    summary: Summary, method: str, debiased: bool, measure: str = "l2", n: int | None = None
) -> list[tuple[float, float, float]]:
    """``[(r, stability, fidelity)]`` over the r values where both were measured; stability in
    ``measure`` (``evaluation.stability_measure``), at training-set size ``n`` (the largest by
    default)."""
    stab = {r: b.mean for r, b in summary.curve(method, Metric.measure(measure, debiased), n)}
    fid = {r: b.mean for r, b in summary.curve(method, Metric.fidelity(debiased), n)}
    return [(r, stab[r], fid[r]) for r in sorted(set(stab) & set(fid))]


def knee(points: list[tuple[float, float, float]]) -> float | None:
    """The r of the knee of the trade-off curve (fidelity against stability).

    Both errors are scaled to [0, 1] over the curve; the knee is the point farthest from the
    chord between the curve's ends (Kneedle, Satopaa et al. 2011), i.e. where extra smoothing
    stops buying stability cheaply.
    """
    if len(points) < 3:
        return None
    s = [p[1] for p in points]
    f = [p[2] for p in points]
    scale = lambda v: [(x - min(v)) / ((max(v) - min(v)) or 1) for x in v]  # noqa: E731
    s, f = scale(s), scale(f)
    (s0, f0), (s1, f1) = (s[0], f[0]), (s[-1], f[-1])
    norm = math.hypot(s1 - s0, f1 - f0) or 1
    dist = [
        abs((f1 - f0) * si - (s1 - s0) * fi + s1 * f0 - f1 * s0) / norm
        for si, fi in zip(s, f, strict=True)
    ]
    return points[max(range(len(points)), key=dist.__getitem__)][0]


def within_budget(
    points: list[tuple[float, float, float]], norm: float, budget: float
) -> float | None:
    """The most stable r whose relative fidelity error (fidelity / ||unsmoothed map||) <= budget
    (point estimates)."""
    ok = [p for p in points if p[2] <= budget * norm]
    return min(ok, key=lambda p: (p[1], p[0]))[0] if ok else None


def _knee_range(
    rs: list[float], stab: np.ndarray, fid: np.ndarray | None
) -> tuple[float, float] | None:
    """The knee's range over the curves with one model (and its pairs) left out: ``stab[R, K,
    m]`` pair values, ``fid[R, k, m]`` per-model values of the same models."""
    k = inference.models_from_pairs(stab.shape[1])
    if k < 3 or fid is None or fid.shape[1] != k:
        return None
    s = np.stack([inference.leave_one_model_out(x) for x in stab])  # [R, k]
    f = np.stack([inference.leave_one_model_out(x, per_model=True) for x in fid])
    found = [knee(list(zip(rs, s[:, a], f[:, a], strict=True))) for a in range(k)]
    found = [x for x in found if x is not None]
    return (min(found), max(found)) if found else None


# --- the advice -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeDesign:
    """The relative change of the unit-map distance from r = 0 to ``r1`` of one method and
    size, with its interval (``change``) and the variance components of its linearised values
    (``components``), what a sample-size plan is made from."""

    method: str
    n: int | None
    r1: float
    change: inference.MeanEstimate
    components: inference.DesignComponents


def change_design(
    summary: Summary, method: str, n: int | None, debiased: bool
) -> ChangeDesign | None:
    """:class:`ChangeDesign` of ``method`` at size ``n`` (``None``: fewer than three models, one
    image, no r = 0, or a baseline of 0)."""
    metric = Metric.of("unit_distance", debiased)
    found = summary.sweep(method, metric, n)
    if found is None or found[0][0] != 0 or len(found[0]) < 2 or found[1].shape[2] < 2:
        return None
    rs, v = found
    cells = summary.cells(method, metric, 0.0, n)
    if not (cells.pairs and cells.complete) or cells.k < 3 or not np.all(np.isfinite(v)):
        return None
    try:
        z = inference.linearised_ratio(v[-1], v[0])
        change = inference.relative_change(v[-1], v[0])
    except ValueError:  # a baseline of 0: no relative change
        return None
    return ChangeDesign(method, n, rs[-1], change, inference.variance_components(z))


def size_plan(
    design: ChangeDesign, target: float, costs: tuple[float, float]
) -> inference.SampleSizePlan:
    """:func:`smoothstab.inference.sample_size` of a :class:`ChangeDesign` over the designs a plan
    may ask for (4-40 models, 8-1024 images)."""
    return inference.sample_size(
        design.components,
        target,
        k_values=K_VALUES,
        m_values=M_VALUES,
        cost_per_model=costs[0],
        cost_per_image=costs[1],
    )


def _size_plans(
    summary: Summary,
    method: str,
    n: int | None,
    debiased: bool,
    target: float,
    costs: tuple[float, float],
) -> tuple[SizePlan, ...]:
    """:class:`SizePlan` of the relative change of the unit-map distance from r = 0 to the
    largest r, for ``target`` and, where undecided and larger, for the observed change."""
    design = change_design(summary, method, n, debiased)
    if design is None:
        return ()
    change, dc = design.change, design.components
    targets = [target]
    if change.scope != "retraining" or change.sign() == 0:
        if abs(change.estimate) > target:
            targets.append(abs(change.estimate))
    out = []
    for t in targets:
        best = size_plan(design, t, costs).best
        out.append(
            SizePlan(
                r1=design.r1,
                target=t,
                observed=change.estimate,
                current=change.halfwidth(LEVEL),
                k=None if best is None else best[0],
                m=None if best is None else best[1],
                halfwidth=None if best is None else best[2],
                pilot_k=dc.k,
                pilot_m=dc.m,
                source=dc.source,
                cost_per_model=costs[0],
                cost_per_image=costs[1],
            )
        )
    return tuple(out)


def method_advice(
    summary: Summary,
    method: str,
    n: int | None,
    *,
    debiased: bool,
    budget: float,
    measure: str,
    target: float = 0.02,
    costs: tuple[float, float] = (1.0, 0.0),
    multiplicity: str = "none",
) -> MethodAdvice:
    """The :class:`MethodAdvice` of one method at size ``n``; ``costs``: (a model's training,
    one image's attribution with one model) in model evaluations, for the plans."""
    stab_metric = Metric.measure(measure, debiased)
    points = tradeoff(summary, method, debiased, measure, n)
    norm_band = summary.get(method, Metric.of("map_norm", debiased), 0.0, n)
    norm = norm_band.mean if norm_band else math.nan
    fid = {r: f for r, _, f in points}
    found = summary.sweep(method, stab_metric, n)
    first = summary.cells(method, stab_metric, 0.0, n)
    k = 0 if first is None else first.k
    m = 0 if first is None else first.m
    base = dict(method=method, n=n, k=k, m=m, measure=measure, debiased=debiased)
    base.update(fidelity_budget=budget, map_norm=norm)
    usable = (
        found is not None
        and found[0][0] == 0
        and len(found[0]) >= 2
        and first.pairs
        and first.complete
        and first.m >= 2
        and np.all(np.isfinite(found[1]))
        and set(found[0]) <= set(fid)
    )
    if not usable:
        levels = tuple(
            LevelAdvice(
                r,
                None,
                fid.get(r, math.nan),
                bool(fid.get(r, math.inf) <= budget * norm),
                None,
                False,
                False,
            )  # fmt: skip
            for r in summary.levels(method, stab_metric, n)
        )
        return MethodAdvice(**base, status="not measured", recommended_r=None, best_r=None,
                            best_at_sweep_edge=False, best_at_budget_edge=False, knee_r=None,
                            knee_range=None, levels=levels)  # fmt: skip
    rs, v = found
    allowed = [fid[r] <= budget * norm for r in rs]
    rec = inference.recommend(v, allowed=allowed, level=LEVEL, multiplicity=multiplicity)
    levels = []
    for j, r in enumerate(rs):
        est = summary.estimate(method, stab_metric, r, n)
        levels.append(
            LevelAdvice(
                r=r,
                stability=None if est is None else Interval.of(est),
                fidelity=fid[r],
                within_budget=rec.allowed[j],
                change=None if rec.change[j] is None else Interval.of(rec.change[j]),
                better=rec.better[j],
                near_best=rec.best.indistinguishable[j] and rec.allowed[j],
            )
        )
    knee_r = knee_range = None
    if rec.status == "smooth":
        kn = knee([p for p in points if p[0] in set(rs)])
        if kn is not None and rec.better[rs.index(kn)]:
            knee_r = kn
            fids = summary.sweep(method, Metric.fidelity(debiased), n)
            fid_values = None if fids is None or fids[0] != rs else fids[1]
            knee_range = _knee_range(rs, v, fid_values)
    return MethodAdvice(
        **base,
        status=rec.status,
        recommended_r=None if rec.recommended is None else rs[rec.recommended],
        best_r=rs[rec.best.index],
        best_at_sweep_edge=rec.best_at_sweep_edge,
        best_at_budget_edge=rec.best_at_budget_edge,
        knee_r=knee_r,
        knee_range=knee_range,
        levels=tuple(levels),
        plans=_size_plans(summary, method, n, debiased, target, costs),
    )


def attribution_cost(summary: Summary, n: int | None) -> float:
    """Model evaluations to attribute one image with one model of size ``n``: the recorded
    ``model_evals`` per image and model, summed over methods and r (0 where not recorded)."""
    total = 0.0
    for key in summary.keys():
        if key[1] == str(Metric.MODEL_EVALS) and key[3] == n:
            total += float(np.mean(summary.cells(key[0], key[1], key[2], n).values))
    return total


def advise(
    summary: Summary,
    methods: Sequence[str],
    *,
    debiased: bool,
    budget: float,
    measure: str,
    target: float = 0.02,
    training_passes: float = 0.0,
    multiplicity: str = "none",
) -> Advice:
    """The :class:`Advice` of every method at every training-set size of ``summary``. The
    plans count costs in model evaluations (forward and backward passes of one image): a
    model of size n costs ``training_passes`` per training image (epochs x weight-noise draws;
    0 for models not trained here), an image its recorded attribution cost
    (:func:`attribution_cost`)."""
    out = []
    for method in methods:
        for n in summary.sizes:
            train = 0.0 if n is None else training_passes * n
            costs = (train, attribution_cost(summary, n))
            out.append(
                method_advice(
                    summary,
                    method,
                    n,
                    debiased=debiased,
                    budget=budget,
                    measure=measure,
                    target=target,
                    costs=costs,
                    multiplicity=multiplicity,
                )
            )
    return Advice(LEVEL, multiplicity, target, tuple(out))


# --- the sanity check's pass rule --------------------------------------------------------------

# The sanity check's two similarities and the across-retraining ones they are read against.
SANITY_PAIRS = (
    ("ssim", Metric.SSIM, Metric.SANITY_SSIM),
    ("rank", Metric.RANK_AGREEMENT, Metric.SANITY_RANK),
)
# The label check's (``sanity.labels``): against the twin trained on permuted labels.
LABEL_PAIRS = (
    ("label_ssim", Metric.SSIM, Metric.SANITY_LABEL_SSIM),
    ("label_rank", Metric.RANK_AGREEMENT, Metric.SANITY_LABEL_RANK),
)


def gap_interval(
    summary: Summary, method: str, across: Metric, r: float, random: dict[int, float] | None
) -> Interval | None:
    """The similarity between retrained models minus the model's similarity to the randomised
    one, per image (``random``: ``{image: similarity}``), averaged over pairs and images, with
    its interval over the retrained models (from four; else these models) and the images; the
    randomised side is the checked model's. ``None`` where either is missing."""
    cells = summary.cells(method, across, r)
    if cells is None or not random or not cells.rectangular:
        return None
    if any(i not in random for i in cells.images):
        return None
    gap = cells.values - np.array([random[i] for i in cells.images])[None, :]
    if cells.m < 2 or not np.all(np.isfinite(gap)):
        return None
    if cells.pairs and cells.complete:
        return Interval.of(inference.pair_mean(gap))
    return Interval.of(inference.model_mean(gap, scope="these models"))


def more_stable(summary: Summary, method: str, metric: Metric, r: float, r0: float) -> bool:
    """Whether the stability error at ``r`` lies below that at ``r0`` beyond the 95% interval
    of their paired difference (over retraining from four models; else never)."""
    a, b = summary.cells(method, metric, r), summary.cells(method, metric, r0)
    if r == r0 or a is None or b is None or not (a.pairs and a.complete and a.rectangular):
        return False
    if (a.units, a.images) != (b.units, b.images) or a.m < 2 or a.k < inference.MIN_MODELS:
        return False
    if not (np.all(np.isfinite(a.values)) and np.all(np.isfinite(b.values))):
        return False
    return inference.pair_difference(a.values, b.values).sign() == -1


def sanity_verdict(gap: Interval | None) -> str:
    """One view's verdict: ``"passes"`` where the gap (retrained models' similarity minus the
    randomised model's) lies above 0 beyond its 95% interval, ``"fails"`` where its interval
    lies at or below 0 (a map identical for every model, gap 0 and width 0, fails),
    ``"undecided"`` in between or where missing."""
    if gap is None or math.isnan(gap.estimate):
        return "undecided"
    return "passes" if gap.lo > 0 else "fails" if gap.hi <= 0 else "undecided"


def combined_verdict(verdicts: Sequence[str]) -> str:
    """Several views' verdicts: passes where all pass, fails where any fails."""
    if all(v == "passes" for v in verdicts):
        return "passes"
    return "fails" if "fails" in verdicts else "undecided"


def sanity_levels(
    summary: Summary,
    random: dict[tuple[str, str, float], dict[int, float]],
    method: str,
    measure: str,
    debiased: bool,
) -> list[dict]:
    """Per r of the sanity check: the stability error (``measure``), and per view (SSIM, rank
    agreement) the mean similarity between retrained models' maps, that of the model's map to
    the randomised model's (``random``: per image,
    :func:`~smoothstab.experiments.rundir.sanity_rows.per_image_similarity`), the gap's
    interval (:func:`gap_interval`) and each view's :func:`sanity_verdict` and the level's
    (:func:`combined_verdict`; ``passes``: it is ``"passes"``), at the largest n.

    An r *passes* where, on both views, retrained models' maps agree more with each other than
    the model's map agrees with the randomised model's, beyond the 95% interval (over the
    retrained models and the images): then what stays stable across retraining is what the
    model learned, not what any network (or the image alone) gives. With the label check's rows
    (``label_*`` keys, ``label_verdict``; ``parameter_verdict`` the other's) it must pass that
    too: a map as similar to the permuted-label twin's as to another real model's does not
    depend on the labels."""
    metric = Metric.measure(measure, debiased)
    labels = any(key[1] == str(LABEL_PAIRS[0][2]) for key in random)
    out = []
    rs = sorted({key[2] for key in random if key[0] == method})
    for r in rs:
        stab = summary.get(method, metric, r)
        level: dict[str, Any] = {"r": r, "stability": stab.mean if stab else math.nan}
        level["more_stable"] = more_stable(summary, method, metric, r, rs[0])
        checks = {"parameter": SANITY_PAIRS, **({"label": LABEL_PAIRS} if labels else {})}
        for check, views in checks.items():
            for view, across, sim in views:
                retrained = summary.get(method, across, r)
                per_image = random.get((method, str(sim), r))
                gap = gap_interval(summary, method, across, r, per_image)
                level[f"{view}_retrained"] = retrained.mean if retrained else math.nan
                level[f"{view}_random"] = (
                    math.fsum(per_image.values()) / len(per_image) if per_image else math.nan
                )
                level[f"{view}_gap"] = gap
                level[f"{view}_verdict"] = sanity_verdict(gap)
            level[f"{check}_verdict"] = combined_verdict([level[f"{v}_verdict"] for v, *_ in views])
        level["verdict"] = combined_verdict([level[f"{c}_verdict"] for c in checks])
        level["passes"] = level["verdict"] == "passes"
        out.append(level)
    return out


def sanity_advice(levels: list[dict]) -> dict:
    """``most_stable_r`` and its verdict (``most_stable_verdict``; ``most_stable_passes``), the
    smallest r checked and its verdict (``first_r``, ``first_verdict``; ``first_passes``), and
    ``good_r``: the most stable r that passes and is measurably more stable than the smallest r
    checked (``more_stable``; ``None``: no such r)."""
    if not levels:
        return {"most_stable_r": None, "most_stable_passes": False, "good_r": None}
    most = min(levels, key=lambda lv: (lv["stability"], lv["r"]))
    good = [lv for lv in levels if lv["passes"] and lv.get("more_stable", False)]
    best = min(good, key=lambda lv: (lv["stability"], lv["r"])) if good else None
    return {
        "most_stable_r": most["r"],
        "most_stable_passes": most["passes"],
        "most_stable_verdict": most["verdict"],
        "first_r": levels[0]["r"],
        "first_passes": levels[0]["passes"],
        "first_verdict": levels[0]["verdict"],
        "good_r": None if best is None else best["r"],
    }

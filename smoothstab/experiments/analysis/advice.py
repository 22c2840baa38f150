"""Choosing sigma: the trade-off curve (fidelity against stability error, one point per r), its
knee, and the most stable r within a relative fidelity budget (``recommendation.json``).

Stability is measured as ``evaluation.stability_measure`` says: the scale-free unit-map
distance by default, since smoothing shrinks maps and the raw distance falls with their size
(:mod:`smoothstab.agreement`), or the paper's raw L2 distance."""

from __future__ import annotations

import math
from collections.abc import Sequence

from smoothstab.experiments.analysis.aggregate import Band, band
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Summary


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
    """The most stable r whose relative fidelity error (fidelity / ||unsmoothed map||) <= budget."""
    ok = [p for p in points if p[2] <= budget * norm]
    return min(ok, key=lambda p: (p[1], p[0]))[0] if ok else None


def recommend(
    summary: Summary,
    methods: Sequence[str],
    *,
    debiased: bool,
    budget: float,
    measure: str = "l2",
    n: int | None = None,
) -> dict:
    """Per method: the knee r, the most stable r within the fidelity budget, and the curve,
    from the debiased (else plain) curves of training-set size ``n`` (the largest by default),
    stability in ``measure``; both depend on the range of r swept."""
    out = {}
    n = summary.default_n if n is None else n
    for method in methods:
        points = tradeoff(summary, method, debiased, measure, n)
        norm_band = summary.get(method, Metric.MAP_NORM, 0.0, n)
        norm = norm_band.mean if norm_band else float("nan")
        out[method] = {
            "knee_r": knee(points),
            "budget_r": within_budget(points, norm, budget),
            "fidelity_budget": budget,
            "map_norm": norm,
            "curve": [{"r": r, "stability": s, "fidelity": f} for r, s, f in points],
            "estimate": "debiased" if debiased else "plain",
            "stability_measure": measure,
            "n": n,
        }
    return out


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


def sanity_verdict(retrained: Band | None, random: Band | None) -> str:
    """One view's verdict: ``"passes"`` where the similarity to the randomised model lies below
    the retrained models' by more than the half-width of their difference's 95% interval (the
    two bands' half-widths combined as independent), ``"fails"`` where it lies above by at least
    that much (a map identical for every model, half-width 0, fails), ``"undecided"`` in
    between or where either is missing (``None`` or nan)."""
    if retrained is None or random is None or math.isnan(retrained.mean + random.mean):
        return "undecided"
    half = math.hypot(retrained.hi - retrained.mean, random.hi - random.mean)
    gap = retrained.mean - random.mean
    return "passes" if gap > half else "fails" if gap <= -half else "undecided"


def combined_verdict(verdicts: Sequence[str]) -> str:
    """Several views' verdicts: passes where all pass, fails where any fails."""
    if all(v == "passes" for v in verdicts):
        return "passes"
    return "fails" if "fails" in verdicts else "undecided"


def sanity_levels(
    summary: Summary, similar: dict, method: str, measure: str, debiased: bool
) -> list[dict]:
    """Per r of the sanity check: the stability error (``measure``), and per view (SSIM, rank
    agreement) the similarity between retrained models' maps and that of the model's map to the
    randomised model's (``similar``: :func:`~smoothstab.experiments.rundir.sanity_rows.similarity`,
    bands), at the largest n, each view's :func:`sanity_verdict` and the level's
    (:func:`combined_verdict`; ``passes``: it is ``"passes"``).

    An r *passes* where, on both views, retrained models' maps agree more with each other than
    the model's map agrees with the randomised model's, by more than the 95% interval (over
    model pairs, and over images): then what stays stable across retraining is what the model
    learned, not what any network (or the image alone) gives. With the label check's rows
    (``label_*`` keys, ``label_verdict``; ``parameter_verdict`` the other's) it must pass that
    too: a map as similar to the permuted-label twin's as to another real model's does not
    depend on the labels."""
    metric = Metric.measure(measure, debiased)
    labels = any(key[1] == str(LABEL_PAIRS[0][2]) for key in similar)
    out = []
    for r in sorted({key[2] for key in similar if key[0] == method}):
        stab = summary.get(method, metric, r)
        level = {"r": r, "stability": stab.mean if stab else math.nan}
        checks = {"parameter": SANITY_PAIRS, **({"label": LABEL_PAIRS} if labels else {})}
        for check, views in checks.items():
            for view, across, sim in views:
                pairs = list(summary.per_pair_or_model(method, across, r).values())
                retrained = band(pairs, "t95") if pairs else None
                random = similar.get((method, str(sim), r))
                level[f"{view}_retrained"] = retrained.mean if retrained else math.nan
                level[f"{view}_random"] = random.mean if random else math.nan
                level[f"{view}_verdict"] = sanity_verdict(retrained, random)
            level[f"{check}_verdict"] = combined_verdict([level[f"{v}_verdict"] for v, *_ in views])
        level["verdict"] = combined_verdict([level[f"{c}_verdict"] for c in checks])
        level["passes"] = level["verdict"] == "passes"
        out.append(level)
    return out


def sanity_advice(levels: list[dict]) -> dict:
    """``most_stable_r`` and its verdict (``most_stable_verdict``; ``most_stable_passes``), the
    smallest r checked and its verdict (``first_r``, ``first_verdict``; ``first_passes``), and
    ``good_r``: the most stable r that passes and is more stable than the smallest r checked
    (``None``: no such r)."""
    if not levels:
        return {"most_stable_r": None, "most_stable_passes": False, "good_r": None}
    most = min(levels, key=lambda lv: (lv["stability"], lv["r"]))
    base = levels[0]["stability"]
    good = [lv for lv in levels if lv["passes"] and lv["stability"] < base]
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

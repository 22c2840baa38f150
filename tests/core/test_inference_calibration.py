"""Calibration of the intervals the report shows, by simulation, through the public API of
:mod:`smoothstab.inference` only.

Simulated runs (``crossed_runs.py``): models that differ in quality and in how much smoothing
helps them, images that differ in signal and noise, each map a Monte-Carlo mean over 64 draws
compared by the debiased unit-map distance, common random numbers across models. Per cell
(k models, m images) 500 independent runs at r = 0 and 0.2, and the coverage of the true value
(E over new models, images and draws, from 60000 independent cells; its standard error is
checked to be small beside the intervals) by every interval the report shows:

* from four models, over retraining: the mean over pairs (Table 1, curve bands), the paired
  difference D(r) = u(r) - u(0) (the advice), the relative change (the verdict), the mean over
  models (fidelity curves), the difference between two independent sets of models on the same
  images (per-n tables);
* with two and three models, over images for these models: the same, against the value for
  the given models (E over new images and draws, the models fixed; 25 model sets x 20 runs);
* the paper's band (a t interval over pair means) fails the same criterion;
* a flat stability curve recommends no smoothing.

Criterion (issue 31): at least 93% pooled over the cells of an interval and no cell below 90%.

Binomial tolerances, with 500 runs per cell: a cell whose true coverage is 95% falls below 90%
with probability 1.6e-6, one at 93% with 0.005. Pooled over 6 cells (3000 runs), a true 95%
falls below 93% with probability 2e-5, a true 94% with 0.03. The coverage this estimator really
has here is about 93-95% per cell (the prototype's 1000-run cells and this file's own), so the
93% bar has a margin of about one point: the seeds are fixed, making the test deterministic,
and the numbers it found are printed and quoted in docs/estimators.md. The flat curve: true
rate about 98%, 150 runs, P(below 90%) ~ 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest

from crossed_runs import R_LEVELS, SCENARIOS, draw_models, simulate, truth
from smoothstab import inference as inf
from smoothstab.experiments.analysis.aggregate import band

pytestmark = pytest.mark.slow

REPS = 500
LEVELS = (0.0, 0.2)
RETRAINING = [(k, m) for k in (4, 6, 8) for m in (16, 64)]
FEW = [(k, m) for k in (2, 3) for m in (16, 64)]
MAIN = SCENARIOS["main"]


def covers(e: inf.MeanEstimate, value: float) -> bool:
    lo, hi = e.interval(0.95)
    return lo <= value <= hi


def criterion(cov: dict, name: str) -> None:
    pooled = float(np.mean(list(cov.values())))
    print(
        f"{name}: pooled {100 * pooled:.1f}%, cells", {c: f"{100 * v:.1f}" for c, v in cov.items()}
    )
    assert pooled >= 0.93, (name, pooled, cov)
    assert min(cov.values()) >= 0.90, (name, cov)


@pytest.fixture(scope="module")
def population():
    t = truth(MAIN, LEVELS, cells=60000)
    # the truth's own Monte-Carlo error is small beside any interval tested (half-widths > 0.01)
    assert max(t["theta_se"][1], t["D_se"][1], t["rel_se"][1], t["fid_se"][1]) < 0.0015
    return t


@pytest.fixture(scope="module")
def retraining(population):
    """Coverage per estimand and (k, m) cell, models new in every run."""
    out: dict[str, dict] = {}
    for k, m in RETRAINING:
        sim = simulate(MAIN, k, m, LEVELS, REPS, seed=100 * k + m)
        pair, fid = sim["pair"], sim["fid"]
        hits = {n: 0 for n in ("pair mean", "difference", "relative change", "model mean")}
        hits["paper's band"] = 0
        for b in range(REPS):
            v0, v1 = pair[b, 0], pair[b, 1]
            hits["pair mean"] += covers(inf.pair_mean(v1), population["theta"][1])
            hits["difference"] += covers(inf.pair_difference(v1, v0), population["D"][1])
            hits["relative change"] += covers(inf.relative_change(v1, v0), population["rel"][1])
            hits["model mean"] += covers(inf.model_mean(fid[b, 1]), population["fid"][1])
            old = band(v1.mean(1).tolist(), "t95")
            hits["paper's band"] += old.lo <= population["theta"][1] <= old.hi
        for name, h in hits.items():
            out.setdefault(name, {})[(k, m)] = h / REPS
    return out


@pytest.mark.parametrize("name", ["pair mean", "difference", "relative change", "model mean"])
def test_intervals_over_retraining_cover(retraining, name):
    criterion(retraining[name], name)


def test_the_papers_band_over_pairs_fails(retraining):
    """The t interval over pair means treats pairs as independent: it covers less the more
    models there are (about 65% at four, 50% at six, 45% at eight here)."""
    cov = retraining["paper's band"]
    print("paper's band:", {c: f"{100 * v:.1f}" for c, v in cov.items()})
    assert np.mean(list(cov.values())) < 0.80
    assert max(cov[(8, m)] for m in (16, 64)) < 0.70


def test_two_sets_of_models_on_the_same_images():
    """The per-n comparison: two independent sets of k models (here from one population, so
    the true difference is 0) on the same images and draws."""
    cov = {}
    for k, m in RETRAINING[:4]:
        sim = simulate(MAIN, 2 * k, m, (0.2,), REPS, seed=7 + 100 * k + m)
        a, b = inf.pair_index(2 * k)
        first, second = (a < k) & (b < k), (a >= k) & (b >= k)
        hit = 0
        for v in sim["pair"][:, 0]:
            hit += covers(inf.sets_difference(v[first], v[second]), 0.0)
        cov[(k, m)] = hit / REPS
    criterion(cov, "difference between sets")


def test_few_models_cover_the_value_for_these_models():
    """Two and three models: the interval over images and draws covers these models' value
    (E over new images and draws with the models fixed)."""
    rng = np.random.default_rng(31)
    cov: dict[str, dict] = {}
    for k, m in FEW:
        hits: dict[str, int] = {"pair mean": 0, "difference": 0, "relative change": 0}
        hits["model mean"] = 0
        runs = 0
        for s in range(25):
            models = draw_models(MAIN, k, rng)
            t = truth(MAIN, LEVELS, cells=6000, seed=1000 + s, models=models)
            sim = simulate(MAIN, k, m, LEVELS, 20, seed=rng.integers(1 << 30), models=models)
            for b in range(20):
                v0, v1 = sim["pair"][b, 0], sim["pair"][b, 1]
                e = inf.pair_mean(v1)
                assert e.scope == "these models" and e.too_few_models
                hits["pair mean"] += covers(e, t["theta"][1])
                hits["difference"] += covers(inf.pair_difference(v1, v0), t["D"][1])
                hits["relative change"] += covers(inf.relative_change(v1, v0), t["rel"][1])
                hits["model mean"] += covers(inf.model_mean(sim["fid"][b, 1]), t["fid"][1])
                runs += 1
        for name, h in hits.items():
            cov.setdefault(name, {})[(k, m)] = h / runs
    for name, c in cov.items():
        criterion(c, f"{name} (these models)")


def test_a_flat_curve_recommends_no_smoothing():
    """Smoothing changes nothing, only the Monte-Carlo noise grows with r: no smoothing in at
    least 90% of runs (about 98% expected)."""
    k, m, reps = 6, 32, 150
    sim = simulate(SCENARIOS["flat"], k, m, R_LEVELS, reps, seed=7)
    found = [inf.recommend(sim["pair"][b]).status for b in range(reps)]
    share = np.mean([s == "no smoothing" for s in found])
    print(f"flat curve: no smoothing in {100 * share:.1f}% of {reps} runs")
    assert share >= 0.90

"""Error-controlled smoothing: standard errors of smoothed maps, a tolerance instead of a sample
count, and interval estimates of distances that hold their nominal coverage."""

from __future__ import annotations

import functools

import pytest
import torch

import smoothstab as ss
from helpers import TINY_SETTINGS, ConvNet, make
from smoothstab.montecarlo import Tolerance
from smoothstab.stats import SmoothStats

CAM = functools.partial(ss.grad_cam, layer="features.3")


@pytest.fixture
def x():
    return torch.randn(6, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


def test_rel_se_is_the_norm_of_the_standard_error_map(convnet, x):
    st = ss.smooth(ss.grad, 0.4, 12, seed=0).stats(convnet, x)
    se = (st.unit_var / 12).sqrt()
    torch.testing.assert_close(st.se, se)
    err_sq = se.flatten(1).norm(dim=1) ** 2
    want = (err_sq / (st.mean.flatten(1).norm(dim=1) ** 2 - err_sq)).sqrt()
    torch.testing.assert_close(st.rel_se, want)
    exact = SmoothStats.exact(st.mean)
    assert exact.rel_se.eq(0).all()
    assert torch.equal(st.draws_per_image, torch.full((6,), 12))


def test_rel_se_of_a_zero_map():
    zero = torch.zeros(2, 1, 2, 2)
    var = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2)
    st = SmoothStats(zero, None, None, var.clone(), 4)
    assert st.rel_se.tolist() == [0.0, float("inf")]


CASES = {  # (the smoothed method, a tolerance at which the six images stop apart)
    "grad": (lambda **kw: ss.smooth(ss.grad, 0.5, **kw), 0.2),
    "gradcam": (lambda **kw: ss.smooth(CAM, 0.5, **kw), 0.1),
    "ig_nested": (lambda **kw: ss.smoothed_ig(0.5, steps=3, **kw), 0.2),
    "grad_antithetic": (lambda **kw: ss.smooth(ss.grad, 0.5, antithetic=True, **kw), 0.2),
}


@pytest.mark.parametrize("name", CASES)
def test_an_adaptive_map_is_the_fixed_n_map_of_the_units_it_used(convnet, x, name):
    """Canonical draws: an image that stopped after n samples has exactly the map (halves and
    variances too) of a fixed n-sample call with the same seed, whatever batch_size is."""
    make_it, tol = CASES[name]
    adaptive = make_it(tol=tol, min_samples=8, max_samples=200, seed=3, batch_size=7)
    st = adaptive.stats(convnet, x)
    assert st.converged.all() and len(set(st.units.tolist())) > 1  # images stopped apart
    for n in set(st.draws_per_image.tolist()):
        fixed = make_it(n_samples=n, seed=3).stats(convnet, x)
        rows = st.draws_per_image == n
        assert torch.equal(fixed.mean[rows], st.mean[rows])
        assert torch.equal(fixed.halves[:, rows], st.halves[:, rows])
        torch.testing.assert_close(fixed.unit_var[rows], st.unit_var[rows], rtol=1e-9, atol=0)
    assert (st.rel_se <= tol).all()
    torch.testing.assert_close(adaptive(convnet, x), st.mean)


def test_joint_ig_first_round_is_the_fixed_n_estimate(convnet, x):
    """The joint sampler stratifies the path position within each round; an image that stops in
    the first round has the fixed-n estimate exactly."""
    st = ss.smoothed_ig(0.5, tol=10.0, min_samples=10, sampler="joint", seed=1).stats(convnet, x)
    assert st.units.eq(10).all() and st.converged.all()
    fixed = ss.smoothed_ig(0.5, 10, sampler="joint", seed=1).stats(convnet, x)
    assert torch.equal(fixed.mean, st.mean)


def test_converged_images_cost_no_more_evaluations(convnet, x):
    seen = torch.zeros(len(x), dtype=torch.long)

    def counting(model, xs, target):
        seen.index_add_(0, counting.b, torch.ones_like(counting.b))
        return ss.grad(model, xs, target)

    def rows(model, xs, target):  # the engine calls with rows of images; find which ones
        counting.b = torch.cdist(xs.flatten(1), x.flatten(1)).argmin(dim=1)
        return counting(model, xs, target)

    sm = ss.smooth(rows, 0.5, tol=0.2, min_samples=8, max_samples=400, seed=0)
    st = sm.stats(convnet, x)
    assert torch.equal(seen, st.draws_per_image)  # each image's rows are exactly its own units
    assert st.draws_per_image.min() < st.draws_per_image.max()


def test_unconverged_images_stop_at_max_samples(convnet, x):
    st = ss.smooth(ss.grad, 0.5, tol=1e-6, min_samples=4, max_samples=30, seed=0).stats(convnet, x)
    assert st.units.eq(30).all() and not st.converged.any() and st.n_units == 30
    fixed = ss.smooth(ss.grad, 0.5, 30, seed=0).stats(convnet, x)
    assert torch.equal(fixed.mean, st.mean)


def test_adaptive_joint_ig_is_unbiased():
    """Rounds stratified each on their own estimate what one stratified round does: over 1000
    independent copies of an image, the mean of 64-unit joint-IG maps drawn in rounds (tol is
    never met, so every copy runs 16, 20, 26, ..., 64 units) and of fixed 64-unit maps (one
    round, unbiased) agree within 4 standard errors, on the map's sum and on one element."""
    model = make(ConvNet(1, 5, 4))
    one = torch.randn(1, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    copies = one.expand(1000, -1, -1, -1).clone()
    kw = dict(sampler="joint", batch_size=8192)
    rounds = ss.smoothed_ig(0.5, tol=1e-9, min_samples=16, max_samples=64, seed=0, **kw)
    st = rounds.stats(model, copies)
    assert st.units.eq(64).all()
    fixed = ss.smoothed_ig(0.5, 64, seed=1, **kw).stats(model, copies)
    for stat in (lambda m: m.flatten(1).sum(1), lambda m: m.flatten(1)[:, 20]):
        a, b = stat(st.mean), stat(fixed.mean)
        se = ((a.var() + b.var()) / len(a)).sqrt()
        assert abs(a.mean() - b.mean()) < 4 * se


@pytest.mark.parametrize("groups", [2, 4, 16])
@pytest.mark.parametrize("rounds", [False, True])
def test_joint_path_positions_are_stratified_within_each_group(groups, rounds, monkeypatch):
    """Every group of units is an unbiased estimate on its own only if its path positions
    cover [0, 1] stratum by stratum: within each round, the ``a`` of each group's ``m`` units
    fall one in each of ``[k/m, (k+1)/m)`` (a group that saw only every (G/2)-th stratum of its
    half was biased: -2.0% on a squared fidelity distance at G = 16)."""
    from smoothstab import montecarlo as mc

    seen, spans = [], []
    plain_round = mc._round

    def recording_round(fn, x, sigma, draws, acc, first, stop, images, **kw):
        spans.append((first, stop))
        return plain_round(fn, x, sigma, draws, acc, first, stop, images, **kw)

    def fn(xs, b, j, u):
        seen.append(torch.stack([j.double(), u]))
        return xs

    monkeypatch.setattr(mc, "_round", recording_round)
    x = torch.zeros(64, 1, 2, 2, dtype=torch.float64)
    kw = dict(sigma=1.0, seed=0, uniform=True, stratify=True, groups=groups, batch_size=200)
    if rounds:  # never converges: every image runs every round up to 80 units
        mc.monte_carlo(fn, x, tolerance=mc.Tolerance(1e-12, 32, 80), **kw)
        assert len(spans) >= 2
    else:
        mc.monte_carlo(fn, x, n_samples=48, **kw)
    j, u = torch.cat(seen, dim=1)
    for first, stop in spans:
        for g in range(groups):
            mine = (j >= first) & (j < stop) & (j % groups == g)
            per_image = u[mine].view(-1, 64)  # unit-major rows: one row per unit
            m = per_image.shape[0]
            cells = (per_image * m).floor()
            ranks = cells.long().sort(dim=0).values
            assert torch.equal(ranks, torch.arange(m).view(-1, 1).expand(m, 64)), (first, stop, g)
            # ... and anywhere in its stratum, not in a fixed part of it (a group that takes
            # every (G/2)-th stratum of its half lands in one (G/2)-th of each of its own)
            within = per_image * m - cells  # 64 or more uniforms in [0, 1)
            assert within.min() < 0.1 and within.max() > 0.9, (first, stop, g)


@pytest.mark.parametrize("t", [0.05, 0.5, 1.0, 2.0, 4.0])
def test_rel_se_reads_the_true_relative_error_of_noisy_maps(t):
    """A map ``a`` (||a|| = 1 per element on average) plus noise whose mean over 64 units has
    relative RMS error ``t``: ``rel_se`` reads ``t`` however large (each of 8 images of
    3 x 64 x 64 elements within 20%, their mean within 5%); ``||se|| / ||mean||`` read
    ``t / sqrt(1 + t^2)`` (0.97 for 4)."""
    from smoothstab.montecarlo import monte_carlo

    gen = torch.Generator().manual_seed(7)
    a = torch.randn(8, 3, 64, 64, dtype=torch.float64, generator=gen).sign()
    n = 64
    st = monte_carlo(lambda xs, b, j, u: xs, a, sigma=t * n**0.5, n_samples=n, seed=1,
                     batch_size=4096)  # fmt: skip
    rel = st.rel_se
    assert rel.shape == (8,) and torch.isfinite(rel).all()
    assert ((rel / t) - 1).abs().max() < 0.2, rel  # measured: within 11.5% at t = 4
    assert abs(rel.mean() / t - 1) < 0.05, rel


def test_rel_se_of_a_map_indistinguishable_from_zero_is_inf():
    """Pure noise around a zero map: the estimated size is clamped at 0 and ``rel_se`` is inf
    where ``||mean||^2 <= ||se||^2``; an exact map has 0."""
    from smoothstab.montecarlo import monte_carlo

    zero = torch.zeros(64, 1, 4, 4, dtype=torch.float64)
    st = monte_carlo(lambda xs, b, j, u: xs, zero, sigma=1.0, n_samples=8, seed=0)
    size_sq = st.mean.flatten(1).norm(dim=1) ** 2 - st.mean_var.flatten(1).sum(dim=1)
    assert (size_sq <= 0).any() and (size_sq > 0).any()
    assert torch.isinf(st.rel_se[size_sq <= 0]).all()
    assert torch.isfinite(st.rel_se[size_sq > 0]).all()
    assert SmoothStats.exact(zero).rel_se.eq(0).all()


def test_mean_over_pairs_se_covers_pairs_that_share_models():
    """Three models, their three pairs: pair (0, 1) and pair (0, 2) share model 0's Monte-Carlo
    error, so the mean over pairs has a larger error than independent pairs would. Over 4000
    trials (the image axis), the s.e. the summary reports for that mean is at least its
    empirical standard deviation (measured 1.42x), and the independent-pairs figure falls short
    of it (0.83x)."""
    from smoothstab.experiments.analysis.summary import mean_of_correlated_se
    from smoothstab.montecarlo import monte_carlo

    gen = torch.Generator().manual_seed(3)
    maps = [torch.randn(1, 50, dtype=torch.float64, generator=gen) for _ in range(3)]
    stats = [  # each model's map with its own draws, 16 groups
        monte_carlo(
            lambda xs, b, j, u: xs,
            m.expand(4000, -1),
            sigma=0.5,
            n_samples=32,
            seed=10 + k,
            groups=16,
        )  # fmt: skip
        for k, m in enumerate(maps)
    ]
    pairs = [ss.debiased_distance(stats[i], stats[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    mean_over_pairs = torch.stack([p.plain for p in pairs]).mean(dim=0)
    empirical = float(mean_over_pairs.std())
    ses = torch.stack([p.stderr for p in pairs])  # [3 pairs, trials]
    bound = sum(mean_of_correlated_se(ses[:, t].tolist()) for t in range(4000)) / 4000
    independent = float((ses.pow(2).sum(dim=0).sqrt() / 3).mean())
    assert bound >= 0.97 * empirical, (bound, empirical)
    assert independent < 0.9 * empirical, (independent, empirical)


def test_debiased_distance_with_per_image_counts(convnet, x):
    """Maps that stopped at different counts: the split-half variance uses each image's own
    count, and two maps with different counts fall back to independent variances."""
    a = ss.smooth(ss.grad, 0.5, tol=0.2, min_samples=8, seed=3).stats(convnet, x)
    ref = ss.grad(convnet, x)
    est = ss.debiased_distance(a, ref)
    for n in set(a.units.tolist()):
        rows = a.units == n
        fixed = ss.debiased_distance(ss.smooth(ss.grad, 0.5, n, seed=3).stats(convnet, x), ref)
        torch.testing.assert_close(est.stderr[rows], fixed.stderr[rows])
    assert len(set(a.units.tolist())) > 1
    b = ss.smooth(ss.grad, 0.5, tol=0.3, min_samples=8, seed=4).stats(convnet, x)
    assert torch.isfinite(ss.debiased_distance(a, b).stderr).all()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(tol=0.0), "tol: expected a finite number > 0"),
        (dict(tol=-1.0), "tol: expected"),
        (dict(tol=float("nan")), "tol: expected"),
        (dict(tol=float("inf")), "tol: expected"),
        (dict(tol=True), "tol: expected"),
        (dict(tol=0.1, min_samples=50, max_samples=20), "min_samples: expected at most"),
        (dict(tol=0.1, min_samples=0), "min_samples: expected"),
        (dict(tol=0.1, min_samples=1, max_samples=1), "max_samples: expected at least 2"),
        (
            dict(tol=0.1, min_samples=2, max_samples=3, antithetic=True),
            "max_samples: expected at least 4",
        ),
        (dict(n_samples=8, tol=0.1), "n_samples: expected either"),
        (dict(), "n_samples: expected a number of samples or a tolerance"),
        (dict(n_samples=8, max_samples=20), "max_samples: only with tol="),
        (dict(n_samples=8, groups=3), "groups: expected an even number"),
        (dict(n_samples=8, groups=16), "groups: expected at most the 8 units of n_samples, got 16"),
        (dict(tol=0.1, groups=0), "groups: expected an integer >= 2"),
    ],
)
def test_bad_tolerances_fail_at_once(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ss.smooth(ss.grad, 0.5, **kwargs)


def test_tolerance_schedule():
    t = Tolerance(0.02, min_samples=10, max_samples=101)
    assert t.unit_range(False) == (10, 101) and t.unit_range(True) == (6, 50)
    # the closest needs (0.03 / 0.02)^2 = 2.25x the units: 22.5, +5% margin, even: 24
    assert t.next_stop(10, torch.tensor([0.03, 0.1]), 101) == 24
    assert t.next_stop(10, torch.tensor([0.1]), 101) == 40  # at most growth = 4x
    assert t.next_stop(10, torch.tensor([0.021]), 101) == 14  # at least 1.25x
    assert t.next_stop(80, torch.tensor([float("inf")]), 101) == 101  # capped at the most


def _coverage(est, truth) -> float:
    lo, hi = est.interval(0.95)
    return ((lo <= truth) & (truth <= hi)).double().mean().item()


def _coverage_per_image(est, truth) -> list[float]:
    """Coverage of each image over its copies (rows ``i, i + B, i + 2B, ...``)."""
    lo, hi = est.interval(0.95)
    b = len(truth)
    hit = (lo.view(-1, b) <= truth) & (truth <= hi.view(-1, b))
    return hit.double().mean(dim=0).tolist()


COVERAGE_CASES = {
    "smooth_grad": (lambda n, s: ss.smooth(ss.grad, 0.5, n, seed=s, groups=16), ss.grad),
    "ig_nested": (
        lambda n, s: ss.smoothed_ig(0.5, n, steps=3, seed=s, groups=16),
        functools.partial(ss.integrated_gradients, steps=3),
    ),
    "ig_joint": (
        lambda n, s: ss.smoothed_ig(0.5, n, sampler="joint", seed=s, groups=16),
        functools.partial(ss.integrated_gradients, steps=64, rule="gausslegendre"),
    ),
    "grad_cam": (lambda n, s: ss.smooth(CAM, 0.5, n, seed=s, groups=16), CAM),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", COVERAGE_CASES)
def test_nominal_95_percent_intervals_cover_the_truth(name):
    """Coverage over 2000 independent trials (4 images x 500 copies, each copy with its own
    draws; float64, 64 samples in 16 groups): the 95% interval of (a) the distance of a smoothed
    map to the model's unsmoothed map and (b) the debiased stability distance between two models
    (common random numbers) covers the truth, the same distance between 2000-sample maps, in at
    least 93% of trials. And the standard-error map is honest: the mean over trials of
    ``||mean - reference||^2 / ||se||^2`` is near 1 (the reference's own noise adds 3%; for
    the joint sampler, whose strata the per-unit variance ignores, at most 1)."""
    make_it, unsmoothed = COVERAGE_CASES[name]
    ma, mb = make(ConvNet(1, 5, 4), seed=0), make(ConvNet(1, 5, 4), seed=1)
    x = torch.randn(4, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(4)
    ra, rb = make_it(2000, 100).stats(ma, x, y), make_it(2000, 101).stats(mb, x, y)
    u = unsmoothed(ma, x, y)
    true_fid = ss.debiased_distance(ra, u).value
    true_stab = ss.debiased_distance(ra, rb).value
    rep = lambda t: t.repeat(500, *([1] * (t.ndim - 1)))  # noqa: E731
    sa, sb = make_it(64, 7).stats(ma, rep(x), rep(y)), make_it(64, 7).stats(mb, rep(x), rep(y))
    fidelity, stability = ss.debiased_distance(sa, rep(u)), ss.debiased_distance(sa, sb)
    assert fidelity.dof == stability.dof == 15
    for est, truth in ((fidelity, true_fid), (stability, true_stab)):
        assert _coverage(est, rep(truth)) >= 0.93
        assert min(_coverage_per_image(est, truth)) >= 0.90
    err2 = (sa.mean - rep(ra.mean)).flatten(1).square().sum(1)
    ratio = (err2 / sa.mean_var.flatten(1).sum(1)).mean().item()
    assert (0.5 if name == "ig_joint" else 0.9) <= ratio <= 1.15


# --- the pipeline ---------------------------------------------------------------------------------


def test_attribution_tolerance_is_checked_at_config_load():
    from smoothstab.experiments.config.tables import AttributionConfig

    assert AttributionConfig(tolerance=0.05).tolerance == 0.05
    for kwargs, message in [
        (dict(tolerance=0.0), "tolerance: expected a finite number > 0"),
        (dict(tolerance=float("nan")), "tolerance: expected"),
        (dict(tolerance=0.1, min_samples=50, max_samples=20), "min_samples: expected at most"),
        (dict(tolerance=0.1, min_samples=0), "min_samples: expected an integer >= 1"),
        (dict(tolerance=0.1, max_samples=3, min_samples=2, antithetic=True), "max_samples"),
        (dict(groups=3), "groups: expected an even number"),
        (dict(groups=0), "groups: expected an integer >= 2"),
        (dict(n_samples=10, groups=12), "at most the 10 units of n_samples, got 12"),
        (dict(tolerance=0.1, max_samples=40, antithetic=True, groups=32), "at most the 20"),
    ]:
        with pytest.raises(ValueError, match=message):
            AttributionConfig(**kwargs)


def test_map_files_keep_the_error_and_cost(convnet, x, tmp_path):
    from smoothstab.experiments.analysis.measures import Metric
    from smoothstab.experiments.analysis.per_image import LevelMaps, cost_measures
    from smoothstab.experiments.rundir.mapfile import MapFile

    st = ss.smoothed_ig(0.5, tol=0.2, min_samples=8, steps=3, seed=0).stats(convnet, x)
    blocks, parts = [], []
    for i, rows in enumerate((slice(0, 4), slice(4, 6))):
        part = ss.smoothed_ig(0.5, tol=0.2, min_samples=8, steps=3, seed=0).stats(convnet, x[rows])
        parts.append(part)
        f = MapFile.from_stats(part, 0.1, 0.5, keep=True, per_sample=3)
        blocks.append(MapFile.load(f.save(tmp_path / f"b{i}.pt")))
    joined = MapFile.join(blocks)
    torch.testing.assert_close(joined.rel_se, torch.cat([b.rel_se for b in blocks]))
    assert torch.equal(joined.evals, joined.units * 3) and joined.converged.all()
    est = joined.estimate()
    for name in ("mean_var", "units", "halves"):  # per-image counts survive the blocks
        dim = 1 if name == "halves" else 0
        want = torch.cat([getattr(p, name) for p in parts], dim=dim)
        torch.testing.assert_close(getattr(est, name), want, rtol=0, atol=0)
    torch.testing.assert_close(est.rel_se, joined.rel_se)
    level = LevelMaps("ig", 0.1, 0.5, [est], [st.mean], [joined.rel_se], [joined.evals], [],
                      debiased=True, topk=1)  # fmt: skip
    rows = list(cost_measures(level))
    assert [g.metric for g in rows] == [Metric.REL_SE, Metric.MODEL_EVALS]
    assert torch.equal(rows[1].values, 3 * joined.units) and rows[0].model == 0
    exact = MapFile.from_stats(SmoothStats.exact(st.mean), 0.0, 0.0, keep=True, per_sample=3)
    assert exact.rel_se.eq(0).all() and exact.evals.eq(3).all()


def test_map_files_of_an_earlier_version_are_refused(convnet, x, tmp_path):
    """A map file without the record of what it holds (written by an earlier version, which
    kept ``mean_var``) is refused in one line naming it, not read as a map of this run."""
    from smoothstab.experiments.io.files import DamagedFile
    from smoothstab.experiments.rundir.mapfile import MapFile

    st = ss.smooth(ss.grad, 0.5, tol=0.2, min_samples=8, seed=0, groups=4).stats(convnet, x)
    old = dict(mean=st.mean, r=0.1, sigma=0.5, n_units=st.n_units, halves=st.halves,
               mean_var=st.mean_var, rel_se=st.rel_se, evals=st.draws_per_image, units=st.units,
               converged=st.converged, groups=st.groups)  # fmt: skip
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(DamagedFile, match=r"old\.pt: not a map file of this version"):
        MapFile.load(tmp_path / "old.pt")


@pytest.mark.slow
def test_a_run_with_a_tolerance_reports_its_cost(tmp_path):
    """A tiny quickstart with ``attribution.tolerance``: the metrics table has a relative standard
    error and a cost per model and image, the maps that met the tolerance are within it, and
    the report gives the evaluations spent per method and r."""
    from smoothstab.experiments.analysis.measures import Metric
    from smoothstab.experiments.cli import main
    from smoothstab.experiments.rundir.metrics_table import read_rows

    sets = [*TINY_SETTINGS, "attribution.methods=['grad']", "attribution.tolerance=0.2"]
    sets += ["attribution.min_samples=8", "attribution.max_samples=64", "attribution.groups=4"]
    args = ["run", "--out", str(tmp_path), "--quiet", "--stages", "train", "attribute"]
    assert (
        main([*args, "evaluate", "figures", "report", *(a for s in sets for a in ("--set", s))])
        == 0
    )
    rows = read_rows(tmp_path / "metrics.parquet")
    rel = [r for r in rows if r["metric"] == Metric.REL_SE and r["r"] > 0]
    evals = [r for r in rows if r["metric"] == Metric.MODEL_EVALS and r["r"] > 0]
    assert len(rel) == len(evals) == 2 * 4 * 4  # models x images x r > 0 (table_r too)
    for a, e in zip(rel, evals, strict=True):
        assert 8 <= e["value"] <= 64 and (a["value"] <= 0.2 or e["value"] == 64)
    report = (tmp_path / "report.md").read_text()
    assert "## Monte-Carlo error and cost" in report and "maps within 0.2" in report


def test_groups_split_the_units_and_give_t_intervals(convnet, x):
    st = ss.smooth(ss.grad, 0.5, 16, seed=0, groups=4).stats(convnet, x)
    assert st.groups.shape == (4, *x.shape)
    torch.testing.assert_close(st.groups.mean(0), st.mean)  # 4 units in each group
    torch.testing.assert_close(st.groups[0::2].mean(0), st.halves[0])  # even units: half 0
    est = ss.debiased_distance(st, ss.grad(convnet, x))
    assert est.dof == 3
    lo, hi = est.interval(0.95)
    wide = 3.182446  # Student's t, 3 degrees of freedom, 97.5%
    torch.testing.assert_close(hi - est.value, wide * est.stderr)
    assert (lo >= 0).all() and (lo <= est.value).all()
    halves = ss.debiased_distance(ss.smooth(ss.grad, 0.5, 16, seed=0).stats(convnet, x), st.mean)
    assert halves.dof is None
    with pytest.raises(ValueError, match="groups: expected at most the 16 units"):
        ss.smooth(ss.grad, 0.5, 16, groups=32).stats(convnet, x)
    with pytest.raises(ValueError, match="level: expected"):
        est.interval(1.0)
    adaptive = ss.smooth(ss.grad, 0.5, tol=0.2, min_samples=8, groups=4, seed=3).stats(convnet, x)
    for n in set(adaptive.units.tolist()):  # per-image group counts
        rows = adaptive.units == n
        fixed = ss.smooth(ss.grad, 0.5, n, groups=4, seed=3).stats(convnet, x)
        torch.testing.assert_close(fixed.groups[:, rows], adaptive.groups[:, rows])


def test_map_files_keep_groups_for_the_distances(convnet, x, tmp_path):
    """With groups, a map file's estimate gives distances the group standard errors."""
    from smoothstab.experiments.rundir.mapfile import MapFile

    st = ss.smooth(ss.grad, 0.5, 16, seed=0, groups=4).stats(convnet, x)
    f = MapFile.from_stats(st, 0.1, 0.5, keep=True)
    joined = MapFile.join([MapFile.load(f.save(tmp_path / "m.pt"))])
    assert joined.groups.shape == (4, *x.shape)
    est = ss.debiased_distance(joined.estimate(), ss.grad(convnet, x))
    want = ss.debiased_distance(st, ss.grad(convnet, x))
    assert est.dof == want.dof == 3
    torch.testing.assert_close(est.stderr, want.stderr)


@pytest.mark.slow
def test_intervals_cover_a_distance_smaller_than_its_standard_error():
    """Low signal to noise: two nearly identical models (the second's weights moved by 1e-3)
    with independent draws, so the true stability distance is below its standard error. The
    95% interval, clamped at 0 where it would go negative, still covers the truth in at least
    93% of 2000 trials, and in at least 90% for each of the 4 images."""
    ma = make(ConvNet(1, 5, 4), seed=0)
    mb = make(ConvNet(1, 5, 4), seed=0)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(9)
        for p in mb.parameters():
            p.add_(1e-3 * torch.randn(p.shape, dtype=p.dtype, generator=gen))
    make_it = COVERAGE_CASES["smooth_grad"][0]
    x = torch.randn(4, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(4)
    truth = ss.debiased_distance(make_it(4000, 100).stats(ma, x, y),
                                 make_it(4000, 100).stats(mb, x, y)).value  # fmt: skip
    rep = lambda t: t.repeat(500, *([1] * (t.ndim - 1)))  # noqa: E731
    sa, sb = make_it(64, 7).stats(ma, rep(x), rep(y)), make_it(64, 8).stats(mb, rep(x), rep(y))
    est = ss.debiased_distance(sa, sb)
    assert (rep(truth) / est.stderr).median() < 1  # the regime this test is for
    assert (est.interval(0.95)[0] == 0).double().mean() > 0.5  # the clamp at 0 is exercised
    assert _coverage(est, rep(truth)) >= 0.93
    assert min(_coverage_per_image(est, truth)) >= 0.90


@pytest.mark.parametrize("sampler", ["noise", "joint"])
def test_default_batch_size_bounds_every_model_call(sampler):
    """Without ``batch_size`` no call of the method gets more than ``DEFAULT_BATCH_SIZE`` rows,
    in a fixed run and in every round of a tolerance (64 images, up to 64 draws each: 4096
    rows a round at most); before, a round was one call of all its rows (6 GB measured for 64
    CIFAR-sized images at tol = 0.01). The maps equal an explicit ``batch_size=256`` bitwise."""
    from smoothstab.montecarlo import DEFAULT_BATCH_SIZE

    sizes = []

    def method(model, xs, target):
        sizes.append(len(xs))
        return ss.grad(model, xs, target)

    model = make(ConvNet(1, 3, 4))
    x = torch.randn(64, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    kw = dict(sampler=sampler, seed=0)
    if sampler == "joint":
        method = ss.smoothed_ig(0.5, tol=1e-9, max_samples=64, sampler="joint", seed=0)
        fn = method._row_fn

        def counting_row_fn(*args):
            inner = fn(*args)
            return lambda xs, b, j, u: (sizes.append(len(xs)), inner(xs, b, j, u))[1]

        method._row_fn = counting_row_fn
        st = method.stats(model, x)
        again = ss.smoothed_ig(0.5, tol=1e-9, max_samples=64, sampler="joint", seed=0,
                               batch_size=DEFAULT_BATCH_SIZE).stats(model, x)  # fmt: skip
    else:
        st = ss.smooth(method, 0.5, tol=1e-9, max_samples=64, **kw).stats(model, x)
        again = ss.smooth(ss.grad, 0.5, tol=1e-9, max_samples=64, batch_size=DEFAULT_BATCH_SIZE,
                          **kw).stats(model, x)  # fmt: skip
    assert st.units.eq(64).all() and max(sizes) == DEFAULT_BATCH_SIZE
    assert sum(sizes) == 64 * 64
    assert torch.equal(st.mean, again.mean)


def test_a_map_indistinguishable_from_zero_does_not_stop_the_summary():
    """A constant CAM (mean map 0 up to its noise) has rel_se = inf; the run's summary keeps it
    as an infinite mean without a band instead of refusing the whole metrics table."""
    from smoothstab.experiments.analysis.summary import Summary

    rows = [
        dict(method="gradcam", metric="rel_se", r=0.2, n="", pair="", model=str(k), image=i,
             value=v, stderr="")
        for k, vals in ((0, (0.1, 0.2)), (1, (0.3, float("inf"))))
        for i, v in enumerate(vals)
    ]  # fmt: skip
    s = Summary.from_rows(rows)
    got = s.get("gradcam", "rel_se", 0.2)
    assert got.mean == got.lo == got.hi == float("inf")
    assert s.per_pair_or_model("gradcam", "rel_se", 0.2)["0"] == pytest.approx(0.15)

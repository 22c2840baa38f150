"""The interval machinery of :mod:`smoothstab.inference` on known answers: the jackknives against
brute force, exact expectations by enumerating a discrete crossed population, closed forms,
the scope rules for few models, Hall's interval, the recommendation's rules on designed curves
and the sample-size planner against brute force. Coverage on simulated runs is
``test_inference_calibration.py``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from smoothstab import inference as inf
from smoothstab.inference import (
    DesignComponents,
    _eff_df,
    _hall_interval,
    _pair_parts,
    _pattern_moments,
)


def brute_lomo(v: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """Leave-one-model-out jackknife of the pair grand mean, recomputed model by model."""
    a, b = inf.pair_index(k)
    reps = np.array([v[(a != x) & (b != x)].mean() for x in range(k)])
    return (k - 1) / k * ((reps - reps.mean()) ** 2).sum(), reps


def brute_loio(v: np.ndarray) -> float:
    m = v.shape[1]
    reps = np.array([np.delete(v, i, axis=1).mean() for i in range(m)])
    return (m - 1) / m * ((reps - reps.mean()) ** 2).sum()


def discrete_design(seed: int = 3, n_models: int = 3, n_images: int = 2):
    """A random symmetric kernel F(a, b, i) on a discrete population of model and image types,
    with its exact Hoeffding components."""
    rng = np.random.default_rng(seed)
    pa, pi = rng.dirichlet(np.ones(n_models)), rng.dirichlet(np.ones(n_images))
    f = (
        rng.normal(size=(n_models, n_models, n_images))
        + 2 * rng.normal(size=n_models)[:, None, None]
    )
    f = (f + f.transpose(1, 0, 2)) / 2
    w = pa[:, None, None] * pa[None, :, None] * pi[None, None, :]
    mu = (w * f).sum()
    h1 = (pa[None, :, None] * pi[None, None, :] * f).sum((1, 2)) - mu
    b = (pa[:, None, None] * pa[None, :, None] * f).sum((0, 1)) - mu
    h2 = (pi[None, None, :] * f).sum(2) - mu - h1[:, None] - h1[None, :]
    g1 = (pa[None, :, None] * f).sum(1) - mu - h1[:, None] - b[None, :]
    g2 = (
        f - mu - h1[:, None, None] - h1[None, :, None] - h2[:, :, None] - b[None, None, :]
        - g1[:, None, :] - g1[None, :, :]
    )  # fmt: skip
    comps = {
        "s_h1": (pa * h1**2).sum(),
        "s_h2": (pa[:, None] * pa[None, :] * h2**2).sum(),
        "s_b": (pi * b**2).sum(),
        "s_g1": (pa[:, None] * pi[None, :] * g1**2).sum(),
        "s_g2": (w * g2**2).sum(),
    }
    return f, pa, pi, comps


def enumerate_runs(f, pa, pi, k: int, m: int):
    """Every run of k models and m images from the discrete population, with its probability."""
    a, b = inf.pair_index(k)
    values, weights = [], []
    for models in itertools.product(range(len(pa)), repeat=k):
        models = np.array(models)
        for images in itertools.product(range(len(pi)), repeat=m):
            images = np.array(images)
            values.append(f[models[a][:, None], models[b][:, None], images[None, :]])
            weights.append(np.prod(pa[models]) * np.prod(pi[images]))
    return np.array(values), np.array(weights)


# --- known answers -------------------------------------------------------------------------------


def test_pairs_are_lexicographic():
    a, b = inf.pair_index(4)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [
        (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)
    ]  # fmt: skip
    assert inf.models_from_pairs(45) == 10 and inf.n_pairs(10) == 45
    with pytest.raises(ValueError, match="7 rows of pairs is not k"):
        inf.models_from_pairs(7)


@pytest.mark.parametrize(("k", "m"), [(3, 5), (4, 7), (6, 3)])
def test_jackknives_equal_brute_force(k, m):
    v = np.random.default_rng(10 * k + m).gamma(2.0, size=(inf.n_pairs(k), m))
    p = _pair_parts(v, k)
    v_models, reps = brute_lomo(v, k)
    assert np.isclose(p["v_models"], v_models)
    assert np.allclose(p["loo"], reps)
    assert np.allclose(inf.leave_one_model_out(v), reps)
    assert np.isclose(p["v_images"], brute_loio(v))
    per_image = np.mean([brute_lomo(v[:, [i]], k)[0] for i in range(m)])
    assert np.isclose(p["v_models_img"], per_image)


def test_additive_pairs_closed_form():
    """v[ab, i] = x_a + x_b on every image: the variance is 4 s^2(x) / k, images add nothing."""
    k, m = 7, 5
    x = np.random.default_rng(1).normal(size=k)
    a, b = inf.pair_index(k)
    v = np.repeat((x[a] + x[b])[:, None], m, axis=1)
    e = inf.pair_mean(v)
    assert e.scope == "retraining" and e.components["images"] == pytest.approx(0, abs=1e-20)
    assert e.se**2 == pytest.approx(4 * x.var(ddof=1) / k)


def test_model_mean_is_the_two_way_anova():
    rng = np.random.default_rng(2)
    k, m = 5, 9
    v = rng.normal(size=(k, 1)) + rng.normal(size=(1, m)) + rng.normal(size=(k, m))
    row, col, g = v.mean(1), v.mean(0), v.mean()
    msr = m * ((row - g) ** 2).sum() / (k - 1)
    msc = k * ((col - g) ** 2).sum() / (m - 1)
    mse = ((v - row[:, None] - col[None, :] + g) ** 2).sum() / ((k - 1) * (m - 1))
    e = inf.model_mean(v, df_rule="satterthwaite")
    assert e.se**2 == pytest.approx((msr + msc - mse) / (k * m))
    df = (msr + msc - mse) ** 2 / (
        msr**2 / (k - 1) + msc**2 / (m - 1) + mse**2 / ((k - 1) * (m - 1))
    )
    assert e.df == pytest.approx(df)  # the classical Satterthwaite degrees of freedom


def test_hoeffding_variance_of_a_designed_kernel():
    """Models M_a ~ N(0, 1), kernel M_a + M_b + M_a M_b: zeta1 = 1, zeta2 = 3, so the pair mean
    has variance [4 (k-2) + 6] / [k (k-1)], which the Hoeffding components give; the model
    jackknife over-states the pair-specific part by 2 (k-1) / (k-2)."""
    k = 6
    dc = DesignComponents(1.0, 1.0, 0.0, 0.0, 0.0, k=k, m=1)
    assert dc.variance(k, 10) == pytest.approx((4 * 4 * 1 + 2 * 3) / 30)
    rng = np.random.default_rng(0)
    models = rng.normal(size=(40000, k))
    a, b = inf.pair_index(k)
    kernel = models[:, a] + models[:, b] + models[:, a] * models[:, b]
    # a variance from 40000 draws has a relative s.e. of 0.7%: 4% is 5 of them
    assert abs(kernel.mean(1).var() / dc.variance(k, 10) - 1) < 0.04
    v_models = _pair_parts(np.stack([kernel[:5000]] * 2, axis=-1), k)["v_models"]
    assert abs(v_models.mean() / (4 / k + 4 / (k * (k - 2))) - 1) < 0.06


@pytest.mark.parametrize(("k", "m"), [(4, 3), (5, 2), (3, 3)])
def test_exact_expectations_by_enumeration(k, m):
    """Over every run of a discrete crossed population: the Hoeffding variance formula, the
    image jackknife (image part and interactions exactly), the corrected two-way jackknife
    (unbiased but for the jackknife's pair-specific inflation), its expected parts, and the
    unbiasedness of the component estimates."""
    f, pa, pi, true = discrete_design()
    v, w = enumerate_runs(f, pa, pi, k, m)
    theta = v.mean((1, 2))
    var = (w * (theta - (w * theta).sum()) ** 2).sum()
    dc = DesignComponents(**true, k=k, m=m)
    assert dc.variance(k, m) == pytest.approx(var)
    p = _pair_parts(v, k)
    inter = (p["v_models_img"] - p["v_models"]) / (m - 1)

    def expect(x):
        return (w * x).sum()

    image_part = true["s_b"] / m + 4 * true["s_g1"] / (k * m) + 2 * true["s_g2"] / (k * (k - 1) * m)
    assert expect(p["v_images"]) == pytest.approx(image_part)
    excess = (4 / (k * (k - 2)) - 2 / (k * (k - 1))) * true["s_h2"]
    assert expect(p["v_models"] - inter + p["v_images"]) == pytest.approx(var + excess)
    models_part, images_part = dc.expected_parts(k, m)
    assert expect(p["v_models"] - inter) == pytest.approx(models_part)
    assert expect(p["v_images"]) == pytest.approx(images_part)
    if k >= 4:
        moments = _pattern_moments(v - theta[:, None, None], k)
        assert expect(-moments[:, 0, 0]) == pytest.approx(var)  # the unbiased crossed estimate
        c = np.array([_pattern_moments(x - x.mean(), k) for x in v])
        c = c - c[:, :1, :1]
        raw = {
            "s_h1": c[:, 1, 0],
            "s_h2": c[:, 2, 0] - 2 * c[:, 1, 0],
            "s_b": c[:, 0, 1],
            "s_g1": c[:, 1, 1] - c[:, 1, 0] - c[:, 0, 1],
        }
        raw["s_g2"] = c[:, 2, 1] - c[:, 2, 0] - c[:, 0, 1] - 2 * raw["s_g1"]
        for name, value in true.items():
            assert expect(raw[name]) == pytest.approx(value), name


# --- scope, intervals, options ---------------------------------------------------------------


def test_few_models_get_an_interval_over_images_for_these_models():
    rng = np.random.default_rng(4)
    pair = rng.normal(size=(1, 20))
    one = inf.pair_mean(pair)
    assert (one.k, one.scope, one.too_few_models) == (2, "these models", True)
    assert one.components["models"] == 0 and one.df <= 19
    assert one.se**2 == pytest.approx(pair.var(ddof=1) / 20)  # one pair: s^2 / m of its values
    three = rng.normal(size=(3, 20))
    e3 = inf.pair_mean(three)
    assert (e3.k, e3.scope, e3.too_few_models) == (3, "these models", True)
    assert e3.se**2 == pytest.approx(three.mean(0).var(ddof=1) / 20)
    forced = inf.pair_mean(three, scope="retraining")
    assert forced.scope == "retraining" and forced.too_few_models and forced.se >= e3.se * 0.5
    e4 = inf.pair_mean(rng.normal(size=(6, 20)))
    assert (e4.scope, e4.too_few_models) == ("retraining", False)
    with pytest.raises(ValueError, match="6 rows of pairs are 4 models, not k=5"):
        inf.pair_mean(rng.normal(size=(6, 20)), k=5)
    with pytest.raises(ValueError, match="at least 3 models"):
        inf.pair_mean(rng.normal(size=(1, 20)), scope="retraining")
    with pytest.raises(ValueError, match="scope: expected one of"):
        inf.pair_mean(rng.normal(size=(6, 20)), scope="models")
    with pytest.raises(ValueError, match="at least 2 images"):
        inf.pair_mean(rng.normal(size=(6, 1)))
    with pytest.raises(ValueError, match="finite"):
        inf.pair_mean(np.full((6, 3), np.nan))


def test_interval_is_student_t_and_skew_only_where_asked():
    rng = np.random.default_rng(5)
    v = 1 + 0.1 * rng.normal(size=(10, 32))
    e = inf.pair_mean(v)
    lo, hi = e.interval(0.9)
    assert lo < e.estimate < hi and e.skew == 0
    assert hi - e.estimate == pytest.approx(stats.t.ppf(0.95, e.df) * e.se)
    assert e.halfwidth() == pytest.approx(stats.t.ppf(0.975, e.df) * e.se)
    assert "95% [" in repr(e) and "5 models, 32 images; over retraining" in repr(e)
    skewed = inf.pair_mean(v, skew_correction=True)
    assert skewed.se == e.se and skewed.df == e.df and skewed.skew != 0
    assert e.sign() == 1 and inf.pair_mean(v - 1).sign() == 0 and inf.pair_mean(-v).sign() == -1


def test_hall_interval_direction_and_limits():
    lo, hi = _hall_interval(1.0, 0.1, 5.0, 0.0)
    assert hi - 1.0 == pytest.approx(stats.t.ppf(0.975, 5) * 0.1) and 1.0 - lo == pytest.approx(
        hi - 1
    )
    lo, hi = _hall_interval(1.0, 0.1, 5.0, 0.8)
    assert hi - 1.0 > 1.0 - lo  # a right-skewed estimator: the interval reaches further up
    lo2, hi2 = _hall_interval(1.0, 0.1, 5.0, -0.8)
    assert hi - 1.0 == pytest.approx(1.0 - lo2) and 1.0 - lo == pytest.approx(hi2 - 1.0)
    lo3, _ = _hall_interval(1.0, 0.1, 5.0, 1e-6)  # continuous in the skewness
    assert lo3 == pytest.approx(1.0 - stats.t.ppf(0.975, 5) * 0.1, abs=1e-6)
    rng = np.random.default_rng(8)  # a mean of 8 skewed model effects: picked up by default
    e = inf.model_mean(rng.exponential(size=(8, 1)) + 0.01 * rng.normal(size=(8, 50)))
    lo, hi = e.interval()
    assert e.skew > 0 and hi - e.estimate > e.estimate - lo


def test_kurtosis_df_never_exceed_normal_theory():
    rng = np.random.default_rng(9)
    for x in (
        rng.normal(size=(200, 6)),
        rng.standard_t(3, size=(200, 6)),
        rng.exponential(size=(200, 6)),
    ):
        df = _eff_df(x)
        assert np.all(df <= 5 + 1e-12) and np.all(df > 0)
    heavy, normal = rng.standard_t(3, size=(2000, 10)), rng.normal(size=(2000, 10))
    assert _eff_df(heavy).mean() < _eff_df(normal).mean()


def test_differences_and_ratios():
    rng = np.random.default_rng(6)
    k, m = 6, 40
    v0 = 1 + 0.2 * rng.normal(size=(inf.n_pairs(k), m))
    vr = 0.7 * v0 + 0.05 * rng.normal(size=v0.shape)
    d = inf.pair_difference(vr, v0, k=k)
    assert d.estimate == pytest.approx(vr.mean() - v0.mean())
    assert d.se == pytest.approx(inf.pair_mean(vr - v0).se)
    rel = inf.relative_change(vr, v0)
    assert rel.estimate == pytest.approx(vr.mean() / v0.mean() - 1)
    z = inf.linearised_ratio(vr, v0)
    assert z.mean() == pytest.approx(0, abs=1e-12)
    assert rel.se == pytest.approx(inf.pair_mean(z).se) and rel.df == pytest.approx(
        inf.pair_mean(z).df
    )
    # the delta method against a leave-one-model-out jackknife of the ratio itself
    reps = inf.leave_one_model_out(vr) / inf.leave_one_model_out(v0)
    jack = (k - 1) / k * ((reps - reps.mean()) ** 2).sum()
    assert _pair_parts(z, k)["v_models"] == pytest.approx(jack, rel=0.05)
    f0, fr = rng.normal(size=(k, m)), rng.normal(size=(k, m))
    assert inf.model_difference(fr, f0).estimate == pytest.approx((fr - f0).mean())
    assert inf.relative_change(fr + 5, f0 + 5, per_model=True).k == k
    with pytest.raises(ValueError, match="same shape"):
        inf.pair_difference(vr, v0[:, :5])
    with pytest.raises(ValueError, match="positive mean"):
        inf.relative_change(vr, -v0)


def test_difference_between_independent_sets_of_models():
    """Two sets of models on the same images: each set's model part plus the image jackknife of
    the per-image difference, so a shared image effect cancels; few models: images only."""
    rng = np.random.default_rng(11)
    m = 30
    images = 3 * rng.normal(size=m)  # large and shared: it must cancel
    a = 1.0 + images + 0.3 * rng.normal(size=(15, m))
    b = 0.5 + images + 0.3 * rng.normal(size=(10, m))
    d = inf.sets_difference(a, b)
    assert d.estimate == pytest.approx(a.mean() - b.mean()) and (d.k, d.scope) == (5, "retraining")
    alone = inf.pair_mean(a).se
    assert d.se < alone  # the shared image effect is gone
    expected = sum(inf.pair_mean(x).components["models"] for x in (a, b))
    assert d.components["models"] == pytest.approx(expected)
    assert d.components["images"] == pytest.approx((a.mean(0) - b.mean(0)).var(ddof=1) / m)
    few = inf.sets_difference(a, b[:3])
    assert few.scope == "these models" and few.components["models"] == 0
    per_model = inf.sets_difference(
        rng.normal(size=(5, m)), rng.normal(size=(4, m)), per_model=True
    )
    assert per_model.k == 4
    with pytest.raises(ValueError, match="same images"):
        inf.sets_difference(a, b[:, :10])


# --- best level and recommendation -----------------------------------------------------------


def designed_sweep(k: int, m: int, curve: list[float], noise: float, seed: int) -> np.ndarray:
    """Pair values for a sweep: curve[j] times model and image effects, plus noise."""
    rng = np.random.default_rng(seed)
    a, b = inf.pair_index(k)
    x, img = rng.normal(0, 0.05, size=k), rng.normal(0, 0.05, size=m)
    base = 1 + x[a][:, None] + x[b][:, None] + img[None, :]
    return np.array([c * base + noise * rng.normal(size=base.shape) for c in curve])


def test_recommendation_rules_on_designed_sweeps():
    # falls, then a plateau: the start of the plateau (one-SE rule), though the end is best
    v = designed_sweep(8, 64, [1.0, 0.7, 0.55, 0.5, 0.5, 0.5], 0.02, 1)
    eps = 0.01 * np.random.default_rng(9).normal(size=(2,) + v.shape[1:])
    eps -= eps.mean(axis=(1, 2), keepdims=True)
    v[4], v[5] = v[3] + eps[0], v[3] + eps[1] - 1e-7  # the same mean; the last best by a hair
    rec = inf.recommend(v)
    assert (rec.status, rec.recommended, rec.best.index) == ("smooth", 3, 5)
    assert rec.best_at_sweep_edge and rec.best.indistinguishable[3:] == (True, True, True)
    assert all(rec.better[1:]) and rec.change[0] is None and rec.change[3].sign() == -1
    # falls to the end of the sweep: the last level, flagged
    v = designed_sweep(8, 64, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], 0.02, 2)
    rec = inf.recommend(v)
    assert rec.recommended == 5 and rec.best_at_sweep_edge
    # a fidelity budget that allows levels 0-2 only: the budget's edge
    rec = inf.recommend(v, allowed=[True, True, True, False, False, False])
    assert (rec.recommended, rec.best.index) == (2, 2)
    assert rec.best_at_budget_edge and not rec.best_at_sweep_edge
    # flat: no smoothing
    rec = inf.recommend(designed_sweep(8, 64, [1.0] * 6, 0.02, 3))
    assert (rec.status, rec.recommended) == ("no smoothing", 0)
    # three models: everything computed over images, no recommendation
    rec = inf.recommend(designed_sweep(3, 64, [1.0, 0.7, 0.55, 0.52, 0.51, 0.505], 0.02, 4))
    assert (rec.status, rec.recommended) == ("too few models", None)
    assert rec.change[1].scope == "these models"
    with pytest.raises(ValueError, match="multiplicity"):
        inf.recommend(v, multiplicity="holm")
    bonf = inf.recommend(v, multiplicity="bonferroni")
    assert bonf.adjusted_level == pytest.approx(1 - 0.05 / 5)


def test_best_level_of_a_peaked_curve():
    v = designed_sweep(6, 48, [0.5, 0.6, 0.8, 0.7995, 0.6], 0.01, 5)
    best = inf.best_level(v, lower_is_better=False)
    assert best.index == 2 and not best.at_edge
    assert best.indistinguishable == (False, False, True, True, False)
    assert inf.best_level(v[:3], lower_is_better=False).at_edge  # peak at the sweep's end
    models = np.random.default_rng(1).normal(size=(3, 5, 20)) + np.array([0, 1, 0])[:, None, None]
    assert inf.best_level(models, per_model=True).index in (0, 2)


# --- variance components and sample size -------------------------------------------------------


def test_sample_size_plan_is_the_cheapest_design_that_meets_the_target():
    dc = DesignComponents(s_h1=4e-4, s_h2=2e-4, s_b=3e-3, s_g1=1e-3, s_g2=2e-3, k=6, m=64)
    grid = (8, 16, 32, 64, 128, 256, 512)
    plan = inf.sample_size(dc, 0.02, m_values=grid, cost_per_model=1.0, cost_per_image=0.002)
    assert plan.best is not None and plan.best[2] <= 0.02
    best = min(
        (k + 0.002 * k * m, k, m)
        for k in range(4, 41)
        for m in grid
        if dc.expected_halfwidth(k, m) <= 0.02
    )
    assert plan.best[:2] == best[1:]
    assert (
        dc.expected_halfwidth(8, 64) < dc.expected_halfwidth(6, 64) < dc.expected_halfwidth(6, 32)
    )
    assert inf.sample_size(dc, 1e-6).best is None  # out of reach on the grid
    with pytest.raises(ValueError, match="target_halfwidth"):
        inf.sample_size(dc, 0.0)


def test_variance_components_recover_a_large_design():
    """A design with known components and many models and images: the moment estimates are
    within sampling error of the truth (k = 40: 780 pairs, m = 200)."""
    rng = np.random.default_rng(12)
    k, m = 40, 200
    a, b = inf.pair_index(k)
    truth = {"s_h1": 0.04, "s_h2": 0.02, "s_b": 0.09, "s_g1": 0.01, "s_g2": 0.25}
    models, images = rng.normal(size=k) * 0.2, rng.normal(size=m) * 0.3
    pair = rng.normal(size=len(a)) * np.sqrt(0.02)
    model_image = rng.normal(size=(k, m)) * 0.1
    v = (
        models[a][:, None] + models[b][:, None] + pair[:, None] + images[None, :]
        + model_image[a] + model_image[b] + rng.normal(size=(len(a), m)) * 0.5
    )  # fmt: skip
    dc = inf.variance_components(v)
    assert dc.source == "moments" and (dc.k, dc.m) == (k, m)
    # relative sampling errors: model parts ~ sqrt(2/39) = 23%, images ~ 10%, residuals < 2%
    assert dc.s_h1 == pytest.approx(truth["s_h1"], rel=0.6)
    assert dc.s_b == pytest.approx(truth["s_b"], rel=0.35)
    assert dc.s_g1 == pytest.approx(truth["s_g1"], rel=0.15)
    assert dc.s_g2 == pytest.approx(truth["s_g2"], rel=0.05)
    three = inf.variance_components(v[(a < 3) & (b < 3)])
    assert three.source == "jackknife" and three.s_h2 == 0
    anova = inf.variance_components(rng.normal(size=(5, 30)), per_model=True)
    assert anova.order == 1 and anova.source == "anova"
    with pytest.raises(ValueError, match="at least 3 models"):
        inf.variance_components(v[:1])

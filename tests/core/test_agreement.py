"""Scale-free agreement: known answers of the norm, cosine, unit-map distance, rank agreement and
relative fidelity; agreement with scipy; and the Monte-Carlo debiased versions against smoothed
maps whose exact values are known, with intervals that hold their nominal coverage."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

import smoothstab as ss
from helpers import ConvNet, make, rand
from smoothstab import SmoothStats
from smoothstab import metrics as M
from smoothstab.montecarlo import monte_carlo

F64 = torch.float64
SQRT2 = math.sqrt(2)


A, B = rand(3, 3, 8, 8, seed=1), rand(3, 3, 8, 8, seed=2)


def close(x, want, tol=1e-12):
    want = torch.as_tensor(want, dtype=x.dtype).expand_as(x)
    torch.testing.assert_close(x, want, atol=tol, rtol=0)


# --- known answers ---------------------------------------------------------------------------


def test_identical_maps():
    close(M.cosine(A, A), 1.0)
    assert torch.equal(M.unit_distance(A, A), torch.zeros(3, dtype=F64))  # exactly, no sqrt(eps)
    close(M.rank_agreement(A, A), 1.0)
    assert torch.equal(M.relative_fidelity(A, A), torch.zeros(3, dtype=F64))
    close(M.map_norm(A), A.flatten(1).norm(dim=1))


def test_a_positive_multiple_changes_the_norm_only():
    for c in (1e-3, 0.5, 7.0):
        close(M.cosine(A, c * A), 1.0)
        close(M.unit_distance(A, c * A), 0.0)
        close(M.rank_agreement(A, c * A), 1.0)
        close(M.cosine(c * A, B), M.cosine(A, B))  # invariant in either argument
        close(M.unit_distance(A, c * B), M.unit_distance(A, B))
        close(M.rank_agreement(c * A, B), M.rank_agreement(A, B))
        close(M.map_norm(c * A), c * M.map_norm(A), 1e-10)
    close(M.relative_fidelity(1.5 * A, A), 0.5)


def test_orthogonal_maps_and_a_sign_flip():
    a, b = torch.zeros(2, 1, 6, 6, dtype=F64), torch.zeros(2, 1, 6, 6, dtype=F64)
    a[:, :, :3], b[:, :, 3:] = 1.0, 2.0  # disjoint supports
    close(M.cosine(a, b), 0.0)
    close(M.unit_distance(a, b), SQRT2)
    close(M.cosine(A, -A), -1.0)
    close(M.unit_distance(A, -A), 2.0)
    close(M.rank_agreement(A, -A), 1.0)  # the |map| view does not see the sign
    close(M.relative_fidelity(-A, A), 2.0)


def test_constant_and_zero_maps_have_documented_values():
    const, zero = torch.full_like(A, 0.3), torch.zeros_like(A)
    close(M.rank_agreement(A, const), 0.0)  # scipy: NaN
    close(M.rank_agreement(const, 2 * const), 0.0)
    close(M.cosine(const, 2 * const), 1.0)  # a constant map does have a direction
    close(M.cosine(A, zero), 0.0)
    close(M.unit_distance(zero, A), SQRT2)
    assert torch.isinf(M.relative_fidelity(A, zero)).all()
    assert torch.equal(M.relative_fidelity(zero, zero), torch.zeros(3, dtype=F64))


def test_the_raw_distance_splits_into_size_and_direction():
    """``||a - b||^2 = (||a|| - ||b||)^2 + ||a|| ||b|| u^2``, with ``u = sqrt(2 - 2 cos)``."""
    na, nb, u = M.map_norm(A), M.map_norm(0.3 * B), M.unit_distance(A, 0.3 * B)
    close(M.l2_distance(A, 0.3 * B) ** 2, (na - nb) ** 2 + na * nb * u**2, 1e-10)
    close(u, (2 - 2 * M.cosine(A, 0.3 * B)).sqrt(), 1e-12)
    assert (M.cosine(A, B).abs() <= 1).all() and ((u >= 0) & (u <= 2)).all()


@pytest.mark.parametrize(
    "shape,levels", [((4, 3, 8, 8), None), ((3, 1, 12, 10), 5), ((2, 2, 5, 5), 2)]
)
def test_rank_agreement_is_scipys_spearman(shape, levels):
    a, b = rand(*shape, seed=3), rand(*shape, seed=4) + 0.5 * rand(*shape, seed=3)
    if levels:  # few distinct values: many ties, ranked by their average
        a, b = (a * levels).round(), (b * levels).round()
    va, vb = M.abs_sum(a).flatten(1), M.abs_sum(b).flatten(1)
    want = [stats.spearmanr(x.numpy(), y.numpy())[0] for x, y in zip(va, vb, strict=True)]
    close(M.rank_agreement(a, b), torch.tensor(want, dtype=F64), 1e-12)
    assert torch.equal(M.rank_agreement(a, b), M.rank_agreement(b, a))


def test_ranks_once_per_map_give_the_same_agreement():
    ra, rb = M.pixel_ranks(A), M.pixel_ranks(B)
    assert ra.shape == (3, 64) and ra.sum(1).abs().max() < 1e-9  # centred
    assert torch.equal(M.rank_correlation(ra, rb), M.rank_agreement(A, B))


def test_float32_maps_are_measured_in_float64():
    a, b = A.float(), B.float()
    assert M.cosine(a, b).dtype == F64
    close(M.cosine(a, b), M.cosine(a.double(), b.double()))


# --- Monte-Carlo: debiased versions ----------------------------------------------------------

TRIALS = 1000  # independent trials, run as a batch of images
XA = rand(1, 1, 6, 6, seed=20)
XB = 0.4 * XA + 0.3 * rand(1, 1, 6, 6, seed=21)
SIGMA = 1.0


def smoothed(fn, x, n, seed, groups=2):
    """``fn`` smoothed over TRIALS copies of ``x``, each copy with its own draws."""
    rep = x.expand(TRIALS, *x.shape[1:]).clone()
    kw = dict(sigma=SIGMA, n_samples=n, seed=seed, batch_size=8192, groups=groups)
    return monte_carlo(lambda xs, *_: fn(xs), rep, **kw)


# Exact smoothed maps: E[x + s e] = x, E[(x + s e)^2] = x^2 + s^2; cos(EXACT_A, EXACT_B) = 0.51.
IDENTITY, QUADRATIC = (lambda x: x), (lambda x: x + 0.5 * x**2)
EXACT_A, EXACT_B = XA, XB + 0.5 * (XB**2 + SIGMA**2)
CASES = {  # (fn_a, fn_b, seed_b): the same seed is common random numbers
    "independent": (IDENTITY, QUADRATIC, 2),
    "common": (IDENTITY, QUADRATIC, 1),
}


def _mean_se(t: torch.Tensor) -> tuple[float, float]:
    return t.mean().item(), t.std().item() / len(t) ** 0.5


@pytest.mark.parametrize("case", CASES)
def test_debiased_inner_and_norm_are_unbiased(case):
    fn_a, fn_b, seed_b = CASES[case]
    a, b = smoothed(fn_a, XA, 8, 1), smoothed(fn_b, XB, 8, seed_b)
    for est, truth in (
        (M.debiased_inner(a, b), (EXACT_A * EXACT_B).sum().item()),
        (M.debiased_norm(b), None),
    ):
        if truth is None:  # the norm: its square (sq) is the unbiased one
            est, truth = est.sq, (EXACT_B**2).sum().item()
        else:
            est = est.value
        mean, se = _mean_se(est)
        assert abs(mean - truth) < 3 * se
    plain_sq, se = _mean_se(M.debiased_norm(b).plain ** 2)
    assert plain_sq - (EXACT_B**2).sum().item() > 3 * se  # the plain norm is biased upward


@pytest.mark.parametrize("case", CASES)
def test_debiased_cosine_converges_to_the_exact_one(case):
    """The debiased cosine is within 0.01 of the exact one on average (1000 trials) already
    at 8 draws; the plain cosine of independent maps is pulled toward 0 by 5x that or more
    (0.076 at 8 draws; shared noise, pulling it up, partly offsets this under common random
    numbers). The spread falls as 1 / sqrt(n) (within 25%)."""
    fn_a, fn_b, seed_b = CASES[case]
    truth = M.cosine(EXACT_A, EXACT_B).item()
    spread = {}
    for n in (8, 32):
        est = M.debiased_cosine(smoothed(fn_a, XA, n, 1), smoothed(fn_b, XB, n, seed_b))
        bias, plain_bias = est.value.mean().item() - truth, est.plain.mean().item() - truth
        assert abs(bias) < 0.01, (n, bias, plain_bias)
        if case == "independent":
            assert plain_bias < -5 * abs(bias)
        spread[n] = est.value.std().item()
    assert spread[8] / spread[32] == pytest.approx(2.0, rel=0.25)


@pytest.mark.parametrize("case", CASES)
def test_cosine_stderr_from_the_halves_is_calibrated(case):
    fn_a, fn_b, seed_b = CASES[case]
    a, b = smoothed(fn_a, XA, 32, 1), smoothed(fn_b, XB, 32, seed_b)
    for est in (M.debiased_cosine(a, b), M.debiased_unit_distance(a, b)):
        assert est.dof is None
        assert est.stderr.mean().item() == pytest.approx(est.value.std().item(), rel=0.15)


def _coverage(est, truth: float) -> float:
    lo, hi = est.interval(0.95)
    return ((lo <= truth) & (truth <= hi)).double().mean().item()


@pytest.mark.parametrize("case", CASES)
def test_group_intervals_of_cosine_and_unit_distance_cover(case):
    """Nominal 95% intervals from 16 groups of 64 draws (jackknife, 15 degrees of freedom)
    cover the exact value in 93% to 98.5% of 1000 trials: honest, and not needlessly wide."""
    fn_a, fn_b, seed_b = CASES[case]
    a, b = smoothed(fn_a, XA, 64, 1, groups=16), smoothed(fn_b, XB, 64, seed_b, groups=16)
    cos, unit = M.debiased_cosine(a, b), M.debiased_unit_distance(a, b)
    truth = M.cosine(EXACT_A, EXACT_B).item()
    assert cos.dof == unit.dof == 15
    assert 0.93 <= _coverage(cos, truth) <= 0.985
    assert 0.93 <= _coverage(unit, math.sqrt(2 - 2 * truth)) <= 0.985


def test_exact_maps_give_the_plain_values():
    for a, b in ((A, B), (SmoothStats.exact(A), B), (A, SmoothStats.exact(B))):
        cos, unit = M.debiased_cosine(a, b), M.debiased_unit_distance(a, b)
        close(cos.value, M.cosine(A, B))
        close(cos.plain, M.cosine(A, B))
        close(unit.value, M.unit_distance(A, B), 1e-10)
        close(cos.stderr, 0.0)
        close(M.debiased_inner(a, b).value, (A * B).flatten(1).sum(1), 1e-10)
    close(M.debiased_norm(A).value, M.map_norm(A))


def test_debiased_norm_is_the_distance_to_zero():
    model, x = make(ConvNet()), rand(4, 3, 8, 8, seed=6)
    cases = [
        ss.smooth(ss.grad, 0.5, 9, seed=0).stats(model, x),  # halves, unequal
        ss.smooth(ss.grad, 0.5, 16, seed=0, groups=4).stats(model, x),
        ss.smooth(ss.grad, 0.5, tol=0.2, min_samples=8, seed=1).stats(model, x),  # per image
        x,  # exact
    ]
    for a in cases:
        mean = a.mean if isinstance(a, SmoothStats) else a
        got, want = M.debiased_norm(a), M.debiased_distance(a, torch.zeros_like(mean))
        for field in ("plain", "sq", "value", "stderr"):
            torch.testing.assert_close(getattr(got, field), getattr(want, field))
        assert got.dof == want.dof


def test_groups_against_an_exact_map_and_against_halves():
    model, x = make(ConvNet()), rand(4, 3, 8, 8, seed=5)
    st = ss.smooth(ss.grad, 0.5, 16, seed=0, groups=4).stats(model, x)
    exact = ss.grad(model, x)
    est = M.debiased_cosine(st, exact)
    assert est.dof == 3 and (est.stderr > 0).all()
    lo, hi = est.interval(0.95)
    assert ((lo >= -1) & (lo <= est.value) & (hi <= 1)).all()
    halves = ss.smooth(ss.grad, 0.5, 16, seed=1).stats(model, x)
    assert M.debiased_cosine(st, halves).dof is None  # groups do not pair: the halves
    close(M.debiased_cosine(st, exact).plain, M.cosine(st.mean, exact))


def test_smooth_grad_cosine_of_two_models_converges():
    """Smooth-Grad of two ConvNets (independent draws, as the paper's, 200 trials of 16 draws
    in 8 groups) against the cosine of their 4000-draw maps: the debiased cosine's mean is within
    3 standard errors of it (plus 0.005 for the reference's own error), and the 95%
    intervals cover it in 90% to 99% of trials."""
    ma, mb = make(ConvNet(1, 5, 4), seed=0), make(ConvNet(1, 5, 4), seed=1)
    x = torch.randn(2, 1, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(2)
    ref = [ss.smooth(ss.grad, 0.5, 4000, seed=s).stats(m, x, y) for m, s in ((ma, 8), (mb, 9))]
    truth = M.debiased_cosine(*ref).value.repeat(100)
    rep = lambda t: t.repeat(100, *([1] * (t.ndim - 1)))  # noqa: E731
    sa, sb = (ss.smooth(ss.grad, 0.5, 16, seed=s, groups=8) for s in (3, 4))
    est = M.debiased_cosine(sa.stats(ma, rep(x), rep(y)), sb.stats(mb, rep(x), rep(y)))
    err = est.value - truth
    assert abs(err.mean().item()) < 3 * err.std().item() / len(err) ** 0.5 + 0.005
    assert 0.9 <= _coverage(est, truth) <= 0.99


BAD = [
    (lambda: M.cosine(A, A[:, :2]), "a, b: expected the same shape"),
    (lambda: M.unit_distance(A, A * float("nan")), "b: expected finite"),
    (lambda: M.rank_agreement(A[:, 0], A[:, 0]), "a: expected a 4-D"),
    (lambda: M.relative_fidelity(A, A[:1]), "smoothed, unsmoothed: expected the same shape"),
    (lambda: M.map_norm(A[0, 0, 0]), "maps: expected a batch"),
    (lambda: M.debiased_cosine(SmoothStats(A, A, None, None, 1), B), "a: expected SmoothStats"),
    (lambda: M.debiased_cosine(A, B[:, :2]), "same shape"),
    (lambda: M.debiased_cosine(A, B).interval(1.0), "level: expected"),
]


@pytest.mark.parametrize("call,match", BAD, ids=[m for _, m in BAD])
def test_bad_input_raises_one_clear_line(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)

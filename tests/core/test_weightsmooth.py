"""Weight-space smoothing: exact at sigma = 0, analytic on a linear model, calibrated standard
errors, reproducible draws, no side effects on the model, one-line errors."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import smoothstab as ss
from helpers import hook_count, make
from smoothstab.weightsmooth import layer_scales, weight_smooth


class Linear(nn.Module):
    """``x.flatten(1) @ A.T + b``: the gradient of logit t is ``A[t]``, whatever x is."""

    def __init__(self, shape=(1, 3, 4), classes=3):
        super().__init__()
        self.shape = shape
        self.lin = nn.Linear(int(torch.tensor(shape).prod()), classes)

    def forward(self, x):
        return self.lin(x.flatten(1))


@pytest.fixture
def linear():
    return make(Linear())


def _x(b=2, shape=(1, 3, 4), seed=3):
    return torch.randn(
        b, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )


def _std(model, name="lin.weight"):
    return layer_scales(model)[name]


def test_sigma_zero_is_the_method(convnet, images):
    for method in (ss.grad, functools.partial(ss.grad_cam, layer="features.2")):
        expected = method(convnet, images, 1)
        got = weight_smooth(method, 0.0, 5, seed=0)(convnet, images, 1)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_layer_scale_is_the_rms_of_each_tensor(linear):
    w = linear.lin.weight.detach()
    assert _std(linear) == pytest.approx(float(w.pow(2).mean().sqrt()), rel=1e-12)
    assert set(layer_scales(linear)) == {"lin.weight", "lin.bias"}
    assert set(layer_scales(linear, ["lin.bias"])) == {"lin.bias"}


def test_linear_model_mean_and_variance(linear):
    """grad = A[t] + V[t]: the mean is A[t] within its standard error, the per-draw variance is
    s^2 with s = sigma * RMS(A)."""
    x, t, sigma, n = _x(), torch.tensor([0, 2]), 0.3, 400
    st = weight_smooth(ss.grad, sigma, n, seed=1).stats(linear, x, t)
    truth = linear.lin.weight.detach()[t].view_as(x)
    s2 = (sigma * _std(linear)) ** 2
    z = (st.mean - truth) / st.mean_var.sqrt()
    assert z.abs().max() < 4.5
    assert float(st.unit_var.mean()) == pytest.approx(s2, rel=0.08)  # 24 elements x 400 draws
    assert float(st.var.mean()) == pytest.approx(s2, rel=0.08)
    torch.testing.assert_close(st.halves.mean(0), st.mean, rtol=1e-9, atol=1e-12)


def test_antithetic_pairs_cancel_on_a_linear_model(linear):
    x, t = _x(), 1
    got = weight_smooth(ss.grad, 0.5, 6, seed=2, antithetic=True)(linear, x, t)
    truth = linear.lin.weight.detach()[t].expand(2, -1).reshape_as(x)
    torch.testing.assert_close(got, truth, rtol=0, atol=1e-12)


def test_only_the_chosen_layers_move(linear):
    """The bias does not enter the gradient: perturbing only it leaves the map exact."""
    x = _x()
    got = weight_smooth(ss.grad, 1.0, 4, seed=0, layers=["lin.bias"]).stats(linear, x, 0)
    torch.testing.assert_close(got.mean, ss.grad(linear, x, 0), rtol=0, atol=1e-12)
    assert float(got.unit_var.max()) < 1e-20


def test_standard_errors_are_calibrated(linear):
    """Across 60 seeds the errors of the mean, over their standard errors, have sd ~ 1."""
    x, t = _x(b=1), 0
    truth = linear.lin.weight.detach()[t].view_as(x)
    zs = []
    for seed in range(60):
        st = weight_smooth(ss.grad, 0.2, 12, seed=seed).stats(linear, x, t)
        zs.append(((st.mean - truth) / st.mean_var.sqrt()).flatten())
    z = torch.cat(zs)  # 720 values (12 per seed are independent elements)
    assert abs(float(z.mean())) < 0.2
    assert 0.85 < float(z.std()) < 1.2


def test_same_seed_same_maps_whatever_the_batch(convnet, images):
    cam = functools.partial(ss.grad_cam, layer="features.2")
    a = weight_smooth(cam, 0.1, 5, seed=7).stats(convnet, images, 0)
    b = weight_smooth(cam, 0.1, 5, seed=7, batch_size=1).stats(convnet, images, 0)
    c = weight_smooth(cam, 0.1, 5, seed=torch.Generator().manual_seed(7)).stats(convnet, images, 0)
    for other in (b, c):
        torch.testing.assert_close(other.mean, a.mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(other.unit_var, a.unit_var, rtol=1e-9, atol=1e-12)
    d = weight_smooth(cam, 0.1, 5, seed=8)(convnet, images, 0)
    assert not torch.equal(d, a.mean)
    torch.manual_seed(0)
    e = weight_smooth(ss.grad, 0.1, 3)(convnet, images, 0)  # None: torch's global generator
    torch.manual_seed(0)
    torch.testing.assert_close(weight_smooth(ss.grad, 0.1, 3)(convnet, images, 0), e)


def test_the_model_is_left_as_it_was(convnet, images):
    before = {k: v.clone() for k, v in convnet.state_dict().items()}
    hooks = hook_count(convnet)
    for method in (ss.grad, functools.partial(ss.grad_cam, layer=convnet.features[2])):
        weight_smooth(method, 0.3, 3, seed=0)(convnet, images, None)
    for k, v in convnet.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert hook_count(convnet) == hooks
    assert all(p.grad is None for p in convnet.parameters())
    assert not convnet.training


def test_weights_and_inputs_together(linear):
    """An inner Smoothed: with sigma_w = 0 it is that Smoothed; with both, a linear model's map
    is still A[t] on average with the weight noise's variance (input noise does not move it)."""
    x, t = _x(), 2
    inner = ss.smooth(ss.grad, 0.5, 4, seed=3)
    torch.testing.assert_close(weight_smooth(inner, 0.0, 4)(linear, x, t), inner(linear, x, t))
    gen = torch.Generator().manual_seed(4)
    both = weight_smooth(ss.smooth(ss.grad, 0.5, 2, seed=gen), 0.3, 200, seed=5).stats(linear, x, t)
    truth = linear.lin.weight.detach()[t].expand(2, -1).reshape_as(x)
    assert ((both.mean - truth) / both.mean_var.sqrt()).abs().max() < 4.5
    s2 = (0.3 * _std(linear)) ** 2  # a unit is A[t] + V[t] whatever its input draws
    assert float(both.unit_var.mean()) == pytest.approx(s2, rel=0.15)


def test_gradcam_moves_with_weight_noise(convnet, images):
    cam = functools.partial(ss.grad_cam_pp, layer="features.2")
    st = weight_smooth(cam, 0.2, 6, seed=0).stats(convnet, images, 0)
    assert st.mean.shape == cam(convnet, images, 0).shape
    assert float(st.unit_var.sum()) > 0 and torch.isfinite(st.mean).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 3, "antithetic": True}, "n_samples"),
        ({"reduce": "median"}, "reduce"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": "a"}, "seed"),
        ({"method": 3}, "method"),
        ({"noise": "gaussian"}, "noise: expected one of"),
        ({"n_samples": None}, "n_samples: expected a number of samples or a tolerance"),
        ({"tol": 0.1}, "n_samples: expected either n_samples or tol="),
        ({"n_samples": None, "tol": 0.0}, "tol: expected a finite number > 0"),
        ({"n_samples": None, "tol": 0.1, "min_samples": 1, "max_samples": 1}, "max_samples"),
        ({"min_samples": 8}, "min_samples: only with tol="),
        ({"groups": 3}, "groups: expected an even number"),
        ({"groups": 6}, "groups: expected at most the 4 units of n_samples, got 6"),
    ],
)
def test_bad_arguments_are_one_line(kwargs, match):
    args = {"method": ss.grad, "sigma": 0.1, "n_samples": 4, **kwargs}
    with pytest.raises(ValueError, match=match) as e:
        weight_smooth(args.pop("method"), args.pop("sigma"), args.pop("n_samples"), **args)
    assert "\n" not in str(e.value)


def test_bad_calls_are_one_line(linear):
    x = _x()
    for fn, match in [
        (lambda: weight_smooth(ss.grad, 0.1, 2, layers=["nope"])(linear, x, 0), "layers"),
        (lambda: weight_smooth(ss.grad, 0.1, 2, layers="lin")(linear, x, 0), "layers"),
        (lambda: weight_smooth(ss.grad, 0.1, 2)(lambda v: v, x, 0), "model"),
        (lambda: weight_smooth(ss.grad, 0.1, 2)(linear, x[0, 0, 0], 0), "x"),
    ]:
        with pytest.raises(ValueError, match=match) as e:
            fn()
        assert "\n" not in str(e.value)


def test_reductions_over_weight_draws(linear):
    """``var`` is the per-element variance over draws (population form), ``mean_sq`` the mean
    of squares: on a linear model var ~ s^2 and mean_sq = var + mean^2 exactly."""
    x, t = _x(), 0
    kw = dict(seed=9)
    mean = weight_smooth(ss.grad, 0.4, 300, **kw)(linear, x, t)
    var = weight_smooth(ss.grad, 0.4, 300, reduce="var", **kw)(linear, x, t)
    sq = weight_smooth(ss.grad, 0.4, 300, reduce="mean_sq", **kw)(linear, x, t)
    torch.testing.assert_close(sq, var + mean**2, rtol=1e-9, atol=1e-12)
    assert float(var.mean()) == pytest.approx((0.4 * _std(linear)) ** 2, rel=0.1)


@pytest.mark.parametrize("antithetic", [False, True])
def test_multiplicative_noise_is_noisegrad(convnet, images, antithetic):
    """``noise="multiplicative"`` equals a direct NoiseGrad: for each draw, a copy of the model
    whose every weight is multiplied by its own ``1 + sigma * eps`` factor (eps drawn in the
    documented order), the method run on the copy, the maps averaged (1e-12, float64)."""
    import copy

    sigma, n = 0.2, 4
    got = weight_smooth(ss.grad, sigma, n, seed=5, noise="multiplicative", antithetic=antithetic)
    got = got(convnet, images, 1)
    gen = torch.Generator().manual_seed(5)
    maps = []
    for _ in range(n // 2 if antithetic else n):
        eps = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype)
               for k, p in convnet.named_parameters()}  # fmt: skip
        for sign in (1.0, -1.0) if antithetic else (1.0,):
            noisy = copy.deepcopy(convnet)
            with torch.no_grad():
                for k, p in noisy.named_parameters():
                    p.mul_(1 + sign * sigma * eps[k])
            maps.append(ss.grad(noisy, images, 1))
    torch.testing.assert_close(got, torch.stack(maps).mean(dim=0), rtol=1e-12, atol=1e-12)
    additive = weight_smooth(ss.grad, sigma, n, seed=5, antithetic=antithetic)(convnet, images, 1)
    assert not torch.allclose(got, additive)


# --- the engine's options: tolerance, groups, rows per call -----------------------------------


def _rows_per_call(model):
    """A forward pre-hook recording the batch size of every call of ``model`` (its handle)."""
    sizes = []
    return sizes, model.register_forward_pre_hook(lambda _m, args: sizes.append(len(args[0])))


def test_a_tolerance_stops_early_within_it(convnet, images):
    """Rounds of weight draws stop when every image's rel_se is within tol, long before
    max_samples; an image that stopped after n draws has the map of n_samples=n, same seed."""
    tol, cam = 0.05, functools.partial(ss.grad_cam, layer="features.2")
    st = weight_smooth(cam, 0.1, tol=tol, min_samples=8, max_samples=2000, seed=3).stats(
        convnet, images, 0
    )
    assert bool(st.converged.all())
    assert (st.rel_se[st.converged] <= tol).all()
    assert int(st.draws_per_image.max()) < 2000 and int(st.draws_per_image.min()) >= 8
    for i in range(len(images)):
        n = int(st.draws_per_image[i])
        fixed = weight_smooth(cam, 0.1, n, seed=3).stats(convnet, images, 0)
        torch.testing.assert_close(st.mean[i], fixed.mean[i], rtol=1e-10, atol=1e-12)
    exact = weight_smooth(cam, 0.0, tol=tol).stats(convnet, images, 0)
    assert bool(exact.converged.all())


def test_group_standard_errors_cover_the_truth():
    """On a linear model a draw's map is ``A[t] + V[t]``, so the truth is known, and images with
    different targets see independent rows of ``V``: 8 independent trials a call. Over 320
    trials (40 seeds, 32 draws in 16 groups each), the 95% interval of the distance of the
    smoothed map to a fixed reference ``A[t] + d`` covers ``||d||`` in 90-99% of them
    (binomial sd 1.2%), with the jackknife's 15 degrees of freedom."""
    linear = make(Linear(classes=8))
    x, t = _x(b=8), torch.arange(8)
    truth = linear.lin.weight.detach()[t].view_as(x)
    d = 0.3 * _std(linear) * torch.linspace(-1, 1, x[0].numel(), dtype=x.dtype).view_as(x[0])
    hits = []
    for seed in range(40):
        st = weight_smooth(ss.grad, 0.3, 32, seed=seed, groups=16).stats(linear, x, t)
        est = ss.debiased_distance(st, truth + d)
        lo, hi = est.interval(0.95)
        hits.append((lo <= d.norm()) & (d.norm() <= hi))
    assert est.dof == 15
    assert 0.90 <= float(torch.cat(hits).double().mean()) <= 0.99


@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("batch_size", [None, 1, 4, 5])
def test_batch_size_bounds_rows_per_call(convnet, images, antithetic, batch_size):
    """Every call of the model holds at most ``batch_size`` rows (256 when None); all
    ``n_samples x B`` rows are run once (grad: one forward each); the maps do not depend on it."""
    sizes, handle = _rows_per_call(convnet)
    try:
        st = weight_smooth(ss.grad, 0.2, 6, seed=1, antithetic=antithetic, batch_size=batch_size)
        got = st.stats(convnet, images, 0)
    finally:
        handle.remove()
    assert max(sizes) <= (batch_size or ss.montecarlo.DEFAULT_BATCH_SIZE)
    assert sum(sizes) == 6 * len(images)
    one = weight_smooth(ss.grad, 0.2, 6, seed=1, antithetic=antithetic, batch_size=1)
    torch.testing.assert_close(got.mean, one(convnet, images, 0), rtol=1e-12, atol=1e-12)


def test_none_means_the_default_rows_per_call(linear):
    x = _x(b=300)
    sizes, handle = _rows_per_call(linear)
    try:
        weight_smooth(ss.grad, 0.2, 2, seed=0)(linear, x, 0)
    finally:
        handle.remove()
    assert max(sizes) == ss.montecarlo.DEFAULT_BATCH_SIZE and sum(sizes) == 2 * 300


@pytest.mark.parametrize("antithetic", [False, True])
def test_stats_equal_a_direct_implementation(convnet, images, antithetic):
    """Additive noise at fixed n against a direct estimator: for each unit a deep copy of the
    model with ``W_l + sign * sigma * RMS(W_l) * eps_l`` (eps in the documented order), the
    method run on all images, then mean, mean of squares, halves (``j % 2``), unbiased
    variance of unit means and the means of 4 groups (``j % 4``) taken over the stacked units
    (float64, 1e-12)."""
    import copy

    sigma, n, cam = 0.15, 8, functools.partial(ss.grad_cam, layer="features.2")
    st = weight_smooth(cam, sigma, n, seed=2, antithetic=antithetic, groups=4, batch_size=2)
    st = st.stats(convnet, images, 1)
    gen, scales = torch.Generator().manual_seed(2), layer_scales(convnet)
    samples = []
    for _ in range(n // 2 if antithetic else n):
        eps = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype)
               for k, p in convnet.named_parameters()}  # fmt: skip
        pair = []
        for sign in (1.0, -1.0) if antithetic else (1.0,):
            noisy = copy.deepcopy(convnet)
            with torch.no_grad():
                for k, p in noisy.named_parameters():
                    p.add_(sign * sigma * scales[k] * eps[k])
            pair.append(cam(noisy, images, 1))
        samples.append(torch.stack(pair))
    per = torch.stack(samples)  # [units, per_unit, B, ...]
    unit = per.mean(dim=1)
    j = torch.arange(len(unit))
    expected = {
        "mean": unit.mean(0),
        "mean_sq": (per * per).mean(dim=(0, 1)),
        "halves": torch.stack([unit[j % 2 == h].mean(0) for h in (0, 1)]),
        "unit_var": unit.var(0),
        "groups": torch.stack([unit[j % 4 == g].mean(0) for g in range(4)]),
    }
    for name, value in expected.items():
        torch.testing.assert_close(getattr(st, name), value, rtol=1e-12, atol=1e-12, msg=name)
    assert st.n_units == len(unit) and st.draws_per_unit == (2 if antithetic else 1)

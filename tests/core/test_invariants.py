"""Properties every method and every smoothed method must have (Captum-style meta-tests)."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import smoothstab as ss
from helpers import ConvNet, hook_count, make

SIGMA = 0.3
cam = functools.partial(ss.grad_cam, layer="features.3")
campp = functools.partial(ss.grad_cam_pp, layer="features.3")
ig = functools.partial(ss.integrated_gradients, steps=5, rule="riemann_middle")


def joint_ig(model, x, target=None, *, batch_size=None, seed=0, antithetic=False):
    return ss.smooth(
        ig, SIGMA, 6, sampler="joint", batch_size=batch_size, seed=seed, antithetic=antithetic
    )(model, x, target)


def nested_ig(model, x, target=None, *, batch_size=None, seed=0, antithetic=False):
    """The paper's nested smoothed IG through the convenience (batch_size spread over steps)."""
    return ss.smoothed_ig(
        SIGMA,
        4,
        steps=5,
        rule="riemann_middle",
        batch_size=batch_size,
        seed=seed,
        antithetic=antithetic,
    )(model, x, target)


PLAIN = {"grad": ss.grad, "ig": ig, "gradcam": cam, "gradcampp": campp}
SMOOTHED = {
    **{f"smooth_{k}": None for k in PLAIN},  # built by _smooth
    "smooth_ig_nested": lambda **kw: functools.partial(nested_ig, **kw),
    "smooth_ig_joint": lambda **kw: functools.partial(joint_ig, **kw),
}


def _smooth(name, **kw):
    return ss.smooth(PLAIN[name.removeprefix("smooth_")], SIGMA, 4, **kw)


ALL = list(PLAIN) + list(SMOOTHED)


def build(name, **kw):
    if name in PLAIN:
        return PLAIN[name]
    kw.setdefault("seed", 0)
    if name.startswith("smooth_ig_"):
        return SMOOTHED[name](**kw)
    return _smooth(name, **kw)


@pytest.fixture
def setup():
    model = make(ConvNet())
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model, x, torch.tensor([0, 4, 2])


@pytest.mark.parametrize("name", list(PLAIN))
def test_batch_equals_per_example(name, setup):
    model, x, target = setup
    method = build(name)
    rows = [method(model, x[i : i + 1], target[i : i + 1]) for i in range(3)]
    torch.testing.assert_close(method(model, x, target), torch.cat(rows), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(PLAIN))
def test_smoothed_batch_is_per_example_mean_over_its_draws(name, setup):
    """Image i's smoothed map is the mean of the method over x_i + sigma * eps[s, i]."""
    model, x, target = setup
    eps = ss.noise_draws(x, 4, seed=0)
    got = build("smooth_" + name)(model, x, target)
    for i in range(3):
        noisy = x[i] + SIGMA * eps[:, i]
        want = PLAIN[name](model, noisy, target[i].expand(4)).mean(0)
        torch.testing.assert_close(got[i], want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["ig"] + list(SMOOTHED))
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_chunk_size_does_not_change_result(name, batch_size, setup):
    model, x, target = setup
    if name == "ig":
        method, ref = functools.partial(ig, batch_size=batch_size), ig
    else:
        method, ref = build(name, batch_size=batch_size), build(name)
    torch.testing.assert_close(
        method(model, x, target), ref(model, x, target), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("name", list(PLAIN))
def test_sigma_zero_runs_the_method_once_with_exact_stats(name, setup):
    """At sigma 0 a smoothed method is the method itself, and ``.stats`` still exists: both
    halves equal the map and the Monte-Carlo variance is 0 (so distances need no special case)."""
    model, x, target = setup
    exact = PLAIN[name](model, x, target)
    smoothed = ss.smooth(PLAIN[name], 0.0, 4, seed=0)
    assert torch.equal(smoothed(model, x, target), exact)
    stats = smoothed.stats(model, x, target)
    for part in (stats.mean, stats.halves[0], stats.halves[1]):
        assert torch.equal(part, exact)
    assert torch.equal(stats.mean_var, torch.zeros_like(exact))
    assert torch.equal(ss.smooth(PLAIN[name], 0.0, 4, reduce="var")(model, x, target), 0 * exact)


def test_nested_smoothed_ig_is_smooth_of_integrated_gradients(setup):
    """The convenience adds nothing but the batch split: the same draws, the same numbers."""
    model, x, target = setup
    direct = ss.smooth(ig, SIGMA, 4, seed=5)(model, x, target)
    convenience = ss.smoothed_ig(SIGMA, 4, steps=5, rule="riemann_middle", seed=5)
    torch.testing.assert_close(convenience(model, x, target), direct, rtol=0, atol=0)


def test_joint_sampler_is_ig_at_one_stratified_path_point_per_draw(setup):
    """Unit j of the joint sampler evaluates IG's integrand at x + z_j, at the path position
    (j // 2 + u_j) / n_half in its half; recomputed here by hand from the canonical draws."""
    model, x, target = setup
    n, sigma = 4, SIGMA
    gen = torch.Generator().manual_seed(9)
    eps, u = [], []
    for _ in range(n):  # the canonical order: eps_j of x's shape, then u_j per image
        eps.append(torch.randn(x.shape, generator=gen, dtype=x.dtype))
        u.append(torch.rand(x.shape[0], generator=gen, dtype=x.dtype))
    want = torch.zeros_like(x)
    for j in range(n):
        a = (j // 2 + u[j]) / 2  # two units per half
        xs = x + sigma * eps[j]
        want += ss.methods.path_point_gradient(model, xs, torch.zeros_like(x), target, a) / n
    got = ss.smooth(ig, sigma, n, seed=9, sampler="joint")(model, x, target)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_same_seed_same_draws_common_random_numbers(setup):
    """Same int seed: same eps for every model and every sigma (scaled); a Generator works too."""
    model, x, _ = setup
    identity = lambda _m, xs, _t: xs  # noqa: E731  the smoothed map is x + sigma * mean(eps)
    eps_mean = ss.noise_draws(x, 6, seed=3).mean(0)
    for sigma in (0.1, 0.5):
        got = ss.smooth(identity, sigma, 6, seed=3)(model, x, torch.zeros(3, dtype=torch.long))
        torch.testing.assert_close(got, x + sigma * eps_mean, rtol=0, atol=1e-12)
    other = make(ConvNet(), seed=7)
    gen = torch.Generator().manual_seed(3)
    got = ss.smooth(identity, 0.1, 6, seed=gen)(other, x, torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(got, x + 0.1 * eps_mean, rtol=0, atol=1e-12)


def test_antithetic_draws_are_pairs(setup):
    _, x, _ = setup
    eps = ss.noise_draws(x, 6, seed=0, antithetic=True)
    torch.testing.assert_close(eps[0::2], -eps[1::2])


@pytest.mark.parametrize("name", ["smooth_grad", "smooth_gradcam", "smooth_ig_joint"])
def test_antithetic_keeps_the_mean(name, setup):
    """Plain and antithetic estimates agree within 4 combined standard errors (per image norm)."""
    model, x, target = setup
    n = 400

    def stats(antithetic, seed):
        method = PLAIN[name.removeprefix("smooth_").removesuffix("_joint")]
        sampler = "joint" if name.endswith("_joint") else "noise"
        smoothed = ss.smooth(method, SIGMA, n, antithetic=antithetic, seed=seed, sampler=sampler)
        return smoothed.stats(model, x, target)

    a, b = stats(False, 1), stats(True, 2)
    diff = (a.mean - b.mean).flatten(1)
    var = (a.mean_var + b.mean_var).flatten(1)
    z2 = (diff**2).sum(1) / var.sum(1)  # E[z2] = 1 when the means agree
    assert (z2 < 4.0).all(), z2


@pytest.mark.parametrize("name", ALL)
def test_no_side_effects(name, setup):
    model, x, target = setup
    x = x.clone().requires_grad_(True)
    before = x.detach().clone()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    build(name)(model, x, target)
    assert torch.equal(x.detach(), before)
    assert x.grad is None
    assert torch.equal(model.fc.weight.grad, torch.ones_like(model.fc.weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "fc.weight")
    assert not model.training
    assert hook_count(model) == 0


@pytest.mark.parametrize("name", ALL)
def test_no_hook_left_after_exception(name, setup):
    model, x, _ = setup
    with pytest.raises(ValueError, match="target"):
        build(name)(model, x, torch.tensor([0, 1, 99]))
    assert hook_count(model) == 0


class Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = make(ConvNet())
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("boom")
        return self.net(x)


@pytest.mark.parametrize("method", [ss.grad_cam, ss.grad_cam_pp])
def test_no_hook_left_when_model_raises(method):
    model = Exploding().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="boom"):
        method(
            model, x, None, layer="net.features.3"
        )  # the first call predicts the class, the second raises
    assert hook_count(model) == 0


def test_training_mode_is_kept_and_warned():
    model = make(
        nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(32, 3))
    )
    model.train()
    with pytest.warns(UserWarning, match="training mode"):
        ss.grad(model, torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.tensor([0, 1]))
    assert model.training


def test_target_none_is_predicted_class_at_clean_input(setup):
    model, x, _ = setup
    predicted = model(x).argmax(1)
    torch.testing.assert_close(ss.grad(model, x), ss.grad(model, x, predicted))
    torch.testing.assert_close(
        build("smooth_grad")(model, x), build("smooth_grad")(model, x, predicted)
    )


@pytest.mark.parametrize("reduce", ["mean", "mean_sq", "var"])
def test_reductions_match_their_definitions(reduce, setup):
    model, x, _ = setup
    identity = lambda _m, xs, _t: xs  # noqa: E731
    noisy = x + 0.2 * ss.noise_draws(x, 5, seed=4)
    want = {
        "mean": noisy.mean(0),
        "mean_sq": (noisy**2).mean(0),
        "var": noisy.var(0, unbiased=False),
    }
    got = ss.smooth(identity, 0.2, 5, seed=4, reduce=reduce, batch_size=4)(model, x, 0)
    torch.testing.assert_close(got, want[reduce], rtol=1e-9, atol=1e-12)


def test_stats_halves_and_standard_error(setup):
    model, x, _ = setup
    identity = lambda _m, xs, _t: xs  # noqa: E731
    noisy = x + 0.2 * ss.noise_draws(x, 7, seed=4)
    stats = ss.smooth(identity, 0.2, 7, seed=4, batch_size=3).stats(model, x, 0)
    torch.testing.assert_close(stats.halves[0], noisy[0::2].mean(0))  # units alternate halves
    torch.testing.assert_close(stats.halves[1], noisy[1::2].mean(0))
    torch.testing.assert_close(stats.mean_var, noisy.var(0) / 7)


@pytest.mark.parametrize(
    "name,batch_size,calls",
    [
        ("smooth_grad", 5, 3 * 4 / 5),  # 12 noisy rows in chunks of 5
        ("smooth_gradcam", 4, 3 * 4 / 4),
        ("smooth_ig_nested", 10, 4 * 3 * 5 / 10),  # 4 draws x 3 images x 5 steps
        ("smooth_ig_joint", 4, 6 * 3 / 4),
        ("ig", 7, 3 * 5 / 7),
    ],
)
def test_model_inputs_are_bounded_by_batch_size(name, batch_size, calls, setup):
    """Samples x images (x IG steps) are batched in chunks of at most ``batch_size`` rows."""
    model, x, target = setup
    sizes = []
    handle = model.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    try:
        if name == "ig":
            functools.partial(ig, batch_size=batch_size)(model, x, target)
        else:
            build(name, batch_size=batch_size)(model, x, target)
    finally:
        handle.remove()
    assert max(sizes) <= batch_size
    assert len(sizes) == -(-calls // 1)  # ceil: no more passes than the chunks need

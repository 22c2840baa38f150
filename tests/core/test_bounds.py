"""Bounds (Remark 4, Theorems 5-6, Proposition 7) and spectral norms: spectral norms against dense
SVDs, Gamma against brute force, the bounds against hand-computed closed forms, the fidelity
bound against dense Hessians and measured Smooth-Grad / smoothed-IG errors, the theory check of
a network, and bad input.

Long because each bound has its own known-answer and brute-force checks.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.autograd.functional import hessian

import smoothstab as ss
from helpers import hook_count
from smoothstab import bounds as sb
from smoothstab import spectral as sp

F64 = torch.float64


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def seeded(module: nn.Module, seed: int, scale: float = 1.0) -> nn.Module:
    """``module`` in float64, eval mode, weights ``N(0, scale^2 / fan_in)``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.ndim > 1 else p.numel()
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * scale / math.sqrt(fan_in))
    return module.to(F64).eval()


def tanh_mlp(m: int, scale: float, seed: int = 0, bias: bool = True) -> nn.Sequential:
    net = nn.Sequential(
        nn.Linear(m, 16, bias=bias),
        nn.Tanh(),
        nn.Linear(16, 16, bias=bias),
        nn.Tanh(),
        nn.Linear(16, 4, bias=bias),
    )
    return seeded(net, seed, scale)


# ---------------------------------------------------------------------------- spectral norms


@pytest.mark.parametrize("shape", [(30, 20), (7, 50), (64, 64), (1, 9)])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_spectral_norm_linear(shape, dtype):
    layer = seeded(nn.Linear(shape[1], shape[0]), seed=shape[0]).to(dtype)
    exact = torch.linalg.matrix_norm(layer.weight.double(), ord=2).item()
    assert rel(sp.spectral_norm(layer, tol=1e-10, n_iter=5000), exact) < 1e-3


def conv_matrix(conv: nn.Conv2d, shape: tuple[int, ...]) -> torch.Tensor:
    """The conv's linear map as a dense matrix: its columns are the images of basis vectors."""
    n = math.prod(shape)
    basis = torch.eye(n, dtype=F64).view(n, *shape)
    w = conv.weight.detach().double()
    return conv._conv_forward(basis, w, None).reshape(n, -1).T


CONVS = {
    "s1p0": dict(in_channels=2, out_channels=3, kernel_size=3),
    "s2p1": dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1),
    "s1p1": dict(in_channels=2, out_channels=4, kernel_size=3, padding=1),
    "groups": dict(in_channels=2, out_channels=4, kernel_size=3, stride=2, padding=1, groups=2),
    "dilation": dict(in_channels=2, out_channels=3, kernel_size=2, dilation=2, padding=1),
    "circular": dict(
        in_channels=2, out_channels=3, kernel_size=3, padding=1, padding_mode="circular"
    ),
}


@pytest.mark.parametrize("name", CONVS)
def test_spectral_norm_conv_matches_explicit_matrix(name):
    conv = seeded(nn.Conv2d(**CONVS[name]), seed=len(name))
    shape = (2, 5, 5)
    exact = torch.linalg.matrix_norm(conv_matrix(conv, shape), ord=2).item()
    assert rel(sp.spectral_norm(conv, shape, tol=1e-10, n_iter=5000), exact) < 1e-3


def test_batchnorm_folding_equals_scaled_conv():
    conv = seeded(nn.Conv2d(2, 4, 3, padding=1), seed=1)
    bn = nn.BatchNorm2d(4).to(F64).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        bn.running_var.copy_(torch.rand(4, generator=g, dtype=F64) * 3 + 0.1)
        bn.weight.copy_(torch.randn(4, generator=g, dtype=F64))
        scaled = nn.Conv2d(2, 4, 3, padding=1).to(F64)
        scaled.weight.copy_(
            conv.weight * (bn.weight / (bn.running_var + bn.eps).sqrt())[:, None, None, None]
        )
    exact = torch.linalg.matrix_norm(conv_matrix(scaled, (2, 5, 5)), ord=2).item()
    folded = sp.spectral_norm(conv, (2, 5, 5), bn=bn, tol=1e-10, n_iter=5000)
    assert rel(folded, exact) < 1e-3
    net = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten(), seeded(nn.Linear(100, 3), 3)).eval()
    assert rel(sp.layer_norms(net, (2, 5, 5), tol=1e-10, n_iter=5000).norms[0], exact) < 1e-3
    unfolded = sp.layer_norms(net, (2, 5, 5), fold_batchnorm=False)
    assert unfolded.names == ("0", "1", "4")
    scale = bn.weight.abs() / (bn.running_var + bn.eps).sqrt()
    assert unfolded.norms[1] == pytest.approx(scale.max().item())


def test_bounds_reexports_the_spectral_api():
    """``smoothstab.experiments.stages.bounds_stage`` reaches these through
    ``smoothstab.bounds``."""
    assert sb.spectral_norm is sp.spectral_norm and sb.layer_norms is sp.layer_norms
    assert sb.LayerNorms is sp.LayerNorms
    assert {"spectral_norm", "layer_norms", "LayerNorms"} <= set(sb.__all__)
    assert all(callable(getattr(sb, name)) for name in sb.__all__)


# ---------------------------------------------------------------------------- Gamma, Remark 4


def test_gamma_known_answers():
    b = [1.0, 2.0, 3.0]
    assert [sb.gamma(b, 3, i) for i in range(4)] == pytest.approx([6, 11, 6, 1], rel=1e-12)
    assert sb.gamma(b, 2, 1) == pytest.approx(3, rel=1e-12)
    assert sb.gamma(b, 2, 0) == pytest.approx(2, rel=1e-12)
    assert sb.gamma(b, 0, 0) == 1.0
    assert sb.gamma([0.0, 2.0], 2, 0) == 0.0


def test_gamma_matches_brute_force():
    b = [0.7, 1.9, 2.5, 0.3, 4.0, 1.1]
    for t in range(len(b) + 1):
        for i in range(t + 1):
            brute = sum(math.prod(c) for c in itertools.combinations(b[:t], t - i))
            assert sb.gamma(b, t, i) == pytest.approx(brute, rel=1e-12)


def test_gamma_past_float_range_is_inf_and_exact_below_it():
    b = [1e5] * 80
    assert sb.gamma(b, 80, 0) == math.inf  # 1e400
    # Gamma_{80,i} = C(80, 80 - i) 1e5^(80 - i): the log-space sum stays exact up to ~1e308
    assert sb.gamma(b, 80, 30) == pytest.approx(math.comb(80, 50) * 1e250, rel=1e-9)
    assert sb.gamma(b, 80, 79) == pytest.approx(80 * 1e5, rel=1e-12)


def test_remark4_constants():
    b, C = [1.0, 2.0, 3.0], 2.0
    assert sb.lipschitz_constant(b, C) == pytest.approx(11 * 2)
    assert sb.smoothness_vanilla(b, C) == pytest.approx((3 * 3 + 1) * 11**2 * 2**2)
    assert sb.smoothness_noisy(b, C, 0.1) == pytest.approx(22 / 0.1)


# ---------------------------------------------------------------------------- Theorems 5, 6

B3 = [1.0, 2.0, 3.0]
SGD = dict(C=2.0, n=1000, T=5000, c=0.1, beta=3.0)


def test_theorem5_direct_formula():
    C, n, T, c, beta = SGD.values()
    q, L = beta * c, 11 * C  # Gamma_{3,1} = 11; Gamma_{3,0} = 6; Gamma_{1,1} + Gamma_{2,1} = 4
    phi = (2 * 6 * C * 4) ** (1 / (q + 1)) * (2 * 6) ** (q / (q + 1))
    up = (1 + 1 / q) / (n - 1) * (2 * c * L) ** (1 / (q + 1)) * T ** (q / (q + 1)) * phi
    assert sb.stability_bound_simplegrad(B3, **SGD) == pytest.approx(up, rel=1e-12)
    assert sb.stability_bound_simplegrad(B3, **SGD, log10=True) == pytest.approx(math.log10(up))


def test_theorem5_scales_as_one_over_n_minus_one():
    ns = (10, 100, 1000, 10**5)
    ups = [sb.stability_bound_simplegrad(B3, **{**SGD, "n": n}) for n in ns]
    assert all(a > b for a, b in itertools.pairwise(ups))
    scaled = [up * (n - 1) for up, n in zip(ups, ns, strict=True)]
    assert scaled == pytest.approx([scaled[0]] * len(ns), rel=1e-12)


def test_theorem5_on_huge_networks_matches_exact_integer_arithmetic():
    """400 layers of norm 10: Gamma_{400,0} = 1e400, past float range; the log10 result is
    checked against the closed form evaluated with Python's exact big integers."""
    k, C, n, T, c = 400, 1000, 50_000, 10**6, 0.1
    deep = [10.0] * k
    g0, g1 = 10**k, k * 10 ** (k - 1)  # Gamma_{k,0}, Gamma_{k,1}
    s1 = sum(t * 10 ** (t - 1) for t in range(1, k))  # sum_{t<k} Gamma_{t,1}
    beta = sb.smoothness_vanilla(deep, C=C)
    assert beta == math.inf  # (3k + 1) Gamma_{k,1}^2 C^2 ~ 2e812
    args = dict(C=C, n=n, T=T, c=c, beta=beta)
    assert sb.stability_bound_simplegrad(deep, **args) == math.inf
    # beta = inf: the exponents are 1/(q+1) = 0 and q/(q+1) = 1, so Up = T 2 Gamma_{k,0} / (n - 1)
    exact = math.log10(T * 2 * g0) - math.log10(n - 1)
    assert sb.stability_bound_simplegrad(deep, **args, log10=True) == pytest.approx(
        exact, rel=1e-12
    )
    q = 3.0 * c  # finite beta = 3: every factor of Theorem 5 counts
    a = 1 / (q + 1)
    exact = (
        math.log10(1 + 1 / q)
        - math.log10(n - 1)
        + a * (math.log10(2 * c) + math.log10(g1 * C))
        + (1 - a) * math.log10(T)
        + a * math.log10(2 * g0 * C * s1)
        + (1 - a) * math.log10(2 * g0)
    )
    got = sb.stability_bound_simplegrad(deep, **{**args, "beta": 3.0}, log10=True)
    assert got == pytest.approx(exact, rel=1e-12)


def test_theorem6_falls_with_sigma_and_clip():
    sigmas = torch.logspace(-3, 3, 25).numpy()
    up6 = sb.stability_bound_smoothgrad(B3, sigma=sigmas, **SGD)
    assert up6.shape == sigmas.shape and (up6[1:] < up6[:-1]).all()
    up5 = sb.stability_bound_simplegrad(B3, **SGD)
    # factor = Gamma_{3,1} / (2 sigma Gamma_{3,0} * 4) = 11 / (48 sigma), exponent 1 / (q + 1)
    q = SGD["beta"] * SGD["c"]
    assert sb.stability_bound_smoothgrad(B3, sigma=2.0, **SGD) == pytest.approx(
        up5 * (11 / 96) ** (1 / (q + 1))
    )
    clipped = sb.stability_bound_smoothgrad(B3, sigma=sigmas, clip=True, **SGD)
    assert (clipped <= up5 * (1 + 1e-12)).all() and (clipped <= up6).all()
    assert clipped[-1] == pytest.approx(up6[-1]) and clipped[0] == pytest.approx(up5)


# ---------------------------------------------------------------------------- Proposition 7


def test_kappa_bounds_the_gradient_lipschitz_constant_tightly_in_1d():
    """f = w2 tanh(w1 x): |f''| peaks at max|tanh''| w1^2 |w2| = 0.770 kappa."""
    for w1, w2 in [(1.0, 1.0), (2.0, 0.5), (0.3, -5.0)]:
        net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Tanh(), nn.Linear(1, 1, bias=False))
        with torch.no_grad():
            net[0].weight.fill_(w1)
            net[2].weight.fill_(w2)
        net = net.to(F64).eval()
        kappa = sb.fidelity_bound_smoothgrad(sp.layer_norms(net, (1,)), sigma=1.0, m=1)
        assert kappa == pytest.approx(w1**2 * abs(w2))
        x = torch.linspace(-3, 3, 20001, dtype=F64)[:, None] / w1
        g = ss.grad(net, x, 0)[:, 0]
        f2 = (g[1:] - g[:-1]).abs() / (x[1:, 0] - x[:-1, 0])
        assert f2.max().item() / kappa == pytest.approx(4 / (3 * math.sqrt(3)), rel=1e-3)


def test_fidelity_bound_holds_for_smoothgrad_1d_and_is_not_loose():
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Tanh(), nn.Linear(1, 1, bias=False))
    net = seeded(net, 0)
    norms = sp.layer_norms(net, (1,))
    g_max = math.prod(norms.norms)  # |f'| <= Gamma_{2,0}: no error can exceed 2 Gamma_{2,0}
    x = torch.linspace(-3, 3, 13, dtype=F64)[:, None] / norms.norms[0]
    g0 = ss.grad(net, x, 0)
    ratios = []
    for r in (0.1, 0.3, 1.0, 1.5):  # the bound is r Gamma_{2,0}: below the trivial bound
        sigma = r / norms.norms[0]
        bound = sb.fidelity_bound_smoothgrad(norms, sigma=sigma, m=1)
        assert bound == pytest.approx(r * g_max) and bound < 2 * g_max
        sg = ss.smooth(ss.grad, sigma, 4096, seed=0, antithetic=True)(net, x, 0)
        ratios.append((sg - g0).abs().max().item() / bound)
    assert max(ratios) <= 1 and max(ratios) > 0.3


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_fidelity_bound_on_tanh_mlp(scale):
    """kappa against dense SVDs and dense Hessians, then the measured Smooth-Grad and smoothed-IG
    errors below the bounds, at sigmas where the bounds are below the trivial ones."""
    m = 12
    net = tanh_mlp(m, scale, seed=3)
    norms = sp.layer_norms(net, (m,))
    assert not norms.fidelity_heuristic and norms.smooth
    b1, b2, b3 = (torch.linalg.matrix_norm(net[i].weight, ord=2).item() for i in (0, 2, 4))
    g0_norm = b1 * b2 * b3  # Gamma_{3,0} >= ||grad f(x)|| for every x
    kappa = g0_norm * (b1 + b1 * b2)  # Gamma_{3,0} (Gamma_{1,0} + Gamma_{2,0})
    unit = sb.fidelity_bound_smoothgrad(norms, sigma=1.0, m=m)
    assert unit == pytest.approx(kappa * math.sqrt(m), rel=1e-5)
    # kappa bounds the Lipschitz constant of x -> grad f(x): every Hessian's spectral norm
    probe = torch.randn(64, m, dtype=F64, generator=torch.Generator().manual_seed(2)) * 2
    hessians = torch.stack([hessian(lambda v: net(v[None])[0, 0], p) for p in probe])
    assert torch.linalg.matrix_norm(hessians, ord=2).max().item() <= kappa
    x = torch.randn(6, m, dtype=F64, generator=torch.Generator().manual_seed(1))
    C = x.norm(dim=1).max().item()
    g0 = ss.grad(net, x, 0)
    ig0 = ss.integrated_gradients(net, x, 0, steps=32, rule="gausslegendre")
    for r in (0.01, 0.1, 0.25):
        sigma = r * 2 * g0_norm / (kappa * math.sqrt(m))  # the Smooth-Grad bound: r 2 Gamma_{3,0}
        bound = sb.fidelity_bound_smoothgrad(norms, sigma=sigma, m=m)
        assert bound < 2 * g0_norm  # else it holds trivially: each gradient <= Gamma_{3,0}
        sg = ss.smooth(ss.grad, sigma, 256, seed=0)(net, x, 0)
        assert (sg - g0).norm(dim=1).max().item() <= bound
        # ||IG(x)|| <= ||x|| Gamma_{3,0}: the error is at most (2C + sigma sqrt m) Gamma_{3,0}
        bound_ig = sb.fidelity_bound_smoothed_ig(norms, sigma=sigma, m=m, C=C)
        assert bound_ig < (2 * C + sigma * math.sqrt(m)) * g0_norm
        sig = ss.smoothed_ig(sigma, 64, steps=32, rule="gausslegendre", seed=0)(net, x, 0)
        assert (sig - ig0).norm(dim=1).max().item() <= bound_ig


def test_fidelity_bounds_vectorised_and_linear_model_is_exact():
    sig = [0.1, 1.0, 10.0]
    out = sb.fidelity_bound_smoothgrad(B3, sigma=sig, m=4)
    kappa = 6 * (1 + 2)  # Gamma_{3,0} (Gamma_{1,0} + Gamma_{2,0})
    assert out.tolist() == pytest.approx([kappa * s * 2 for s in sig])
    ig = sb.fidelity_bound_smoothed_ig(B3, sigma=sig, m=4, C=2.0)
    assert ig.tolist() == pytest.approx([kappa * 7 * s * 2 for s in sig])
    assert sb.fidelity_bound_smoothgrad([3.0], sigma=1.0, m=4) == 0.0  # constant gradient


# ---------------------------------------------------------------------------- theory check


def test_plain_tanh_chain_is_covered_and_biases_flag_stability():
    net = tanh_mlp(5, 1.0, bias=False)
    norms = sp.layer_norms(net, (5,))
    assert not norms.heuristic and norms.reasons == () and norms.k == 3 and norms.m == 5
    for layer, b in zip((net[0], net[2], net[4]), norms.norms, strict=True):
        assert rel(b, torch.linalg.matrix_norm(layer.weight, ord=2).item()) < 1e-3
    with_bias = sp.layer_norms(tanh_mlp(5, 1.0), (5,))
    assert with_bias.stability_heuristic and not with_bias.fidelity_heuristic


def test_relu_chain_is_heuristic_for_lack_of_smoothness():
    net = nn.Sequential(nn.Linear(5, 8, bias=False), nn.ReLU(), nn.Linear(8, 2, bias=False))
    norms = sp.layer_norms(seeded(net, 0), (5,))
    assert norms.stability_heuristic and norms.fidelity_heuristic and not norms.smooth
    assert norms.reasons == ("[all] ReLU is not 1-smooth: 1",)


def test_resnet18_is_heuristic():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None, num_classes=3).train()
    running = model.bn1.running_mean.clone()
    with pytest.warns(UserWarning, match="no convergence"):
        norms = sp.layer_norms(model, (3, 16, 16), n_iter=3)
    assert norms.heuristic and norms.stability_heuristic and norms.fidelity_heuristic
    text = "\n".join(norms.reasons)
    for word in ("skip connection", "BatchNorm folded", "max pooling", "average pooling"):
        assert word in text
    assert norms.k == 21 and norms.names[0] == "conv1"  # 20 convs (3 downsample) + fc
    assert model.training and model.bn1.training and torch.equal(model.bn1.running_mean, running)
    assert hook_count(model) == 0


STAB = "[Theorems 5-6 and Remark 4]"


@pytest.mark.parametrize(
    "act, stability, fidelity, smooth, reasons",
    [
        (nn.Tanh(), False, False, True, ()),
        (nn.ELU(), False, False, True, ()),
        (nn.Softplus(), True, False, True, (f"{STAB} Softplus(0) != 0: 1",)),
        (nn.Sigmoid(), True, False, True, (f"{STAB} Sigmoid(0) != 0: 1",)),
        (nn.GELU(), True, True, True, ("[all] GELU is not 1-Lipschitz: 1",)),
        (
            nn.LeakyReLU(2.0),
            True,
            True,
            False,
            ("[all] LeakyReLU is not 1-Lipschitz: 1", "[all] LeakyReLU is not 1-smooth: 1"),
        ),
        (nn.ELU(alpha=0.5), True, True, False, ("[all] ELU is not 1-smooth: 1",)),
        (nn.ReLU6(), True, True, False, ("[all] ReLU6 is not 1-smooth: 1",)),  # a Hardtanh
    ],
)
def test_activation_checks(act, stability, fidelity, smooth, reasons):
    net = nn.Sequential(nn.Linear(3, 4, bias=False), act, nn.Linear(4, 2, bias=False))
    norms = sp.layer_norms(net, (3,))
    assert (norms.stability_heuristic, norms.fidelity_heuristic) == (stability, fidelity)
    assert norms.smooth == smooth and norms.reasons == reasons


def test_failed_trace_leaves_model_untouched():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).train()
    with pytest.raises(ValueError, match="input_shape"):
        sp.layer_norms(model, (5,))
    assert hook_count(model) == 0 and all(m.training for m in model.modules())
    norms = sp.layer_norms(model, (3,))
    assert norms.names == ("0", "3") and all(p.grad is None for p in model.parameters())


def test_functional_skip_connection_is_flagged():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4, bias=False), nn.Linear(4, 2, bias=False)

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)) + x)

    norms = sp.layer_norms(Residual(), (4,))
    assert norms.heuristic and "skip connection" in norms.reasons[0]


# ---------------------------------------------------------------------------- bad input

BAD = {
    "no linear layer": (lambda: sp.layer_norms(nn.Sequential(nn.Tanh()), (3,)), "at least one"),
    "not a layer": (lambda: sp.spectral_norm(nn.ReLU(), (3,)), "layer: expected a Linear"),
    "conv shape": (lambda: sp.spectral_norm(nn.Conv2d(2, 3, 3), (3, 5, 5)), "input_shape"),
    "model shape": (lambda: sp.layer_norms(nn.Linear(3, 2), (4,)), "input_shape"),
    "empty norms": (lambda: sb.gamma([], 0, 0), "norms: expected at least one"),
    "negative norm": (lambda: sb.gamma([1.0, -2.0], 2, 0), "norms: expected finite"),
    "gamma range": (lambda: sb.gamma(B3, 4, 0), "t, i: expected"),
    "sigma zero": (
        lambda: sb.fidelity_bound_smoothgrad(B3, sigma=0.0, m=3),
        "sigma: expected finite numbers > 0",
    ),
    "sigma negative": (
        lambda: sb.stability_bound_smoothgrad(B3, sigma=[1.0, -1.0], **SGD),
        "sigma: expected finite numbers > 0",
    ),
    "n = 1": (lambda: sb.stability_bound_simplegrad(B3, **{**SGD, "n": 1}), "n: expected"),
    "T < 1": (lambda: sb.stability_bound_simplegrad(B3, **{**SGD, "T": 0.5}), "T: expected"),
    "c <= 0": (lambda: sb.stability_bound_simplegrad(B3, **{**SGD, "c": 0.0}), "c: expected"),
    "one layer": (lambda: sb.stability_bound_simplegrad([2.0], **SGD), "k >= 2"),
    "C <= 0": (lambda: sb.lipschitz_constant(B3, -1.0), "C: expected"),
    "m": (lambda: sb.fidelity_bound_smoothed_ig(B3, sigma=1.0, m=0, C=1.0), "m: expected"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_value_error(case):
    fn, match = BAD[case]
    with pytest.raises(ValueError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)

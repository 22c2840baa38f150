"""Metrics: known answers, agreement with scikit-image and PAIR's grayscale view, the split-half
debiased distance on synthetic cases with known truth, aggregation, and bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from helpers import rand
from smoothstab import SmoothStats, grad, smooth
from smoothstab import metrics as M
from smoothstab.experiments.analysis import aggregate as A
from smoothstab.montecarlo import monte_carlo
from smoothstab.views import percentile

F64 = torch.float64


def sk_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """scikit-image with the paper's settings, image by image."""
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    kw = dict(data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    vals = [
        structural_similarity(x.double().numpy(), y.double().numpy(), **kw)
        for x, y in zip(a, b, strict=True)
    ]
    return torch.tensor(vals, dtype=F64)


def pair_gray(image_3d: np.ndarray, percentile: float = 99) -> np.ndarray:
    """PAIR saliency's VisualizeImageGrayscale on one HWC map."""
    image_2d = np.sum(np.abs(image_3d), axis=2)
    vmax = np.percentile(image_2d, percentile)
    vmin = np.min(image_2d)
    return np.clip((image_2d - vmin) / (vmax - vmin), 0, 1)


# --- distances -------------------------------------------------------------------------------


def test_l2_known_answers_and_symmetry():
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    torch.testing.assert_close(M.l2_distance(a, b), torch.full((2,), 48**0.5, dtype=F64))
    x, y = rand(3, 3, 8, 8, seed=1), rand(3, 3, 8, 8, seed=2)
    torch.testing.assert_close(M.l2_distance(x, x), torch.zeros(3, dtype=F64), atol=0, rtol=0)
    torch.testing.assert_close(M.l2_distance(x, y), M.l2_distance(y, x), atol=0, rtol=0)
    assert (M.l2_distance(x, y) >= 0).all()
    torch.testing.assert_close(M.stability_error(x, y), M.l2_distance(x, y), atol=0, rtol=0)
    torch.testing.assert_close(M.fidelity_error(x, y), M.l2_distance(x, y), atol=0, rtol=0)


def test_l2_is_per_image():
    x, y = rand(4, 1, 5, 5, seed=3), rand(4, 1, 5, 5, seed=4)
    each = torch.cat([M.l2_distance(x[i : i + 1], y[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(M.l2_distance(x, y), each, atol=1e-12, rtol=0)


# --- views -----------------------------------------------------------------------------------


@pytest.mark.parametrize("q", [99, 50, 100, 0.5])
@pytest.mark.parametrize("n", [1, 2, 7, 150])
def test_percentile_matches_numpy(q, n):
    v = rand(3, n, seed=n)
    ref = np.percentile(v.numpy(), q, axis=1)
    torch.testing.assert_close(percentile(v, q), torch.from_numpy(ref), atol=1e-12, rtol=0)


@pytest.mark.parametrize("q", [99, 90, 100])
@pytest.mark.parametrize("dtype,tol", [(F64, 1e-12), (torch.float32, 1e-5)])
def test_to_gray_matches_pair(q, dtype, tol):
    m = rand(3, 3, 20, 28, seed=5, dtype=dtype)
    gray = M.to_gray(m, clip_percentile=q)
    ref = np.stack([pair_gray(x.permute(1, 2, 0).double().numpy(), q) for x in m])
    assert gray.shape == (3, 20, 28) and gray.dtype == dtype
    torch.testing.assert_close(gray.double(), torch.from_numpy(ref), atol=tol, rtol=0)
    assert gray.min() >= 0 and gray.max() <= 1


def test_to_gray_degenerate_maps_give_no_nan():
    const = torch.full((2, 3, 12, 12), 0.7)
    assert torch.equal(M.to_gray(const), torch.zeros(2, 12, 12))
    sparse = torch.zeros(1, 1, 12, 12)
    sparse[0, 0, 3, 4] = 2.0  # the 99th percentile equals the minimum: the limit is 1 above it
    gray = M.to_gray(sparse)
    assert torch.isfinite(gray).all() and gray.sum() == 1 and gray[0, 3, 4] == 1


# --- SSIM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 28, 40), (2, 11, 11), (1, 224, 224)])
def test_ssim_matches_skimage_on_random_views(shape):
    a = torch.rand(*shape, generator=torch.Generator().manual_seed(6), dtype=F64)
    b = a + 0.5 * torch.rand(*shape, generator=torch.Generator().manual_seed(7), dtype=F64)
    b = b.clamp(0, 1)
    torch.testing.assert_close(M.ssim(a, b), sk_ssim(a, b), atol=1e-4, rtol=0)
    torch.testing.assert_close(M.ssim(a, b), sk_ssim(a, b), atol=1e-10, rtol=0)  # in fact exact


def test_ssim_float32_and_single_view():
    a = torch.rand(2, 30, 30, generator=torch.Generator().manual_seed(8))
    b = torch.rand(2, 30, 30, generator=torch.Generator().manual_seed(9))
    ours = M.ssim(a, b)
    assert ours.dtype == F64
    torch.testing.assert_close(ours, sk_ssim(a, b), atol=1e-4, rtol=0)
    torch.testing.assert_close(M.ssim(a[0], b[0]), ours[0], atol=1e-12, rtol=0)


def test_ssim_known_answers_symmetry_bounds():
    a = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(10), dtype=F64)
    b = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(11), dtype=F64)
    torch.testing.assert_close(M.ssim(a, a), torch.ones(3, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(M.ssim(a, b), M.ssim(b, a), atol=1e-12, rtol=0)
    assert (M.ssim(a, b).abs() <= 1).all() and (M.ssim(a, 1 - a) < 0.5).all()


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(8 * 16 * 16, 5)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def test_ssim_matches_skimage_on_real_maps():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = TinyNet().eval()
    x = rand(4, 3, 32, 32, seed=12, dtype=torch.float32)
    plain = grad(model, x)
    smoothed = smooth(grad, 0.3, 8, seed=0)(model, x)
    ga, gb = M.to_gray(plain), M.to_gray(smoothed)
    ref = sk_ssim(ga, gb)
    torch.testing.assert_close(M.ssim(ga, gb), ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(M.ssim_maps(plain, smoothed), ref, atol=1e-4, rtol=0)
    assert (ref < 0.999).all()  # the comparison is not trivial


# --- top-k -----------------------------------------------------------------------------------


def test_topk_iou_known_answers():
    a = torch.arange(100.0).view(1, 1, 10, 10)
    b = a.flip(-1).flip(-2)  # top 10 of a: indices 90..99; of b: 0..9
    assert M.topk_iou(a, a, k=10).item() == 1
    assert M.topk_iou(a, b, k=10).item() == 0
    c = a.clone().flatten()
    c[85:90], c[95:] = c[95:].clone(), c[85:90].clone()  # top 10 of c: 85..94, 5 shared
    c = c.view(1, 1, 10, 10)
    assert M.topk_iou(a, c, k=10).item() == pytest.approx(5 / 15)
    assert M.topk_iou(a, -a, k=10).item() == 1  # abs: the sign does not matter
    assert M.topk_iou(a, a, k=100).item() == 1


def test_topk_iou_sums_abs_over_channels_symmetry_bounds():
    a, b = rand(3, 3, 16, 16, seed=13), rand(3, 3, 16, 16, seed=14)
    flipped = a * torch.tensor([1.0, -1.0, 1.0], dtype=F64).view(1, 3, 1, 1)
    assert torch.equal(M.topk_iou(a, flipped, k=20), torch.ones(3, dtype=F64))
    iou = M.topk_iou(a, b, k=20)
    assert torch.equal(iou, M.topk_iou(b, a, k=20))
    assert ((iou >= 0) & (iou <= 1)).all()


def test_topk_ties_are_deterministic():
    a = torch.zeros(2, 1, 6, 6)
    a[:, 0, 5, 5] = 1.0  # one clear winner, then 35 tied pixels
    b = a.clone()
    b[:, 0, 0, 0] = 0.5  # b's second pixel is index 0, which a's tie-break also picks
    assert torch.equal(M.topk_iou(a, b, k=2), torch.ones(2, dtype=F64))
    assert M.topk_iou(a, b, k=3).tolist() == [1.0, 1.0]  # ties to lower indices: {35, 0, 1}
    const_a, const_b = torch.ones(1, 3, 8, 8), 2 * torch.ones(1, 3, 8, 8)
    assert M.topk_iou(const_a, const_b, k=7).item() == 1
    assert M.topk_overlap(const_a, const_b).item() == 1
    shift = torch.ones(1, 1, 8, 8)
    shift[0, 0, 0, :4] = 0  # ties among the rest: the first k of indices 4.. are taken
    assert M.topk_iou(shift, torch.ones(1, 1, 8, 8), k=4).item() == 0


def test_topk_overlap_is_the_paper_code_variant():
    a = torch.arange(200.0).view(1, 2, 10, 10)
    assert M.topk_overlap(a, a).item() == 1
    assert M.topk_overlap(a, -a).item() == 0  # signed: the most negative are not salient
    assert M.topk_overlap(a, a.abs(), frac=1.0).item() == 1
    b = a.clone().flatten()
    b[180:185] = -1  # 5 of a's top 20 (k = int(0.1 * 200)) leave
    assert M.topk_overlap(a, b.view(1, 2, 10, 10)).item() == pytest.approx(15 / 20)


# --- debiased distance -----------------------------------------------------------------------

TRIALS = 1000  # independent trials of the Monte-Carlo estimate, run as a batch of images


def estimates(fn_a, fn_b, xa, xb, seed_a, seed_b, n_a, n_b=None, sigma=1.0):
    """DistanceEstimate over TRIALS images, each with its own draws (fn of the noisy input)."""
    rep = lambda x: x.expand(TRIALS, *x.shape[1:]).clone()  # noqa: E731
    kw = dict(sigma=sigma, batch_size=4096)
    a = monte_carlo(lambda xs, *_: fn_a(xs), rep(xa), n_samples=n_a, seed=seed_a, **kw)
    b = monte_carlo(lambda xs, *_: fn_b(xs), rep(xb), n_samples=n_b or n_a, seed=seed_b, **kw)
    return M.debiased_distance(a, b)


def assert_unbiased(est, truth):
    se = est.sq.std().item() / TRIALS**0.5
    assert abs(est.sq.mean().item() - truth) < 3 * se
    plain_se = (est.plain**2).std().item() / TRIALS**0.5
    assert (est.plain**2).mean().item() - truth > 3 * plain_se  # the plain one is biased


XA = rand(1, 1, 6, 6, seed=20)
XB = XA + 0.3 * rand(1, 1, 6, 6, seed=21)
IDENTITY = lambda x: x  # noqa: E731  smoothed map of x is x exactly


@pytest.mark.parametrize("n", [7, 8])
def test_debiased_unbiased_with_independent_draws(n):
    est = estimates(IDENTITY, IDENTITY, XA, XB, 1, 2, n)
    assert_unbiased(est, ((XA - XB) ** 2).sum().item())


@pytest.mark.parametrize("n", [7, 8])
def test_debiased_unbiased_with_common_random_numbers(n):
    # same x, same seed: identical noise for both; E[(x + s e)^2] = x^2 + s^2
    est = estimates(IDENTITY, lambda x: x**2, XA, XA, 3, 3, n, sigma=0.5)
    assert_unbiased(est, ((XA - XA**2 - 0.25) ** 2).sum().item())


def test_debiased_against_an_exact_reference():
    ref = XB.expand(TRIALS, 1, 6, 6)  # the unsmoothed map of Eq. 13: no Monte-Carlo error
    a = monte_carlo(lambda xs, *_: xs, ref.clone() - XB + XA, sigma=1.0, n_samples=6, seed=4)
    truth = ((XA - XB) ** 2).sum().item()
    for exact in (ref, SmoothStats.exact(ref)):
        assert_unbiased(M.debiased_distance(a, exact), truth)
        assert_unbiased(M.debiased_distance(exact, a), truth)


@pytest.mark.parametrize(
    "fn_b,xb,seeds,n_b",
    [
        (IDENTITY, XA + 2.0, (5, 6), None),
        (lambda x: 3 * x + 1, XA, (7, 7), None),  # assuming independence: SE off by 1.58x
        (IDENTITY, XA + 2.0, (8, 9), 12),
    ],
    ids=["independent", "common", "unequal-counts"],
)
def test_stderr_is_calibrated(fn_b, xb, seeds, n_b):
    est = estimates(IDENTITY, fn_b, XA, xb, *seeds, 16, n_b, sigma=0.5)
    spread = est.plain.std().item()
    assert est.stderr.mean().item() == pytest.approx(spread, rel=0.15)


def test_debiased_fields_on_identical_and_exact_maps():
    x = rand(2, 3, 4, 4, seed=22)
    est = M.debiased_distance(x, x)
    for t in (est.plain, est.sq, est.value, est.stderr):
        torch.testing.assert_close(t, torch.zeros(2, dtype=F64), atol=0, rtol=0)
    y = rand(2, 3, 4, 4, seed=23)
    est = M.debiased_distance(SmoothStats.exact(x), y)
    torch.testing.assert_close(est.value, M.l2_distance(x, y), atol=1e-12, rtol=0)
    torch.testing.assert_close(est.plain, est.value, atol=1e-12, rtol=0)


def test_debiased_value_clips_negative_sq():
    est = estimates(IDENTITY, IDENTITY, XA, XA, 10, 11, 4)  # truth 0: sq < 0 about half the time
    assert (est.sq < 0).any() and (est.value[est.sq < 0] == 0).all()
    assert torch.equal(est.value, est.sq.clamp(min=0).sqrt())


# --- aggregation -----------------------------------------------------------------------------


def test_band_and_mean():
    vals = [1.0, 2.0, 3.0, 4.0]
    sd = np.std(vals, ddof=1)
    mean, lo, hi = A.band(vals, "t95")
    assert mean == 2.5 and hi - mean == pytest.approx(3.182446305 * sd / 2, rel=1e-8)
    assert lo == pytest.approx(2 * mean - hi)
    assert A.band(torch.tensor(vals), "sd") == pytest.approx((2.5, 2.5 - sd, 2.5 + sd))
    assert A.band([0.7]) == (0.7, 0.7, 0.7)
    assert A.mean_over_images(torch.tensor([1.0, 2.0, 6.0])) == pytest.approx(3.0)


def test_model_pairs():
    assert A.model_pairs(2) == [(0, 1)]
    assert A.model_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


# --- bad input -------------------------------------------------------------------------------

NAN = torch.full((1, 3, 12, 12), float("nan"))
MAP, SMALL = rand(1, 3, 12, 12, seed=30), rand(1, 3, 10, 12, seed=31)
VIEW = torch.rand(1, 12, 12, dtype=F64)
BAD = [
    (lambda: M.l2_distance(MAP, SMALL), "same shape"),
    (lambda: M.l2_distance(MAP, NAN), "b: expected finite"),
    (lambda: M.fidelity_error(NAN, MAP), "smoothed: expected finite"),
    (lambda: M.stability_error(MAP, SMALL), "maps_a, maps_b: expected the same shape"),
    (lambda: M.stability_error(MAP, MAP[0, 0, 0]), "maps_b: expected a batch"),
    (lambda: M.to_gray(MAP[:, 0]), "maps: expected a 4-D"),
    (lambda: M.to_gray(NAN), "maps: expected finite"),
    (lambda: M.to_gray(MAP, clip_percentile=0), "clip_percentile"),
    (lambda: M.to_gray(MAP, clip_percentile=101), "clip_percentile"),
    (lambda: M.ssim(VIEW, VIEW[:, :11]), "same shape"),
    (lambda: M.ssim(VIEW[:, :10], VIEW[:, :10]), "at least 11x11"),
    (lambda: M.ssim(MAP, MAP), "a: expected 2-D views"),
    (lambda: M.ssim(VIEW, 2 * VIEW), r"b: expected values in \[0, 1\]"),
    (lambda: M.ssim(VIEW, NAN[:, 0]), "b: expected finite"),
    (lambda: M.ssim_maps(MAP, SMALL), "map_a, map_b: expected the same shape"),
    (lambda: M.topk_iou(MAP, MAP, k=145), r"k: expected an integer in \[1, 144\]"),
    (lambda: M.topk_iou(MAP, MAP, k=0), "k: expected"),
    (lambda: M.topk_iou(MAP, SMALL), "same shape"),
    (lambda: M.topk_iou(MAP, NAN), "b: expected finite"),
    (lambda: M.topk_overlap(MAP, MAP, frac=0), r"frac: expected a number in \(0, 1\]"),
    (lambda: M.topk_overlap(MAP, MAP, frac=1e-4), "frac: expected frac"),
    (lambda: M.topk_overlap(MAP, NAN), "b: expected finite"),
    (lambda: M.debiased_distance(MAP, SMALL), "same shape"),
    (lambda: M.debiased_distance(SmoothStats(MAP, MAP, None, None, 1), MAP), "a: expected Smooth"),
    (lambda: M.debiased_distance(MAP, NAN), "b: expected finite"),
    (lambda: A.band([1.0, 2.0], kind="ci"), "kind: expected one of"),
    (lambda: A.band([], kind="sd"), "values: expected at least one"),
    (lambda: A.band([1.0, float("nan")]), "values: expected finite"),
    (lambda: A.mean_over_images(torch.ones(2, 2)), "values: expected a 1-D"),
    (lambda: A.mean_over_images(torch.tensor([1.0, float("inf")])), "values: expected finite"),
    (lambda: A.model_pairs(1), "k: expected an integer >= 2"),
]


@pytest.mark.parametrize("call,match", BAD, ids=[m for _, m in BAD])
def test_bad_input_raises_one_clear_line(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_metrics_import_pulls_in_no_plotting():
    code = "import sys, smoothstab.metrics; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

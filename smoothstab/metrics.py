"""Metrics of the paper's section 5, one value per image ``[B]``, no aggregation inside.

Maps are raw signed ``[B, C, H, W]`` (CAMs ``[B, 1, H, W]``); each metric names its view
(:mod:`smoothstab.views`). Values are float64 (float32 on MPS).

* Distances on raw maps: :func:`l2_distance`, used as :func:`stability_error` (Eq. 12) and
  :func:`fidelity_error` (Eq. 13). A finite number of noise draws inflates them;
  :func:`debiased_distance` corrects this from the two independent halves of the draws that
  :class:`~smoothstab.SmoothStats` keeps, at no extra model evaluations.
* Size and direction apart (:mod:`smoothstab.agreement`): :func:`map_norm`, :func:`cosine`,
  :func:`unit_distance`, :func:`rank_agreement`, :func:`relative_fidelity`, and their
  Monte-Carlo debiased versions from cross-half (cross-group) products.
* Agreement of 2-D views: :func:`ssim` (scikit-image's ``structural_similarity`` with Wang et
  al.'s settings, batched), :func:`ssim_maps`, :func:`topk_iou`, :func:`topk_overlap`.
Aggregation over images and model pairs happens in the experiment layer
(:mod:`smoothstab.experiments.analysis.aggregate`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smoothstab.agreement import (
    Estimate,
    cosine,
    debiased_agreement,
    debiased_cosine,
    debiased_inner,
    debiased_norm,
    debiased_unit_distance,
    map_norm,
    pixel_ranks,
    rank_agreement,
    rank_correlation,
    relative_fidelity,
    unit_distance,
)
from smoothstab.checks import check_input, check_int, check_number, check_same_shape
from smoothstab.debias import DistanceEstimate, debiased_distance
from smoothstab.views import abs_sum, to_gray, work_dtype

__all__ = [
    "DistanceEstimate",
    "Estimate",
    "abs_sum",
    "cosine",
    "debiased_agreement",
    "debiased_cosine",
    "debiased_distance",
    "debiased_inner",
    "debiased_norm",
    "debiased_unit_distance",
    "fidelity_error",
    "l2_distance",
    "map_norm",
    "pixel_ranks",
    "rank_agreement",
    "rank_correlation",
    "relative_fidelity",
    "ssim",
    "ssim_maps",
    "stability_error",
    "to_gray",
    "topk_iou",
    "topk_overlap",
    "unit_distance",
]

SSIM_SIGMA, SSIM_TRUNCATE, SSIM_K1, SSIM_K2 = 1.5, 3.5, 0.01, 0.03
SSIM_WIN = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1  # scipy.ndimage's radius: 11 taps
SSIM_CHUNK = 64  # images per filtering pass: bounds memory at 5 x 64 float64 maps


def l2_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a - b||_2`` over all entries but the batch dim: ``[B, ...] x [B, ...] -> [B]``."""
    return _l2(a, b, "a", "b")


def _l2(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> torch.Tensor:
    check_input(a, name=name_a)
    check_input(b, name=name_b)
    check_same_shape(a, b, f"{name_a}, {name_b}")
    dtype = work_dtype(a)
    return (a.to(dtype) - b.to(dtype)).flatten(1).norm(dim=1)


def stability_error(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """Eq. 12 per image: ``||Sal_A(x) - Sal_B(x)||_2`` for two models A, B -> ``[B]``.

    Raw signed maps of the same method (smoothed or not) on the same images. With finite noise
    draws this is biased upward; see :func:`debiased_distance`.
    """
    return _l2(maps_a, maps_b, "maps_a", "maps_b")


def fidelity_error(smoothed: torch.Tensor, unsmoothed: torch.Tensor) -> torch.Tensor:
    """Eq. 13 per image: ``||Smoothed(x) - Unsmoothed(x)||_2`` for one model -> ``[B]``.

    With finite noise draws this is biased upward; see :func:`debiased_distance`.
    """
    return _l2(smoothed, unsmoothed, "smoothed", "unsmoothed")


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """scipy.ndimage's normalised 1-D Gaussian of ``SSIM_WIN`` taps."""
    radius = SSIM_WIN // 2
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    w = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return w / w.sum()


def _check_views(a: torch.Tensor, b: torch.Tensor, win: int = SSIM_WIN) -> None:
    for name, v in (("a", a), ("b", b)):
        if isinstance(v, torch.Tensor) and v.ndim not in (2, 3):
            raise ValueError(
                f"{name}: expected 2-D views [B, H, W] or [H, W], got shape {tuple(v.shape)}"
            )
        check_input(v, name=name)
        if min(v.shape[-2:]) < win:
            raise ValueError(
                f"{name}: expected views at least {win}x{win} (the Gaussian window), "
                f"got shape {tuple(v.shape)}"
            )
        if v.min() < 0 or v.max() > 1:
            raise ValueError(
                f"{name}: expected values in [0, 1] (data_range 1, e.g. to_gray), "
                f"got [{v.min().item():.4g}, {v.max().item():.4g}]"
            )
    check_same_shape(a, b)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) of 2-D views in [0, 1]: ``[B, H, W] x 2 -> [B]``.

    Matches ``skimage.metrics.structural_similarity(a, b, data_range=1, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)`` per image: 11x11 Gaussian window, K1 = 0.01,
    K2 = 0.03, mean over the interior ``win // 2`` away from the border. Only windows that lie
    inside the image enter that mean, so a 'valid' convolution is exact and no padding mode
    matters. ``[H, W]`` inputs give a 0-dim result.
    """
    _check_views(a, b)
    if a.ndim == 2:
        return ssim(a[None], b[None])[0]
    dtype = work_dtype(a)
    w = _gaussian_window(dtype, a.device)
    return torch.cat(
        [
            _ssim_chunk(a[i : i + SSIM_CHUNK].to(dtype), b[i : i + SSIM_CHUNK].to(dtype), w)
            for i in range(0, a.shape[0], SSIM_CHUNK)
        ]
    )


def _ssim_chunk(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    n, k = x.shape[0], w.numel()
    stack = torch.cat([x, y, x * x, y * y, x * y])[:, None]  # [5n, 1, H, W]
    filt = F.conv2d(F.conv2d(stack, w.view(1, 1, k, 1)), w.view(1, 1, 1, k))[:, 0]
    ux, uy, uxx, uyy, uxy = filt.split(n)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy  # population covariance
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # (K * data_range)^2 with data_range 1
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)


def ssim_maps(
    map_a: torch.Tensor, map_b: torch.Tensor, clip_percentile: float = 99
) -> torch.Tensor:
    """The paper's SSIM of two raw maps (Table 1): ``ssim(to_gray(a), to_gray(b))`` -> ``[B]``."""
    check_input(map_a, name="map_a")
    check_input(map_b, name="map_b")
    check_same_shape(map_a, map_b, "map_a, map_b")
    return ssim(to_gray(map_a, clip_percentile), to_gray(map_b, clip_percentile))


def _top_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean ``[B, N]`` marking each row's k largest; ties go to the lower index."""
    order = values.sort(dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros_like(values, dtype=torch.bool).scatter_(1, order, True)


def topk_iou(a: torch.Tensor, b: torch.Tensor, k: int = 500) -> torch.Tensor:
    """IoU of the k most salient pixels of two raw maps ``[B, C, H, W]`` -> ``[B]``.

    Pixels are ranked by ``abs_sum`` (no clipping, which would tie hundreds of pixels at 1);
    ties go to the lower flat index. ``IoU = |A & B| / |A | B| = |A & B| / (2k - |A & B|)``.
    """
    va, vb = abs_sum(a, name="a").flatten(1), abs_sum(b, name="b").flatten(1)
    check_same_shape(a, b)
    k = check_int(k, "k", low=1, high=va.shape[1], what="the pixel count")
    inter = (_top_mask(va, k) & _top_mask(vb, k)).sum(dim=1).to(work_dtype(a))
    return inter / (2 * k - inter)


def topk_overlap(a: torch.Tensor, b: torch.Tensor, frac: float = 0.1) -> torch.Tensor:
    """The variant the paper's released code computes (not an IoU) -> ``[B]``.

    ``k = int(frac * entries per image)`` largest SIGNED entries over all channels (no abs, no
    channel reduction), ``|A & B| / k``; chance level is ``frac``. Ties go to the lower index.
    """
    check_input(a, name="a")
    check_input(b, name="b")
    check_same_shape(a, b)
    check_number(frac, "frac", low=0, high=1, open_low=True)
    va, vb = a.flatten(1), b.flatten(1)
    k = int(frac * va.shape[1])
    if k < 1:
        raise ValueError(
            f"frac: expected frac * {va.shape[1]} entries >= 1 (k = int(frac * n)), got {frac!r}"
        )
    inter = (_top_mask(va, k) & _top_mask(vb, k)).sum(dim=1).to(work_dtype(a))
    return inter / k

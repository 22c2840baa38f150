"""2-D views of raw saliency maps, the one place where channels are reduced and scaled.

Methods return raw signed maps ``[B, C, H, W]``; a metric says which view it takes:

* :func:`abs_sum` - sum of ``|values|`` over channels, no scaling (top-k IoU).
* :func:`to_gray` - ``abs_sum`` scaled by its minimum and 99th percentile and clipped to [0, 1],
  as PAIR saliency's ``VisualizeImageGrayscale`` (the paper's SSIM view).
"""

from __future__ import annotations

import torch

from smoothstab.checks import check_input, check_number


def work_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for metric arithmetic, except on MPS (no float64 there)."""
    return torch.float32 if x.device.type == "mps" else torch.float64


def abs_sum(maps: torch.Tensor, *, name: str = "maps") -> torch.Tensor:
    """Sum of ``|values|`` over channels: ``[B, C, H, W] -> [B, H, W]`` (maps' dtype)."""
    check_input(maps, name=name, rank=4)
    return maps.abs().sum(dim=1)


def percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """Per-row ``q``-th percentile of ``[B, N]``, as ``np.percentile`` (linear) -> ``[B]``.

    Sort-based, so it has no size limit (``torch.quantile`` refuses more than 16M elements).
    """
    n = values.shape[1]
    srt = values.sort(dim=1).values
    virtual = (n - 1) * (q / 100.0)
    lo = int(virtual // 1)
    hi = min(lo + 1, n - 1)
    t = virtual - lo
    a, b = srt[:, lo], srt[:, hi]
    # numpy's _lerp: interpolate from the nearer end, so q = 100 gives the maximum exactly
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


def to_gray(maps: torch.Tensor, clip_percentile: float = 99) -> torch.Tensor:
    """The paper's SSIM view: ``[B, C, H, W] -> [B, H, W]`` in [0, 1] (maps' dtype).

    Per image: ``v = sum_c |m_c|``, then ``(v - min v) / (P(v) - min v)`` clipped to [0, 1],
    with ``P`` the ``clip_percentile``-th percentile (numpy's linear interpolation), as PAIR's
    ``VisualizeImageGrayscale``. Where ``P == min`` (e.g. a constant map), PAIR divides by zero;
    here the view is the limit instead: 1 above the minimum, 0 at it (a constant map is all 0).
    """
    q = check_number(clip_percentile, "clip_percentile", low=0, high=100, open_low=True)
    v = abs_sum(maps)
    flat = v.flatten(1).to(work_dtype(v))
    vmin = flat.min(dim=1).values
    vmax = percentile(flat, q)
    span = (vmax - vmin)[:, None]
    scaled = ((flat - vmin[:, None]) / span.where(span > 0, 1)).clamp(0, 1)
    gray = scaled.where(span > 0, (flat > vmin[:, None]).to(flat.dtype))
    return gray.view_as(v).to(v.dtype)

"""Model-randomisation sanity checks (Adebayo et al. 2018) across the smoothing level sigma.

A map that explains a model should change when the model's weights are replaced by random ones.
:func:`sanity` measures, for each sigma, how similar the trained model's smoothed map stays to
that of each randomised copy (:func:`~smoothstab.randomize.randomize`): similarity near 1 after
randomisation means the method does not depend on what the model learned. Two views, each per
image:

* SSIM of the paper's grayscale views (:func:`~smoothstab.metrics.ssim_maps`);
* Spearman rank correlation of the ``|map|`` views summed over channels
  (:func:`~smoothstab.agreement.rank_agreement`, the measure the stability metrics use; 0
  where a view is constant).

:func:`edge_map` is the control that must fail: a Sobel edge detector of the image that never
reads the model, so it is perfectly "stable" across any two models and has similarity exactly 1
to every randomised model's map.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from smoothstab.agreement import rank_agreement
from smoothstab.checks import check_input, check_sigma
from smoothstab.methods import resolve_target
from smoothstab.metrics import SSIM_WIN, ssim_maps
from smoothstab.randomize import randomize
from smoothstab.smoothing import smooth
from smoothstab.types import Method, Target

SOBEL = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))


def edge_map(model: nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
    """The image's own Sobel gradient magnitude per channel, ``[B, C, H, W]``, ignoring
    ``model`` and ``target`` (the edge-detector control of Adebayo et al. 2018).

    ``sqrt(gx^2 + gy^2)`` with the 3x3 Sobel kernels, edges padded by replication.
    """
    check_input(x, rank=4)
    c = x.shape[1]
    kx = torch.tensor(SOBEL, dtype=x.dtype, device=x.device).expand(c, 1, 3, 3)
    padded = F.pad(x.detach(), (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, kx, groups=c)
    gy = F.conv2d(padded, kx.transpose(-1, -2), groups=c)
    return torch.sqrt(gx * gx + gy * gy)


def _smoothed(method: Method, sigma: float, **options) -> Method:
    return smooth(method, sigma, **options)


@dataclasses.dataclass(frozen=True)
class SanityResult:
    """Similarities of the trained model's maps to each randomised copy's, per sigma.

    Attributes:
        names: the copies, in :func:`~smoothstab.randomize.randomize`'s order.
        sigmas: the noise levels, in the order given.
        ssim: ``[S, n, B]``: ``ssim[s]`` is ``[n_randomised, B]`` at ``sigmas[s]``.
        spearman: ``[S, n, B]``, likewise.
    """

    names: tuple[str, ...]
    sigmas: tuple[float, ...]
    ssim: torch.Tensor
    spearman: torch.Tensor


def sanity(
    method: Method | None,
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    sigmas: Sequence[float],
    n_samples: int | None = None,
    seed: int = 0,
    mode: str = "cascading",
    layers: Sequence[str] | None = None,
    init_seed: int = 0,
    randomized: Sequence[tuple[str, nn.Module]] | None = None,
    batch_size: int | None = None,
    clip_percentile: float = 99,
    smoothed: Callable[[float], Method] | None = None,
) -> SanityResult:
    """The model-randomisation check of ``method`` smoothed at each sigma.

    At each sigma the map is ``smooth(method, sigma, n_samples, seed=seed)`` (sigma 0: the
    method once), the same int seed for every model: common random numbers, so differences
    between models are not noise draws. The explained class is resolved once, on the trained
    model (``None``: its predicted class), and kept for every copy.

    Args:
        method: ``method(model, x, target) -> [B, C, H, W]`` (CAMs ``[B, 1, H, W]``), unsmoothed
            (``None`` with ``smoothed``).
            A CAM layer must be given by name (``functools.partial(grad_cam, layer="layer4")``):
            a module object belongs to the trained model, not to its copies.
        x: ``[B, C, H, W]`` with ``H, W >= 11`` (the SSIM window).
        mode, layers, init_seed: passed to :func:`~smoothstab.randomize.randomize` as ``mode``,
            ``layers``, ``seed``.
        randomized: instead, the ``(name, model)`` pairs to compare with (e.g. a retrained model).
        batch_size: at most this many noisy rows per call of ``method``.
        clip_percentile: of the SSIM view (:func:`~smoothstab.views.to_gray`).
        smoothed: instead of ``smooth(method, sigma, n_samples, ...)``, the smoothed method of
            each sigma, ``smoothed(sigma) -> Method`` (a pipeline's own settings; ``method``,
            ``n_samples``, ``seed`` and ``batch_size`` are then unused). It must draw the same
            noise on every call (a fixed int seed) for the comparison to use common random
            numbers.
    Returns:
        :class:`SanityResult`; similarities are float64 (float32 on MPS). Spearman is ``nan``
        where a map is constant (an all-zero CAM); SSIM's view makes a constant map all 0.
    """
    check_input(x, rank=4)
    if min(x.shape[-2:]) < SSIM_WIN:
        raise ValueError(
            f"x: expected images at least {SSIM_WIN}x{SSIM_WIN} (the SSIM window), got "
            f"{x.shape[-2]}x{x.shape[-1]}"
        )
    if isinstance(sigmas, str) or not isinstance(sigmas, Sequence):
        raise ValueError(f"sigmas: expected a list of noise levels, got {sigmas!r}")
    layer = getattr(method, "keywords", {}).get("layer")  # a functools.partial of a CAM
    if isinstance(layer, nn.Module):
        raise ValueError(
            f"layer: expected the CAM layer by name (layer='...'), got a {type(layer).__name__} "
            "module, which belongs to the trained model and not to its randomised copies"
        )
    sigmas = tuple(check_sigma(s) for s in sigmas)
    if not sigmas:
        raise ValueError("sigmas: expected at least one noise level, got none")
    if randomized is None:
        randomized = randomize(model, mode, layers, init_seed)
    if smoothed is None:
        if n_samples is None:
            raise ValueError("n_samples: expected the noise draws per map, got None")
        smoothed = functools.partial(
            _smoothed, method, n_samples=n_samples, seed=seed, batch_size=batch_size
        )
    target = resolve_target(model, x, target)
    methods = [smoothed(s) for s in sigmas]
    trained = [m(model, x, target) for m in methods]
    names, ssims, ranks = [], [], []
    for pair in randomized:
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise ValueError(f"randomized: expected (name, model) pairs, got {type(pair).__name__}")
        name, other = pair
        names.append(name)
        maps = [m(other, x, target) for m in methods]
        ssims.append([ssim_maps(a, b, clip_percentile) for a, b in zip(trained, maps, strict=True)])
        ranks.append([rank_agreement(a, b) for a, b in zip(trained, maps, strict=True)])
    if not names:
        raise ValueError("randomized: expected at least one (name, model) pair, got none")
    return SanityResult(
        names=tuple(names),
        sigmas=sigmas,
        ssim=torch.stack([torch.stack(row) for row in ssims], dim=1),
        spearman=torch.stack([torch.stack(row) for row in ranks], dim=1),
    )

"""What a similarity between two models' maps means: chance floors, chance-corrected scores,
where k retrained models disagree, and how far one image's maps can be trusted.

A similarity of 0.39 says nothing until it is set beside what unrelated maps score: SSIM of
blob-like maps is large between any two images. The *chance floor* of a between-model similarity
is the same metric between model A's map of image i and model B's map of another image j: maps
that share the dataset, the method and the models but not the image. :func:`derangement` pairs
each image with another (a seeded cyclic permutation with no fixed point, optionally within a
class), :func:`chance_floor` evaluates a metric on those pairs, and :func:`chance_corrected` puts
an observed value on the scale ``(observed - floor) / (ideal - floor)``: 1 the ideal (identical
maps), 0 no better than another image's map, negative worse. :data:`IDEAL` holds each metric's
ideal (1 for similarities, 0 for distances).

Per image, :func:`disagreement_map` is the per-pixel spread of k models' unit-normalised maps
(their between-model variance, summed over channels in :attr:`Disagreement.pixels`), with its
total over pixels: the mean over model pairs of ``unit_distance^2 / 2`` (0: the k maps point the
same way, 1: as far apart as unrelated orthogonal maps). Monte-Carlo noise in each smoothed map
adds to that spread; from :class:`~smoothstab.SmoothStats` with groups (or halves) the debiased
version uses cross-group products only, ``<c_g, c_h>`` for ``g != h``, unbiased also when the
models share noise draws (common random numbers put the same draws in group g of every model).
:func:`reliability` is an image's mean pairwise rank agreement over the k models (Spearman's rho
of the |map| views): the score of how far its maps can be trusted.

Pure tensor code, one value (or map) per image ``[B]``, float64 (float32 on MPS).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from smoothstab.agreement import pixel_ranks, rank_correlation
from smoothstab.checks import check_input, check_int
from smoothstab.stats import SmoothStats
from smoothstab.views import work_dtype

__all__ = [
    "IDEAL",
    "Disagreement",
    "chance_corrected",
    "chance_floor",
    "derangement",
    "disagreement_map",
    "reliability",
]

IDEAL: dict[str, float] = {
    "ssim": 1.0,
    "topk_iou": 1.0,
    "rank_agreement": 1.0,
    "cosine": 1.0,
    "unit_distance": 0.0,
    "stability": 0.0,  # the raw L2 distance of Eq. 12
}
"""The value each between-model metric takes for identical maps: 1 for the similarities, 0 for
the distances (``stability`` is the raw L2 distance)."""


def derangement(n: int, seed: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """A seeded partner for each of ``n`` images, never itself: ``[n]`` long, ``-1`` where an
    image has none.

    One random cycle through the images (a uniformly drawn ``n``-cycle: image ``order[i]``'s
    partner is ``order[i + 1]``), so every image is some image's partner once. With ``labels``
    (``[n]``) the cycle runs within each class: an image alone in its class, or with a negative
    label (none), has no partner (``-1``). A single image has none either: a floor needs at
    least two images.
    """
    n = check_int(n, "n", low=0)
    gen = torch.Generator().manual_seed(int(seed))
    partner = torch.full((n,), -1, dtype=torch.long)
    if labels is None:
        groups = [torch.arange(n)]
    else:
        labels = torch.as_tensor(labels).reshape(-1).cpu()
        if len(labels) != n:
            raise ValueError(f"labels: expected {n} labels (one per image), got {len(labels)}")
        classes = torch.unique(labels[labels >= 0])
        groups = [torch.nonzero(labels == c).flatten() for c in classes]
    for members in groups:
        if len(members) < 2:
            continue
        order = members[torch.randperm(len(members), generator=gen)]
        partner[order] = order.roll(-1)
    return partner


def chance_floor(
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    a: torch.Tensor,
    b: torch.Tensor,
    partner: torch.Tensor,
) -> torch.Tensor:
    """``metric(a[i], b[partner[i]])`` per image ``[B]``: model A's map of each image against
    model B's map of its partner image (:func:`derangement`); NaN where ``partner`` is -1.

    ``metric`` takes two batches of maps ``[B, ...]`` and returns ``[B]`` (any of
    :mod:`smoothstab.metrics`' between-map metrics)."""
    check_input(a, name="a")
    check_input(b, name="b")
    partner = torch.as_tensor(partner, device=a.device).long()
    if partner.shape != (a.shape[0],):
        got = list(partner.shape)
        raise ValueError(f"partner: expected [{a.shape[0]}] (one per image), got {got}")
    has = partner >= 0
    out = torch.full((a.shape[0],), math.nan, dtype=work_dtype(a), device=a.device)
    if bool(has.any()):
        out[has] = metric(a[has], b[partner[has]]).to(out.dtype)
    return out


def chance_corrected(observed, floor, ideal: float):
    """``(observed - floor) / (ideal - floor)``: 1 at the ideal, 0 at the chance floor, negative
    below it (tensors, arrays or floats, elementwise); NaN where the floor is the ideal."""
    gap = ideal - floor
    if isinstance(gap, torch.Tensor):
        return (observed - floor) / gap.where(gap != 0, math.nan)
    if isinstance(gap, float | int):
        return (observed - floor) / gap if gap != 0 else math.nan
    import numpy as np

    gap = np.asarray(gap, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap != 0, (np.asarray(observed) - floor) / gap, np.nan)


@dataclass(frozen=True)
class Disagreement:
    """Where k models' maps of each image disagree (:func:`disagreement_map`).

    Attributes:
        map: ``[B, ...]`` per element, the between-model variance of the unit-normalised maps
            (debiased: may dip below 0 where the models agree, by Monte-Carlo error).
        mean: ``[B, ...]`` the mean of the k unit-normalised maps.
        total: ``[B]`` the sum of ``map`` over all elements: the mean over model pairs of
            ``unit_distance^2 / 2`` (0 the same direction, 1 unrelated orthogonal maps).
        debiased: whether Monte-Carlo noise was removed (cross-group products).
    """

    map: torch.Tensor
    mean: torch.Tensor
    total: torch.Tensor
    debiased: bool

    @property
    def pixels(self) -> torch.Tensor:
        """``[B, H, W]``: :attr:`map` summed over channels (a CAM's one channel as it is)."""
        return self.map.sum(dim=1) if self.map.dim() == 4 else self.map


def _groups(x: SmoothStats | torch.Tensor) -> torch.Tensor | None:
    if isinstance(x, SmoothStats):
        return x.groups if x.groups is not None else x.halves
    return None


def disagreement_map(
    maps: Sequence[SmoothStats | torch.Tensor], *, debiased: bool = True
) -> Disagreement:
    """The per-element spread of ``k >= 2`` models' maps of the same images, each scaled to unit
    L2 norm per image: ``sum_k (u_k - mean u)^2 / (k - 1)``.

    ``maps``: per model, :class:`~smoothstab.SmoothStats` or exact maps ``[B, ...]``. With
    ``debiased`` and Monte-Carlo maps (groups, else the two halves; every model the same count)
    the variance uses cross-group products only, so the noise of finite draws does not add to it
    (each map's norm is the debiased one, from cross-group inner products); exact maps enter every
    group unchanged. Without groups or halves, or with ``debiased=False``, it is the plain
    variance of the mean maps, which the noise inflates.
    """
    k = len(maps)
    if k < 2:
        raise ValueError(f"maps: a disagreement needs at least 2 models' maps, got {k}")
    means = [m.mean if isinstance(m, SmoothStats) else m for m in maps]
    for i, m in enumerate(means):
        check_input(m, name=f"maps[{i}]")
        if m.shape != means[0].shape:
            raise ValueError(
                f"maps[{i}]: expected the shape of maps[0], {list(means[0].shape)}, "
                f"got {list(m.shape)}"
            )
    dtype = work_dtype(means[0])
    groups = [_groups(m) for m in maps]
    counts = {len(g) for g in groups if g is not None}
    if debiased and len(counts) > 1:
        raise ValueError(f"maps: every model needs the same number of groups, got {sorted(counts)}")
    use = debiased and len(counts) == 1
    if not use:
        unit = torch.stack([_unit(m.to(dtype)) for m in means])  # [k, B, ...]
        mean = unit.mean(0)
        var = (unit - mean).square().sum(0) / (k - 1)
        return Disagreement(var, mean, var.flatten(1).sum(1), False)
    n_groups = counts.pop()
    pairs_of_groups = n_groups * (n_groups - 1)

    def unit_groups(g: torch.Tensor | None, m: torch.Tensor) -> torch.Tensor:
        """``[G, B, ...]`` a model's groups over its debiased norm: ``||a||^2`` from cross-group
        products, ``(|sum_g a_g|^2 - sum_g |a_g|^2) / (G (G - 1))``."""
        g = g.to(dtype) if g is not None else m.to(dtype).expand(n_groups, *m.shape)
        flat = g.flatten(2)
        cross = (flat.sum(0).square().sum(-1) - flat.square().sum((0, -1))) / pairs_of_groups
        norm = cross.clamp(min=0).sqrt()  # [B]
        scale = torch.where(norm > 0, 1 / norm.where(norm > 0, 1), 0.0)
        return g * scale.reshape(1, -1, *[1] * (g.dim() - 2))

    # one model's groups at a time: memory of two models' groups, not k of them
    centre = sum(unit_groups(g, m) for g, m in zip(groups, means, strict=True)) / k  # [G, B, ...]
    var = torch.zeros_like(centre[0])
    for g, m in zip(groups, means, strict=True):
        c = unit_groups(g, m) - centre  # centred across models in each group
        var += c.sum(0).square() - c.square().sum(0)
    var /= pairs_of_groups * (k - 1)
    return Disagreement(var, centre.mean(0), var.flatten(1).sum(1), True)


def _unit(m: torch.Tensor) -> torch.Tensor:
    norm = m.flatten(1).norm(dim=1).reshape(-1, *[1] * (m.dim() - 1))
    return torch.where(norm > 0, m / norm.where(norm > 0, 1), 0.0)


def reliability(
    maps: Sequence[torch.Tensor], ranks: Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    """Per image ``[B]``, the mean over every pair of the k models of the rank agreement of their
    maps (Spearman's rho of the ``abs_sum`` views, :func:`~smoothstab.metrics.rank_agreement`):
    1 every model ranks the pixels alike, 0 no relation. ``ranks``: the maps'
    :func:`~smoothstab.metrics.pixel_ranks`, if at hand."""
    k = len(maps) if ranks is None else len(ranks)
    if k < 2:
        raise ValueError(f"maps: a reliability score needs at least 2 models' maps, got {k}")
    ranks = list(ranks) if ranks is not None else [pixel_ranks(m) for m in maps]
    pairs = [rank_correlation(ranks[i], ranks[j]) for i in range(k) for j in range(i + 1, k)]
    return torch.stack(pairs).mean(0)

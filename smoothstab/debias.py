"""Distances between smoothed maps, corrected for the finite number of noise draws.

A smoothed map is a Monte-Carlo mean ``a^ = a + e`` with zero-mean error ``e``, so
``E ||a^ - b^||^2 = ||a - b||^2 + sum_i Var(a^_i - b^_i)``: the plain distance is biased upward,
most where the true distance is small and the draws are few. :class:`~smoothstab.SmoothStats`
keeps the means of two independent halves of the draws (units ``j % 2``). With
``d_h = a^_h - b^_h`` for half ``h``, ``E <d_0, d_1> = <E d_0, E d_1> = ||a - b||^2`` because
the halves are independent and each is unbiased. This holds whether ``a`` and ``b`` use
independent draws or common random numbers (the same seed: ``a^_h`` and ``b^_h`` then share
noise, but the two halves still do not), and for an unsmoothed reference (both halves equal it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smoothstab.checks import check_input, check_same_shape
from smoothstab.montecarlo import SmoothStats
from smoothstab.views import work_dtype


@dataclass(frozen=True)
class DistanceEstimate:
    """Per-image estimates of ``||a - b||_2`` from Monte-Carlo maps, each ``[B]``.

    Attributes:
        plain: ``||a^ - b^||`` of the mean maps (Eq. 12/13 as computed), biased upward.
        sq: split-half estimate ``<a^_0 - b^_0, a^_1 - b^_1>`` of ``||a - b||^2``; unbiased,
            and negative when the true distance is small against the Monte-Carlo noise.
        value: ``sqrt(max(sq, 0))``, the debiased distance.
        stderr: first-order (delta-method) Monte-Carlo standard error of ``plain``, and to first
            order of ``value``; unreliable where the distance is near 0 against the noise.
    """

    plain: torch.Tensor
    sq: torch.Tensor
    value: torch.Tensor
    stderr: torch.Tensor


def _parts(x: SmoothStats | torch.Tensor, name: str):
    """``(mean, halves, n_units, mean_var)``; a plain tensor is exact: both halves, no variance."""
    if isinstance(x, SmoothStats):
        if x.halves is None:
            raise ValueError(
                f"{name}: expected SmoothStats with two halves (at least 2 noise units, "
                f"halves kept), got n_units={x.n_units} and halves=None"
            )
        check_input(x.mean, name=f"{name}.mean")
        check_input(x.halves.flatten(0, 1), name=f"{name}.halves")
        return x.mean, x.halves, x.n_units, x.mean_var
    check_input(x, name=name)
    return x, (x, x), None, torch.zeros_like(x)


def _diff_var(d0, d1, na, nb, va, vb) -> torch.Tensor:
    """Per-element variance of ``a^ - b^`` as an estimator, ``[B, N]``.

    With equal draw counts (or one side exact) it comes from the halves:
    ``E (d_0 - d_1)^2 = v (1/n_0 + 1/n_1)`` and ``Var(a^ - b^) = v / n`` for per-unit variance
    ``v``, which covers common random numbers (the covariance of ``a^`` and ``b^``) and
    stratified units; one degree of freedom per element, pooled over elements by the caller.
    Otherwise the draws must be independent and it is ``mean_var(a) + mean_var(b)``.
    """
    counts = {n for n in (na, nb) if n is not None}
    if len(counts) == 1:
        n = counts.pop()
        n0, n1 = (n + 1) // 2, n // 2
        return (d0 - d1) ** 2 * (n0 * n1 / n**2)
    return (va + vb).flatten(1).to(d0.dtype)


def debiased_distance(
    a: SmoothStats | torch.Tensor, b: SmoothStats | torch.Tensor
) -> DistanceEstimate:
    """Split-half debiased ``||a - b||_2`` per image, with its Monte-Carlo standard error.

    Args:
        a, b: a smoothed map as :class:`~smoothstab.SmoothStats` (``smooth(...).stats(...)``,
            no extra model evaluations),
            or a deterministic map ``[B, ...]`` such as the unsmoothed reference of Eq. 13.
    Returns:
        A :class:`DistanceEstimate` of ``[B]`` tensors.
    """
    ma, ha, na, va = _parts(a, "a")
    mb, hb, nb, vb = _parts(b, "b")
    check_same_shape(ma, mb)
    dtype = work_dtype(ma)
    flat = lambda t: t.to(dtype).flatten(1)  # noqa: E731
    d = flat(ma) - flat(mb)
    d0, d1 = flat(ha[0]) - flat(hb[0]), flat(ha[1]) - flat(hb[1])
    plain = d.norm(dim=1)
    sq = (d0 * d1).sum(dim=1)
    # delta method: D = ||d||, dD/dd_i = d_i / D, so Var D ~ sum_i d_i^2 Var(d_i) / D^2
    spread = (d * d * _diff_var(d0, d1, na, nb, va, vb)).sum(dim=1).sqrt()
    stderr = torch.where(plain > 0, spread / plain.where(plain > 0, 1), 0.0)
    return DistanceEstimate(plain, sq, sq.clamp(min=0).sqrt(), stderr)

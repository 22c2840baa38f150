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

from smoothstab import reprs
from smoothstab.checks import check_input, check_number, check_same_shape
from smoothstab.stats import SmoothStats
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
        dof: its degrees of freedom: ``G - 1`` when both maps kept ``G`` groups of units
            (``smooth(..., groups=G)``), whose spread gives the variance of the distance along
            its own direction, correlations between elements included; ``None`` otherwise,
            where it is pooled per element from the halves, which leaves those correlations out
            (it then understates the error when the elements' errors are positively correlated).
    """

    plain: torch.Tensor
    sq: torch.Tensor
    value: torch.Tensor
    stderr: torch.Tensor
    dof: int | None = None

    def interval(self, level: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
        """``value -+ q * stderr`` (clamped at 0), ``q`` the two-sided ``level`` quantile of
        Student's t with ``dof`` degrees of freedom (the normal one when ``dof`` is ``None``)."""
        q = quantile(level, self.dof)
        return (self.value - q * self.stderr).clamp(min=0), self.value + q * self.stderr

    def __repr__(self) -> str:
        """One line: the debiased distance, the plain one and the 95% interval, as means and
        ranges over the images, not the tensors."""
        return f"DistanceEstimate({reprs.estimate_line(self, 'distance')})"

    def _repr_html_(self) -> str:
        return reprs.estimate_table(self, "DistanceEstimate: ||a - b||_2 per image")


def quantile(level: float, dof: int | None) -> float:
    """The two-sided ``level`` quantile of Student's t with ``dof`` degrees of freedom (the
    normal one when ``dof`` is ``None``): the half-width of an interval in standard errors."""
    from scipy import special  # only here: the core imports no scipy otherwise (and not
    # scipy.stats, whose import takes a second: these are its ppf functions)

    check_number(level, "level", low=0, high=1, open_low=True)
    if level >= 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level}")
    p = 0.5 + level / 2
    return float(special.ndtri(p) if dof is None else special.stdtrit(dof, p))


def _parts(x: SmoothStats | torch.Tensor, name: str):
    """``(mean, halves, n_units, mean_var, groups)``; a plain tensor is exact: both halves, no
    variance, no groups (every group would equal it)."""
    if isinstance(x, SmoothStats):
        if x.halves is None:
            raise ValueError(
                f"{name}: expected SmoothStats with two halves (at least 2 noise units, "
                f"halves kept), got n_units={x.n_units} and halves=None"
            )
        check_input(x.mean, name=f"{name}.mean")
        check_input(x.halves.flatten(0, 1), name=f"{name}.halves")
        n = x.n_units if x.units is None else x.units
        return x.mean, x.halves, n, x.mean_var, x.groups
    check_input(x, name=name)
    return x, (x, x), None, torch.zeros_like(x), None


def _diff_var(d0, d1, na, nb, va, vb) -> torch.Tensor:
    """Per-element variance of ``a^ - b^`` as an estimator, ``[B, N]``.

    With equal draw counts (or one side exact) it comes from the halves:
    ``E (d_0 - d_1)^2 = v (1/n_0 + 1/n_1)`` and ``Var(a^ - b^) = v / n`` for per-unit variance
    ``v``, which covers common random numbers (the covariance of ``a^`` and ``b^``) and
    stratified units; one degree of freedom per element, pooled over elements by the caller.
    Counts are per image when a tolerance set them (``[B]`` tensors). Otherwise the draws are
    taken as independent and it is ``mean_var(a) + mean_var(b)``; with common random numbers
    this leaves out their covariance (positive for similar maps, so the error is overstated).
    """
    factor = _half_factor(na, nb, d0)
    if factor is not None:
        return (d0 - d1) ** 2 * factor
    return (va + vb).flatten(1).to(d0.dtype)


def _half_factor(na, nb, like: torch.Tensor) -> float | torch.Tensor | None:
    """``n_0 n_1 / n^2`` (a float, or ``[B, 1]`` with per-image counts) that turns the squared
    difference of the halves into the variance of the mean when both sides drew the same
    counts (or one side is exact); ``None`` otherwise."""
    counts = [n for n in (na, nb) if n is not None]
    if all(isinstance(n, int) for n in counts) and len(set(counts)) == 1:
        n = counts[0]
        return ((n + 1) // 2) * (n // 2) / n**2
    tensors = [torch.as_tensor(n, device=like.device).expand(len(like)) for n in counts]
    if tensors and (len(tensors) == 1 or torch.equal(tensors[0], tensors[1])):
        n = tensors[0].to(like.dtype).view(-1, 1)
        n0, n1 = torch.div(n + 1, 2, rounding_mode="floor"), torch.div(n, 2, rounding_mode="floor")
        return n0 * n1 / n**2
    return None


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
    ma, ha, na, va, ga = _parts(a, "a")
    mb, hb, nb, vb, gb = _parts(b, "b")
    check_same_shape(ma, mb)
    dtype = work_dtype(ma)
    flat = lambda t: t.to(dtype).flatten(1)  # noqa: E731
    d = flat(ma) - flat(mb)
    d0, d1 = flat(ha[0]) - flat(hb[0]), flat(ha[1]) - flat(hb[1])
    plain = d.norm(dim=1)
    sq = (d0 * d1).sum(dim=1)
    # delta method: D = ||d||, dD/dd_i = d_i / D, so Var D ~ sum_i d_i^2 Var(d_i) / D^2
    groups = _group_diffs(ga, gb, na, nb, ma, mb)
    if groups is not None:
        return _from_groups(groups.to(dtype).flatten(2), plain)
    spread = (d * d * _diff_var(d0, d1, na, nb, va, vb)).sum(dim=1).sqrt()
    stderr = torch.where(plain > 0, spread / plain.where(plain > 0, 1), 0.0)
    return DistanceEstimate(plain, sq, sq.clamp(min=0).sqrt(), stderr)


def _from_groups(dg: torch.Tensor, plain: torch.Tensor) -> DistanceEstimate:
    """The estimate from ``G`` independent group-wise differences ``dg`` ``[G, B, N]``.

    ``sq`` is the mean of ``<d_g, d_h>`` over all pairs of distinct groups (unbiased, the
    split-half product being its ``G = 2`` case), and its variance the jackknife over groups
    (leave one group out), which keeps the correlations between elements and the second-order
    term; ``stderr`` is then that of ``value = sqrt(sq)`` by the delta method.
    """
    g = len(dg)
    total = dg.sum(dim=0)
    tot, each = total.square().sum(dim=1), dg.square().sum(dim=2)  # [B], [G, B]
    sq = (tot - each.sum(dim=0)) / (g * (g - 1))
    cross = (dg * total).sum(dim=2)  # [G, B]
    left_out = (tot - 2 * cross + each - (each.sum(dim=0) - each)) / ((g - 1) * (g - 2))
    var = (g - 1) / g * (left_out - left_out.mean(dim=0)).square().sum(dim=0)
    value = sq.clamp(min=0).sqrt()
    stderr = torch.where(value > 0, var.sqrt() / (2 * value.where(value > 0, 1)), var.sqrt().sqrt())
    return DistanceEstimate(plain, sq, value, stderr, g - 1)


def _group_diffs(ga, gb, na, nb, ma, mb) -> torch.Tensor | None:
    """``[G, B, ...]`` group-wise ``a - b`` when the groups pair up: both sides kept ``G`` groups
    of the same units per image (or one side is exact), else ``None``."""
    if ga is None and gb is None:
        return None
    if ga is None or gb is None:
        exact = ma if ga is None else mb
        if (na if ga is None else nb) is not None:  # a Monte-Carlo side without groups
            return None
        return ga - exact if gb is None else exact - gb
    same = torch.equal(torch.as_tensor(na).cpu(), torch.as_tensor(nb).cpu())
    return ga - gb if len(ga) == len(gb) and same else None

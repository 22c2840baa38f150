"""Scale-free agreement between saliency maps, beside the paper's raw L2 distance (Eq. 12).

Smoothing averages gradients and so shrinks the map: a smaller ``||a - b||`` can mean smaller
maps as much as maps more alike. The raw distance splits into a size and a direction,
``||a - b||^2 = (||a|| - ||b||)^2 + ||a|| ||b|| u^2`` with ``u`` the unit-map distance. One value
per image ``[B]``, float64 (float32 on MPS):

* size, raw maps: :func:`map_norm`, ``||a||_2`` over all entries;
* direction, raw signed maps: :func:`cosine` and :func:`unit_distance`,
  ``||a/||a|| - b/||b|| || = sqrt(2 - 2 cos)``: 0 the same direction, ``sqrt(2)`` unrelated
  (orthogonal), 2 opposite; neither changes when a map is multiplied by a positive number;
* ranks, the 2-D ``abs_sum`` views: :func:`rank_agreement`, Spearman's rho over pixels;
* fidelity, a smoothed map S against its unsmoothed U: :func:`relative_fidelity`
  ``||S - U|| / ||U||`` beside ``cosine(S, U)``.

A zero map has no direction: its cosine with any map is 0 (unit distance ``sqrt(2)``). A
constant view ranks no pixel above another: its rank agreement with any view is 0.

Monte-Carlo maps: the norm, inner product and cosine of mean maps are biased by the finite
draws as the distance is (the noise adds ``sum Var`` to ``||a^||^2`` and pulls the cosine
toward 0). :func:`debiased_inner`, :func:`debiased_cosine` and :func:`debiased_unit_distance`
use cross-group products only, ``<a_g, b_h>`` for ``g != h`` over the halves or the ``G``
groups of :class:`~smoothstab.SmoothStats`: unbiased for ``<a, b>`` also when ``a`` and ``b``
share noise (common random numbers put the same draws in group g of both, never in groups
g != h). Standard errors come from the jackknife over groups (``G - 1`` degrees of freedom) or,
with the halves only, from the delta method pooled per element, as for
:func:`~smoothstab.debiased_distance`. The norm's is :func:`debiased_norm`, the distance to 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from smoothstab import reprs
from smoothstab.checks import check_input, check_same_shape
from smoothstab.debias import (
    DistanceEstimate,
    _diff_var,
    _from_groups,
    _half_factor,
    _parts,
    quantile,
)
from smoothstab.stats import SmoothStats, relative_error
from smoothstab.views import abs_sum, work_dtype

SQRT2 = math.sqrt(2)
Stats = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def map_norm(maps: torch.Tensor) -> torch.Tensor:
    """``||a||_2`` of raw maps over all entries but the batch dim: ``[B, ...] -> [B]``."""
    check_input(maps, name="maps")
    return maps.to(work_dtype(maps)).flatten(1).norm(dim=1)


def _flat_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("a", "b")):
    check_input(a, name=names[0])
    check_input(b, name=names[1])
    check_same_shape(a, b, ", ".join(names))
    dtype = work_dtype(a)
    return a.to(dtype).flatten(1), b.to(dtype).flatten(1)


def _cos(ab: torch.Tensor, aa: torch.Tensor, bb: torch.Tensor) -> torch.Tensor:
    """``ab / sqrt(aa bb)`` clamped to [-1, 1]; 0 where either squared norm is not positive."""
    ok = (aa > 0) & (bb > 0)
    return (ab / (aa * bb).where(ok, 1).sqrt()).clamp(-1, 1).where(ok, 0)


def _unit(c: torch.Tensor) -> torch.Tensor:
    return (2 - 2 * c).clamp(min=0).sqrt()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of raw signed maps ``<a, b> / (||a|| ||b||)``: ``[B, ...] x 2 -> [B]``,
    in [-1, 1]; 0 when either map is zero."""
    fa, fb = _flat_pair(a, b)
    return _cos((fa * fb).sum(1), fa.square().sum(1), fb.square().sum(1))


def unit_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a/||a|| - b/||b|| ||_2 = sqrt(2 - 2 cos)`` of raw signed maps -> ``[B]`` in [0, 2].

    Computed from the unit maps themselves (exactly 0 for identical maps, where the cosine
    route would leave ``sqrt(rounding)``); ``sqrt(2)`` when either map is zero.
    """
    fa, fb = _flat_pair(a, b)
    na, nb = fa.norm(dim=1, keepdim=True), fb.norm(dim=1, keepdim=True)
    ok = ((na > 0) & (nb > 0)).squeeze(1)
    u = (fa / na.where(na > 0, 1) - fb / nb.where(nb > 0, 1)).norm(dim=1)
    return u.where(ok, SQRT2)


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Per-row ranks 1..N of ``[B, N]``, ties given their average rank (scipy's rankdata), in
    float64 (float32 on MPS): one sort, then each run of equal values gets the mean of its
    first and last place."""
    srt, order = v.sort(dim=1)
    n = v.shape[1]
    pos = torch.arange(n, device=v.device).expand_as(srt)
    starts = torch.ones_like(srt, dtype=torch.bool)
    starts[:, 1:] = srt[:, 1:] != srt[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, pos, 0).cummax(dim=1).values
    last = torch.where(ends, pos, n).flip(1).cummin(dim=1).values.flip(1)
    avg = (first + last).to(work_dtype(v)) / 2 + 1
    return torch.empty_like(avg).scatter_(1, order, avg)


def pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """The centred ranks of the pixels of the ``abs_sum`` view of raw maps: ``[B, C, H, W] ->
    [B, H * W]``, ties ranked by their average (what :func:`rank_agreement` correlates; compute
    them once per map when it enters several pairs)."""
    v = abs_sum(maps).flatten(1)
    r = _ranks(v).to(work_dtype(v))  # ranked in the maps' own dtype: the order of the values
    return r - r.mean(1, keepdim=True)


def rank_correlation(ra: torch.Tensor, rb: torch.Tensor) -> torch.Tensor:
    """The Pearson correlation of two :func:`pixel_ranks` ``[B, N]`` -> ``[B]``; 0 where either
    is constant."""
    check_same_shape(ra, rb, "ra, rb")
    return _cos((ra * rb).sum(1), ra.square().sum(1), rb.square().sum(1))


def rank_agreement(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rho of the ``abs_sum`` views of raw maps ``[B, C, H, W]`` over pixels -> ``[B]``.

    The Pearson correlation of the pixels' ranks, ties ranked by their average
    (``scipy.stats.spearmanr``); 0 when either view is constant (scipy gives NaN there).
    """
    check_input(a, name="a", rank=4)
    check_input(b, name="b", rank=4)
    check_same_shape(a, b)
    return rank_correlation(pixel_ranks(a), pixel_ranks(b))


def relative_fidelity(smoothed: torch.Tensor, unsmoothed: torch.Tensor) -> torch.Tensor:
    """``||S - U||_2 / ||U||_2`` of raw maps (Eq. 13 relative to the unsmoothed map's size)
    -> ``[B]``: 0 where ``S == U``, ``inf`` where only ``U`` is zero."""
    s, u = _flat_pair(smoothed, unsmoothed, ("smoothed", "unsmoothed"))
    return relative_error((s - u).square().sum(1), u.square().sum(1))


@dataclass(frozen=True)
class Estimate:
    """Per-image Monte-Carlo estimates of a scalar function of maps, each ``[B]``.

    Attributes:
        plain: the function of the mean maps, as computed without correction (biased).
        value: the function of cross-group products only.
        stderr: its Monte-Carlo standard error.
        dof: ``G - 1`` from the jackknife over ``G`` groups; ``None`` from the halves (delta
            method pooled per element, which leaves out correlations between elements).
        low, high: the range of the quantity; intervals are clamped to it.
    """

    plain: torch.Tensor
    value: torch.Tensor
    stderr: torch.Tensor
    dof: int | None = None
    low: float = -math.inf
    high: float = math.inf

    def interval(self, level: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
        """``value -+ q * stderr`` within ``[low, high]``, ``q`` Student's t quantile with
        ``dof`` degrees of freedom (normal when ``None``)."""
        q = quantile(level, self.dof)
        lo, hi = self.value - q * self.stderr, self.value + q * self.stderr
        return lo.clamp(self.low, self.high), hi.clamp(self.low, self.high)

    def __repr__(self) -> str:
        """One line: the debiased value, the plain one and the 95% interval, as means and
        ranges over the images, not the tensors."""
        return f"Estimate({reprs.estimate_line(self, 'value')})"

    def _repr_html_(self) -> str:
        return reprs.estimate_table(self, "Estimate per image")


def debiased_norm(a: SmoothStats | torch.Tensor) -> DistanceEstimate:
    """``||a||_2`` per image from cross-half (cross-group) products, with its standard error:
    :func:`~smoothstab.debiased_distance` to the zero map, without carrying the zeros along."""
    mean, halves, n, var, groups = _parts(a, "a")
    dtype = work_dtype(mean)
    m = mean.to(dtype).flatten(1)
    plain = m.norm(dim=1)
    if groups is not None:
        return _from_groups(groups.to(dtype).flatten(2), plain)
    h0, h1 = (h.to(dtype).flatten(1) for h in halves)
    sq = (h0 * h1).sum(1)
    spread = (m * m * _diff_var(h0, h1, n, None, var, var.new_zeros(()))).sum(1).sqrt()
    stderr = torch.where(plain > 0, spread / plain.where(plain > 0, 1), 0.0)
    return DistanceEstimate(plain, sq, sq.clamp(min=0).sqrt(), stderr)


@dataclass(frozen=True)
class _Paired:
    """Two maps flattened to ``[B, N]`` (means, halves) and ``[G, B, N]`` (blocks)."""

    ma: torch.Tensor
    mb: torch.Tensor
    blocks_a: torch.Tensor
    blocks_b: torch.Tensor
    halves: tuple[torch.Tensor, ...]
    counts: tuple
    mean_vars: tuple[torch.Tensor, torch.Tensor]


def _paired(a: SmoothStats | torch.Tensor, b: SmoothStats | torch.Tensor) -> _Paired:
    """The groups of both maps when they pair up (same ``G``, or one side exact), else the
    halves; an exact map stands in for every one of its blocks."""
    ma, ha, na, va, ga = _parts(a, "a")
    mb, hb, nb, vb, gb = _parts(b, "b")
    check_same_shape(ma, mb)
    dtype = work_dtype(ma)
    flat = lambda t, k=1: t.to(dtype).flatten(k)  # noqa: E731
    halves = lambda h: flat(h if isinstance(h, torch.Tensor) else torch.stack(h), 2)  # noqa: E731
    ha, hb = halves(ha), halves(hb)
    sizes = {len(g) for g in (ga, gb) if g is not None}
    exact_a, exact_b = isinstance(a, torch.Tensor), isinstance(b, torch.Tensor)
    if len(sizes) == 1 and (ga is not None or exact_a) and (gb is not None or exact_b):
        g = sizes.pop()
        xa = flat(ga, 2) if ga is not None else flat(ma).expand(g, -1, -1)
        xb = flat(gb, 2) if gb is not None else flat(mb).expand(g, -1, -1)
    else:
        xa, xb = ha, hb
    return _Paired(flat(ma), flat(mb), xa, xb, (ha[0], ha[1], hb[0], hb[1]), (na, nb), (va, vb))


def _cross(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean of ``<x_g, y_h>`` over ordered pairs ``g != h`` of ``[G, B, N]`` blocks -> ``[B]``,
    and the same leaving out each group in turn ``[G, B]`` (``None`` for two blocks)."""
    g, dot = len(x), torch.linalg.vecdot
    if g == 2:  # the halves: (<x_0, y_1> + <x_1, y_0>) / 2
        return (dot(x[0], y[1]) + dot(x[1], y[0])) / 2, None
    tx, ty = x.sum(0), y.sum(0)
    tt, d = dot(tx, ty), dot(x, y)
    value = (tt - d.sum(0)) / (g * (g - 1))
    loo = tt - dot(x, ty) - dot(tx, y) + 2 * d - d.sum(0)
    return value, loo / ((g - 1) * (g - 2))


@dataclass(frozen=True)
class _Products:
    """``(<a, b>, ||a||^2, ||b||^2)`` per image: of the mean maps (``plain``), from cross-group
    products (``cross``), and those leaving out each group (``loo``, ``None`` for halves)."""

    plain: tuple[torch.Tensor, ...]
    cross: tuple[torch.Tensor, ...]
    loo: tuple[torch.Tensor, ...] | None


def _products(p: _Paired) -> _Products:
    a, b, dot = p.ma, p.mb, torch.linalg.vecdot
    plain = (dot(a, b), dot(a, a), dot(b, b))
    pairs = ((p.blocks_a, p.blocks_b), (p.blocks_a, p.blocks_a), (p.blocks_b, p.blocks_b))
    found = [_cross(x, y) for x, y in pairs]
    loo = None if found[0][1] is None else tuple(c[1] for c in found)
    return _Products(plain, tuple(c[0] for c in found), loo)


def _estimate(
    p: _Paired,
    q: _Products,
    f: Stats,
    partials: Callable,
    low: float = -math.inf,
    high: float = math.inf,
) -> Estimate:
    """``f(<a, b>, ||a||^2, ||b||^2)`` plain and from cross-group products, with its standard
    error: jackknife over groups, or with two halves the delta method via ``partials`` (the
    derivatives of ``f`` in its three arguments, at the mean maps)."""
    plain, value = f(*q.plain), f(*q.cross)
    if q.loo is not None:
        loo = f(*q.loo)
        g = len(loo)
        var = (g - 1) / g * (loo - loo.mean(0)).square().sum(0)
        return Estimate(plain, value, var.sqrt(), g - 1, low, high)
    a, b = p.ma, p.mb
    d_ab, d_aa, d_bb = (t[:, None] for t in partials(*q.plain))
    grad_a, grad_b = d_ab * b + 2 * d_aa * a, d_ab * a + 2 * d_bb * b
    a0, a1, b0, b1 = p.halves
    factor = _half_factor(*p.counts, a)
    if factor is not None:  # the linearised error from the difference of the halves
        h = grad_a * (a0 - a1) + grad_b * (b0 - b1)
        var = (h.square() * factor).sum(1)
    else:  # unequal counts: independent draws, each side's own variance
        va, vb = (v.to(a.dtype).flatten(1) for v in p.mean_vars)
        var = (grad_a.square() * va + grad_b.square() * vb).sum(1)
    return Estimate(plain, value, var.sqrt(), None, low, high)


def _inner_partials(ab, aa, bb):
    return torch.ones_like(ab), torch.zeros_like(aa), torch.zeros_like(bb)


def _cos_partials(ab, aa, bb):
    c, ok = _cos(ab, aa, bb), (aa > 0) & (bb > 0)
    safe = lambda t: t.where(ok, 1)  # noqa: E731
    zero = torch.zeros_like(c)
    d_ab = (1 / (safe(aa) * safe(bb)).sqrt()).where(ok, zero)
    return d_ab, (-c / (2 * safe(aa))).where(ok, zero), (-c / (2 * safe(bb))).where(ok, zero)


def _unit_partials(ab, aa, bb):
    u = _unit(_cos(ab, aa, bb))
    return tuple((-d / u.where(u > 0, 1)).where(u > 0, 0) for d in _cos_partials(ab, aa, bb))


def debiased_inner(a: SmoothStats | torch.Tensor, b: SmoothStats | torch.Tensor) -> Estimate:
    """``<a, b>`` per image from cross-group products (unbiased), with its standard error.

    Args:
        a, b: smoothed maps as :class:`~smoothstab.SmoothStats` with halves (or groups), or
            exact maps ``[B, ...]`` such as an unsmoothed reference.
    """
    p = _paired(a, b)
    return _estimate(p, _products(p), lambda ab, aa, bb: ab, _inner_partials)


def debiased_cosine(a: SmoothStats | torch.Tensor, b: SmoothStats | torch.Tensor) -> Estimate:
    """Cosine of raw maps per image from cross-group products, with its standard error.

    ``<a, b> / sqrt(||a||^2 ||b||^2)``, each term unbiased; the ratio keeps only a bias of
    second order in the Monte-Carlo error, where the plain cosine of the mean maps is pulled
    toward 0 at first order. Clamped to [-1, 1]; 0 where a squared norm comes out <= 0 (the
    map's size is lost in its noise). Args as :func:`debiased_inner`.
    """
    return debiased_agreement(a, b)[0]


def debiased_unit_distance(
    a: SmoothStats | torch.Tensor, b: SmoothStats | torch.Tensor
) -> Estimate:
    """``sqrt(2 - 2 cos)`` of :func:`debiased_cosine`, with its own jackknife (or delta-method)
    standard error; unreliable where it is near 0 against the noise. Args as there."""
    p = _paired(a, b)
    return _estimate(p, _products(p), _unit_of, _unit_partials, 0.0, 2.0)


def debiased_agreement(
    a: SmoothStats | torch.Tensor, b: SmoothStats | torch.Tensor
) -> tuple[Estimate, Estimate]:
    """:func:`debiased_cosine` and :func:`debiased_unit_distance` from one pass over the maps."""
    p = _paired(a, b)
    q = _products(p)
    cos = _estimate(p, q, _cos, _cos_partials, -1.0, 1.0)
    return cos, _estimate(p, q, _unit_of, _unit_partials, 0.0, 2.0)


def _unit_of(ab: torch.Tensor, aa: torch.Tensor, bb: torch.Tensor) -> torch.Tensor:
    return _unit(_cos(ab, aa, bb))

"""The Monte-Carlo engine behind smoothing: canonical noise draws, streaming sums, summaries.

How the noise is drawn is part of the contract, so that results are reproducible and comparable:

* Draws come from one generator on x's device (``seed``: an int, a ``torch.Generator``, or
  ``None`` for torch's global generator). They are taken in a fixed order, one standard-normal
  tensor ``eps_j`` of x's shape per *unit* ``j = 0, 1, ...`` (a unit is one sample, or an
  antithetic pair ``(eps_j, -eps_j)``), then, for samplers that need it, one uniform per image
  ``u_j``. The noise is ``z = sigma * eps``. So the same seed gives the same draws whatever
  ``batch_size`` is (chunks only group rows), and :func:`noise_draws` returns exactly the draws
  a call uses.
* Common random numbers: give two models the same int seed (or two generators in the same
  state) and they see the same ``eps``; give every sigma of a sweep the same seed and each sees
  the same ``eps`` scaled by its sigma.
* Units alternate between two halves (``j % 2``), each an independent estimate; together with
  the per-element variance of unit means this feeds split-half debiased distances and Monte-Carlo
  standard errors (:class:`SmoothStats`) at no extra model evaluations.

:func:`monte_carlo` runs a row function over all (unit, image) rows in chunks and returns a
:class:`SmoothStats`; :mod:`smoothstab.smoothing` builds the smoothing combinator on it.

Long (about 510 lines) because the fixed draws, the tolerance rounds and the packed levels all
keep one contract, the canonical draw order above, which one file keeps in one reading.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from smoothstab.checks import check_count, check_number
from smoothstab.methods import chunks
from smoothstab.stats import SmoothStats, per_image
from smoothstab.types import Seed

RowFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class Tolerance:
    """Draw units in rounds until every image's relative standard error (``rel_se``) is at
    most ``tol``, or it has used ``max_samples`` samples; at least ``min_samples`` each.

    Samples count draws of the noise (an antithetic pair is two samples). The first round
    draws ``min_samples``; every later one goes on only for the images not yet within ``tol``,
    to the fewest units predicted (the standard error falling as ``1/sqrt(n)``) to bring the
    closest of them within ``tol``, at least ``1.25x`` and at most ``growth`` times the units so
    far, rounded up to an even number so that every round splits evenly into the two halves.
    """

    tol: float
    min_samples: int = 16
    max_samples: int = 1000
    growth: float = 4.0

    def __post_init__(self) -> None:
        check_number(self.tol, "tol", low=0, open_low=True)
        check_count(self.min_samples, "min_samples")
        check_count(self.max_samples, "max_samples")
        check_number(self.growth, "growth", low=1.25)
        if self.min_samples > self.max_samples:
            raise ValueError(
                f"min_samples: expected at most max_samples={self.max_samples}, "
                f"got {self.min_samples}"
            )

    def unit_range(self, antithetic: bool) -> tuple[int, int]:
        """``(first round, most)`` in units; both at least 2 (two halves), the first even."""
        per_unit = 2 if antithetic else 1
        most = self.max_samples // per_unit
        if most < 2:
            raise ValueError(
                f"max_samples: expected at least {2 * per_unit} (two independent units"
                f"{', antithetic pairs' if antithetic else ''}), got {self.max_samples}"
            )
        first = max(2, -(-self.min_samples // per_unit))
        return min(first + first % 2, most), most

    def next_stop(self, n: int, rel_se: torch.Tensor, most: int) -> int:
        """Where the next round stops, for the unconverged images' ``rel_se`` at ``n`` units."""
        need = n * (rel_se.min().item() / self.tol) ** 2 if rel_se.numel() else n
        low, high = math.ceil(1.25 * n), math.floor(self.growth * n)
        stop = min(max(math.ceil(need * 1.05) if math.isfinite(need) else high, low), high)
        stop = max(stop + stop % 2, n + 2)
        return min(stop, most)


@dataclass(frozen=True)
class Sampling:
    """How many draws a smoothed map takes, with every rule on them checked here, once: a fixed
    ``n_samples`` (at least 1, even with ``antithetic``) or a :class:`Tolerance` (one of the
    two; ``min_samples`` and ``max_samples`` only with a tolerance, which needs at least two
    units), drawn in antithetic pairs or not, keeping ``groups`` interleaved groups of units (an
    even number >= 2; more than the halves need as many units: those of ``n_samples``, or of
    ``max_samples`` with a tolerance). The smoothers (:class:`~smoothstab.smoothing.Smoothed`,
    :class:`~smoothstab.weightsmooth.WeightSmoothed`) and the experiment layer's config ask it
    rather than checking again."""

    n_samples: int | None = None
    tolerance: Tolerance | None = None
    antithetic: bool = False
    groups: int = 2

    @classmethod
    def of(
        cls,
        n_samples: int | None = None,
        *,
        tol: float | None = None,
        min_samples: int | None = None,
        max_samples: int | None = None,
        antithetic: bool = False,
        groups: int = 2,
    ) -> Sampling:
        """The sampling of a smoother's arguments (``tol=`` with its bounds, or ``n_samples``)."""
        if tol is None:
            if n_samples is None:
                raise ValueError("n_samples: expected a number of samples or a tolerance tol=")
            for name, value in (("min_samples", min_samples), ("max_samples", max_samples)):
                if value is not None:
                    raise ValueError(f"{name}: only with tol=, got {value!r} with n_samples")
            return cls(n_samples, None, antithetic, groups)
        if n_samples is not None:
            raise ValueError(
                f"n_samples: expected either n_samples or tol=, got both ({n_samples!r}, {tol!r})"
            )
        bounds = {"min_samples": min_samples, "max_samples": max_samples}
        tolerance = Tolerance(tol, **{k: v for k, v in bounds.items() if v is not None})
        return cls(None, tolerance, antithetic, groups)

    def __post_init__(self) -> None:
        if (self.n_samples is None) == (self.tolerance is None):
            raise ValueError(
                "n_samples: expected either n_samples or a tolerance, not both or neither"
            )
        most = self.n_units if self.tolerance is None else self.max_units
        which = "of n_samples" if self.tolerance is None else "of max_samples"
        _check_groups(self.groups, most if self.groups > 2 else None, which)

    @property
    def n_units(self) -> int | None:
        """Units of a fixed ``n_samples`` (pairs with ``antithetic``); ``None`` with a tolerance."""
        return None if self.n_samples is None else units(self.n_samples, self.antithetic)

    @property
    def first_units(self) -> int:
        """The units every map draws (a tolerance's first round)."""
        if self.tolerance is None:
            return self.n_units
        return self.tolerance.unit_range(self.antithetic)[0]

    @property
    def max_units(self) -> int:
        """The most units a map may draw (a tolerance's ``max_samples``, in units)."""
        if self.tolerance is None:
            return self.n_units
        return self.tolerance.unit_range(self.antithetic)[1]  # too few for two units fails here

    def describe(self) -> str:
        """``n_samples=32`` or ``tol=0.1, min_samples=16, max_samples=1000``, for a repr."""
        t = self.tolerance
        if t is None:
            return f"n_samples={self.n_samples}"
        return f"tol={t.tol:g}, min_samples={t.min_samples}, max_samples={t.max_samples}"


def make_generator(seed: Seed, device: torch.device) -> torch.Generator | None:
    """A generator on ``device`` from an int seed; a given generator is checked for its device."""
    if seed is None:
        return None
    if isinstance(seed, torch.Generator):
        if torch.device(seed.device).type != torch.device(device).type:
            raise ValueError(f"seed: expected a generator on {device}, got one on {seed.device}")
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an int, a torch.Generator or None, got {seed!r}")
    return torch.Generator(device=device).manual_seed(seed)


class UnitDraws:
    """Draws taken unit by unit in order: ``unit(j)`` is what ``draw()`` returned on its
    ``j``-th call, drawn on first use (so units are drawn in order however the rows that use
    them are chunked) and kept until :meth:`forget` drops it."""

    def __init__(self, draw: Callable[[], object]):
        self.draw, self.cache, self.next = draw, {}, 0

    def unit(self, j: int):
        while self.next <= j:
            self.cache[self.next] = self.draw()
            self.next += 1
        return self.cache[j]

    def forget(self, before: int) -> None:
        """Drop the units before ``before`` (rows come unit-major: no later row needs them)."""
        for old in [k for k in self.cache if k < before]:
            del self.cache[old]


class _Draws(UnitDraws):
    """The canonical draw order: unit j gets ``eps_j`` of x's shape (unless ``normal`` is off:
    the noise is elsewhere, e.g. in the weights), then (if asked) ``u_j [B]``.

    Every unit draws for the whole batch, also in a round that runs only some images, so that
    each image's draws never depend on which others are still running."""

    def __init__(self, x: torch.Tensor, generator, uniform: bool, normal: bool = True):
        kw = dict(generator=generator, dtype=x.dtype, device=x.device)
        super().__init__(
            lambda: (
                torch.randn(x.shape, **kw) if normal else None,
                torch.rand(x.shape[0], **kw) if uniform else None,
            )
        )
        self.shape, self.uniform, self.normal = x.shape, uniform, normal

    def rows(self, start: int, stop: int, first_unit: int = 0, images: torch.Tensor | None = None):
        """Draws for the unit-major rows ``start..stop-1`` of a round from unit ``first_unit``
        over ``images`` (all when ``None``): row = (unit - first_unit) * width + slot."""
        width = self.shape[0] if images is None else len(images)
        first, last = start // width, (stop - 1) // width
        self.forget(first_unit + first)
        eps, u = [], []
        for j in range(first, last + 1):
            lo, hi = max(start - j * width, 0), min(stop - j * width, width)
            e, v = self.unit(first_unit + j)
            pick = slice(lo, hi) if images is None else images[lo:hi]
            eps.append(e[pick] if self.normal else None)
            u.append(v[pick] if self.uniform else None)
        return (torch.cat(eps) if self.normal else None), (torch.cat(u) if self.uniform else None)


def noise_draws(
    x: torch.Tensor, n_samples: int, *, seed: Seed = None, antithetic: bool = False
) -> torch.Tensor:
    """The standard-normal draws ``[n_samples, *x.shape]`` that smoothing ``x`` uses."""
    n_units = units(n_samples, antithetic)
    draws = _Draws(x, make_generator(seed, x.device), uniform=False)
    eps = torch.stack([draws.unit(j)[0] for j in range(n_units)])
    if antithetic:
        eps = torch.stack([eps, -eps], dim=1).flatten(0, 1)
    return eps


DEFAULT_BATCH_SIZE = 256
"""Rows per model call when ``batch_size`` is ``None``: a bound on memory (without one a
tolerance's last round could be one call of hundreds of rows per image: 15.3 GB against 0.94 GB
for 64 CIFAR-sized images at ``tol = 0.01``, ``benchmarks/RESULTS.md``, "Rows per call"). On
a CPU, calls much larger than this were slower per row in both sweeps there; smaller ones
were faster in the one run beside another job, so the value is a memory bound first."""


def rows_per_call(batch_size: int | None, per_unit: int = 1) -> int:
    """Units per chunk of the engine: ``batch_size`` rows (``DEFAULT_BATCH_SIZE`` when
    ``None``), whole antithetic pairs, at least one."""
    return max(1, (DEFAULT_BATCH_SIZE if batch_size is None else batch_size) // per_unit)


def default_groups(n_units: int) -> int:
    """The groups of units to keep when none are asked for: 16 from 32 units on (two or more
    units a group, a jackknife with 15 degrees of freedom), below that the most groups of at
    least two units each, an even number, and at least 2 (the halves).

    Standard errors from 16 groups covered 93.9-96.6% of true distances in a 2000-trial
    calibration; the halves' per-element pooled ones 76-93%, since they leave out the
    correlation between a map's elements."""
    check_count(n_units, "n_units", 1)
    return max(2, min(16, n_units // 4 * 2))


def units(n_samples: int, antithetic: bool) -> int:
    check_count(n_samples, "n_samples")
    if antithetic and n_samples % 2:
        raise ValueError(
            f"n_samples: expected an even number with antithetic=True, got {n_samples}"
        )
    return n_samples // 2 if antithetic else n_samples


class _Accumulator:
    """Streaming per-image sums for :class:`SmoothStats`.

    ``full`` keeps everything the split-half and standard-error estimates need, in float64 (off
    MPS) because variances come from differences of sums; otherwise only the sum (and, with
    ``squares``, the sum of squares) in the maps' dtype, which keeps the hot path lean.
    """

    def __init__(
        self,
        n_images: int,
        n_units: int,
        per_unit: int,
        full: bool,
        squares: bool,
        groups: int = 2,
    ):
        self.n_images, self.n_units, self.per_unit = n_images, n_units, per_unit
        self.full, self.squares = full, squares or full
        self.groups = groups if full else 2
        self.sums: dict[str, torch.Tensor] = {}
        # the sum of squared samples; with one sample per unit it is the units' own, kept once
        self._sample_sq = "unit_sq" if full and per_unit == 1 else "sample_sq"

    def add(
        self, maps: torch.Tensor, b: torch.Tensor, half: torch.Tensor, j: torch.Tensor | None = None
    ) -> None:
        """``maps``: ``[per_unit, G, ...]`` for G (unit ``j``, image ``b``) rows."""
        if self.full and maps.device.type != "mps":
            maps = maps.to(torch.float64)
        unit = maps[0] if self.per_unit == 1 else maps.mean(dim=0)
        parts = {"unit": unit}
        if self.squares and self._sample_sq == "sample_sq":
            parts["sample_sq"] = (maps * maps).sum(dim=0)
        if self.full:
            parts["unit_sq"] = unit * unit
            parts["half0"] = unit * (half == 0).view((-1,) + (1,) * (unit.ndim - 1))
        for key, value in parts.items():
            if key not in self.sums:
                self.sums[key] = value.new_zeros((self.n_images, *value.shape[1:]))
            self.sums[key].index_add_(0, b, value)
        if self.groups > 2:
            slot = (j % self.groups) * self.n_images + b
            if "groups" not in self.sums:
                self.sums["groups"] = unit.new_zeros((self.groups * self.n_images, *unit.shape[1:]))
            self.sums["groups"].index_add_(0, slot, unit)

    def stats(
        self,
        dtype: torch.dtype,
        counts: torch.Tensor | None = None,
        converged: torch.Tensor | None = None,
    ) -> SmoothStats:
        """The summary; ``counts`` ``[B]``: the units each image used, if not all ``n_units``."""
        s = self.sums
        n: int | torch.Tensor = self.n_units
        if counts is not None:
            n = per_image(counts, s["unit"])
        mean = s["unit"] / n
        halves = unit_var = mean_sq = None
        if self.full and self.n_units >= 2:
            n0 = (n + 1) // 2
            halves = torch.stack([s["half0"] / n0, (s["unit"] - s["half0"]) / (n - n0)])
            unit_var = ((s["unit_sq"] - n * mean * mean) / (n - 1)).clamp(min=0)
        if self.squares:
            mean_sq = s[self._sample_sq] / (n * self.per_unit)
        groups = None
        if self.groups > 2:
            g, shape = self.groups, s["unit"].shape[1:]
            k = torch.arange(g, device=s["unit"].device).view(-1, 1)
            total = self.n_units if counts is None else counts.view(1, -1).to(k.device)
            per_group = torch.div(total - k + g - 1, g, rounding_mode="floor")
            per_group = per_group.expand(g, self.n_images).to(s["unit"].dtype)
            sums = s["groups"].view(g, self.n_images, *shape)
            groups = sums / per_group.view(g, self.n_images, *([1] * len(shape)))
        cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
        return SmoothStats(
            cast(mean),
            cast(mean_sq),
            cast(halves),
            cast(unit_var),
            self.n_units,
            counts,
            converged,
            self.per_unit,
            cast(groups),
        )


def monte_carlo(
    fn: RowFn,
    x: torch.Tensor,
    *,
    sigma: float,
    n_samples: int | None = None,
    batch_size: int | None = None,
    seed: Seed = None,
    antithetic: bool = False,
    uniform: bool = False,
    stratify: bool = False,
    full: bool = True,
    squares: bool = True,
    tolerance: Tolerance | None = None,
    groups: int = 2,
    input_noise: bool = True,
) -> SmoothStats:
    """Run ``fn(noisy_rows, image_idx, unit_idx, u)`` over all (unit, image) rows in chunks.

    Rows are ordered unit-major; a chunk holds at most ``batch_size`` rows (at least one
    antithetic pair). ``u`` are per-row uniforms on [0, 1) when ``uniform`` (else ``None``);
    with ``stratify`` each becomes the point ``(k + u) / m`` of its stratum: the unit is the
    ``k``-th of the ``m`` units of its group (``j % groups``; the halves when ``groups`` is 2)
    in its round, so the ``u`` of each group of a round are stratified on [0, 1] and every
    group -- hence every half -- is an unbiased estimate on its own (a fixed ``n_samples`` is
    one round). More groups mean fewer units per stratum set, so less variance reduction.
    ``full=False`` skips the halves and variances (and ``squares=False`` the mean of squares).
    ``groups``: an even number of interleaved groups of units whose means to keep beside the
    halves (:attr:`SmoothStats.groups`; 2: the halves only), at most the number of units.
    ``input_noise=False`` draws no ``eps`` and gives ``fn`` the clean images (``sigma`` unused),
    for noise that ``fn`` draws itself per unit index (the weights' noise of
    :mod:`smoothstab.weightsmooth`): the rows of an antithetic chunk are then its ``+`` rows
    followed by its ``-`` rows, in the same order.

    With a :class:`Tolerance` instead of ``n_samples``, units are drawn in rounds (always in
    the canonical order, so the first ``n`` units are the draws of a call with ``n`` units) and
    each round runs only the images whose ``rel_se`` is still above ``tol``; the result records
    the units of each image and whether it converged. Stopping when the estimated error is
    small makes the mean depend slightly on its own draws (a bias small against the
    tolerance); ``min_samples`` keeps the first estimate of the error from resting on a few
    draws.
    """
    Sampling(n_samples, tolerance, antithetic, groups)  # its rules, checked once
    per_unit = 2 if antithetic else 1
    n_images = x.shape[0]
    draws = _Draws(x, make_generator(seed, x.device), uniform, input_noise)
    group = rows_per_call(batch_size, per_unit)
    strata = groups if stratify else None
    run = functools.partial(
        _round, fn, x, sigma, draws, group=group, antithetic=antithetic, strata=strata
    )
    if tolerance is None:
        n_units = units(n_samples, antithetic)
        _check_groups(groups, n_units if full else None, "drawn")
        acc = _Accumulator(n_images, n_units, per_unit, full, squares, groups)
        run(acc, 0, n_units, None)
        return acc.stats(x.dtype)
    stop, most = tolerance.unit_range(antithetic)
    stop = min(max(stop, groups), most)
    _check_groups(groups, most, "of max_samples")
    acc = _Accumulator(n_images, most, per_unit, True, True, groups)
    counts = torch.zeros(n_images, dtype=torch.long, device=x.device)
    active = torch.arange(n_images, device=x.device)
    done_at = 0
    while True:
        run(acc, done_at, stop, None if len(active) == n_images else active)
        counts[active] = stop
        rel = acc.stats(torch.float64, counts).rel_se
        still = active[(rel[active] > tolerance.tol) & (counts[active] < most)]
        if not len(still):
            break
        done_at, active = stop, still
        stop = tolerance.next_stop(stop, rel[active], most)
    acc.n_units = int(counts.max())
    return acc.stats(x.dtype, counts, rel <= tolerance.tol)


def _check_groups(groups: int, n_units: int | None = None, which: str = "drawn") -> None:
    """``groups``: an even number >= 2 (each half splits evenly), at most ``n_units`` (the units
    ``which``) when given."""
    check_count(groups, "groups", 2)
    if groups % 2:
        raise ValueError(f"groups: expected an even number (each half splits evenly), got {groups}")
    if n_units is not None and groups > n_units:
        raise ValueError(f"groups: expected at most the {n_units} units {which}, got {groups}")


def _round(
    fn: RowFn,
    x: torch.Tensor,
    sigma: float,
    draws: _Draws,
    acc: _Accumulator,
    first: int,
    stop: int,
    images: torch.Tensor | None,
    *,
    group: int | None,
    antithetic: bool,
    strata: int | None,
) -> None:
    """Units ``first..stop-1`` of ``images`` (all when ``None``) into ``acc``."""
    per_unit = 2 if antithetic else 1
    width = x.shape[0] if images is None else len(images)
    n = stop - first
    for rows in chunks(n * width, group):
        noisy, bb, jj, u, b, j = _rows(x, sigma, draws, rows, first, n, images, antithetic, strata)
        maps = fn(noisy, bb, jj, u)
        acc.add(maps.reshape(per_unit, len(rows), *maps.shape[1:]), b, j % 2, j)


def _rows(
    x: torch.Tensor,
    sigma: float,
    draws: _Draws,
    rows: torch.Tensor,
    first: int,
    n: int,
    images: torch.Tensor | None,
    antithetic: bool,
    strata: int | None,
):
    """The noisy inputs of the unit-major ``rows`` of a round (``n`` units from unit ``first``
    over ``images``), as ``fn`` takes them (``noisy, image_idx, unit_idx, u``; both halves of an
    antithetic pair), then each row's image and unit for the accumulator. With ``strata`` (the
    number of groups) each ``u`` moves into its stratum among its own group's units of the
    round."""
    per_unit = 2 if antithetic else 1
    width = x.shape[0] if images is None else len(images)
    j, slot = rows // width + first, rows % width
    b = slot if images is None else images[slot.to(images.device)].cpu()
    eps, u = draws.rows(int(rows[0]), int(rows[-1]) + 1, first, images)
    if strata is not None:
        u = _stratified(u, (j - first).to(x.device), n, strata)
    if antithetic:
        eps = None if eps is None else torch.cat([eps, -eps])
        u = None if u is None else torch.cat([u, u])
    bb, jj = b.repeat(per_unit).to(x.device), j.repeat(per_unit).to(x.device)
    noisy = x[bb] if eps is None else x[bb] + sigma * eps
    return noisy, bb, jj, u, b.to(x.device), j.to(x.device)


def _stratified(u: torch.Tensor, k: torch.Tensor, n: int, strata: int) -> torch.Tensor:
    """``u`` of the ``k``-th units of a round of ``n`` as points of their strata. The units of a
    round with the same ``k % strata`` are exactly those of one group (``j % strata``, with
    ``j = first + k``); unit ``k`` is the ``k // strata``-th of the ``m`` of them, so it lands in
    ``[(k // strata) / m, (k // strata + 1) / m)``."""
    m = (n - k % strata + strata - 1) // strata
    return (k // strata + u) / m


def monte_carlo_packed(
    fn: RowFn,
    x: torch.Tensor,
    *,
    levels: Sequence[tuple[float, Seed]],
    n_samples: int,
    batch_size: int | None = None,
    antithetic: bool = False,
    uniform: bool = False,
    stratify: bool = False,
    full: bool = True,
    squares: bool = True,
    groups: int = 2,
) -> list[SmoothStats]:
    """:func:`monte_carlo` at several noise levels ``(sigma, seed)`` of one image batch, with
    the rows of all levels packed into shared calls of ``fn`` (a chunk that one level leaves
    part-empty is filled with the next level's rows).

    Each level draws exactly what ``monte_carlo(fn, x, sigma=sigma, seed=seed, ...)`` draws
    (its own generator, the canonical order), so the results equal separate calls up to the
    floating point of ``fn`` on differently composed batches. Levels therefore need an int
    seed each, or a ``torch.Generator`` each: one generator shared by several levels (or
    ``None``, torch's global one) would hand out the draws in another order. A fixed
    ``n_samples`` only (a tolerance decides per level when to stop).

    A level of sigma 0 draws nothing: its rows are the clean images, one per image, packed with
    the others (``fn`` called with ``u = None`` for them, so not with ``uniform``), and its
    result is exact (:meth:`SmoothStats.exact`, as a smoother gives at sigma 0); its seed is
    not used.
    """
    exact = [sigma == 0 for sigma, _ in levels]
    if any(exact) and uniform:
        raise ValueError(
            "levels: a level of sigma 0 has no draws of u to pass; with uniform=True (a joint "
            "sampler) compute the exact map on its own"
        )
    gens = [
        None if e else make_generator(seed, x.device)
        for e, (_, seed) in zip(exact, levels, strict=True)
    ]
    given = [g for g, e in zip(gens, exact, strict=True) if not e and g is not None]
    if len(given) < exact.count(False) or len({id(g) for g in given}) < len(given):
        raise ValueError(
            "seed: packed noise levels need an int seed or a torch.Generator of their own each "
            "(a shared generator would hand out the draws in another order than separate calls)"
        )
    n_units = units(n_samples, antithetic)
    per_unit, n_images = (2 if antithetic else 1), x.shape[0]
    _check_groups(groups, n_units if full else None, "drawn")
    draws = [None if e else _Draws(x, g, uniform) for e, g in zip(exact, gens, strict=True)]
    accs = [
        None if e else _Accumulator(n_images, n_units, per_unit, full, squares, groups)
        for e in exact
    ]
    clean: dict[int, torch.Tensor] = {}  # the exact levels' maps, by level
    strata = groups if stratify else None
    spans = [n_images if e else n_units * n_images for e in exact]
    starts = [sum(spans[:k]) for k in range(len(levels))]
    group = rows_per_call(batch_size, per_unit)
    for rows in chunks(sum(spans), group):
        parts = []
        first, last = int(rows[0]), int(rows[-1])
        for k in range(len(levels)):
            if starts[k] > last or starts[k] + spans[k] <= first:
                continue
            own = rows[(rows >= starts[k]) & (rows < starts[k] + spans[k])] - starts[k]
            if exact[k]:
                b = own.to(x.device)
                parts.append((k, len(own), (x[b], b, torch.zeros_like(b), None, b, None)))
            else:
                sigma = levels[k][0]
                parts.append(
                    (
                        k,
                        len(own),
                        _rows(x, sigma, draws[k], own, 0, n_units, None, antithetic, strata),
                    )  # fmt: skip
                )
        noisy, bb, jj, u = (
            torch.cat(col) if col[0] is not None else None
            for col in list(zip(*(p[2][:4] for p in parts), strict=True))
        )
        maps = fn(noisy, bb, jj, u)
        start = 0
        for k, count, (*_, b, j) in parts:
            if exact[k]:
                piece = maps[start : start + count]
                start += count
                if k not in clean:
                    clean[k] = piece.new_empty((n_images, *piece.shape[1:]))
                clean[k][b] = piece
                continue
            piece = maps[start : start + count * per_unit]
            start += count * per_unit
            accs[k].add(piece.reshape(per_unit, count, *maps.shape[1:]), b, j % 2, j)
    return [
        SmoothStats.exact(clean[k]) if exact[k] else accs[k].stats(x.dtype)
        for k in range(len(levels))
    ]

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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from smoothstab.checks import check_choice, check_count
from smoothstab.methods import chunks
from smoothstab.types import Seed

REDUCTIONS = ("mean", "mean_sq", "var")
RowFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class SmoothStats:
    """Monte-Carlo summary of a smoothed map, per image (all ``[B, ...]`` unless said).

    Attributes:
        mean: the smoothed map, the mean over all samples.
        mean_sq: the mean of squared per-sample maps (``None`` if not kept).
        halves: ``[2, B, ...]``, the means of the two independent halves (``None`` if one unit).
        unit_var: unbiased per-element variance of the independent unit means (``None`` if one).
        n_units: number of independent units (samples, or antithetic pairs).
    """

    mean: torch.Tensor
    mean_sq: torch.Tensor | None
    halves: torch.Tensor | None
    unit_var: torch.Tensor | None
    n_units: int

    @property
    def var(self) -> torch.Tensor:
        """Per-element variance over samples (population form, as Captum's ``vargrad``)."""
        return (self.mean_sq - self.mean**2).clamp(min=0)

    @property
    def mean_var(self) -> torch.Tensor | None:
        """Per-element variance of ``mean`` as an estimator: ``unit_var / n_units``."""
        return None if self.unit_var is None else self.unit_var / self.n_units

    @classmethod
    def exact(cls, value: torch.Tensor, n_units: int = 2) -> SmoothStats:
        """The summary of a map with no Monte-Carlo error (sigma = 0): both halves equal it."""
        return cls(
            value, value * value, torch.stack([value, value]), torch.zeros_like(value), n_units
        )

    def reduce(self, how: str) -> torch.Tensor:
        check_choice(how, "reduce", REDUCTIONS)
        return self.mean if how == "mean" else self.mean_sq if how == "mean_sq" else self.var


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


class _Draws:
    """The canonical draw order: unit j gets ``eps_j`` of x's shape, then (if asked) ``u_j [B]``."""

    def __init__(self, x: torch.Tensor, generator, uniform: bool):
        self.shape, self.dtype, self.device = x.shape, x.dtype, x.device
        self.generator, self.uniform = generator, uniform
        self.cache: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.next = 0

    def unit(self, j: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        while self.next <= j:
            kw = dict(generator=self.generator, dtype=self.dtype, device=self.device)
            eps = torch.randn(self.shape, **kw)
            u = torch.rand(self.shape[0], **kw) if self.uniform else None
            self.cache[self.next] = (eps, u)
            self.next += 1
        return self.cache[j]

    def rows(self, start: int, stop: int):
        """Draws for the unit-major rows ``start..stop-1`` (row = unit * B + image), as slices."""
        n_images = self.shape[0]
        first, last = start // n_images, (stop - 1) // n_images
        for old in [k for k in self.cache if k < first]:
            del self.cache[old]
        eps, u = [], []
        for j in range(first, last + 1):
            lo, hi = max(start - j * n_images, 0), min(stop - j * n_images, n_images)
            e, v = self.unit(j)
            eps.append(e[lo:hi])
            u.append(v[lo:hi] if self.uniform else None)
        return torch.cat(eps), (torch.cat(u) if self.uniform else None)


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

    def __init__(self, n_images: int, n_units: int, per_unit: int, full: bool, squares: bool):
        self.n_images, self.n_units, self.per_unit = n_images, n_units, per_unit
        self.full, self.squares = full, squares or full
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, maps: torch.Tensor, b: torch.Tensor, half: torch.Tensor) -> None:
        """``maps``: ``[per_unit, G, ...]`` for G (unit, image) rows."""
        if self.full and maps.device.type != "mps":
            maps = maps.to(torch.float64)
        unit = maps[0] if self.per_unit == 1 else maps.mean(dim=0)
        parts = {"unit": unit}
        if self.squares:
            parts["sample_sq"] = (maps * maps).sum(dim=0)
        if self.full:
            parts["unit_sq"] = unit * unit
            parts["half0"] = unit * (half == 0).view((-1,) + (1,) * (unit.ndim - 1))
        for key, value in parts.items():
            if key not in self.sums:
                self.sums[key] = value.new_zeros((self.n_images, *value.shape[1:]))
            self.sums[key].index_add_(0, b, value)

    def stats(self, dtype: torch.dtype) -> SmoothStats:
        n, s = self.n_units, self.sums
        mean = s["unit"] / n
        halves = unit_var = mean_sq = None
        if self.full and n >= 2:
            n0 = (n + 1) // 2
            halves = torch.stack([s["half0"] / n0, (s["unit"] - s["half0"]) / (n - n0)])
            unit_var = ((s["unit_sq"] - n * mean * mean) / (n - 1)).clamp(min=0)
        if self.squares:
            mean_sq = s["sample_sq"] / (n * self.per_unit)
        cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
        return SmoothStats(cast(mean), cast(mean_sq), cast(halves), cast(unit_var), n)


def monte_carlo(
    fn: RowFn,
    x: torch.Tensor,
    *,
    sigma: float,
    n_samples: int,
    batch_size: int | None = None,
    seed: Seed = None,
    antithetic: bool = False,
    uniform: bool = False,
    full: bool = True,
    squares: bool = True,
) -> SmoothStats:
    """Run ``fn(noisy_rows, image_idx, unit_idx, u)`` over all (unit, image) rows in chunks.

    Rows are ordered unit-major; a chunk holds at most ``batch_size`` rows (at least one
    antithetic pair). ``u`` are per-row uniforms on [0, 1) when ``uniform`` (else ``None``).
    ``full=False`` skips the halves and variances (and ``squares=False`` the mean of squares).
    """
    n_units = units(n_samples, antithetic)
    per_unit = 2 if antithetic else 1
    n_images = x.shape[0]
    draws = _Draws(x, make_generator(seed, x.device), uniform)
    acc = _Accumulator(n_images, n_units, per_unit, full, squares)
    group = None if batch_size is None else max(1, batch_size // per_unit)
    for rows in chunks(n_units * n_images, group):
        j, b = rows // n_images, rows % n_images
        eps, u = draws.rows(int(rows[0]), int(rows[-1]) + 1)
        if antithetic:
            eps, u = torch.cat([eps, -eps]), (None if u is None else torch.cat([u, u]))
        bb, jj = b.repeat(per_unit).to(x.device), j.repeat(per_unit).to(x.device)
        maps = fn(x[bb] + sigma * eps, bb, jj, u)
        acc.add(
            maps.reshape(per_unit, len(rows), *maps.shape[1:]), b.to(x.device), (j % 2).to(x.device)
        )
    return acc.stats(x.dtype)

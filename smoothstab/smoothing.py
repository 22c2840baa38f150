"""Gaussian smoothing of any saliency method: ``E_z[method(x + z)]``, ``z ~ N(0, sigma^2 I)``.

:func:`smooth` returns a :class:`Smoothed` method: calling it gives the smoothed map, and its
``.stats(model, x, target)`` the full Monte-Carlo summary (:class:`SmoothStats`: halves and
variances for debiased distances and standard errors). Both exist at every sigma; at
``sigma = 0`` the method runs once and the summary is exact. Every smoothed method -- Smooth-Grad
is ``smooth(grad, ...)``, the paper's smoothed IG is ``smooth(integrated_gradients, ...)`` --
runs through the one engine of :mod:`smoothstab.montecarlo`, with its canonical draw order.

A *sampler* says what each Monte-Carlo unit draws:

* ``"noise"``: ``z``, and the whole method runs at ``x + z``.
* ``"joint"`` (Integrated-Gradients only): ``(z, a)`` together, one model evaluation per unit
  at the path point ``x0 + a (x + z - x0)``. ``a`` is stratified on [0, 1] within each group
  of units (``groups``; the two halves by default), so the estimate, each half and each group
  are unbiased for the continuous path integral; the IG's quadrature ``steps``/``rule`` are not
  used. More groups leave fewer units to each stratified set, so less variance reduction (at
  ``groups = n_units`` none). With a tolerance the units come in rounds and ``a`` is stratified
  within each group of each round: every round is then an unbiased estimate on its own, so
  their unit-weighted mean is too; a single round (an image that met the
  tolerance in the first one) is exactly the fixed-``n_samples`` estimate.

Instead of ``n_samples``, ``tol=`` asks for a relative Monte-Carlo standard error: units are
drawn in rounds until every image's ``||se||_2`` relative to its map's estimated size
(:attr:`SmoothStats.rel_se`) is at most ``tol`` or it has used ``max_samples``; images within
``tol`` leave the later rounds, so they cost no more model evaluations. Draws keep the
canonical order: for the ``noise`` sampler an image that stopped after ``n`` samples has the
map of a call with ``n_samples=n`` and the same seed, equal up to floating point (the sums may
run in another order); for ``joint`` only when it stopped in the first round
(later rounds stratify the path positions of their own units, so the maps differ).

``tol`` bounds each *map's* error, not that of a distance between maps: two close maps
without common noise have a distance whose relative error is about ``||a|| / ||a - b||`` times
larger. For a distance, keep ``groups`` and use
:meth:`~smoothstab.debias.DistanceEstimate.interval`. Stopping on an estimated error biases
the map slightly: small against ``tol`` when the noise spreads over many directions of the map,
a sizeable fraction of ``tol`` when it is effectively one-dimensional (a CAM over a few cells):
there raise ``min_samples`` (64 or more) so that the first estimate of the error is sound.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from smoothstab.checks import (
    bind_keywords,
    check_batch,
    check_batch_size,
    check_choice,
    check_sigma,
    warn_if_training,
)
from smoothstab.methods import (
    Baseline,
    expand_baseline,
    ig_rule,
    integrated_gradients,
    path_point_gradient,
    resolve_target,
)
from smoothstab.montecarlo import (
    DEFAULT_BATCH_SIZE,
    RowFn,
    Sampling,
    make_generator,
    monte_carlo,
    monte_carlo_packed,
)
from smoothstab.renames import warn_renamed
from smoothstab.stats import REDUCTIONS, SmoothStats
from smoothstab.types import Method, Seed, Target

SAMPLERS = ("noise", "joint")
"""The samplers of :class:`Smoothed` (``sampler=``): ``"noise"`` draws noise only, ``"joint"``
(Integrated-Gradients only) a noise draw and a point of IG's path together."""


class _Smoother:
    """What every smoother checks and keeps: the method, sigma, the :class:`Sampling` (the
    engine's rules), the seed (a bad one fails here, not at the call), the reduction and the
    rows per call. :class:`Smoothed` and :class:`~smoothstab.weightsmooth.WeightSmoothed` add
    their own arguments."""

    def __init__(
        self,
        method: Method,
        sigma: float,
        n_samples: int | None,
        *,
        reduce: str,
        batch_size: int | None,
        seed: Seed,
        antithetic: bool,
        tol: float | None,
        max_samples: int | None,
        min_samples: int | None,
        groups: int,
        prefix: str,
    ) -> None:
        if not callable(method):
            raise ValueError(
                f"method: expected a callable method(model, x, target), got {method!r}"
            )
        self.method, self.sigma = method, check_sigma(sigma)
        self.sampling = Sampling.of(
            n_samples,
            tol=tol,
            min_samples=min_samples,
            max_samples=max_samples,
            antithetic=antithetic,
            groups=groups,
        )
        self.tolerance, self.n_samples = self.sampling.tolerance, n_samples
        self.n_units, self.groups = self.sampling.n_units, groups
        if seed is not None and not isinstance(seed, torch.Generator):
            make_generator(seed, torch.device("cpu"))  # a bad seed fails here, not at the call
        self.seed, self.antithetic = seed, antithetic
        self.reduce = check_choice(reduce, "reduce", REDUCTIONS)
        self.batch_size = check_batch_size(batch_size)
        name = getattr(getattr(method, "func", method), "__name__", type(method).__name__)
        self.__name__ = f"{prefix}{name}"


class Smoothed(_Smoother):
    """Any method smoothed: ``E_z[method(model, x + z, target)]``, ``z ~ N(0, sigma^2 I)``.

    Made by :func:`smooth` (the same class): ``smooth(grad, ...)`` is Smooth-Grad (Eq. 5).

    Args:
        method: ``method(model, x, target) -> [B, ...]``.
        sigma: noise standard deviation in input units; ``0`` runs ``method`` once (exact).
        n_samples: noise draws per image (model evaluations per image with ``sampler="joint"``).
            Give either it or ``tol``.
        reduce: what calling it returns: ``mean`` (the smoothed map), ``mean_sq`` or ``var``
            over the draws.
        batch_size: at most this many noisy rows per call of ``method``; ``None``:
            :data:`~smoothstab.montecarlo.DEFAULT_BATCH_SIZE` (256), so memory stays bounded
            however many images, draws or rounds of a tolerance there are.
        seed: int, ``torch.Generator`` on x's device, or ``None`` (torch's global generator).
        antithetic: draw pairs ``(z, -z)``; needs an even ``n_samples``.
        sampler: ``noise``, or ``joint`` for Integrated-Gradients (see the module docstring).
        tol: instead of ``n_samples``, draw until each image's relative standard error
            ``||se|| / ||mean||`` is at most this (> 0), between ``min_samples`` (default 16)
            and ``max_samples`` (default 1000) draws per image.
        groups: an even number of interleaved groups of units whose means ``.stats`` keeps
            (:attr:`SmoothStats.groups`), for standard errors of distances that account for
            the correlation between a map's elements; 2 keeps the halves only.
        **method_keywords: any other keyword goes to ``method`` at every call, as Captum's
            ``NoiseTunnel`` passes them on: ``smooth(grad_cam, 0.3, 16, layer="layer4")`` is
            ``smooth(functools.partial(grad_cam, layer="layer4"), 0.3, 16)``. A keyword the
            method does not take is one ``TypeError`` line naming the ones it does; the
            keywords above are this constructor's (bind a method's own ``batch_size`` with
            ``functools.partial``).
    Calling it gives the maps; ``.stats(model, x, target)`` the full :class:`SmoothStats`.
    """

    def __init__(
        self,
        method: Method,
        sigma: float,
        n_samples: int | None = None,
        *,
        reduce: str = "mean",
        batch_size: int | None = None,
        seed: Seed = None,
        antithetic: bool = False,
        sampler: str = "noise",
        tol: float | None = None,
        max_samples: int | None = None,
        min_samples: int | None = None,
        groups: int = 2,
        **method_keywords: Any,
    ):
        method = bind_keywords(method, method_keywords, "smooth")
        super().__init__(
            method,
            sigma,
            n_samples,
            reduce=reduce,
            batch_size=batch_size,
            seed=seed,
            antithetic=antithetic,
            tol=tol,
            max_samples=max_samples,
            min_samples=min_samples,
            groups=groups,
            prefix="smoothed_",
        )
        self.sampler = check_choice(sampler, "sampler", SAMPLERS)
        self.baseline = _ig_baseline(method) if sampler == "joint" else None

    def __repr__(self) -> str:
        return (
            f"{self.__name__}(sigma={self.sigma:g}, {self.sampling.describe()}, "
            f"sampler={self.sampler!r}, antithetic={self.antithetic})"
        )

    def __call__(self, model: nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        """The smoothed map ``[B, ...]`` (or the ``reduce`` of the draws); keeps only what
        ``reduce`` needs on the hot path."""
        return self._run(model, x, target, full=False).reduce(self.reduce)

    def stats(self, model: nn.Module, x: torch.Tensor, target: Target = None) -> SmoothStats:
        """The full Monte-Carlo summary of one evaluation (no extra model evaluations)."""
        return self._run(model, x, target, full=True)

    def stats_at(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: Target,
        levels: Sequence[tuple[float, Seed]],
    ) -> list[SmoothStats]:
        """``.stats`` at each noise level ``(sigma, seed)`` of ``levels`` (at least one), the
        rows of all levels packed into shared calls of the method, each at most ``batch_size``
        rows. ``target`` as for :meth:`stats` (``None``: each image's predicted class), given
        explicitly.

        This object is a template: its sigma and seed are not used (each level brings its
        own); its method, ``n_samples`` or ``tol``, sampler, antithetic draws, groups and
        ``batch_size`` are. Level ``i`` gives what this method made with ``sigma_i`` and
        ``seed_i`` would give from ``.stats``: its draws are its own (the canonical order of
        its seed), so packing changes no draw, only how rows are grouped into calls, and
        results equal separate calls up to the floating point of differently sized batches.
        Levels need an int seed or a generator each. Sigma 0 runs the method once, shared by
        every such level; with the ``noise`` sampler its rows (one per image) are packed with the
        others' (the joint sampler's unsmoothed map is another computation: run on its own);
        with ``tol=`` the levels run one after another (each stops on its own)."""
        levels = list(levels)
        if not all(isinstance(level, tuple | list) and len(level) == 2 for level in levels):
            raise ValueError(f"levels: expected (sigma, seed) pairs, got {levels!r}")
        if not levels:
            raise ValueError("levels: expected at least one (sigma, seed) pair, got none")
        levels = [(check_sigma(sigma), seed) for sigma, seed in levels]
        noisy = [i for i, (sigma, _) in enumerate(levels) if sigma > 0]
        out: list[SmoothStats | None] = [None] * len(levels)
        joint = self.sampler == "joint"
        packs_exact = not joint and self.tolerance is None and 0 < len(noisy) < len(levels)
        if len(noisy) < len(levels) and not packs_exact:
            exact = self._at(0.0, None).stats(model, x, target)
            out = [exact if sigma == 0 else None for sigma, _ in levels]
        if not packs_exact and (self.tolerance is not None or len(noisy) < 2):
            for i in noisy:
                out[i] = self._at(*levels[i]).stats(model, x, target)
            return out
        check_batch(x)
        warn_if_training(model)
        target = resolve_target(model, x, target)
        packed_levels = [levels[i] for i in noisy] + ([(0.0, None)] if packs_exact else [])
        packed = monte_carlo_packed(
            self._row_fn(model, x, target),
            x,
            levels=packed_levels,
            n_samples=self.n_samples,
            batch_size=self.batch_size,
            antithetic=self.antithetic,
            uniform=joint,
            stratify=joint,
            groups=self.groups,
        )
        for i, stats in zip(noisy, packed[: len(noisy)], strict=True):
            out[i] = stats
        if packs_exact:  # the exact rows, last: they fill the last call's room
            pairs = zip(levels, out, strict=True)
            out = [packed[-1] if sigma == 0 else stats for (sigma, _), stats in pairs]
        return out

    def _at(self, sigma: float, seed: Seed) -> Smoothed:
        """This method at another sigma and seed."""
        other = copy.copy(self)
        other.sigma, other.seed = check_sigma(sigma), seed
        return other

    def _run(self, model: nn.Module, x: torch.Tensor, target: Target, full: bool) -> SmoothStats:
        if self.sigma == 0:
            exact = SmoothStats.exact(self.method(model, x, target))
            if self.tolerance is None:
                return exact
            ones = torch.ones(x.shape[0], dtype=torch.bool, device=exact.mean.device)
            return dataclasses.replace(exact, converged=ones)
        check_batch(x)
        warn_if_training(model)
        target = resolve_target(model, x, target)  # the class at the clean input, fixed for all z
        joint = self.sampler == "joint"
        return monte_carlo(
            self._row_fn(model, x, target),
            x,
            sigma=self.sigma,
            n_samples=self.n_samples,
            batch_size=self.batch_size,
            seed=self.seed,
            antithetic=self.antithetic,
            uniform=joint,
            stratify=joint,
            full=full,
            squares=full or self.reduce != "mean",
            tolerance=self.tolerance,
            groups=self.groups,
        )

    def _row_fn(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> RowFn:
        """``fn(noisy_rows, image_idx, unit_idx, u)`` for the engine, per sampler; for
        ``joint`` the engine gives ``u`` already stratified, the path position ``a``."""
        if self.sampler == "noise":
            return lambda xs, b, _j, _u: self.method(model, xs, target[b])
        x0 = expand_baseline(self.baseline, x)
        return lambda xs, b, _j, a: path_point_gradient(model, xs, x0[b], target[b], a)


smooth = Smoothed
"""``smooth(method, sigma, n_samples, ...)``: the :class:`Smoothed` method (Smooth-Grad is
``smooth(grad, ...)``)."""


def smoothed_ig(
    sigma: float,
    n_samples: int | None = None,
    *,
    sampler: str | None = None,
    steps: int = 20,
    rule: str = "paper",
    baseline: Baseline = None,
    batch_size: int | None = None,
    seed: Seed = None,
    antithetic: bool = False,
    tol: float | None = None,
    max_samples: int | None = None,
    min_samples: int | None = None,
    groups: int = 2,
    estimator: str | None = None,
) -> Smoothed:
    """Smoothed IG, ``E_z[IG(x + z)]`` (the path runs from ``x0`` to ``x + z``), as a method.

    A convenience over :func:`smooth` that also spreads ``batch_size`` sensibly:

    * ``sampler="nested"``: ``smooth(integrated_gradients, ...)`` as in the paper,
      ``n_samples`` draws x ``steps`` quadrature points; ``batch_size`` (default
      :data:`~smoothstab.montecarlo.DEFAULT_BATCH_SIZE`) bounds the path points per forward
      pass, so ``batch_size // steps`` noisy inputs go into each IG call.
    * ``sampler="joint"``: :class:`Smoothed`'s ``joint`` sampler, ``n_samples`` model
      evaluations in all.

    ``groups``, and ``tol``, ``min_samples``, ``max_samples`` (a tolerance instead of
    ``n_samples``): as for :class:`Smoothed`; samples are noise draws, ``steps`` model
    evaluations each when nested. ``sampler=None`` is ``"nested"``. ``estimator``: the old
    name of ``sampler`` (goes in 1.0); giving both is refused.
    """
    if estimator is not None and sampler is not None:
        raise TypeError(
            f"smoothed_ig: got sampler={sampler!r} and its old name estimator={estimator!r}; "
            "give sampler only"
        )
    if estimator is not None:
        warn_renamed("smoothed_ig(estimator=)", "smoothed_ig(sampler=)")
        sampler = estimator
    sampler = "nested" if sampler is None else sampler
    check_choice(sampler, "sampler", ("nested", "joint"))
    check_batch_size(batch_size)
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    ig = functools.partial(
        integrated_gradients, baseline=baseline, steps=steps, rule=rule, batch_size=batch_size
    )
    ig_rule(rule, steps)  # a bad rule or step count fails here, not at the first call
    rows = max(1, batch_size // steps) if sampler == "nested" else batch_size
    return smooth(
        ig,
        sigma,
        n_samples,
        batch_size=rows,
        seed=seed,
        antithetic=antithetic,
        sampler="noise" if sampler == "nested" else "joint",
        tol=tol,
        max_samples=max_samples,
        min_samples=min_samples,
        groups=groups,
    )


def _ig_baseline(method: Method) -> Baseline:
    """The baseline of an IG method (``integrated_gradients`` or a ``functools.partial`` of it),
    which the ``joint`` sampler needs; any other method is refused."""
    func, keywords = method, {}
    if isinstance(method, functools.partial):
        func, keywords = method.func, method.keywords
    if func is not integrated_gradients:
        name = getattr(func, "__name__", type(func).__name__)
        raise ValueError(
            "sampler: 'joint' draws a point of IG's path with each noise draw; expected "
            f"integrated_gradients or a functools.partial of it, got {name}"
        )
    return keywords.get("baseline")

"""Smoothing over weights: ``E_V[method(model with W + V)(x)]``, beside smoothing over inputs.

:func:`weight_smooth` returns a :class:`WeightSmoothed` method. Each Monte-Carlo *unit* draws one
Gaussian perturbation ``V`` of the model's parameters and runs ``method`` on every image with
the weights ``W + V``; the map is the mean over units. The noise is relative to each parameter
tensor's size: a parameter ``W_l`` (each weight and each bias is its own tensor) gets
``V_l ~ N(0, s_l^2 I)`` with::

    s_l = sigma * ||W_l||_F / sqrt(numel(W_l))     (sigma times the RMS of W_l's entries)

so ``sigma`` is a noise-to-signal ratio, the same for every layer whatever its scale; a tensor
that is all zeros gets no noise. This additive noise is isotropic within each tensor.
``noise="multiplicative"`` is NoiseGrad's (Bykov et al. 2022) instead: every weight is multiplied
by its own ``N(1, sigma^2)`` factor, ``W * (1 + sigma * eps)``, so the noise on a weight is
proportional to that weight (NoiseGrad's default is ``sigma = 0.2``). Buffers (BatchNorm running
statistics) are never perturbed.

The model is never changed: the perturbed weights go through ``torch.func.functional_call``,
which runs the model's own modules (so hooks a method registers, e.g. Grad-CAM's, fire as
usual) with the given tensors in place of its parameters, and puts the parameters back
afterwards. ``method`` may itself be a :class:`~smoothstab.smoothing.Smoothed`, which smooths
over inputs and weights together: ``weight_smooth(smooth(grad, 0.1, 8, seed=gen), 0.05, 16)``.

Weight smoothing runs on the engine of input smoothing (:func:`~smoothstab.montecarlo.monte_carlo`)
with a weight draw as its unit: a row is one (weight draw, image) pair, rows go unit-major in
chunks of at most ``batch_size`` (each unit's rows of a chunk in one call of ``method``), and the
same accumulator fills the same :class:`~smoothstab.stats.SmoothStats` (halves, unit variances,
``groups``). So ``tol=`` (rounds of weight draws until each image's relative standard error is
within it) and ``groups=`` work as for :func:`~smoothstab.smoothing.smooth`. Draws follow the
engine's conventions: one generator on the parameters' device from ``seed`` (int,
``torch.Generator`` or ``None`` for the global one); unit ``j`` draws, for each perturbed
parameter in ``named_parameters()`` order, one standard-normal tensor of its shape (the order of
earlier versions, so a fixed ``n_samples`` gives the same maps); antithetic units use
``(V, -V)``; units alternate between two halves. So the same seed gives the same ``V`` whatever
``batch_size`` is, and with ``tol=`` an image that stopped after ``n`` draws has the map of
``n_samples=n``. An inner ``Smoothed`` with an int seed reuses the same input noise for every
weight draw (common random numbers): its standard errors then cover the weight noise only; give
it a ``torch.Generator`` (or ``None``) to draw fresh input noise for each weight draw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from smoothstab.checks import (
    bind_keywords,
    check_batch,
    check_choice,
    warn_if_training,
)
from smoothstab.methods import chunks, resolve_target
from smoothstab.montecarlo import (
    RowFn,
    UnitDraws,
    make_generator,
    monte_carlo,
    rows_per_call,
)
from smoothstab.smoothing import _Smoother
from smoothstab.stats import SmoothStats
from smoothstab.types import Method, Seed, Target

NOISES = ("additive", "multiplicative")


class _WithWeights(nn.Module):
    """``base`` run with other parameter tensors, looking like ``base`` to a method.

    ``base`` is held without being registered as a child, so submodule names, ``modules()``
    and ``get_submodule`` are ``base``'s own (a CAM layer given by name or as a module of
    ``base`` is found and hooked as usual).
    """

    def __init__(self, base: nn.Module, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_params", params)
        self.training = base.training

    def forward(self, *args, **kwargs):  # the base's own signature
        return functional_call(self._base, self._params, args, kwargs, strict=False)

    def get_submodule(self, target: str) -> nn.Module:
        return self._base.get_submodule(target)

    def modules(self):
        return self._base.modules()

    def named_modules(self, *args, **kwargs):
        return self._base.named_modules(*args, **kwargs)

    def named_children(self):
        return self._base.named_children()

    def parameters(self, recurse: bool = True):
        return iter(self._params.values())


def layer_scales(model: nn.Module, layers: Sequence[str] | None = None) -> dict[str, float]:
    """``{name: ||W||_F / sqrt(numel(W))}`` for the parameters weight smoothing perturbs: every
    floating-point parameter, or those whose dotted name is one of ``layers`` or starts with
    ``<layer>.`` (a module's name selects its weight and bias)."""
    named = [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]
    if layers is not None:
        if isinstance(layers, str) or not all(isinstance(s, str) for s in layers) or not layers:
            raise ValueError(
                f"layers: expected a non-empty list of parameter or module names, got {layers!r}"
            )
        for name in layers:
            if not any(n == name or n.startswith(name + ".") for n, _ in named):
                examples = ", ".join(repr(n) for n, _ in named[-3:]) or "(none)"
                raise ValueError(
                    f"layers: expected names of parameters or modules of {type(model).__name__} "
                    f"such as {examples}, got {name!r}"
                )
        named = [(n, p) for n, p in named if any(n == s or n.startswith(s + ".") for s in layers)]
    if not named:
        raise ValueError(f"model: {type(model).__name__} has no floating-point parameters")
    with torch.no_grad():
        return {n: float(p.detach().norm() / p.numel() ** 0.5) for n, p in named}


class WeightSmoothed(_Smoother):
    """Any method smoothed over weights: ``E_V[method(model with W + V, x, target)]``.

    Made by :func:`weight_smooth` (the same class); the module docstring says how ``V`` is drawn.

    Args:
        method: ``method(model, x, target) -> [B, ...]``, possibly a ``Smoothed`` one.
        sigma: relative weight-noise level (>= 0); ``0`` runs ``method`` once (exact).
        n_samples: weight draws, each run on every image. Give either it or ``tol``.
        reduce: what calling it returns: ``mean``, ``mean_sq`` or ``var`` over the draws.
        batch_size: at most this many noisy rows per call of ``method``, a row being one
            (weight draw, image) pair; a call runs one weight draw, so it is also a bound on
            the images per call. ``None``: :data:`~smoothstab.montecarlo.DEFAULT_BATCH_SIZE`
            (256), so memory stays bounded however many images there are.
        seed: int, ``torch.Generator`` on the parameters' device, or ``None``.
        antithetic: draw pairs ``(V, -V)``; needs an even ``n_samples``.
        layers: names of the parameters or modules to perturb (``None``: all parameters).
        noise: ``additive`` (``W + s_l * eps``, the module docstring's ``s_l``) or
            ``multiplicative`` (NoiseGrad's ``W * (1 + sigma * eps)``).
        tol: instead of ``n_samples``, draw weights until each image's relative standard
            error (:attr:`SmoothStats.rel_se`) is at most this (> 0), between ``min_samples``
            (default 16) and ``max_samples`` (default 1000) draws per image.
        groups: an even number of interleaved groups of weight draws whose means ``.stats``
            keeps (:attr:`SmoothStats.groups`, for group-jackknife standard errors of
            distances; :func:`~smoothstab.montecarlo.default_groups` suggests a number);
            2 keeps the halves only.
        **method_keywords: other keywords go to ``method`` at every call, as for
            :func:`~smoothstab.smooth` (``weight_smooth(grad_cam, 0.1, 8, layer="layer4")``).
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
        layers: Sequence[str] | None = None,
        noise: str = "additive",
        tol: float | None = None,
        max_samples: int | None = None,
        min_samples: int | None = None,
        groups: int = 2,
        **method_keywords: Any,
    ) -> None:
        method = bind_keywords(method, method_keywords, "weight_smooth")
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
            prefix="weight_smoothed_",
        )
        self.noise = check_choice(noise, "noise", NOISES)
        self.layers = (
            None if layers is None else tuple(layers) if not isinstance(layers, str) else layers
        )

    def __repr__(self) -> str:
        return (
            f"{self.__name__}(sigma={self.sigma:g}, {self.sampling.describe()}, "
            f"antithetic={self.antithetic})"
        )

    def __call__(self, model: nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        """The weight-smoothed map ``[B, ...]`` (or the ``reduce`` of the draws)."""
        return self.stats(model, x, target).reduce(self.reduce)

    def stats(self, model: nn.Module, x: torch.Tensor, target: Target = None) -> SmoothStats:
        """The full Monte-Carlo summary over weight draws."""
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        scales = layer_scales(model, self.layers)  # checks layers even at sigma = 0
        if self.sigma == 0:
            exact = SmoothStats.exact(self._run_method(model, x, target))
            if self.tolerance is None:
                return exact
            ones = torch.ones(x.shape[0], dtype=torch.bool, device=exact.mean.device)
            return dataclasses.replace(exact, converged=ones)
        check_batch(x)
        warn_if_training(model)
        target = resolve_target(model, x, target)  # the class of the clean model, fixed for all V
        params = {n: p.detach() for n, p in model.named_parameters()}
        draws = UnitDraws(self._draw(params, scales))
        return monte_carlo(
            self._row_fn(model, params, draws, target),
            x,
            sigma=0.0,  # the rows are the clean images: the noise is in the weights
            n_samples=self.n_samples,
            batch_size=self.batch_size,
            antithetic=self.antithetic,
            tolerance=self.tolerance,
            groups=self.groups,
            input_noise=False,
        )

    def _draw(self, params: dict[str, torch.Tensor], scales: dict[str, float]):
        """``draw()``: the next unit's ``V``, one standard-normal tensor per perturbed parameter
        in ``named_parameters()`` order, scaled by the noise kind."""
        device = next(iter(params.values())).device
        gen = make_generator(self.seed, device)

        def draw() -> dict[str, torch.Tensor]:
            return {
                n: torch.randn(params[n].shape, generator=gen, device=device, dtype=params[n].dtype)
                * (self.sigma * (s if self.noise == "additive" else params[n]))
                for n, s in scales.items()
            }

        return draw

    def _row_fn(
        self,
        model: nn.Module,
        params: dict[str, torch.Tensor],
        draws: UnitDraws,
        target: torch.Tensor,
    ) -> RowFn:
        """``fn(rows, image_idx, unit_idx, _)`` for the engine: each unit's rows (its ``+`` rows,
        then, antithetic, its ``-`` rows) in one call of ``method`` with the weights ``W +- V_j``.
        Only the unit running is kept: memory holds one ``V`` whatever the chunk."""
        signs = (1.0, -1.0) if self.antithetic else (1.0,)

        def fn(xs: torch.Tensor, b: torch.Tensor, j: torch.Tensor, _u) -> torch.Tensor:
            n = len(j) // len(signs)
            ids, counts = torch.unique_consecutive(j[:n], return_counts=True)
            out: list[list[torch.Tensor]] = [[] for _ in signs]
            start = 0
            for unit, count in zip(ids.tolist(), counts.tolist(), strict=True):
                draws.forget(unit)
                v = draws.unit(unit)
                for k, sign in enumerate(signs):
                    rows = slice(k * n + start, k * n + start + count)
                    weights = {name: params[name] + sign * d for name, d in v.items()}
                    run = _WithWeights(model, weights)
                    out[k].append(self.method(run, xs[rows], target[b[rows]]))
                start += count
            return torch.cat([m for maps in out for m in maps])

        return fn

    def _run_method(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        """``method`` on the clean model, ``batch_size`` images a call (sigma = 0)."""
        size = rows_per_call(self.batch_size)
        if x.shape[0] <= size:
            return self.method(model, x, target)
        if target is not None:
            target = resolve_target(model, x, target)
        out = []
        for rows in chunks(x.shape[0], size):
            rows = rows.to(x.device)
            out.append(self.method(model, x[rows], None if target is None else target[rows]))
        return torch.cat(out)


weight_smooth = WeightSmoothed
"""``weight_smooth(method, sigma, n_samples, ...)``: the :class:`WeightSmoothed` method."""

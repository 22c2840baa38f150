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

Draws follow the engine's conventions (:mod:`smoothstab.montecarlo`): one generator on the
parameters' device from ``seed`` (int, ``torch.Generator`` or ``None`` for the global one); unit
``j`` draws, for each perturbed parameter in ``named_parameters()`` order, one standard-normal
tensor of its shape; antithetic units use ``(V, -V)``; units alternate between two halves. So
the same seed gives the same ``V`` whatever ``batch_size`` is, and the result carries the same
:class:`~smoothstab.stats.SmoothStats` (halves and unit variances, hence standard errors) as
input smoothing. An inner ``Smoothed`` with an int seed reuses the same input noise for every
weight draw (common random numbers): its standard errors then cover the weight noise only; give
it a ``torch.Generator`` (or ``None``) to draw fresh input noise for each weight draw.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

from smoothstab.checks import (
    check_batch_size,
    check_choice,
    check_input,
    check_sigma,
    warn_if_training,
)
from smoothstab.methods import chunks, resolve_target
from smoothstab.montecarlo import make_generator, units
from smoothstab.stats import REDUCTIONS, SmoothStats
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


class WeightSmoothed:
    """Any method smoothed over weights: ``E_V[method(model with W + V, x, target)]``.

    Made by :func:`weight_smooth` (the same class); the module docstring says how ``V`` is drawn.

    Args:
        method: ``method(model, x, target) -> [B, ...]``, possibly a ``Smoothed`` one.
        sigma: relative weight-noise level (>= 0); ``0`` runs ``method`` once (exact).
        n_samples: weight draws (each runs ``method`` on all images).
        reduce: what calling it returns: ``mean``, ``mean_sq`` or ``var`` over the draws.
        batch_size: at most this many images per call of ``method``.
        seed: int, ``torch.Generator`` on the parameters' device, or ``None``.
        antithetic: draw pairs ``(V, -V)``; needs an even ``n_samples``.
        layers: names of the parameters or modules to perturb (``None``: all parameters).
        noise: ``additive`` (``W + s_l * eps``, the module docstring's ``s_l``) or
            ``multiplicative`` (NoiseGrad's ``W * (1 + sigma * eps)``).
    Calling it gives the maps; ``.stats(model, x, target)`` the full :class:`SmoothStats`.
    """

    def __init__(
        self,
        method: Method,
        sigma: float,
        n_samples: int,
        *,
        reduce: str = "mean",
        batch_size: int | None = None,
        seed: Seed = None,
        antithetic: bool = False,
        layers: Sequence[str] | None = None,
        noise: str = "additive",
    ) -> None:
        if not callable(method):
            raise ValueError(
                f"method: expected a callable method(model, x, target), got {method!r}"
            )
        self.method, self.sigma = method, check_sigma(sigma)
        self.n_samples, self.n_units = n_samples, units(n_samples, antithetic)
        self.reduce = check_choice(reduce, "reduce", REDUCTIONS)
        self.batch_size = check_batch_size(batch_size)
        if seed is not None and not isinstance(seed, torch.Generator):
            make_generator(seed, torch.device("cpu"))  # a bad seed fails here, not at the call
        self.seed, self.antithetic = seed, antithetic
        self.noise = check_choice(noise, "noise", NOISES)
        self.layers = (
            None if layers is None else tuple(layers) if not isinstance(layers, str) else layers
        )
        name = getattr(getattr(method, "func", method), "__name__", type(method).__name__)
        self.__name__ = f"weight_smoothed_{name}"

    def __repr__(self) -> str:
        return (
            f"{self.__name__}(sigma={self.sigma:g}, n_samples={self.n_samples}, "
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
            return SmoothStats.exact(self._run_method(model, x, target))
        check_input(x)
        warn_if_training(model)
        target = resolve_target(model, x, target)  # the class of the clean model, fixed for all V
        params = dict(model.named_parameters())
        device = next(iter(params.values())).device
        gen = make_generator(self.seed, device)
        acc = _Sums(self.n_units)
        for j in range(self.n_units):
            noise = {
                n: torch.randn(params[n].shape, generator=gen, device=device, dtype=params[n].dtype)
                * (self.sigma * (s if self.noise == "additive" else params[n].detach()))
                for n, s in scales.items()
            }
            signs = (1.0, -1.0) if self.antithetic else (1.0,)
            maps = []
            for sign in signs:
                perturbed = {n: params[n].detach() + sign * v for n, v in noise.items()}
                maps.append(self._run_method(_WithWeights(model, perturbed), x, target))
            acc.add(j, torch.stack(maps))
        return acc.stats(x.dtype)

    def _run_method(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        """``method`` on the images in chunks of ``batch_size``."""
        if self.batch_size is None or x.shape[0] <= self.batch_size:
            return self.method(model, x, target)
        if target is not None:
            target = resolve_target(model, x, target)
        out = []
        for rows in chunks(x.shape[0], self.batch_size):
            rows = rows.to(x.device)
            out.append(self.method(model, x[rows], None if target is None else target[rows]))
        return torch.cat(out)


class _Sums:
    """Running float64 sums over units for :class:`SmoothStats` (one unit: all images)."""

    def __init__(self, n_units: int) -> None:
        self.n = n_units
        self.unit = self.unit_sq = self.sample_sq = self.half0 = None

    def add(self, j: int, maps: torch.Tensor) -> None:
        """``maps``: ``[per_unit, B, ...]``, the maps of unit ``j`` (a pair if antithetic)."""
        if maps.device.type != "mps":
            maps = maps.detach().to(torch.float64)
        unit = maps.mean(dim=0)
        parts = (unit, unit * unit, (maps * maps).mean(dim=0), unit if j % 2 == 0 else 0 * unit)
        if self.unit is None:
            self.unit, self.unit_sq, self.sample_sq, self.half0 = (p.clone() for p in parts)
            return
        for total, part in zip(
            (self.unit, self.unit_sq, self.sample_sq, self.half0), parts, strict=True
        ):
            total.add_(part)

    def stats(self, dtype: torch.dtype) -> SmoothStats:
        n = self.n
        mean = self.unit / n
        halves = unit_var = None
        if n >= 2:
            n0 = (n + 1) // 2
            halves = torch.stack([self.half0 / n0, (self.unit - self.half0) / (n - n0)])
            unit_var = ((self.unit_sq - n * mean * mean) / (n - 1)).clamp(min=0)
        cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
        return SmoothStats(cast(mean), cast(self.sample_sq / n), cast(halves), cast(unit_var), n)


weight_smooth = WeightSmoothed
"""``weight_smooth(method, sigma, n_samples, ...)``: the :class:`WeightSmoothed` method."""

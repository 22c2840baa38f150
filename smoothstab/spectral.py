"""Spectral norms of a network's layers, with the check of the network against the theory.

How the pieces fit: :func:`spectral_norm` gives one layer's ``B_i = ||A_i||_2`` by power
iteration on its linear map ``A_i`` (Linear, or Conv on a given input size; bias dropped, an
eval-mode BatchNorm's scale folded in). :func:`layer_norms` traces the network into its chain of
:class:`~smoothstab.chain.Layer` s (:mod:`smoothstab.chain`, which also says which departures
from the theory it found) and takes each layer's norm (a lone BatchNorm: ``max |scale|``); the
result, a :class:`LayerNorms`, is what the bound functions of :mod:`smoothstab.bounds` take in
place of a list of norms.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from smoothstab.chain import _BATCHNORM, _LINEAR, Layer, LayerKind, Reasons, Scope, trace, walk
from smoothstab.checks import check_count, check_positive

__all__ = ["LayerNorms", "layer_norms", "spectral_norm"]

# ---------------------------------------------------------------------------- one layer


def _bn_scale(bn: nn.Module, channels: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The eval-mode BatchNorm's per-channel scale ``gamma / sqrt(running_var + eps)``."""
    if not isinstance(bn, _BATCHNORM) or bn.running_var is None:
        raise ValueError(f"bn: expected a BatchNorm with running statistics, got {bn!r}")
    if bn.num_features != channels:
        raise ValueError(f"bn: expected {channels} features, got {bn.num_features}")
    scale = 1 / torch.sqrt(bn.running_var.detach().to(device, dtype) + bn.eps)
    return scale if bn.weight is None else scale * bn.weight.detach().to(device, dtype)


def _diag_norm(bn: nn.Module) -> float:
    """The norm of a lone eval-mode BatchNorm's linear part: ``max |scale|``."""
    return float(_bn_scale(bn, bn.num_features, torch.float64, "cpu").abs().max())


def _linear_map(
    layer: nn.Module, input_shape: Sequence[int] | None, bn: nn.Module | None, dtype: torch.dtype
) -> tuple[Callable[[torch.Tensor], torch.Tensor], tuple[int, ...]]:
    """The layer's linear part (bias dropped, BatchNorm scale folded in) and its input shape."""
    if not isinstance(layer, _LINEAR):
        raise ValueError(f"layer: expected a Linear or Conv1d/2d/3d, got {type(layer).__name__}")
    w = layer.weight.detach().to(dtype)
    scale = None if bn is None else _bn_scale(bn, w.shape[0], dtype, w.device)
    if isinstance(layer, nn.Linear):
        if input_shape is not None and tuple(input_shape)[-1:] != (layer.in_features,):
            raise ValueError(f"input_shape: expected (..., {layer.in_features}), got {input_shape}")
        return (lambda v: v @ w.T if scale is None else (v @ w.T) * scale), (layer.in_features,)
    dims = w.ndim - 1
    shape = tuple(input_shape) if input_shape is not None else ()
    if len(shape) != dims or shape[0] != layer.in_channels:
        raise ValueError(
            f"input_shape: expected (C={layer.in_channels}, then {dims - 1} spatial sizes) for "
            f"{type(layer).__name__}, got {input_shape}"
        )
    view = (1, -1) + (1,) * (dims - 1)
    return (
        lambda v: layer._conv_forward(v, w, None) * (1 if scale is None else scale.view(view))
    ), shape


def spectral_norm(
    layer: nn.Module,
    input_shape: Sequence[int] | None = None,
    *,
    bn: nn.Module | None = None,
    n_iter: int = 1000,
    tol: float = 1e-7,
    seed: int = 0,
) -> float:
    """``B = ||A||_2`` of a layer's linear map ``A`` by power iteration on ``A^T A`` (float64).

    Args:
        layer: Linear (``A x = W x``) or Conv1d/2d/3d (``A`` = the convolution on inputs of
            ``input_shape``, with the layer's stride, padding, dilation, groups; the norm
            depends on the spatial size). The bias is not part of ``A``.
        input_shape: one example's shape without batch, ``(C, H, W)`` for Conv2d; optional for
            Linear.
        bn: an eval-mode BatchNorm after the layer: its scale ``gamma / sqrt(var + eps)`` is
            folded into the output channels (running statistics are used).
        n_iter, tol: stop when the estimate changes by less than ``tol`` relatively.
        seed: the random start vector's seed.
    Returns:
        The estimate, a lower bound of ``||A||_2`` that converges to it.
    """
    tol = check_positive(tol, "tol")
    check_count(n_iter, "n_iter")
    device = layer.weight.device if isinstance(layer, _LINEAR) else torch.device("cpu")
    dtype = torch.float32 if device.type == "mps" else torch.float64
    op, shape = _linear_map(layer, input_shape, bn, dtype)
    v = torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed), dtype=dtype)
    v = (v / v.norm()).to(device)
    estimate = 0.0
    with torch.enable_grad():
        for _ in range(n_iter):
            v.requires_grad_(True)
            u = op(v)
            (w,) = torch.autograd.grad(u, v, grad_outputs=u.detach())  # A^T A v
            norm = float(w.norm())
            if norm == 0:
                return 0.0
            new, v = math.sqrt(norm), (w / norm).detach()
            if abs(new - estimate) <= tol * new:
                return new
            estimate = new
    warnings.warn(
        f"spectral_norm: no convergence to tol={tol} in {n_iter} iterations", stacklevel=2
    )
    return estimate


def _layer_norm(layer: Layer, *, n_iter: int, tol: float, seed: int) -> float:
    """``B_i`` of one layer of the chain."""
    if layer.kind is LayerKind.DIAGONAL:
        return _diag_norm(layer.module)
    return spectral_norm(
        layer.module, layer.input_shape, bn=layer.folded_bn, n_iter=n_iter, tol=tol, seed=seed
    )


@dataclass(frozen=True)
class LayerNorms:
    """The layers' norms in forward order and how the network departs from the theory.

    Attributes:
        names, norms, input_shapes: per linear layer (``B_i``, a folded BatchNorm included).
        input_shape: the model's input shape (one example); ``m`` is its size.
        reasons: one line per departure from the chain the theory covers.
        stability_heuristic: Theorems 5-6 and Remark 4 do not strictly apply.
        fidelity_heuristic: Proposition 7 does not strictly apply.
        smooth: every activation is 1-smooth (all bounds need it, see the module docstring).
    """

    names: tuple[str, ...]
    norms: tuple[float, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    input_shape: tuple[int, ...]
    reasons: tuple[str, ...]
    stability_heuristic: bool
    fidelity_heuristic: bool
    smooth: bool

    @property
    def heuristic(self) -> bool:
        return self.stability_heuristic or self.fidelity_heuristic

    @property
    def k(self) -> int:
        return len(self.norms)

    @property
    def m(self) -> int:
        return math.prod(self.input_shape)


def layer_norms(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    fold_batchnorm: bool = True,
    n_iter: int = 1000,
    tol: float = 1e-7,
    seed: int = 0,
) -> LayerNorms:
    """``B_i`` of every Linear/Conv layer of ``model`` in forward order, and the theory check.

    One eval-mode forward of a zeros input ``[1, *input_shape]`` (hooks removed afterwards,
    training flags restored) records the leaf modules called and the tensors between them. The
    network is a chain when each module's input is the previous module's output, unmodified
    (else: skip connection, branch or functional op). An eval-mode BatchNorm right after a layer
    is folded into it (``fold_batchnorm``), else kept as a diagonal layer of norm ``max|scale|``.
    """
    input_shape = tuple(int(s) for s in input_shape)
    calls, x, out = trace(model, input_shape)
    reasons = Reasons()
    layers, smooth = walk(calls, x, out, fold_batchnorm, reasons)
    if not layers:
        raise ValueError(
            f"model: expected at least one Linear or Conv layer in the forward pass, got none "
            f"among {sorted({type(c.module).__name__ for c in calls})}"
        )
    return LayerNorms(
        names=tuple(layer.name for layer in layers),
        norms=tuple(_layer_norm(layer, n_iter=n_iter, tol=tol, seed=seed) for layer in layers),
        input_shapes=tuple(layer.input_shape for layer in layers),
        input_shape=input_shape,
        reasons=reasons.lines(),
        stability_heuristic=reasons.affects(Scope.STABILITY),
        fidelity_heuristic=reasons.affects(Scope.FIDELITY),
        smooth=smooth,
    )

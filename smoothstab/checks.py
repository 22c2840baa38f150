"""Input checks shared by the core: each failure is one ``ValueError`` line saying what was
expected and what came."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn


def check_input(x: torch.Tensor, *, name: str = "x", rank: int | None = None) -> None:
    """A batch ``[B, ...]`` of finite floating-point values (exactly ``rank`` dims if given)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if rank is not None and x.ndim != rank:
        raise ValueError(
            f"{name}: expected a {rank}-D tensor [B, C, H, W], got shape {tuple(x.shape)}"
        )
    if x.ndim < 2:
        raise ValueError(
            f"{name}: expected a batch [B, ...] with at least 2 dims, got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one example, got an empty batch")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: expected finite values, got NaN or Inf")


def check_sigma(sigma: float) -> float:
    """A finite noise standard deviation ``>= 0`` in input units."""
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma: expected a number >= 0, got {sigma!r}") from None
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"sigma: expected a finite number >= 0, got {value}")
    return value


def check_count(n: int, name: str, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (bools are refused)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {n!r}")
    return n


def check_batch_size(batch_size: int | None) -> int | None:
    return None if batch_size is None else check_count(batch_size, "batch_size")


def check_choice(value: str, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(sorted(choices))}, got {value!r}")
    return value


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """``layer`` as given, or the submodule of ``model`` at that dotted name."""
    if isinstance(layer, nn.Module):
        return layer
    if not isinstance(layer, str):
        raise ValueError(f"layer: expected a module or a dotted name, got {type(layer).__name__}")
    try:
        return model.get_submodule(layer)
    except AttributeError:
        raise ValueError(
            f"layer: expected a submodule name of {type(model).__name__} such as "
            f"{_example_names(model)}, got {layer!r}"
        ) from None


def _example_names(model: nn.Module, n: int = 3) -> str:
    names = [name for name, _ in model.named_children()][-n:]
    return ", ".join(repr(name) for name in names) or "(none)"


_MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def warn_if_training(model: nn.Module) -> None:
    """Warn (never switch modes for the user) if BatchNorm or Dropout is in training mode."""
    if any(m.training and isinstance(m, _MODE_DEPENDENT) for m in model.modules()):
        warnings.warn(
            "model is in training mode: BatchNorm/Dropout make maps batch-dependent and update "
            "running statistics; call model.eval() first",
            stacklevel=3,
        )

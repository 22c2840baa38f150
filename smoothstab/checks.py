"""The validators of smoothstab, shared by the core and the experiment layer: each failure is
one ``ValueError`` line naming the argument, what was expected and what came. Integers refuse
bools; numbers refuse NaN and infinities."""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from smoothstab.camlayers import closest_names


def check_input(
    x: torch.Tensor, *, name: str = "x", rank: int | None = None, layout: str = "[B, C, H, W]"
) -> None:
    """A batch ``[B, ...]`` of finite floating-point values (exactly ``rank`` dims if given,
    laid out as ``layout``)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if rank is not None and x.ndim != rank:
        raise ValueError(f"{name}: expected a {rank}-D tensor {layout}, got shape {tuple(x.shape)}")
    if x.ndim < 2:
        raise ValueError(
            f"{name}: expected a batch [B, ...] with at least 2 dims, got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one example, got an empty batch")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    # Any NaN or Inf makes the sum non-finite, and the sum is 20x cheaper than the elementwise
    # test; only a sum that overflows from finite values needs the elementwise one.
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise ValueError(f"{name}: expected finite values, got NaN or Inf")


def check_same_shape(a: torch.Tensor, b: torch.Tensor, names: str = "a, b") -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{names}: expected the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _range(low: float | None, high: float | None, open_low: bool) -> str:
    if high is None:
        return "" if low is None else f" {'>' if open_low else '>='} {low:g}"
    return f" in {'(' if open_low else '['}{low:g}, {high:g}]"


def check_number(
    value: float,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
) -> float:
    """A finite real number (bools refused) ``>= low`` (``> low`` if ``open_low``) and
    ``<= high``; returned as a float."""
    rng = _range(low, high, open_low)
    if isinstance(value, bool | str | bytes):  # float("0.1") would pass a string through
        raise ValueError(f"{name}: expected a number{rng}, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number{rng}, got {value!r}") from None
    inside = (low is None or (v > low if open_low else v >= low)) and (high is None or v <= high)
    if not (math.isfinite(v) and inside):
        kind = "a number" if high is not None else "a finite number"
        raise ValueError(f"{name}: expected {kind}{rng}, got {v}")
    return v


def check_sigma(sigma: float) -> float:
    """A finite noise standard deviation ``>= 0`` in input units."""
    return check_number(sigma, "sigma", low=0)


def check_positive(value: float, name: str) -> float:
    """A finite number ``> 0``."""
    return check_number(value, name, low=0, open_low=True)


def check_int(
    n: int, name: str, *, low: int | None = None, high: int | None = None, what: str = ""
) -> int:
    """An integer (bools refused) in ``[low, high]``; ``what`` says what it counts."""
    if (
        isinstance(n, bool)
        or not isinstance(n, int)
        or not ((low is None or n >= low) and (high is None or n <= high))
    ):
        note = f" ({what})" if what else ""
        raise ValueError(f"{name}: expected an integer{_range(low, high, False)}{note}, got {n!r}")
    return n


def check_count(n: int, name: str, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (bools refused)."""
    return check_int(n, name, low=minimum)


def check_batch_size(batch_size: int | None) -> int | None:
    return None if batch_size is None else check_count(batch_size, "batch_size")


def check_choice(value: str, name: str, choices: Iterable[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(sorted(choices))}, got {value!r}")
    return value


def check_batch(x: torch.Tensor, *, name: str = "x", rank: int | None = None) -> None:
    """A batch of inputs: :func:`check_input`, and never a 3-D tensor, which is one image
    ``[C, H, W]`` without its batch dim far more often than a batch of sequences (the message
    says how to add it); ``rank``: exactly that many dims."""
    if isinstance(x, torch.Tensor) and (x.ndim == 3 or (rank is not None and x.ndim != rank)):
        hint = f"; one image? {name}[None] adds the batch dim" if x.ndim == 3 else ""
        raise ValueError(f"{name}: expected a batch [B, C, H, W], got shape {tuple(x.shape)}{hint}")
    check_input(x, name=name)


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """``layer`` as given, or the submodule of ``model`` at that dotted name; a name that is
    not there is one line with the nearest names by spelling."""
    if isinstance(layer, nn.Module):
        return layer
    if not isinstance(layer, str):
        raise ValueError(f"layer: expected a module or a dotted name, got {type(layer).__name__}")
    try:
        return model.get_submodule(layer)
    except AttributeError:
        near = ", ".join(repr(n) for n in closest_names(model, layer)) or "(none)"
        raise ValueError(
            f"layer: expected a submodule name of {type(model).__name__}, got {layer!r}; "
            f"nearest names: {near}"
        ) from None


_MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def warn_if_training(model: nn.Module) -> None:
    """Warn (never switch modes for the user) if BatchNorm or Dropout is in training mode."""
    if any(m.training and isinstance(m, _MODE_DEPENDENT) for m in model.modules()):
        warnings.warn(
            "model is in training mode: BatchNorm/Dropout make maps batch-dependent and update "
            "running statistics; call model.eval() first",
            stacklevel=3,
        )


CALL_ARGUMENTS = ("model", "x", "target")  # given at each call, never bound


def bind_keywords(method: Callable, keywords: dict[str, Any], who: str) -> Callable:
    """``method`` with ``keywords`` bound (``functools.partial``), checked against its
    signature where it has one: a keyword it does not take, or one of the call's own arguments,
    is one ``TypeError`` line. No keywords: ``method`` itself."""
    if not keywords or not callable(method):
        return method  # a method that is no callable: the constructor says so
    name = getattr(getattr(method, "func", method), "__name__", type(method).__name__)
    given = [k for k in keywords if k in CALL_ARGUMENTS]
    if given:
        raise TypeError(
            f"{who}: {given[0]}= is given at each call, method(model, x, target), not to {who}"
        )
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):  # no signature to check (a builtin): bound as given
        return functools.partial(method, **keywords)
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        takes = [
            n
            for n, p in params.items()
            if n not in CALL_ARGUMENTS and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        unknown = [k for k in keywords if k not in takes]
        if unknown:
            raise TypeError(
                f"{who}: {unknown[0]}= is neither a keyword of {who} nor of {name}, which takes "
                f"{', '.join(takes) or 'none'}"
            )
    return functools.partial(method, **keywords)

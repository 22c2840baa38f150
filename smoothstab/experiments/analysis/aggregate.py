"""Aggregation helpers for the experiment layer: per-image metrics to reported numbers.

A metric gives ``[B]`` per image and model pair (or model); :func:`mean_over_images` makes one
number of it, and :func:`band` summarises those numbers over pairs (:func:`model_pairs`) or
models with a named band: ``t95``, the 95% Student-t interval of the mean (what the paper's code
plots, via statsmodels' ``tconfint_mean``), or ``sd``, +-1 sample standard deviation (what the
paper's captions say).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from smoothstab.checks import check_choice, check_count, check_input
from smoothstab.debias import quantile

BANDS = ("t95", "sd")


class Band(NamedTuple):
    """A mean and its band ``[lo, hi]``."""

    mean: float
    lo: float
    hi: float


def mean_over_images(values: torch.Tensor) -> float:
    """The mean of per-image values ``[B]`` as a float."""
    if isinstance(values, torch.Tensor) and values.ndim != 1:
        raise ValueError(f"values: expected a 1-D tensor [B], got shape {tuple(values.shape)}")
    check_input(values[:, None] if isinstance(values, torch.Tensor) else values, name="values")
    return values.double().mean().item()


def _as_floats(values: Sequence[float] | torch.Tensor) -> list[float]:
    if isinstance(values, torch.Tensor):
        if values.ndim != 1:
            raise ValueError(f"values: expected a 1-D sequence, got shape {tuple(values.shape)}")
        values = values.tolist()
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"values: expected a sequence of numbers, got {values!r}") from None
    if not out:
        raise ValueError("values: expected at least one value, got an empty sequence")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"values: expected finite numbers, got {out}")
    return out


def band(values: Sequence[float] | torch.Tensor, kind: str = "t95") -> Band:
    """Mean of ``values`` (one per model pair or model) with a band of the named ``kind``.

    ``t95``: ``mean +- t_{0.975, n-1} sd / sqrt(n)``; ``sd``: ``mean +- sd``; ``sd`` is the
    sample standard deviation (ddof 1). A single value has no spread: the band collapses to it.
    """
    check_choice(kind, "kind", BANDS)
    xs = _as_floats(values)
    n = len(xs)
    mean = math.fsum(xs) / n
    if n == 1:
        return Band(mean, mean, mean)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    if kind == "sd":
        half = sd
    else:
        half = quantile(0.95, n - 1) * sd / math.sqrt(n)
    return Band(mean, mean - half, mean + half)


def model_pairs(k: int) -> list[tuple[int, int]]:
    """All pairs ``(i, j)``, ``i < j``, of ``k >= 2`` models, in lexicographic order."""
    check_count(k, "k", minimum=2)
    return list(itertools.combinations(range(k), 2))

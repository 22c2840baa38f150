"""Type aliases shared by the public signatures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeAlias

import torch
from torch import nn

Target: TypeAlias = int | Sequence[int] | torch.Tensor | None
"""Class indices to explain: one per image (``[B]``), one for all, or ``None`` (predicted)."""

Seed: TypeAlias = int | torch.Generator | None
"""An int seed, a ``torch.Generator`` on x's device, or ``None`` (torch's global generator)."""


class Method(Protocol):
    """A saliency method: ``method(model, x, target) -> [B, ...]`` raw signed maps."""

    def __call__(
        self, model: nn.Module, x: torch.Tensor, target: Target = None
    ) -> torch.Tensor: ...

"""A model checkpoint, ``model_{k}.pt``: what one model of a run is, written by one function.

A checkpoint holds the weights (``state_dict``), the resolved training config of its run
(``config``: the model, its classes and its data), the model's ``metrics``, whether its training
is ``complete``, its ``part`` and ``seed``; an incomplete one also holds what resuming needs
(``resume``: epoch, step, optimizer, scheduler, ...). Training (:class:`~smoothstab.experiments.
models.trainer.Trainer`) and setting FT's proxies write it through :func:`write_checkpoint`;
:func:`~smoothstab.experiments.models.training.read_checkpoint` reads it back, checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smoothstab.experiments.io.files import save_torch


def write_checkpoint(
    path: str | Path,
    *,
    state_dict: dict[str, Any],
    config: dict[str, Any],
    metrics: dict[str, Any],
    complete: bool,
    part: int,
    seed: int,
    resume: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically; ``resume`` (only for an incomplete one) is stored beside
    the other keys."""
    if complete and resume:
        raise ValueError("resume: a complete checkpoint holds no resume state")
    record = {
        "state_dict": state_dict,
        "config": config,
        "metrics": metrics,
        "complete": complete,
        "part": part,
        "seed": seed,
        **(resume or {}),
    }
    return save_torch(path, record)

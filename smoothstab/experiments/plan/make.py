"""A config's plan: what it will train, attribute and store
(:mod:`~smoothstab.experiments.plan.counts`'s counts) and, when asked, how long that takes here
(:mod:`~smoothstab.experiments.plan.timing`), for ``smoothstab plan`` and the check before a run
(:mod:`~smoothstab.experiments.plan.text` prints it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoothstab.experiments.config.datasets import check_image_count
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.models.data import test_set_size
from smoothstab.experiments.plan.counts import (
    AttributionCost,
    DeviceMemory,
    SanityCost,
    Storage,
    TrainingCost,
    attribution_costs,
    device_memory,
    sanity_cost,
    storage,
    training_costs,
)
from smoothstab.experiments.plan.timing import Timing, estimate_time

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import ExperimentConfig


@dataclass(frozen=True)
class Plan:
    name: str
    n_models: int
    training: tuple[TrainingCost, ...]
    attribution: tuple[AttributionCost, ...]
    storage: Storage | None  # None: not counted (the check before a run times only)
    memory: DeviceMemory | None
    timing: Timing | None
    sanity: SanityCost | None = None


def make_plan(
    cfg: ExperimentConfig,
    *,
    timing: bool = True,
    budget: float = 1.0,
    train_timing: bool = True,
    files: bool = True,
) -> Plan:
    """The counts of ``cfg`` and, with ``timing``, the time estimate for this machine
    (``budget``: about how many seconds each measurement may take; ``train_timing=False``: the
    training is not timed, counted as 0 s; ``files=False``: what the run stores and what one
    device holds are not counted, a second's work for a large config). ``sanity.layers`` are
    checked against the model as ``run`` checks them (not for a ``python:`` factory without
    ``timing``: counting runs none of a config's code), and ``attribution.n_images`` against the
    test images of a folder here (counted by name, none opened)."""
    from smoothstab.experiments.models.external import model_code
    from smoothstab.experiments.stages.sanity_stage import check_layers

    available = test_set_size(cfg.train)
    if available is not None:
        check_image_count(cfg.attribution, available, cfg.train.root or cfg.train.dataset)
    # python: and hf: names are built as run_all builds them (the config's code folder)
    with model_code(cfg.models.code_dir, cfg.models.trust_remote_code):
        check_layers(cfg, run_code=timing)
        return Plan(
            cfg.name,
            Setting.of(cfg).n_models,
            tuple(training_costs(cfg)),
            tuple(attribution_costs(cfg)),
            storage(cfg) if files else None,
            device_memory(cfg) if files else None,
            estimate_time(cfg, budget, train=train_timing) if timing else None,
            sanity_cost(cfg),
        )

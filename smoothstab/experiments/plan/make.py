"""A config's plan: what it will train, attribute and store
(:mod:`~smoothstab.experiments.plan.counts`'s counts) and, when asked, how long that takes here
(:mod:`~smoothstab.experiments.plan.timing`), for ``smoothstab plan`` and the check before a run
(:mod:`~smoothstab.experiments.plan.text` prints it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoothstab.experiments.config.setting import Setting
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
    storage: Storage
    memory: DeviceMemory
    timing: Timing | None
    sanity: SanityCost | None = None


def make_plan(cfg: ExperimentConfig, *, timing: bool = True, budget: float = 1.0) -> Plan:
    """The counts of ``cfg`` and, with ``timing``, the time estimate for this machine
    (``budget``: about how many seconds each measurement may take)."""
    return Plan(
        cfg.name,
        Setting.of(cfg).n_models,
        tuple(training_costs(cfg)),
        tuple(attribution_costs(cfg)),
        storage(cfg),
        device_memory(cfg),
        estimate_time(cfg, budget) if timing else None,
        sanity_cost(cfg),
    )

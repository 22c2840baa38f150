"""How many models and images a config needs to decide each method's change, from a pilot run:
``smoothstab plan [CONFIG] --pilot RUN_DIR --target-halfwidth X``.

The pilot's own variance components (:func:`~smoothstab.experiments.analysis.advice.
change_design`: the relative change of the unit-map distance from r = 0 to its largest r, at its
largest training-set size) predict, for each number of models per size k and test images m, the
median half-width of that change's 95% interval; the cost of each design is asked of
:mod:`~smoothstab.experiments.plan.counts` for the config with ``train.parts = k`` and
``attribution.n_images = m`` (model evaluations: training passes plus attribution), and the
cheapest design meeting the target is chosen per method. A run with the largest k and m of them
decides every method (as far as the pilot's components hold).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from smoothstab.experiments.analysis.advice import ChangeDesign, change_design, size_plan
from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.parse import ConfigError
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.plan.counts import attribution_costs, training_costs
from smoothstab.experiments.rundir.layout import RunDir

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import ExperimentConfig


@dataclass(frozen=True)
class MethodPlan:
    """One method: the pilot's change and the cheapest design meeting the target (``k``,
    ``m``, predicted ``halfwidth`` and ``cost`` in model evaluations; ``None``: none with up to
    40 models and 1024 images)."""

    design: ChangeDesign
    k: int | None
    m: int | None
    halfwidth: float | None
    cost: float | None


@dataclass(frozen=True)
class PilotPlan:
    """Every method's :class:`MethodPlan`, the target, the costs per model and per image and
    model (model evaluations), and the config that decides every method (``None``: some
    method cannot be decided within the grid, or there is nothing to plan)."""

    pilot: Path
    target: float
    methods: tuple[MethodPlan, ...]
    cost_per_model: float
    cost_per_image: float
    config: ExperimentConfig | None
    short: str = ""  # what the data set lacks for that config ("": nothing)


def unit_costs(cfg: ExperimentConfig) -> tuple[float, float]:
    """(a model's training, one image's attribution with one model), summed over the sizes of
    ``cfg``, in model evaluations (forward and backward passes of one image), from
    :mod:`~smoothstab.experiments.plan.counts`: the cost of a run with k models per size and m
    images is ``k a + k m b`` exactly."""
    per_model = sum(c.passes for c in training_costs(cfg))
    per_image = sum(c.total for c in attribution_costs(cfg)) / (
        Setting.of(cfg).n_models * cfg.attribution.n_images
    )
    sizes = len(Setting.of(cfg).sizes)
    return float(per_model), float(per_image * sizes)


def pilot_plan(cfg: ExperimentConfig, pilot: Path, target: float) -> PilotPlan:
    """The :class:`PilotPlan` of ``cfg`` from the run directory ``pilot``."""
    setting = Setting.of(cfg)
    if not setting.parts_are_models:
        raise ConfigError(
            f"--pilot: plans how many models to train per size; setting {setting.name} "
            "compares the models it is given (use setting DT)"
        )
    run = RunDir(pilot)
    if not run.metrics.is_file():
        raise ConfigError(
            f"--pilot: {pilot} has no {run.metrics.name}; give a run directory whose evaluate "
            "stage ran"
        )
    summary = run.summary()
    from smoothstab.experiments.config.load import load_config

    pilot_cfg = load_config(run.config) if run.config.is_file() else cfg
    a, b = unit_costs(cfg)
    plans = []
    for method in pilot_cfg.attribution.methods:
        design = change_design(summary, method, summary.default_n, pilot_cfg.evaluation.debiased)
        if design is None:
            continue
        best = size_plan(design, target, (a, b)).best
        if best is None:
            plans.append(MethodPlan(design, None, None, None, None))
        else:
            k, m, h, _, _ = best
            plans.append(MethodPlan(design, k, m, h, a * k + b * k * m))
    if not plans:
        raise ConfigError(
            f"--pilot: {pilot} has no method with 3 or more models per size, r = 0 and a larger "
            "r and 2 or more images: nothing to plan from"
        )
    planned, short = None, ""
    if all(p.k is not None for p in plans):
        k, m = max(p.k for p in plans), max(p.m for p in plans)
        train = replace(cfg.train, parts=k)
        attr = replace(cfg.attribution, n_images=m, image_batch=min(cfg.attribution.image_batch, m))
        planned = replace(cfg, train=train, attribution=attr)
        short = shortfall(planned)
    return PilotPlan(pilot, target, tuple(plans), a, b, planned, short)


def shortfall(cfg: ExperimentConfig) -> str:
    """What the data set lacks for ``cfg``'s disjoint parts and test images ("": nothing)."""
    info = dataset_info(cfg.train)
    sizes = [n for n in cfg.train.sizes if n is not None]  # none: the data split evenly
    need = cfg.train.parts * max(sizes, default=0)
    out = []
    if info.train_size is not None and need > info.train_size:
        out.append(
            f"{cfg.train.parts} disjoint parts of {need // cfg.train.parts:,} images need "
            f"{need:,} training images, {cfg.train.dataset} has {info.train_size:,} (smaller "
            "train.part_size, or more data)"
        )
    if info.test_size is not None and cfg.attribution.n_images > info.test_size:
        out.append(
            f"{cfg.attribution.n_images} test images, {cfg.train.dataset} has {info.test_size:,}"
        )
    return "; ".join(out)

"""What a config will cost, before anything runs: ``smoothstab plan CONFIG``.

Counts are exact from the config alone, asked of the code that does the work: training steps and
images seen per model (:func:`~smoothstab.experiments.models.trainer.epoch_batches`); model
evaluations (one forward and backward pass of one input row) of the attribute stage per method and
noise level (:func:`~smoothstab.experiments.models.recipe.evals_per_sample`), with the nested
smoothed-IG sampler beside the joint one; map files and their bytes (what
:class:`~smoothstab.experiments.rundir.mapfile.MapFile` saves); the models and pairs of the setting
(:class:`~smoothstab.experiments.config.setting.Setting`).
:mod:`~smoothstab.experiments.plan.timing` times a few real steps and chunks on this machine and
extrapolates by these counts; :mod:`~smoothstab.experiments.plan.text` prints a plan.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.models import data

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import (
        AttributionConfig,
        ExperimentConfig,
        TrainConfig,
    )

CAMS = ("gradcam", "gradcampp")


@dataclass(frozen=True)
class TrainingCost:
    """The training of the ``models`` models of one training-set size (numbers per model)."""

    size: int
    models: int
    steps_per_epoch: int
    steps: int
    images_seen: int
    passes: int  # forward+backward passes of one image: images_seen x noise_draws


@dataclass(frozen=True)
class AttributionCost:
    """One method at one noise level: model evaluations per image and model, and in all.

    ``other_per_image``/``other_total``: IG only, what the sampler the config does not use
    would need (the joint one for a nested run, the nested one for a joint run)."""

    method: str
    r: float
    per_image: int
    total: int
    other_per_image: int | None = None
    other_total: int | None = None


@dataclass(frozen=True)
class SanityCost:
    """The sanity stage (``[sanity]`` enabled): the model checked, its randomised copies
    (``None``: the architecture could not be built here to count its layers) and, per method,
    the model evaluations of one of them (the model or a copy) over every image and r checked."""

    model: int
    copies: int | None
    per_model: dict[str, int]
    # sanity.labels: the permuted-label twin's training (the train stage's); its check maps
    # the model again and the twin, two models' evaluations more
    label_training: TrainingCost | None = None

    @property
    def models_evaluated(self) -> int | None:
        """Models whose maps the stage computes: the model, its copies, (labels) both again."""
        if self.copies is None:
            return None
        return 1 + self.copies + (2 if self.label_training is not None else 0)

    @property
    def total(self) -> int | None:
        n = self.models_evaluated
        return None if n is None else n * sum(self.per_model.values())


def train_set_size(cfg: ExperimentConfig) -> int | None:
    """The training set's size when the dataset has a fixed one (``None``: an ImageFolder)."""
    return dataset_info(cfg.train).train_size


def training_config(cfg: ExperimentConfig) -> tuple[TrainConfig, int] | None:
    """What the train stage trains and how many runs per size (:meth:`.Setting.training`)."""
    return Setting.of(cfg).training(train_set_size(cfg), num_classes(cfg))


def training_costs(cfg: ExperimentConfig) -> list[TrainingCost]:
    """Per training-set size: steps and images per model (DT, or FT's proxy runs; DR/DA
    train nothing)."""
    found = training_config(cfg)
    if found is None:
        return []
    from smoothstab.experiments.models.trainer import epoch_batches
    from smoothstab.experiments.models.training import even_part_size

    t, runs = found
    out = []
    for size in t.sizes:
        if size is None:
            n = train_set_size(cfg)
            if n is None:
                raise ValueError(
                    f"train.part_size: the size of the {t.dataset} training set is known only "
                    "once it is read; give train.part_size to plan this config"
                )
            size = even_part_size(t, n)
        per_epoch, seen = epoch_batches(size, t.batch_size, t.drop_last)
        images = seen * t.epochs
        out.append(
            TrainingCost(
                size, runs, per_epoch, per_epoch * t.epochs, images, images * t.noise_draws
            )
        )
    return out


def draws(attr: AttributionConfig) -> int:
    """Noise draws per image and map: ``n_samples``, or with a tolerance its ``max_samples``
    (an upper bound: an image stops drawing once its standard error is within the tolerance)."""
    if getattr(attr, "tolerance", None) is not None:
        return attr.max_samples
    return attr.n_samples


def evaluations(attr: AttributionConfig, method: str, r: float, sampler: str) -> int:
    """Model evaluations per image of one method at noise level r (one map of one model), IG with
    ``sampler``: what a draw costs in the attribute stage
    (:func:`~smoothstab.experiments.models.recipe.evals_per_sample`) times the draws (one at r =
    0)."""
    from smoothstab.experiments.models.recipe import evals_per_sample

    attr = replace(attr, ig_sampler=sampler)
    return (draws(attr) if r > 0 else 1) * evals_per_sample(method, attr, r)


def attribution_costs(cfg: ExperimentConfig) -> list[AttributionCost]:
    """Every (method, r) of the run, in the attribute stage's order."""
    a, models = cfg.attribution, Setting.of(cfg).n_models
    other = "joint" if a.ig_sampler == "nested" else "nested"
    out = []
    for method in a.methods:
        for r in a.noise_grid():
            per = evaluations(a, method, r, a.ig_sampler)
            alt = evaluations(a, method, r, other) if method == "ig" else None
            out.append(
                AttributionCost(
                    method,
                    r,
                    per,
                    per * a.n_images * models,
                    alt,
                    None if alt is None else alt * a.n_images * models,
                )
            )
    return out


def sanity_cost(cfg: ExperimentConfig) -> SanityCost | None:
    """What the sanity stage evaluates (``None``: not enabled): the model and each randomised
    copy, at every r of the stability sweep, for every image and method."""
    if not cfg.sanity.enabled:
        return None
    from smoothstab.experiments.stages.sanity_stage import levels, sanity_model

    a, k = cfg.attribution, sanity_model(cfg)
    rs = levels(a)
    per = {m: a.n_images * sum(evaluations(a, m, r, a.ig_sampler) for r in rs) for m in a.methods}
    twin = None
    if cfg.sanity.labels:  # the twin of model k: one more model of the largest size
        twin = replace(training_costs(cfg)[Setting.of(cfg).size_index(k)], models=1)
    return SanityCost(k, sanity_copies(cfg, Setting.of(cfg).model_names()[k]), per, twin)


def sanity_copies(cfg: ExperimentConfig, name: str) -> int | None:
    """The randomised copies of architecture ``name``: one per ``sanity.layers`` step, else one
    per layer :func:`~smoothstab.randomize.randomizable_layers` finds (built without memory;
    ``None``, unknown, for a ``python:`` factory, which counting never imports or calls)."""
    if cfg.sanity.layers:
        return len(cfg.sanity.layers)
    if name.startswith("python:"):
        return None  # building it would import and call the factory: counts run no code
    from smoothstab.experiments.models.architectures import build_model
    from smoothstab.randomize import randomizable_layers

    info = dataset_info(cfg.train)
    try:
        with torch.device("meta"):
            model = build_model(name, num_classes=num_classes(cfg), in_channels=info.in_channels)
    except Exception:  # a builder that computes on tensors, or weights it must read
        return None
    return len(randomizable_layers(model)[0])


def map_shape(cfg: ExperimentConfig, method: str) -> tuple[int, ...]:
    """One image's map: ``[C, H, W]`` for gradients, ``[1, H, W]`` for CAMs (upsampled)."""
    info = dataset_info(cfg.train)
    channels = 1 if method in CAMS else info.in_channels
    return (channels, info.image_size, info.image_size)


def map_file_bytes(cfg: ExperimentConfig, method: str, r: float) -> int:
    """The size of one map file: what :class:`~smoothstab.experiments.rundir.mapfile.MapFile` saves
    for the run's images, made by the code that writes them (the engine's stats of zero maps of the
    run's shape, with its groups and tolerance, through ``MapFile.from_stats``) for one and two
    images; the sizes fit ``a + b x images`` exactly up to the zip format's alignment."""
    from smoothstab.experiments.rundir.mapfile import MapFile
    from smoothstab.montecarlo import Tolerance, monte_carlo
    from smoothstab.stats import SmoothStats

    a = cfg.attribution
    dtype = getattr(torch, a.dtype)
    keep = cfg.evaluation.debiased and r > 0

    def size(n: int) -> int:
        zeros = torch.zeros((n, *map_shape(cfg, method)), dtype=dtype)
        if r == 0:
            stats = SmoothStats.exact(zeros)
        else:  # sigma 0: the draws leave the zeros as they are; the records have their shapes
            draws = dict(n_samples=a.n_groups * (2 if a.antithetic else 1))
            if a.tolerance is not None:
                draws = dict(tolerance=Tolerance(a.tolerance, a.min_samples, a.max_samples))
            stats = monte_carlo(lambda xs, b, j, u: xs, zeros, sigma=0.0, antithetic=a.antithetic,
                                groups=a.n_groups, **draws)  # fmt: skip
        f = MapFile.from_stats(stats, r, 0.1 if r > 0 else 0.0, keep=keep)
        buf = io.BytesIO()
        torch.save(f.record(), buf)
        return buf.getbuffer().nbytes

    one, two = size(1), size(2)
    return one + (two - one) * (a.n_images - 1)


def storage(cfg: ExperimentConfig) -> tuple[int, int, int]:
    """(map files, their bytes, bytes of ``test_images.pt``)."""
    rs, models = cfg.attribution.noise_grid(), Setting.of(cfg).n_models
    files = models * len(cfg.attribution.methods) * len(rs)
    total = sum(models * map_file_bytes(cfg, m, r) for m in cfg.attribution.methods for r in rs)
    info = dataset_info(cfg.train)
    images = cfg.attribution.n_images * info.in_channels * info.image_size**2 * 4
    return files, total, images + 8 * cfg.attribution.n_images


def num_classes(cfg: ExperimentConfig) -> int:
    """The models' classes as far as the config says; an imagefolder's, which only its folder
    says, is taken as ImageNet's 1000 (a plan reads no data)."""
    return data.num_classes(cfg.train, read=False) or 1000

"""What a config will cost, before anything runs: ``smoothstab plan CONFIG``.

Counts are exact from the config alone, asked of the code that does the work: training steps and
images seen per model (:func:`~smoothstab.experiments.models.trainer.epoch_batches`); model
evaluations (one forward and backward pass of one input row) of the attribute stage per method and
noise level (:func:`~smoothstab.experiments.models.recipe.evals_per_sample`), with the nested
smoothed-IG sampler beside the joint one; what the run stores (:func:`storage`: the block files,
what :class:`~smoothstab.experiments.rundir.blockfile.BlockFile` saves, the kept map files, what
:class:`~smoothstab.experiments.rundir.mapfile.MapFile` saves, and the rows of the metrics table,
as the per-image measures make them) and what one device holds (:func:`device_memory`); the models
and pairs of the setting (:class:`~smoothstab.experiments.config.setting.Setting`).
:mod:`~smoothstab.experiments.plan.timing` times a few real steps and chunks on this machine and
extrapolates by these counts; :mod:`~smoothstab.experiments.plan.text` prints a plan.
"""

from __future__ import annotations

import io
import math
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


def map_file_bytes(cfg: ExperimentConfig, method: str, r: float, keep: str | None = None) -> int:
    """The size of one kept map file (``keep``: ``means`` or ``all``, default ``maps.keep``): what
    :class:`~smoothstab.experiments.rundir.mapfile.MapFile` saves for the run's images, made by the
    code that writes them (the engine's stats of zero maps of the run's shape, with its groups and
    tolerance, through ``MapFile.from_stats``, with the record of what it is) for one and two
    images; the sizes fit ``a + b x images`` exactly up to the zip format's alignment."""
    from smoothstab.experiments.config.tables import MapsConfig
    from smoothstab.experiments.models.recipe import map_identity
    from smoothstab.experiments.rundir.mapfile import MapFile
    from smoothstab.montecarlo import Tolerance, monte_carlo
    from smoothstab.stats import SmoothStats

    a, m = cfg.attribution, cfg.maps
    keep = keep or m.keep
    dtype = getattr(torch, a.dtype)
    debiased = cfg.evaluation.debiased and r > 0

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
        f = MapFile.from_stats(stats, r, 0.1 if r > 0 else 0.0, keep=debiased)
        if keep == "means":
            f = f.means_only(m.precision, m.view)
        asked = replace(m, keep=keep) if keep == "means" else MapsConfig(keep="all")
        ident = map_identity(replace(cfg, maps=asked), 0, method, r, None, a.n_images)
        ident = {k: tuple(v) if isinstance(v, list) else v for k, v in ident.items()}
        return _saved_bytes(replace(f, **ident).record())

    one, two = size(1), size(2)
    return one + (two - one) * (a.n_images - 1)


def _saved_bytes(record: dict) -> int:
    buf = io.BytesIO()
    torch.save(record, buf)
    return buf.getbuffer().nbytes


def prediction_passes(cfg: ExperimentConfig) -> int:
    """Forward passes (no backward) of the predictions the same-prediction split needs: one per
    model and test image, shared by the methods (under ``torchrun``, up to one per method: each
    rank predicts the blocks it measures)."""
    return Setting.of(cfg).n_models * cfg.attribution.n_images


_GROUP_SIDE = 16
"""The side of the stand-in maps :func:`level_groups` measures, at least (SSIM needs
:data:`smoothstab.metrics.SSIM_WIN` pixels; larger where top-k needs ``evaluation.topk``)."""


def level_groups(cfg: ExperimentConfig, method: str, r: float = 0.0) -> list:
    """The row groups of one method at noise level ``r`` (a value per image each), as the
    per-image measures make them (:data:`~smoothstab.experiments.analysis.per_image.MEASURES`,
    on two zero maps per model: the floors need a partner image). Which rows a level makes does
    not depend on the maps' size, so they are small (:data:`_GROUP_SIDE` pixels a side, or enough
    for the top-k; at 224 px the ImageNet preset's 68 levels took about a minute, most of it
    SSIM's convolutions)."""
    from smoothstab.experiments.analysis.per_image import LevelMaps, measure
    from smoothstab.experiments.models.recipe import consensus_models

    setting, e = Setting.of(cfg), cfg.evaluation
    channels, *sides = map_shape(cfg, method)
    least = max(_GROUP_SIDE, math.ceil(math.sqrt(e.topk)))
    shape = (channels, *(min(side, least) for side in sides))
    zero, one = torch.zeros((2, *shape)), torch.ones(2)
    k = setting.n_models
    pairs = setting.pairs()
    predicted = [torch.zeros(2, dtype=torch.long)] * k
    return measure(LevelMaps(method, r, r, [zero] * k, [zero] * k, [one] * k, [one] * k,
                             pairs, e.debiased, e.topk, torch.tensor([1, 0]),
                             consensus_models(cfg), predicted,
                             torch.zeros(2, dtype=torch.long)))  # fmt: skip


@dataclass(frozen=True)
class Storage:
    """What a run stores: its block files (``blocks``: the rows and the figure images' mean maps
    of every model at every r, ``figure_bytes`` of them), the kept map files of ``maps.keep``
    (``kept``; ``alternatives``: files and bytes with each other value of it), the metrics table
    (rows; its bytes are about: Parquet compresses what is there), ``test_images.pt``."""

    block_files: int
    block_bytes: int
    figure_images: int
    figure_bytes: int
    map_files: int
    map_bytes: int
    alternatives: dict[str, tuple[int, int]]
    table_rows: int
    table_bytes: int
    test_images_bytes: int

    @property
    def total(self) -> int:
        return self.block_bytes + self.map_bytes + self.table_bytes + self.test_images_bytes


def storage(cfg: ExperimentConfig) -> Storage:
    """Every file the attribute and evaluate stages write, counted from the config: block and map
    files made and saved in memory by the code that writes them (at one or two images, scaled:
    exact up to the zip format's alignment, 64 bytes a file), the figure maps as raw bytes, the
    metrics table's rows counted and its bytes extrapolated from the Parquet file of the run's
    row groups for 8 and 16 images of random values (about: values compress as they are)."""
    from smoothstab.experiments.models.recipe import consensus_models
    from smoothstab.experiments.stages.attribute import extreme_factor

    a, m = cfg.attribution, cfg.maps
    rs, models, n = a.noise_grid(), Setting.of(cfg).n_models, a.n_images
    n_blocks = -(-n // a.image_batch)
    figures = min(cfg.evaluation.grid_images, n)
    groups = {method: {r: level_groups(cfg, method, r) for r in rs} for method in a.methods}
    block_bytes = figure_bytes = 0
    for method in a.methods:
        full = _block_bytes(cfg, method, groups[method], min(a.image_batch, n))
        last = n - (n_blocks - 1) * a.image_batch
        block_bytes += full * (n_blocks - 1) + _block_bytes(cfg, method, groups[method], last)
        shape = map_shape(cfg, method)
        elements = shape[1] * shape[2] * (1 if m.view == "abs" else shape[0])
        itemsize = torch.empty(0, dtype=getattr(torch, m.precision)).element_size()
        figure_bytes += models * len(rs) * figures * elements * itemsize
        # each block's extreme images (up to 4): the mean unit map and the disagreement map
        extremes = min(4, a.image_batch, n) * n_blocks if len(consensus_models(cfg)) > 1 else 0
        f = extreme_factor(shape[1], shape[2])  # averaged down, float16
        figure_bytes += len(rs) * extremes * 2 * -(-shape[1] // f) * -(-shape[2] // f) * 2
    kept = {}
    for keep in ("means", "all"):
        files, nbytes = models * len(a.methods) * len(rs), 0
        for method in a.methods:  # every r > 0 has a file of one size (same records, shapes)
            smoothed = [r for r in rs if r > 0]
            nbytes += models * map_file_bytes(cfg, method, 0.0, keep)
            nbytes += models * len(smoothed) * (map_file_bytes(cfg, method, smoothed[0], keep)
                                                if smoothed else 0)  # fmt: skip
        kept[keep] = (files, nbytes)
    files, nbytes = kept.get(m.keep, (0, 0))
    info = dataset_info(cfg.train)
    images = n * info.in_channels * info.image_size**2 * 4 + 8 * n
    rows = n * sum(len(g) for per in groups.values() for g in per.values())
    return Storage(
        n_blocks * len(a.methods), block_bytes + figure_bytes, figures, figure_bytes, files,
        nbytes, {k: v for k, v in {"none": (0, 0), **kept}.items() if k != m.keep}, rows,
        _table_bytes(cfg, groups, n), images,
    )  # fmt: skip


def _block_bytes(cfg: ExperimentConfig, method: str, groups: dict, images: int) -> int:
    """A block file of ``images`` images without its figure maps, as the stage saves it."""
    from smoothstab.experiments.models.recipe import block_identity
    from smoothstab.experiments.rundir.blockfile import BlockFile

    a = cfg.attribution
    ident = block_identity(replace(cfg, attribution=replace(a, image_batch=images)), method, 0,
                           images)  # fmt: skip
    every = [(r, g) for r in ident["rs"] for g in groups[r]]
    g = len(every)
    shape = map_shape(cfg, method)
    if cfg.maps.view == "abs":
        shape = (1, *shape[1:])
    f = BlockFile(
        method=method, block=0, images=(0, images), rs=tuple(ident["rs"]),
        sigmas=tuple(ident["sigmas"]), models=ident["models"],
        seeds=tuple(map(tuple, ident["seeds"])), run=ident["run"],
        metric=tuple(str(x.metric) for _, x in every), r=tuple(r for r, _ in every),
        pair=tuple("" if x.pair is None else f"{x.pair[0]}-{x.pair[1]}" for _, x in every),
        model=tuple("" if x.model is None else str(x.model) for _, x in every),
        has_stderr=tuple(x.stderr is not None for _, x in every),
        values=torch.zeros(g, images, dtype=torch.float64),
        stderr=torch.zeros(g, images, dtype=torch.float64), figure_images=(),
        figure_maps=torch.zeros(ident["models"], len(ident["rs"]), 0, *shape,
                                dtype=getattr(torch, cfg.maps.precision)),
        view=cfg.maps.view, precision=cfg.maps.precision, extreme_images=(),
        extreme_maps=torch.zeros(len(ident["rs"]), 0, 2, 1, 1, dtype=torch.float16),
    )  # fmt: skip
    return _saved_bytes(f.record())


def _table_bytes(cfg: ExperimentConfig, groups: dict[str, list], n_images: int) -> int:
    """About the bytes of the metrics table, from above: the Parquet file of the run's row groups
    for its images of random normal values (which compress less than a run's: 24,012 against
    17,901 bytes for the tiny test run), extrapolated linearly from 8 and 16 images beyond 16."""
    import numpy as np

    from smoothstab.experiments.rundir.metrics_table import RowsBuilder, parquet_bytes

    rs = cfg.attribution.noise_grid()
    sizes = [None] * Setting.of(cfg).n_models
    rng = np.random.default_rng(0)

    def size(n: int) -> int:
        builder = RowsBuilder()
        for method, level in groups.items():
            every = [(r, g) for r in rs for g in level[r]]
            heads = [(str(g.metric), r, "" if g.pair is None else f"{g.pair[0]}-{g.pair[1]}",
                      "" if g.model is None else str(g.model), g.stderr is not None)
                     for r, g in every]  # fmt: skip
            builder.add(setting=cfg.models.setting, method=method, groups=heads, sizes=sizes,
                        sigmas={r: r for r in rs}, values=rng.standard_normal((len(heads), n)),
                        stderr=rng.standard_normal((len(heads), n)))  # fmt: skip
        return len(parquet_bytes(builder.table()))  # in memory: plan writes no file

    if n_images <= 16:
        return size(n_images)
    small, big = size(8), size(16)
    return round(small + (big - small) * (n_images - 8) / 8)


@dataclass(frozen=True)
class DeviceMemory:
    """What one device holds while the attribute stage runs (every rank holds every model):
    the models' parameters (``None``: an architecture that cannot be built here to count
    them), one image block's maps of every model at the levels held at once (with the halves,
    variances and groups the distances need), and the sums of the model being drawn. The
    activations of a model call (``batch_size`` rows) come on top."""

    models: int | None
    maps: int
    sums: int
    levels_at_once: int
    measures: int = 0  # the disagreement map's work copies, once the level's maps are made

    @property
    def total(self) -> int | None:
        if self.models is None:
            return None
        return self.models + self.maps + max(self.sums, self.measures)


def device_memory(cfg: ExperimentConfig) -> DeviceMemory:
    """:class:`DeviceMemory` of ``cfg``, for its largest map."""
    from smoothstab.experiments.models.recipe import consensus_models

    a = cfg.attribution
    setting = Setting.of(cfg)
    itemsize = torch.empty(0, dtype=getattr(torch, a.dtype)).element_size()
    nonzero = len([r for r in a.noise_grid() if r > 0])
    held = max(1, nonzero if a.pack else 1)
    elements = max(math.prod(map_shape(cfg, m)) for m in a.methods) * min(a.image_batch, a.n_images)
    per_map = 1 + ((3 + a.n_groups) if cfg.evaluation.debiased else 0)  # mean, halves, var, groups
    maps = setting.n_models * (held * per_map + 1) * elements * itemsize  # + the r = 0 maps
    sums = held * (3 + a.n_groups) * elements * 8  # float64 sums of the levels being drawn
    # disagreement_map in float64: the models' mean unit groups and one model's centred ones
    # (debiased), or every model's unit map (plain), with the variance and mean
    k = len(consensus_models(cfg))
    copies = 2 * a.n_groups + 2 if cfg.evaluation.debiased else k + 2
    measures = copies * elements * 8 if k > 1 else 0
    return DeviceMemory(_parameter_bytes(cfg, itemsize), maps, sums, held, measures)


def _parameter_bytes(cfg: ExperimentConfig, itemsize: int) -> int | None:
    """The parameters' bytes of every model, each architecture built once without memory
    (``None``, unknown, where one is a ``python:`` factory, which counting never imports or
    calls, or cannot be built here)."""
    from smoothstab.experiments.models.architectures import build_model

    info, total, names = dataset_info(cfg.train), 0, Setting.of(cfg).model_names()
    for name in dict.fromkeys(names):  # each architecture built once
        if name.startswith("python:"):
            return None  # building it would import and call the factory: counts run no code
        try:
            with torch.device("meta"):
                model = build_model(
                    name, num_classes=num_classes(cfg), in_channels=info.in_channels
                )
        except Exception:  # a builder that computes on tensors, or weights it must read
            return None
        total += names.count(name) * sum(p.numel() for p in model.parameters()) * itemsize
    return total


def num_classes(cfg: ExperimentConfig) -> int:
    """The models' classes as far as the config says; an imagefolder's, which only its folder
    says, is taken as ImageNet's 1000 (a plan reads no data)."""
    return data.num_classes(cfg.train, read=False) or 1000

"""How long a config will take on this machine: an extrapolation from a few timed calls.

A few real training steps (:meth:`.Trainer.sgd_step`, with the config's model, batch size, precision
and noise draws) and a few real attribution chunks (the engine with the config's model, method and
chunk size) are timed on random tensors of the config's image shape -- no dataset is read -- and
scaled up by :mod:`~smoothstab.experiments.plan.counts`'s counts. Not in the estimate: reading and
augmenting data (random tensors stand in for it), ``torch.compile``'s compilation, and the figures,
bounds and report stages.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.plan.counts import (
    attribution_costs,
    map_shape,
    num_classes,
    sanity_cost,
    training_config,
    training_costs,
)

if TYPE_CHECKING:
    from torch import nn

    from smoothstab.experiments.config.tables import AttributionConfig, ExperimentConfig


@dataclass(frozen=True)
class Timing:
    """Seconds measured on this machine and what they extrapolate to."""

    device: str
    note: str
    step_s: float  # one training step at the config's batch size
    train_s: float  # all models
    eval_s: float  # test (and validation) passes after/during training
    per_row_s: dict[str, float]  # one model evaluation of one row, per method
    attribute_s: float
    evaluate_s: float
    measured_s: float  # what the measuring itself took
    sanity_s: float = 0.0  # the sanity stage, when enabled
    model_row_s: tuple[dict[str, float], ...] = ()  # per model: per_row_s of its own

    @property
    def total_s(self) -> float:
        return self.train_s + self.eval_s + self.attribute_s + self.evaluate_s + self.sanity_s


def _device(name: str) -> tuple[torch.device, str]:
    """The device to time on: the config's, or this machine's CPU when it lacks that one."""
    from smoothstab.experiments.models.trainer import device_name

    wanted = device_name(name)
    dev = torch.device(wanted)
    if dev.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu"), f"the config asks for {name}, which this machine lacks"
    if dev.type == "mps" and not torch.backends.mps.is_available():
        return torch.device("cpu"), f"the config asks for {name}, which this machine lacks"
    return dev, ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


SHORT = 0.05  # seconds: quick calls are repeated until they have taken this long (at most 20)


def _seconds(fn: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """The fastest of ``repeats`` timed calls or more (the first call, a warm-up, not counted):
    a call of a few milliseconds is repeated until the calls took :data:`SHORT` seconds, up to
    20 times, so that one preempted by another process on a busy machine does not set it."""
    fn()
    times: list[float] = []
    while len(times) < repeats or (sum(times) < SHORT and len(times) < 20):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _linear(
    measure: Callable[[int], float], small: int, target: int, budget: float
) -> tuple[float, float]:
    """``(fixed, per_item)`` seconds of a call on ``n`` items, from timing ``small`` items and the
    largest size up to ``target`` that fits ``budget`` seconds. When that size reaches
    ``target``, the line through both points (exact at ``target``); when it falls short (a big
    model on a slow device), proportional to the larger one, with no fixed part: two nearby
    small sizes give too noisy a slope to extrapolate far."""
    t_small = measure(small)
    if target <= small:
        return t_small, 0.0
    per = t_small / small
    big = int(min(target, max(small + 1, budget / max(per, 1e-9))))
    t_big = measure(big)
    if big < target:
        return 0.0, t_big / big
    slope = max((t_big - t_small) / (big - small), 0.0)
    return max(t_big - slope * big, 0.0), slope


def time_training(cfg: ExperimentConfig, budget: float) -> tuple[float, float, float, str]:
    """``(fixed, per_image, forward_per_image)`` seconds of a training step on this machine and a
    note: real :meth:`.Trainer.sgd_step` calls on random images."""
    from torch.utils.data import TensorDataset

    from smoothstab.experiments.models.distributed import DistInfo
    from smoothstab.experiments.models.trainer import Trainer, deterministic_mode

    device, note = _device(cfg.train.device)
    info = dataset_info(cfg.train)
    t = replace(
        cfg.train,
        device=str(device),
        num_classes=num_classes(cfg),
        part_size=cfg.train.batch_size,
        keep="last",
        compile=False,  # compiling takes minutes; its speed-up is not in the estimate
    )
    shape = (info.in_channels, info.image_size, info.image_size)
    k = t.num_classes
    dummy = TensorDataset(torch.zeros(1, *shape), torch.zeros(1, dtype=torch.long))
    with torch.random.fork_rng(devices=[]), deterministic_mode(t.deterministic):
        trainer = Trainer(t, [0], 0, DistInfo(), Path("unused"), dummy, None)

        def step(n: int) -> float:
            x = torch.randn(n, *shape, device=device)
            y = torch.randint(0, k, (n,), device=device)
            return _seconds(lambda: trainer.sgd_step(x, y, n), device)

        fixed, per = _linear(step, 2, t.batch_size, budget)
        model = trainer.model.eval()

        def forward(n: int) -> float:
            x = torch.randn(n, *shape, device=device)
            with torch.no_grad():
                return _seconds(lambda: model(x), device, repeats=1)

        fwd = forward(2) / 2
    return fixed, per, fwd, note


def _classes(cfg: ExperimentConfig) -> tuple[int | None, str]:
    """The classes the run builds given models with (:func:`.data.num_classes`, read from an
    image folder as the run reads it), or where that folder is not here, the plan's count."""
    from smoothstab.experiments.models import data

    try:
        return data.num_classes(cfg.train), ""
    except ValueError:
        n = num_classes(cfg)
        return n, f"{cfg.train.dataset}'s classes are read from a folder not here: built with {n}"


def run_models(cfg: ExperimentConfig, device: torch.device) -> tuple[list[nn.Module], list[str]]:
    """Each model of the run as the run builds it (:func:`.given_model`: the spec's
    architecture, its weights where they are local files or cached, its CAM layer), on
    ``device`` in the run's dtype, and notes; models with the same spec are built once (the
    same object in the list). Weights that would be fetched are not: that model is built with
    random weights and a note says so. A checkpoint that does not fit its architecture, a
    module that cannot be imported or a CAM layer that is not there fails here as in the run."""
    from smoothstab.experiments.models.architectures import NotFetched, given_model

    classes, note = _classes(cfg)
    notes, built = [note], {}
    dtype = getattr(torch, cfg.attribution.dtype)
    models = []
    for k, spec in enumerate(Setting.of(cfg).model_specs()):
        if spec not in built:
            with torch.random.fork_rng(devices=[]):
                try:
                    model = given_model(cfg, k, spec, classes, fetch=False)
                except NotFetched as e:
                    notes.append(f"{e}: timed with random weights")
                    model = given_model(cfg, k, replace(spec, weights=None), classes)
            built[spec] = model.to(device=device, dtype=dtype).eval()
        models.append(built[spec])
    return models, notes


def time_attribution(
    cfg: ExperimentConfig, model: nn.Module, device: torch.device, budget: float
) -> dict[str, float]:
    """Seconds per model evaluation (one row) of each method, from real smoothed calls of the
    attribute stage's own method objects on random images, at the run's chunk size where the
    budget allows (IG is timed with the joint sampler: one path-point gradient per row, the
    same work per row as the nested sampler's quadrature points)."""
    from smoothstab.experiments.models import accel
    from smoothstab.experiments.models.recipe import smoothed_method

    a = cfg.attribution
    model = accel.prepare_model(model, a)
    info = dataset_info(cfg.train)
    dtype = getattr(torch, a.dtype)
    shape = (info.in_channels, info.image_size, info.image_size)
    images = min(a.image_batch, a.n_images)
    chunk = min(a.batch_size, a.n_samples * images)  # rows per model call in the stage
    # the timed targets are classes the model has: the config may not say how many (a folder
    # of images: the model's own), and more images than classes must not run past them
    with torch.no_grad(), accel.autocast(a.amp, device):
        classes = model(torch.zeros(1, *shape, device=device, dtype=dtype)).shape[-1]
    out = {}
    for method in a.methods:
        timing_attr = replace(a, ig_sampler="joint", antithetic=False)
        if getattr(a, "tolerance", None) is not None:  # fixed draws: rows are what is timed
            draws = max(a.n_samples, a.n_groups)  # a draw for each group, as the engine wants
            timing_attr = replace(timing_attr, tolerance=None, n_samples=draws)

        def rows(n: int, method: str = method, attr: AttributionConfig = timing_attr) -> float:
            """Seconds for ``n`` rows, from a call on about ``n`` rows (two draws at least, and
            a draw for each of the run's groups, which the engine needs)."""
            m = max(1, min(images, n // 2))
            k = max(2, math.ceil(n / m), a.n_groups)
            x = torch.randn(m, *shape, device=device, dtype=dtype)
            y = torch.arange(m, device=device) % classes
            smoothed = smoothed_method(
                method, model, replace(attr, n_samples=k, batch_size=n), 0.1, 0
            )

            def call() -> None:
                with accel.autocast(a.amp, device):
                    smoothed.stats(model, x, y)

            return _seconds(call, device) * n / (k * m)

        fixed, per = _linear(rows, 2, chunk, budget)
        out[method] = per + fixed / chunk
    return out


def time_evaluation(cfg: ExperimentConfig, per_pair: int, per_model: int) -> float:
    """Seconds of measuring the maps (in the attribute stage, while they are in memory): the
    per-image measures on random maps of the run's shapes."""
    from smoothstab.experiments.analysis.per_image import model_groups, pair_groups
    from smoothstab.stats import SmoothStats

    a, e = cfg.attribution, cfg.evaluation
    m = min(4, a.n_images)
    total = 0.0
    for method in a.methods:
        g = torch.Generator().manual_seed(0)
        maps = torch.randn((4, m, *map_shape(cfg, method)), generator=g)
        start = time.perf_counter()
        a_, b_ = SmoothStats.exact(maps[0]), SmoothStats.exact(maps[1])
        list(pair_groups(a_, b_, debiased=e.debiased, topk=min(e.topk, 16)))
        list(model_groups(SmoothStats.exact(maps[2]), maps[3], debiased=e.debiased))
        took = (time.perf_counter() - start) / m
        rs = len(a.noise_grid())
        total += took * a.n_images * rs * max(per_pair, per_model)
    return total


def estimate_time(cfg: ExperimentConfig, budget: float = 1.0, *, train: bool = True) -> Timing:
    """Time a few training steps and attribution chunks here and extrapolate to the whole run
    (``train=False``: the training is not timed, and counts 0 s)."""
    start = time.perf_counter()
    notes = []
    train_s = eval_s = step_s = 0.0
    costs = training_costs(cfg) if train else []
    if training_costs(cfg) and not train:
        notes.append("training not timed")
    if costs:
        t = training_config(cfg)[0]
        fixed, per, fwd, note = time_training(replace(cfg, train=t), budget)
        notes.append(note)
        step_s = fixed + per * t.batch_size
        for c in costs:
            steps_full = c.steps
            train_s += c.models * (steps_full * fixed + c.images_seen * per)
            test = dataset_info(t).test_size or 50_000  # an imagefolder's: as ImageNet's
            val = t.val_size * t.epochs if t.keep == "best" else 0
            eval_s += c.models * (test + val) * fwd
    device, note = _device(cfg.attribution.device)
    notes.append(note)
    setting = Setting.of(cfg)
    models, said = run_models(cfg, device)
    notes += said
    timed: dict[tuple[str, str], dict[str, float]] = {}  # once per architecture and CAM layer
    keys = [(spec.name, spec.cam_layer) for spec in setting.model_specs()]
    for key, model in zip(keys, models, strict=True):
        if key not in timed:
            with torch.random.fork_rng(devices=[]):
                timed[key] = time_attribution(cfg, model, device, budget)
    model_rows = tuple(timed[key] for key in keys)
    attribute_s = attribution_seconds(cfg, model_rows)
    evaluate_s = time_evaluation(cfg, len(setting.pairs()), setting.n_models)
    first = model_rows[0]
    check = sanity_cost(cfg)
    sanity_s = 0.0
    if check is not None and check.copies is not None:
        rows = model_rows[check.model]
        sanity_s = check.models_evaluated * sum(rows[m] * n for m, n in check.per_model.items())
    if check is not None and check.label_training is not None and costs:
        c = check.label_training  # the twin, trained by the train stage
        train_s += c.steps * fixed + c.images_seen * per
    note = "; ".join(dict.fromkeys(n for n in notes if n))
    return Timing(
        str(device),
        note,
        step_s,
        train_s,
        eval_s,
        first,
        attribute_s,
        evaluate_s,
        time.perf_counter() - start,
        sanity_s,
        model_rows,
    )


def attribution_seconds(cfg: ExperimentConfig, model_rows: Sequence[dict[str, float]]) -> float:
    """The attribute stage's seconds: each model's seconds per row of each method times the
    rows the config asks of it (:func:`.attribution_costs`)."""
    n = Setting.of(cfg).n_models
    counts: dict[str, int] = {}
    for c in attribution_costs(cfg):
        counts[c.method] = counts.get(c.method, 0) + c.total // n
    return sum(rows[m] * count for rows in model_rows for m, count in counts.items())

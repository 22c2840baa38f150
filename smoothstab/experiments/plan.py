"""What a config will cost, before anything runs: ``smoothstab plan CONFIG``.

Counts are exact from the config alone: training steps and images seen per model; model
evaluations (one forward and backward pass of one input row) of the attribute stage per method
and noise level, with the nested smoothed IG beside the joint estimator; map files and their
bytes. The time estimate is an extrapolation: a few real training steps
(:meth:`.Trainer.sgd_step`, with the config's model, batch size, precision and noise draws) and a
few real attribution chunks (the engine with the config's model, method and chunk size) are timed
on random tensors of the config's image shape -- no dataset is read -- and scaled up by the
counts. Not in the estimate: reading and augmenting data (random tensors stand in for it),
``torch.compile``'s compilation, and the figures, bounds and report stages.

Long (about 700 lines) because counting, timing and printing all follow the stages' own rules
(what each method evaluates at r = 0 and r > 0, what a map file holds) and keep them in one place.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from smoothstab.experiments import data
from smoothstab.experiments.data import dataset_info
from smoothstab.experiments.rundir import noise_grid
from smoothstab.experiments.setting import Setting

if TYPE_CHECKING:
    from torch import nn

    from smoothstab.experiments.experiment import AttributionConfig, ExperimentConfig, TrainConfig

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

    ``other_per_image``/``other_total``: IG only, what the estimator the config does not use
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

    @property
    def total(self) -> int | None:
        return None if self.copies is None else (1 + self.copies) * sum(self.per_model.values())


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

    @property
    def total_s(self) -> float:
        return self.train_s + self.eval_s + self.attribute_s + self.evaluate_s + self.sanity_s


@dataclass(frozen=True)
class Plan:
    name: str
    n_models: int
    training: tuple[TrainingCost, ...]
    attribution: tuple[AttributionCost, ...]
    map_files: int
    map_bytes: int
    test_images_bytes: int
    timing: Timing | None
    sanity: SanityCost | None = None


# --- counts ------------------------------------------------------------------------------------


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
    from smoothstab.experiments.train import even_part_size
    from smoothstab.experiments.trainer import epoch_batches

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


def evaluations(attr: AttributionConfig, method: str, r: float, estimator: str) -> int:
    """Model evaluations per image of one method at noise level r (one map of one model), IG
    with ``estimator``: what a draw costs in the attribute stage
    (:func:`~.attribute.evals_per_sample`) times the draws (one at r = 0)."""
    from smoothstab.experiments.attribute import evals_per_sample

    attr = replace(attr, ig_estimator=estimator)
    return (draws(attr) if r > 0 else 1) * evals_per_sample(method, attr, r)


def attribution_costs(cfg: ExperimentConfig) -> list[AttributionCost]:
    """Every (method, r) of the run, in the attribute stage's order."""
    a, models = cfg.attribution, Setting.of(cfg).n_models
    other = "joint" if a.ig_estimator == "nested" else "nested"
    out = []
    for method in a.methods:
        for r in noise_grid(a):
            per = evaluations(a, method, r, a.ig_estimator)
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
    from smoothstab.experiments.sanity import levels, sanity_model

    a, k = cfg.attribution, sanity_model(cfg)
    rs = levels(a)
    per = {m: a.n_images * sum(evaluations(a, m, r, a.ig_estimator) for r in rs) for m in a.methods}
    return SanityCost(k, sanity_copies(cfg, Setting.of(cfg).model_names()[k]), per)


def sanity_copies(cfg: ExperimentConfig, name: str) -> int | None:
    """The randomised copies of architecture ``name``: one per ``sanity.layers`` step, else one
    per layer :func:`~smoothstab.randomize.randomizable_layers` finds (built without memory)."""
    if cfg.sanity.layers:
        return len(cfg.sanity.layers)
    from smoothstab.experiments.models import build_model
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
    """The size of one map file: what :class:`~.rundir.MapFile` saves for the run's images,
    made by the code that writes them (the engine's stats of zero maps of the run's shape, with
    its groups and tolerance, through ``MapFile.from_stats``) for one and two images; the
    sizes fit ``a + b x images`` exactly up to the zip format's alignment."""
    from smoothstab.experiments.rundir import MapFile
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
    rs, models = noise_grid(cfg.attribution), Setting.of(cfg).n_models
    files = models * len(cfg.attribution.methods) * len(rs)
    total = sum(models * map_file_bytes(cfg, m, r) for m in cfg.attribution.methods for r in rs)
    info = dataset_info(cfg.train)
    images = cfg.attribution.n_images * info.in_channels * info.image_size**2 * 4
    return files, total, images + 8 * cfg.attribution.n_images


# --- timing ------------------------------------------------------------------------------------


def _device(name: str) -> tuple[torch.device, str]:
    """The device to time on: the config's, or this machine's CPU when it lacks that one."""
    from smoothstab.experiments.trainer import device_name

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


def _seconds(fn: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """The fastest of ``repeats`` timed calls (the first call, a warm-up, not counted)."""
    fn()
    times = []
    for _ in range(repeats):
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


def num_classes(cfg: ExperimentConfig) -> int:
    """The models' classes as far as the config says; an imagefolder's, which only its folder
    says, is taken as ImageNet's 1000 (a plan reads no data)."""
    return data.num_classes(cfg.train, read=False) or 1000


def time_training(cfg: ExperimentConfig, budget: float) -> tuple[float, float, float, str]:
    """``(fixed, per_image, forward_per_image)`` seconds of a training step on this machine and a
    note: real :meth:`.Trainer.sgd_step` calls on random images."""
    from torch.utils.data import TensorDataset

    from smoothstab.experiments.distributed import DistInfo
    from smoothstab.experiments.trainer import Trainer, deterministic_mode

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


def _attribution_model(cfg: ExperimentConfig, name: str, device: torch.device) -> nn.Module:
    from smoothstab.experiments.models import build_model

    info = dataset_info(cfg.train)
    with torch.random.fork_rng(devices=[]):
        model = build_model(name, num_classes=num_classes(cfg), in_channels=info.in_channels)
    dtype = getattr(torch, cfg.attribution.dtype)
    return model.to(device=device, dtype=dtype).eval()


def time_attribution(
    cfg: ExperimentConfig, model: nn.Module, device: torch.device, budget: float
) -> dict[str, float]:
    """Seconds per model evaluation (one row) of each method, from real smoothed calls of the
    attribute stage's own method objects on random images, at the run's chunk size where the
    budget allows (IG is timed with the joint sampler: one path-point gradient per row, the
    same work per row as the nested estimator's quadrature points)."""
    from smoothstab.experiments import accel
    from smoothstab.experiments.attribute import smoothed_method

    a = cfg.attribution
    model = accel.prepare_model(model, a)
    info = dataset_info(cfg.train)
    dtype = getattr(torch, a.dtype)
    shape = (info.in_channels, info.image_size, info.image_size)
    images = min(a.image_batch, a.n_images)
    chunk = min(a.batch_size, a.n_samples * images)  # rows per model call in the stage
    out = {}
    for method in a.methods:
        timing_attr = replace(a, ig_estimator="joint", antithetic=False)
        if getattr(a, "tolerance", None) is not None:  # fixed draws: rows are what is timed
            timing_attr = replace(timing_attr, tolerance=None)

        def rows(n: int, method: str = method, attr: AttributionConfig = timing_attr) -> float:
            """Seconds for ``n`` rows, from a call on about ``n`` rows (two draws at least)."""
            m = max(1, min(images, n // 2))
            k = max(2, math.ceil(n / m))
            x = torch.randn(m, *shape, device=device, dtype=dtype)
            y = torch.arange(m, device=device) % num_classes(cfg)
            smoothed = smoothed_method(
                method, model, replace(attr, n_samples=k, batch_size=n), 0.1, 0
            )

            def call() -> None:
                with accel.autocast(a, device):
                    smoothed.stats(model, x, y)

            return _seconds(call, device) * n / (k * m)

        fixed, per = _linear(rows, 2, chunk, budget)
        out[method] = per + fixed / chunk
    return out


def time_evaluation(cfg: ExperimentConfig, per_pair: int, per_model: int) -> float:
    """Seconds of the evaluate stage: its row functions on random maps of the run's shapes."""
    from smoothstab.experiments.evaluate import model_rows, pair_rows
    from smoothstab.stats import SmoothStats

    a, e = cfg.attribution, cfg.evaluation
    m = min(4, a.n_images)
    total = 0.0
    for method in a.methods:
        g = torch.Generator().manual_seed(0)
        maps = torch.randn((4, m, *map_shape(cfg, method)), generator=g)
        start = time.perf_counter()
        a_, b_ = SmoothStats.exact(maps[0]), SmoothStats.exact(maps[1])
        list(pair_rows({}, a_, b_, debiased=e.debiased, topk=min(e.topk, 16)))
        list(model_rows({}, SmoothStats.exact(maps[2]), maps[3], debiased=e.debiased))
        took = (time.perf_counter() - start) / m
        rs = len(noise_grid(a))
        total += took * a.n_images * rs * max(per_pair, per_model)
    return total


def estimate_time(cfg: ExperimentConfig, budget: float = 1.0) -> Timing:
    """Time a few training steps and attribution chunks here and extrapolate to the whole run."""
    start = time.perf_counter()
    notes = []
    train_s = eval_s = step_s = 0.0
    costs = training_costs(cfg)
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
    names = setting.model_names()
    per_row: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(names):
        with torch.random.fork_rng(devices=[]):
            model = _attribution_model(cfg, name, device)
            per_row[name] = time_attribution(cfg, model, device, budget)
    attribute_s = 0.0
    counts = {}
    for c in attribution_costs(cfg):
        counts[c.method] = counts.get(c.method, 0) + c.total // setting.n_models
    for name in names:
        attribute_s += sum(per_row[name][m] * n for m, n in counts.items())
    evaluate_s = time_evaluation(cfg, len(setting.pairs()), setting.n_models)
    first = per_row[names[0]]
    check = sanity_cost(cfg)
    sanity_s = 0.0
    if check is not None and check.copies is not None:
        rows = per_row[names[check.model]]
        sanity_s = (1 + check.copies) * sum(rows[m] * n for m, n in check.per_model.items())
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
    )


def make_plan(cfg: ExperimentConfig, *, timing: bool = True, budget: float = 1.0) -> Plan:
    """The counts of ``cfg`` and, with ``timing``, the time estimate for this machine
    (``budget``: about how many seconds each measurement may take)."""
    files, nbytes, images = storage(cfg)
    return Plan(
        cfg.name,
        Setting.of(cfg).n_models,
        tuple(training_costs(cfg)),
        tuple(attribution_costs(cfg)),
        files,
        nbytes,
        images,
        estimate_time(cfg, budget) if timing else None,
        sanity_cost(cfg),
    )


# --- printing ----------------------------------------------------------------------------------


def _n(x: float) -> str:
    return f"{x:,.0f}" if x < 1e12 else f"{x:.3g}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 2 * 3600:
        return f"{s / 60:.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _table(header: list[str], rows: list[list[str]]) -> Iterator[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    yield "  " + "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))
    for r in rows:
        yield "  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))


def format_plan(plan: Plan, cfg: ExperimentConfig) -> str:
    """The plan as text, one section per stage."""
    a = cfg.attribution
    setting = Setting.of(cfg)
    lines = [f"plan for {plan.name}: {plan.n_models} models ({setting.name})", ""]
    if plan.training:
        t = training_config(cfg)[0]
        what = setting.training_name()
        lines.append(
            f"{what} ({t.model}, {t.epochs} epochs, batch {t.batch_size}, amp {t.amp}"
            + (f", {t.noise_draws} weight-noise draws per step" if t.noise_std > 0 else "")
            + "), per run:"
        )
        rows = [
            [_n(c.size), str(c.models), _n(c.steps_per_epoch), _n(c.steps), _n(c.images_seen)]
            for c in plan.training
        ]
        header = ["train size", "models", "steps/epoch", "steps", "images seen"]
        lines += _table(header, rows)
        total = sum(c.models * c.images_seen for c in plan.training)
        lines += [f"  all models: {_n(total)} images seen", ""]
    else:
        lines += ["training: none (given checkpoints)", ""]
    other = "joint" if a.ig_estimator == "nested" else "nested"
    tolerance = getattr(a, "tolerance", None)
    samples = (
        f"tolerance {tolerance:g}: {a.min_samples} to {a.max_samples} samples, counted at "
        f"{a.max_samples}, an upper bound"
        if tolerance is not None
        else f"{a.n_samples} samples"
    )
    lines.append(
        f"attribution ({a.n_images} images, {samples}, IG {a.ig_steps} steps "
        f"{a.ig_estimator}): model evaluations (forward+backward of one row)"
    )
    rows, by_method = [], {}
    for c in plan.attribution:
        by_method.setdefault(c.method, [0, 0])
        by_method[c.method][0] += c.total
        by_method[c.method][1] += c.other_total if c.other_total is not None else c.total
        rows.append(
            [
                c.method,
                f"{c.r:g}",
                _n(c.per_image),
                _n(c.total),
                "" if c.other_per_image is None else _n(c.other_per_image),
            ]
        )
    header = ["method", "r", "per image/model", "all", f"per image, {other} IG"]
    lines += _table(header, rows)
    total = sum(v[0] for v in by_method.values())
    alt = sum(v[1] for v in by_method.values())
    lines.append(
        f"  all: {_n(total)} evaluations; with {other} IG: {_n(alt)} (at the same draws per "
        "map, not at the same Monte-Carlo error)"
    )
    lines += [
        "",
        f"maps: {plan.map_files} files, {human_bytes(plan.map_bytes)} "
        f"(+ test_images.pt {human_bytes(plan.test_images_bytes)}; "
        f"float {a.dtype}, halves and variances kept: {cfg.evaluation.debiased})",
    ]
    lines += _sanity_lines(plan.sanity)
    t = plan.timing
    if t is not None:
        lines += [
            "",
            f"time on this machine ({t.device}; {torch.get_num_threads()} threads"
            + (f"; {t.note}" if t.note else "")
            + "), an extrapolation from a few timed steps and chunks on random inputs:",
        ]
        if plan.training:
            lines.append(
                f"  train     {human_seconds(t.train_s + t.eval_s):>10}  "
                f"({t.step_s * 1000:.1f} ms a step; data loading not included)"
            )
        per = ", ".join(f"{m} {s * 1000:.2f} ms" for m, s in t.per_row_s.items())
        lines += [
            f"  attribute {human_seconds(t.attribute_s):>10}  (a row: {per})",
            f"  evaluate  {human_seconds(t.evaluate_s):>10}",
            *([f"  sanity    {human_seconds(t.sanity_s):>10}"] if plan.sanity else []),
            f"  total     {human_seconds(t.total_s):>10}  (figures, bounds, report not included; "
            f"measured in {t.measured_s:.1f} s)",
        ]
    return "\n".join(lines)


def _sanity_lines(check: SanityCost | None) -> list[str]:
    if check is None:
        return []
    per = ", ".join(f"{m} {_n(n)}" for m, n in check.per_model.items())
    if check.copies is None:
        return ["", f"sanity (model {check.model}): copies unknown; per model: {per}"]
    return [
        "",
        f"sanity (model {check.model} and {check.copies} randomised copies): "
        f"{_n(check.total)} model evaluations (per model: {per})",
    ]

"""The sanity stage: does each smoothed map still depend on the model? (``[sanity]``, off by
default; docs/sanity.md.)

For one model, the first model of the largest training-set size (DT; model 0 otherwise), every
method and every r of the stability sweep, the model-randomisation check of Adebayo et al. (2018)
through the library's :func:`smoothstab.sanity.sanity`: the model's map against the map of each
randomised copy (:func:`smoothstab.randomize.randomize` with ``sanity.mode``, ``layers``,
``init_seed``), per image, as SSIM and rank agreement. Maps are the attribute stage's own methods
and settings (:func:`~smoothstab.experiments.models.recipe.smoothed_method`), block by block with
the attribute stage's block seeds (:func:`~smoothstab.experiments.models.recipe.block_seed`, the
seeds its block files record), so every copy sees the same noise draws as the model (common random
numbers) and, with ``common_random_numbers`` on, the model's draws are those the attribute stage
measured. The model's maps are computed again, not read: the attribute stage keeps no map but the
figure images' (unless ``[maps] keep``), and recomputing them costs one model's share of the
check (not compared with kept ones: packed levels, ``pack = true``, compose batches differently).

Rows go to ``sanity.csv`` (:mod:`~smoothstab.experiments.rundir.sanity_rows`: its columns, reader
and summaries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

import smoothstab as ss
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.io.progress import Progress
from smoothstab.experiments.models import accel
from smoothstab.experiments.models.labels import permutation_name
from smoothstab.experiments.models.recipe import block_seed, load_test_images, smoothed_method
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.metrics_table import csv_text
from smoothstab.experiments.rundir.sanity_rows import (
    COLUMNS,
    LABELS,
    PARAMS,
    has_label_rows,
    read_rows,
)

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import AttributionConfig, ExperimentConfig


def sanity_model(cfg: ExperimentConfig) -> int:
    """The model the check runs on: the first of the largest training-set size (DT; models
    are numbered size by size, smallest first), else model 0."""
    return Setting.of(cfg).first_of_largest()


def check_layers(cfg: ExperimentConfig, *, run_code: bool = True) -> None:
    """``sanity.layers`` name modules the check can re-initialise, checked on the checked
    model's architecture built without memory before any stage runs (not after training and
    attribution); a ``python:`` factory is built only with ``run_code``. A builder that needs
    real tensors is left to the stage itself."""
    from smoothstab.experiments.config.parse import ConfigError
    from smoothstab.experiments.models.architectures import build_model
    from smoothstab.experiments.models.data import num_classes

    s = cfg.sanity
    if not (s.enabled and s.layers):
        return
    name = Setting.of(cfg).model_names()[sanity_model(cfg)]
    if name.startswith("python:") and not run_code:
        return
    info = dataset_info(cfg.train)
    classes = num_classes(cfg.train, read=False) or 1000  # the class count moves no layer name
    try:
        with torch.device("meta"):
            model = build_model(name, num_classes=classes, in_channels=info.in_channels)
    except Exception:  # noqa: BLE001 - the stage that builds it says what is wrong
        return
    try:
        ss.randomize(model, s.mode, list(s.layers), s.init_seed)
    except ValueError as e:
        raise ConfigError(f"sanity.{e}") from None


def levels(attr: AttributionConfig) -> list[float]:
    """The noise levels checked: the stability sweep's, rounded as the map files' names."""
    return sorted({round(float(r), 6) for r in attr.stability_r})


def check_rows(
    cfg: ExperimentConfig,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    method: str,
    twin: nn.Module | None = None,
) -> list[dict]:
    """Rows of one method for ``model`` on images ``x`` (labels ``y``), every r of the stability
    sweep, image block by image block; ``model`` on the run's attribution device and dtype.
    Against the randomised copies, or with ``twin`` against that model alone (the label check:
    metrics ``sanity_label_*``, ``randomized`` the permutation's name)."""
    attr, s = cfg.attribution, cfg.sanity
    x_range = dataset_info(cfg.train).x_range
    sigma_r = {r * x_range: r for r in levels(attr)}
    if twin is None:
        others, metrics = ss.randomize(model, s.mode, list(s.layers) or None, s.init_seed), PARAMS
    else:
        others, metrics = [(permutation_name(s.label_seed), twin)], LABELS
    k, out = sanity_model(cfg), []  # the seeds name the model, as the attribute stage's
    for b, start in enumerate(range(0, len(x), attr.image_batch)):
        xb, yb = x[start : start + attr.image_batch], y[start : start + attr.image_batch]
        target = yb if attr.target == "label" else None

        def smoothed(sigma: float, b: int = b) -> ss.Method:
            seed = block_seed(attr, b, k, method, sigma_r[sigma])
            return smoothed_method(method, model, attr, sigma, seed)

        with accel.autocast(attr.amp, xb.device):
            res = ss.sanity(
                None, model, xb, target, sigmas=list(sigma_r), randomized=others, smoothed=smoothed
            )
        out += _rows(res, method, sigma_r, start, metrics)
    return out


def _rows(
    res: ss.SanityResult, method: str, sigma_r: dict, start: int, metrics: tuple[Metric, Metric]
) -> list[dict]:
    rows = []
    for metric, values in zip(metrics, (res.ssim, res.spearman), strict=True):
        for si, sigma in enumerate(res.sigmas):
            for step, name in enumerate(res.names):
                for i, v in enumerate(values[si, step].tolist()):
                    row = {"method": method, "r": sigma_r[sigma], "sigma": sigma}
                    row.update(metric=str(metric), step=step, randomized=name, image=start + i)
                    rows.append({**row, "value": float(v), "stderr": ""})
    return rows


def sanity_run(
    cfg: ExperimentConfig,
    run: RunDir,
    model: nn.Module,
    n: int | None,
    twin: nn.Module | None = None,
) -> None:
    """Write ``sanity.csv`` for ``model`` (:func:`sanity_model`; ``n`` its training-set size),
    with the label check's rows against ``twin`` when given, unless it exists (with those rows,
    when asked for: ``sanity.labels`` turned on later redoes the file)."""
    if run.sanity_csv.is_file() and (twin is None or has_label_rows(read_rows(run))):
        return
    attr = cfg.attribution
    device, dtype = torch.device(attr.device), getattr(torch, attr.dtype)
    on = lambda m: accel.prepare_model(m.to(device=device, dtype=dtype).eval(), attr)  # noqa: E731
    model, twin = on(model), None if twin is None else on(twin)
    x, y = load_test_images(cfg, run)
    x, y = x.to(device=device, dtype=dtype), y.to(device)
    base = {"setting": cfg.models.setting, "n": "" if n is None else n}
    base["model"] = sanity_model(cfg)
    rows: list[dict] = []
    checks = [None] if twin is None else [None, twin]
    with Progress(len(attr.methods) * len(checks), "sanity", quiet=cfg.quiet) as bar:
        for method in attr.methods:
            for other in checks:
                rows += [{**base, **row} for row in check_rows(cfg, model, x, y, method, other)]
                bar.update()
    run.write_text(run.sanity_csv, csv_text(rows, COLUMNS))

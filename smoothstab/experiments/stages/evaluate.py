"""The evaluate stage: the attribute stage's block files -> the metrics table, Table 1 and the sigma
advice.

The attribute stage measured every map while it was in memory
(:mod:`~smoothstab.experiments.analysis.per_image`: stability, SSIM, top-k IoU, rank agreement and
unit-map distance per model pair; fidelity, map norm, Monte-Carlo error and cost per model; each
distance and norm plain, as the paper computes it, and when asked debiased, with the Monte-Carlo
standard error in ``stderr``) and kept the rows in one block file per method and image block. This
stage checks each block file against what the run expects (method, image range, noise levels,
seeds, the run's config; its own hash) and joins their rows into ``metrics.parquet``
(:mod:`~smoothstab.experiments.rundir.metrics_table`: one row per method, r, metric, model pair or
model, and image; ``n`` is the models' training-set size, empty for given checkpoints), then
summarises them into ``table1.csv`` and ``recommendation.json`` (the advice per method and
training-set size with its intervals over models, images and draws,
:mod:`~smoothstab.experiments.analysis.advice`). No model evaluations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from smoothstab.experiments.analysis.advice import advise
from smoothstab.experiments.analysis.sweep import table1
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.io.files import DamagedFile
from smoothstab.experiments.io.progress import Progress, say
from smoothstab.experiments.models.recipe import block_identity
from smoothstab.experiments.rundir.advice_record import write_advice
from smoothstab.experiments.rundir.blockfile import BlockFile
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.metrics_table import RowsBuilder, read_columns, write_table
from smoothstab.experiments.rundir.table1_file import table1_csv

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import ExperimentConfig


def metrics_table(cfg: ExperimentConfig, run: RunDir, sizes: Sequence[int | None]):
    """Every row of the run's block files, as one ``pyarrow.Table``: per method, each row group
    of the blocks (they all have the same ones) over every image in order."""
    n_images = len(run.load_test_images()[0])
    n_blocks = -(-n_images // cfg.attribution.image_batch)
    builder = RowsBuilder()
    bar = Progress(len(cfg.attribution.methods), "evaluate", quiet=cfg.quiet)
    for method in cfg.attribution.methods:
        files = []
        for b in range(n_blocks):
            path = run.block(method, b)
            files.append(BlockFile.load(path, block_identity(cfg, method, b, n_images)))
            if files[-1].groups() != files[0].groups():
                raise DamagedFile(path, "damaged (its rows are not those of the method's block 0)")
        head = files[0]
        builder.add(
            setting=cfg.models.setting,
            method=method,
            groups=head.groups(),
            sizes=sizes,
            sigmas=dict(zip(head.rs, head.sigmas, strict=True)),
            values=torch.cat([f.values for f in files], dim=1).numpy(),
            stderr=torch.cat([f.stderr for f in files], dim=1).numpy(),
        )
        bar.update()
    bar.close()
    return builder.table()


def evaluate_run(cfg: ExperimentConfig, run: RunDir, sizes: Sequence[int | None]) -> None:
    """Write ``metrics.parquet`` (kept if present and readable), ``table1.csv`` and
    ``recommendation.json``."""
    if run.metrics.is_file():
        try:
            read_columns(run.metrics)
        except DamagedFile:  # cut short or edited: joined again from the blocks
            say(f"{run.metrics}: damaged, joining it again from the block files")
            run.metrics.unlink()
    if not run.metrics.is_file():
        write_table(run.metrics, metrics_table(cfg, run, sizes))
    summary = run.summary()
    r_smooth = round(float(cfg.attribution.table_r), 6)
    rows = table1(summary, cfg.attribution.methods, r_smooth, Setting.of(cfg).pair_labels())
    run.write_text(run.table1, table1_csv(rows))
    e = cfg.evaluation
    advice = advise(
        summary,
        cfg.attribution.methods,
        debiased=e.debiased,
        budget=e.fidelity_budget,
        measure=e.stability_measure,
        target=e.target_halfwidth,
        training_passes=cfg.train.epochs * cfg.train.noise_draws,
    )
    write_advice(run.recommendation, advice)

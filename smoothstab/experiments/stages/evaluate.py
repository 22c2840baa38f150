"""The evaluate stage: maps in the run directory -> ``metrics.csv``, Table 1 and the sigma advice.

``metrics.csv`` (:mod:`~smoothstab.experiments.rundir.metrics_table`) has one row per (method, r,
metric, model pair or model, image): stability, SSIM, top-k IoU, rank agreement and unit-map
distance per model pair; fidelity and map norm per model; each distance and norm plain (as the paper
computes it) and, when asked, debiased (cross-half, see :mod:`smoothstab.debias` and
:mod:`smoothstab.agreement`), with the Monte-Carlo standard error in ``stderr``. No SSIM for maps
smaller than its 11x11 window (such as digits). ``map_norm`` at r = 0 (the unsmoothed map's L2 norm)
is the scale for a relative fidelity budget; a relative fidelity error is ``fidelity / map_norm`` of
these rows. Per model and image, ``rel_se`` (the map's relative Monte-Carlo standard error) and
``model_evals`` (what it cost), from map files that record them. All from the map files: no model
evaluations. The sigma advice (the knee of the trade-off curve and the most stable r within the
budget) is :mod:`~smoothstab.experiments.analysis.advice`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from smoothstab import metrics
from smoothstab.debias import debiased_distance
from smoothstab.experiments.analysis.advice import advise
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.analysis.sweep import table1
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.io.files import DamagedFile
from smoothstab.experiments.io.progress import Progress, say
from smoothstab.experiments.rundir.advice_record import write_advice
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.mapfile import MapFile
from smoothstab.experiments.rundir.metrics_table import csv_text, read_csv
from smoothstab.experiments.rundir.table1_file import table1_csv
from smoothstab.stats import SmoothStats

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import ExperimentConfig


def _mean(x: SmoothStats | torch.Tensor) -> torch.Tensor:
    return x.mean if isinstance(x, SmoothStats) else x


def _rows(
    base: dict, metric: Metric, values: torch.Tensor, stderr: torch.Tensor | None = None
) -> Iterator[dict]:
    for i, v in enumerate(values.tolist()):
        se = "" if stderr is None else float(stderr[i])
        yield {**base, "metric": str(metric), "image": i, "value": float(v), "stderr": se}


def pair_rows(
    base: dict,
    a: SmoothStats | torch.Tensor,
    b: SmoothStats | torch.Tensor,
    *,
    debiased: bool,
    topk: int,
    ranks: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Iterator[dict]:
    """Stability, SSIM, top-k IoU, rank agreement and unit-map distance rows for one model pair
    at one r; ``ranks``: both maps' :func:`~smoothstab.metrics.pixel_ranks`, if at hand."""
    est = debiased_distance(a, b)
    yield from _rows(base, Metric.STABILITY, est.plain, est.stderr)
    if debiased:
        yield from _rows(base, Metric.STABILITY_DEBIASED, est.value, est.stderr)
    ma, mb = _mean(a), _mean(b)
    # scikit-image's SSIM needs the 11x11 Gaussian window inside the map: none for 8x8 digits.
    if min(ma.shape[-2:]) >= metrics.SSIM_WIN:
        yield from _rows(base, Metric.SSIM, metrics.ssim_maps(ma, mb))
    yield from _rows(base, Metric.TOPK_IOU, metrics.topk_iou(ma, mb, k=topk))
    ra, rb = ranks or (metrics.pixel_ranks(ma), metrics.pixel_ranks(mb))
    yield from _rows(base, Metric.RANK_AGREEMENT, metrics.rank_correlation(ra, rb))
    unit = metrics.debiased_unit_distance(a, b)  # the cosine is 1 - unit^2 / 2 of these rows
    yield from _rows(base, Metric.UNIT_DISTANCE, unit.plain)
    if debiased:
        yield from _rows(base, Metric.UNIT_DISTANCE_DEBIASED, unit.value, unit.stderr)


def model_rows(
    base: dict,
    smoothed: SmoothStats | torch.Tensor,
    unsmoothed: torch.Tensor,
    *,
    debiased: bool,
) -> Iterator[dict]:
    """Fidelity rows for one model at one r, and its map's norm (at r = 0 the unsmoothed map's,
    the scale of the fidelity budget and of a relative fidelity error)."""
    est = debiased_distance(smoothed, unsmoothed)
    yield from _rows(base, Metric.FIDELITY, est.plain, est.stderr)
    if debiased:
        yield from _rows(base, Metric.FIDELITY_DEBIASED, est.value, est.stderr)
    norm = metrics.debiased_norm(smoothed)
    yield from _rows(base, Metric.MAP_NORM, norm.plain)
    if debiased:
        yield from _rows(base, Metric.MAP_NORM_DEBIASED, norm.value, norm.stderr)


def cost_rows(base: dict, file: MapFile) -> Iterator[dict]:
    """The Monte-Carlo error and the cost of one model's maps at one r (none from map files
    made before these were recorded)."""
    if file.rel_se is not None:
        yield from _rows(base, Metric.REL_SE, file.rel_se)
    if file.evals is not None:
        yield from _rows(base, Metric.MODEL_EVALS, file.evals.round())


def _load(run: RunDir, n_models: int, method: str, r: float) -> tuple[list, float, list[MapFile]]:
    """Every model's maps of ``method`` at ``r``, the absolute sigma they were made with, and
    the files."""
    files = [run.load_map(k, method, r) for k in range(n_models)]
    return [f.estimate() for f in files], files[0].sigma, files


def metric_rows(cfg: ExperimentConfig, run: RunDir, sizes: Sequence[int | None]) -> list[dict]:
    """Every per-image metric of the run: stability and similarity per pair of models of one
    training-set size, fidelity per model; ``n`` is that size (empty for given checkpoints)."""
    e = cfg.evaluation
    n_models = len(sizes)
    size = ["" if n is None else n for n in sizes]
    rows = []
    grid, pairs = cfg.attribution.noise_grid(), Setting.of(cfg).pairs()
    bar = Progress(len(cfg.attribution.methods) * len(grid), "evaluate", quiet=cfg.quiet)
    for method in cfg.attribution.methods:
        reference, _, ref_files = _load(run, n_models, method, 0.0)
        for r in grid:
            maps, sigma, files = (
                (reference, 0.0, ref_files) if r == 0 else _load(run, n_models, method, r)
            )
            base = {"setting": cfg.models.setting, "method": method, "r": r, "sigma": sigma}
            ranks = [metrics.pixel_ranks(_mean(m)) for m in maps]  # once per map, not per pair
            for i, j in pairs:
                pair = {**base, "n": size[i], "pair": f"{i}-{j}", "model": ""}
                kw = dict(debiased=e.debiased, topk=e.topk, ranks=(ranks[i], ranks[j]))
                rows += pair_rows(pair, maps[i], maps[j], **kw)
            for k in range(n_models):
                one = {**base, "n": size[k], "pair": "", "model": str(k)}
                rows += model_rows(one, maps[k], reference[k], debiased=e.debiased)
                rows += cost_rows(one, files[k])
            bar.update()
    bar.close()
    return rows


def evaluate_run(cfg: ExperimentConfig, run: RunDir, sizes: Sequence[int | None]) -> None:
    """Write ``metrics.csv`` (skipped if present and readable), ``table1.csv`` and
    ``recommendation.json``."""
    rows = None
    if run.metrics.is_file():
        try:
            rows = read_csv(run.metrics)
        except DamagedFile:  # cut short or edited: recomputed from the maps
            say(f"{run.metrics}: damaged, recomputing it from the maps")
            run.metrics.unlink()
    if rows is None:
        rows = metric_rows(cfg, run, sizes)
        run.write_text(run.metrics, csv_text(rows))
    # Summarised from the rows in hand, read or just written: floats round-trip through the
    # file exactly, so this is the summary of metrics.csv without reading it back.
    summary = Summary.from_rows(rows)
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

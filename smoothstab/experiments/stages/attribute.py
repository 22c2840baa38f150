"""The attribute stage: every model x method x noise level -> maps in the run directory.

Files (:mod:`~smoothstab.experiments.rundir.layout`): ``test_images.pt`` (the selected test images
and labels) and one :class:`~smoothstab.experiments.rundir.mapfile.MapFile` per model, method and r:
the smoothed maps and, when debiased distances are asked for, the two half means and the per-element
variance of the units. Work is cut into blocks of ``image_batch`` images; each block is written as
it finishes (a block file) and the blocks are joined into the final file, so a killed run resumes
where it stopped. Under ``torchrun`` the blocks are dealt round-robin to the ranks and rank 0 joins
them.

How one map is made, the test images, each method with the run's settings and the noise seed of each
block (:func:`~smoothstab.experiments.models.recipe.block_seed`, the one rule for every stage that
redraws this stage's noise), lives in :mod:`~smoothstab.experiments.models.recipe`, shared with the
sanity stage and ``plan``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

import smoothstab as ss
from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.io.progress import Progress
from smoothstab.experiments.models import accel
from smoothstab.experiments.models.distributed import DistInfo, barrier, rank_device
from smoothstab.experiments.models.recipe import (
    block_seed,
    evals_per_sample,
    load_test_images,
    smoothed_method,
)
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.mapfile import MapFile

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import AttributionConfig, ExperimentConfig


def attribute_blocks(
    model: nn.Module,
    name: str,
    x: torch.Tensor,
    target: ss.Target,
    rs: list[float],
    x_range: float,
    attr: AttributionConfig,
    seeds: list[ss.Seed],
    keep: bool,
) -> list[MapFile]:
    """One block's maps at the noise levels ``rs`` (with their ``seeds``). More than one
    nonzero r goes through :meth:`~smoothstab.smoothing.Smoothed.stats_at` (rows of all the
    levels packed into shared model calls); r = 0 always runs on its own (IG's reference
    quadrature may differ from the smoothed one)."""
    stats: dict[float, ss.SmoothStats] = {}
    noisy = [(r * x_range, seed) for r, seed in zip(rs, seeds, strict=True) if r > 0]
    if len(noisy) > 1:
        smoothed = smoothed_method(name, model, attr, noisy[0][0], noisy[0][1])
        packed = smoothed.stats_at(model, x, target, levels=noisy)
        stats = dict(zip([r for r in rs if r > 0], packed, strict=True))
    out = []
    for r, seed in zip(rs, seeds, strict=True):
        sigma = r * x_range
        if r not in stats:
            stats[r] = smoothed_method(name, model, attr, sigma, seed).stats(model, x, target)
        per_sample = evals_per_sample(name, attr, r)
        out.append(MapFile.from_stats(stats[r], r, sigma, keep=keep, per_sample=per_sample))
    return out


def run_attribution(
    cfg: ExperimentConfig, run: RunDir, models: list[nn.Module], info: DistInfo | None = None
) -> int:
    """Compute every missing map; returns the number of blocks this rank computed."""
    info = info or DistInfo()
    attr = cfg.attribution
    device, dtype = rank_device(attr.device, info), getattr(torch, attr.dtype)
    x_all, y_all = load_test_images(cfg, run)
    x_range = dataset_info(cfg.train).x_range
    starts = list(range(0, len(x_all), attr.image_batch))
    maps = [(k, m, r) for k in range(len(models)) for m in attr.methods for r in attr.noise_grid()]
    todo = [(*key, b) for key in maps if not run.map(*key).is_file() for b in range(len(starts))]
    # Deal the blocks before looking at block files: other ranks write theirs meanwhile, and a
    # rank whose list had shrunk would take a shifted share (blocks skipped, others repeated).
    # Final files appear only after the last barrier, so every rank sees the same ``todo``.
    mine = [t for t in todo[info.rank :: info.world_size] if not run.map(*t).is_file()]
    bar = Progress(len(mine), "attribute", quiet=cfg.quiet)
    for k, name, b, rs in _work(mine, pack=attr.pack):
        model = accel.prepare_model(models[k].to(device=device, dtype=dtype).eval(), attr)
        x = x_all[starts[b] : starts[b] + attr.image_batch].to(device=device, dtype=dtype)
        y = y_all[starts[b] : starts[b] + attr.image_batch].to(device)
        target = y if attr.target == "label" else None
        seeds = [block_seed(attr, b, k, name, r) for r in rs]
        keep = cfg.evaluation.debiased
        with accel.autocast(attr.amp, device):
            outs = attribute_blocks(model, name, x, target, rs, x_range, attr, seeds, keep)
        for r, out in zip(rs, outs, strict=True):
            accel.in_dtype(out, attr).save(run.map(k, name, r, b))
            bar.update(model=k, r=r)
    bar.close()
    barrier(info)
    if info.is_main:
        for key in maps:
            if not run.map(*key).is_file():
                run.join_map(*key, len(starts))
    barrier(info)
    return len(mine)


def _work(
    mine: list[tuple[int, str, float, int]], pack: bool
) -> list[tuple[int, str, int, list[float]]]:
    """``(model, method, block, [r, ...])``: one r each, or (packing) every r of a model,
    method and block together."""
    if not pack:
        return [(k, name, b, [r]) for k, name, r, b in mine]
    work: dict[tuple[int, str, int], list[float]] = {}
    for k, name, r, b in mine:
        work.setdefault((k, name, b), []).append(r)
    return [(k, name, b, rs) for (k, name, b), rs in work.items()]

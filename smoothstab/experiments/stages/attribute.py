"""The attribute stage: every model x method x noise level, measured while the maps are in memory.

The work is cut into image blocks of ``image_batch`` test images, per method. For one block the
stage computes every model's maps at one noise level (or, with ``pack``, at every level in shared
model calls), hands them to each per-block computation of
:data:`~smoothstab.experiments.analysis.per_image.MEASURES` with every model's unsmoothed maps
(:class:`~smoothstab.experiments.analysis.per_image.LevelMaps`), and drops them before the next
level: the Monte-Carlo halves and groups never leave the device. What it keeps of a block is one
block file (:class:`~smoothstab.experiments.rundir.blockfile.BlockFile`,
``blocks/{method}/block{b:05d}.pt``): the rows of every model pair and model at every r (a value
per image), and the mean maps of the block's figure images
(:func:`~smoothstab.experiments.models.recipe.figure_images`), and for the block's extreme images
(the one whose unsmoothed maps disagree most and least across the models, and the one least and
most reliable, chosen at r = 0) the mean of the models' unit maps and their disagreement map at
every r (what the disagreement and reliability figures draw; the extremes of the test set are the
extremes of the blocks' extremes). With ``[maps] keep`` it also keeps
map files (:class:`~smoothstab.experiments.rundir.mapfile.MapFile`: the mean maps, or everything),
block by block, joined at the end. The evaluate stage joins the blocks' rows into the metrics table.

A finished block is a file, written atomically, that says what it is and carries its own hash; a
killed run redoes at most the block each rank was working on. On resuming, every block file found
is checked against what the run expects (a planted or damaged one is said, deleted and recomputed).
Under ``torchrun`` the ranks deal the blocks round-robin, every rank holding every model; rank 0
joins the kept maps.

How one map is made, the test images, each method with the run's settings and the noise seed of each
block (:func:`~smoothstab.experiments.models.recipe.block_seed`, the one rule for every stage that
redraws this stage's noise), lives in :mod:`~smoothstab.experiments.models.recipe`, shared with the
sanity stage and ``plan``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

import smoothstab as ss
from smoothstab.experiments.analysis.per_image import LevelMaps, measure
from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.io.files import DamagedFile
from smoothstab.experiments.io.progress import Progress, say
from smoothstab.experiments.models import accel
from smoothstab.experiments.models.distributed import DistInfo, barrier, rank_device
from smoothstab.experiments.models.recipe import (
    block_identity,
    block_range,
    block_seed,
    consensus_models,
    evals_per_sample,
    figure_images,
    floor_partner,
    load_test_images,
    map_identity,
    smoothed_method,
)
from smoothstab.experiments.rundir.blockfile import BlockFile
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.mapfile import MapFile, stored
from smoothstab.views import abs_sum

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
    """One model's maps of one image block at the noise levels ``rs`` (with their ``seeds``), on
    the model's device. More than one level goes through
    :meth:`~smoothstab.smoothing.Smoothed.stats_at` (rows of all the levels packed into shared
    model calls, r = 0's one row per image among them); r = 0 runs on its own for the joint IG
    sampler (its reference quadrature is not a row of the smoothed one). ``keep``: the records
    keep the halves, variances and groups."""
    stats: dict[float, ss.SmoothStats] = {}
    noisy = [(r * x_range, seed) for r, seed in zip(rs, seeds, strict=True) if r > 0]
    exact = 0.0 in rs and noisy and not (name == "ig" and attr.ig_sampler == "joint")
    levels = noisy + ([(0.0, None)] if exact else [])
    if len(levels) > 1:
        smoothed = smoothed_method(name, model, attr, noisy[0][0], noisy[0][1])
        packed = smoothed.stats_at(model, x, target, levels=levels)
        stats = dict(zip([r for r in rs if r > 0] + [0.0] * bool(exact), packed, strict=True))
    out = []
    for r, seed in zip(rs, seeds, strict=True):
        sigma = r * x_range
        if r not in stats:
            stats[r] = smoothed_method(name, model, attr, sigma, seed).stats(model, x, target)
        per_sample = evals_per_sample(name, attr, r)
        out.append(MapFile.from_stats(stats[r], r, sigma, keep=keep, per_sample=per_sample))
    return out


@dataclasses.dataclass(frozen=True)
class _Block:
    """What measuring one image block needs besides the models: the run, its images on the
    device and which of them the figures draw."""

    cfg: ExperimentConfig
    run: RunDir
    method: str
    block: int
    x: torch.Tensor
    target: torch.Tensor | None
    n_images: int
    figures: list[int]  # positions in the block of its figure images
    labels: torch.Tensor | None = None  # the block's labels (-1: none), on the device
    predicted: list[torch.Tensor] | None = None  # per model, [B] its predicted classes


def levels_at_once(rs: list[float], pack: bool) -> list[list[float]]:
    """The noise levels held in memory together: r = 0 first, then each r (or, with ``pack``,
    every r together: their rows share model calls)."""
    nonzero = [r for r in rs if r > 0]
    return [[0.0], *([nonzero] if pack and nonzero else [[r] for r in nonzero])]


def measure_block(job: _Block, models: list[nn.Module]) -> BlockFile:
    """One image block of one method: every model's maps at every r, measured level by level and
    dropped; the rows and the figure images' mean maps, on the CPU, as a block file (with
    ``keep``, the map files of the block written on the way)."""
    cfg, method, block = job.cfg, job.method, job.block
    a, e, kept = cfg.attribution, cfg.evaluation, cfg.maps
    x_range = dataset_info(cfg.train).x_range
    ident = block_identity(cfg, method, block, job.n_images)
    pairs = Setting.of(cfg).pairs()
    consensus = consensus_models(cfg)
    same_class = e.floor_pairs == "same_class" and job.labels is not None
    partner = floor_partner(a, block, len(job.x), job.labels if same_class else None)
    rows, figure_maps, extreme_maps = [], {}, {}
    extremes: list[int] = []
    reference: list[MapFile] = []
    for levels in levels_at_once(a.noise_grid(), a.pack):
        files = [_maps(job, k, model, levels, x_range) for k, model in enumerate(models)]
        reference = reference or [f[0] for f in files]  # r = 0 comes first
        for i, r in enumerate(levels):
            at_r = [f[i] for f in files]
            level = LevelMaps(
                method,
                r,
                r * x_range,
                [f.estimate() for f in at_r],
                [f.mean for f in reference],
                [f.rel_se for f in at_r],
                [f.evals for f in at_r],
                pairs,
                e.debiased,
                e.topk,
                partner,
                consensus,
                job.predicted,
                job.labels,
            )
            rows += [(r, group) for group in measure(level)]
            if r == 0:
                extremes = extreme_images(level)
            extreme_maps[r] = _extreme_maps(level, extremes)
            for k, f in enumerate(at_r):
                figure_maps[k, r] = stored(f.mean[job.figures], kept.precision, kept.view)
                if kept.keep != "none":
                    _keep(job, k, f)
        del files
    nan = lambda g: torch.full_like(g.values, math.nan, dtype=torch.float64)  # noqa: E731
    both = torch.stack([  # one copy to the CPU for the block's every value and error
        torch.stack([g.values.double() for _, g in rows]),
        torch.stack([nan(g) if g.stderr is None else g.stderr.double() for _, g in rows]),
    ]).cpu()  # fmt: skip
    values, stderr = both[0].clone(), both[1].clone()  # a storage each, as the file keeps them
    first = ident["images"][0]
    figs = torch.stack([torch.stack([figure_maps[k, r] for r in ident["rs"]])
                        for k in range(len(models))])  # fmt: skip
    return BlockFile(
        method=method,
        block=block,
        images=tuple(ident["images"]),
        rs=tuple(ident["rs"]),
        sigmas=tuple(ident["sigmas"]),
        models=ident["models"],
        seeds=tuple(map(tuple, ident["seeds"])),
        run=ident["run"],
        metric=tuple(str(g.metric) for _, g in rows),
        r=tuple(r for r, _ in rows),
        pair=tuple("" if g.pair is None else f"{g.pair[0]}-{g.pair[1]}" for _, g in rows),
        model=tuple("" if g.model is None else str(g.model) for _, g in rows),
        has_stderr=tuple(g.stderr is not None for _, g in rows),
        values=values,
        stderr=stderr,
        figure_images=tuple(first + i for i in job.figures),
        figure_maps=figs.cpu(),
        view=kept.view,
        precision=kept.precision,
        extreme_images=tuple(first + i for i in extremes),
        extreme_maps=torch.stack([extreme_maps[r] for r in ident["rs"]]).cpu(),
    )


def extreme_images(level: LevelMaps) -> list[int]:
    """The block's images (positions) whose maps at this level disagree most and least across
    the consensus models (the debiased total where the run debiases) and whose reliability (mean
    pairwise rank agreement) is lowest and highest, each once; none with fewer than two."""
    d = level.disagreement
    if d is None:
        return []
    consensus = list(level.consensus)
    score = ss.disagreement.reliability((), ranks=[level.ranks[k] for k in consensus])
    picks = [d.total.argmax(), d.total.argmin(), score.argmin(), score.argmax()]
    return list(dict.fromkeys(int(i) for i in picks))


EXTREME_SIDE = 64
"""The kept extreme images' maps are averaged down to at most this many pixels a side (float16):
they are drawn as thumbnails, and at the ImageNet preset's 224 x 224 and 17 levels full maps would
add 55 MiB per method and 16 images (3.4 GiB at 1,000 images)."""


def extreme_factor(h: int, w: int) -> int:
    """The pooling factor that brings an ``h x w`` map to at most :data:`EXTREME_SIDE` a side."""
    return max(1, -(-max(h, w) // EXTREME_SIDE))


def _extreme_maps(level: LevelMaps, picks: list[int]) -> torch.Tensor:
    """``[len(picks), 2, H', W']`` float16: the mean unit map (its ``abs_sum`` view) and the
    disagreement map (summed over channels) of the picked images, averaged over
    :func:`extreme_factor` squares."""
    d = level.disagreement
    if d is None or not picks:
        return torch.zeros(len(picks), 2, 1, 1, dtype=torch.float16)
    idx = torch.tensor(picks, device=d.total.device)
    both = torch.stack([abs_sum(d.mean[idx]), d.pixels[idx]], dim=1)
    f = extreme_factor(*both.shape[-2:])
    if f > 1:
        both = torch.nn.functional.avg_pool2d(both, f, ceil_mode=True)
    return both.to(torch.float16)


def predict(
    models: list[nn.Module], x: torch.Tensor, attr: AttributionConfig
) -> list[torch.Tensor]:
    """Each model's predicted class of each image ``[B]``: one forward pass per model and image,
    without gradients (the maps' own passes are inside the smoothing engine); the logits found
    in the output by the methods' own rule (:func:`smoothstab.methods.logits`: a tensor, a
    Hugging Face output, a mapping or a tuple)."""
    with torch.no_grad(), accel.autocast(attr.amp, x.device):
        return [ss.methods.logits(model, x).argmax(dim=1) for model in models]


def _maps(job: _Block, k: int, model: nn.Module, levels: list[float], x_range: float):
    """Model ``k``'s maps of the block at ``levels``, in the run's dtype."""
    a = job.cfg.attribution
    seeds = [block_seed(a, job.block, k, job.method, r) for r in levels]
    keep = job.cfg.evaluation.debiased
    with accel.autocast(a.amp, job.x.device):
        out = attribute_blocks(
            model, job.method, job.x, job.target, levels, x_range, a, seeds, keep
        )
    return [accel.in_dtype(f, a) for f in out]


def _keep(job: _Block, k: int, f: MapFile) -> None:
    """Write model ``k``'s map file of the block (``[maps] keep``)."""
    cfg = job.cfg
    want = map_identity(cfg, k, job.method, f.r, job.block, job.n_images)
    f = f.means_only(cfg.maps.precision, cfg.maps.view) if cfg.maps.keep == "means" else f
    ident = {key: tuple(v) if isinstance(v, list) else v for key, v in want.items()}
    dataclasses.replace(f, **ident).save(job.run.map(k, job.method, f.r, job.block))


def _drop_damaged(cfg: ExperimentConfig, run: RunDir, n_images: int, n_blocks: int) -> None:
    """Check every block file and kept map block found against what this run expects; one that
    is not (damaged, of another place or run) is said, deleted and so recomputed."""
    a, n_models = cfg.attribution, Setting.of(cfg).n_models
    found = []
    for method in a.methods:
        for b in range(n_blocks):
            found.append(
                (run.block(method, b), BlockFile, block_identity(cfg, method, b, n_images))
            )
            if cfg.maps.keep == "none":
                continue
            for k in range(n_models):
                for r in a.noise_grid():
                    want = map_identity(cfg, k, method, r, b, n_images)
                    found.append((run.map(k, method, r, b), MapFile, want))
    for path, kind, want in found:
        if path.is_file():
            try:
                kind.load(path, want)
            except DamagedFile as e:
                say(f"{e}; recomputing it")
                path.unlink()


def _needed(cfg: ExperimentConfig, run: RunDir, method: str, b: int) -> bool:
    """Whether ``method``'s image block ``b`` is still to compute: its block file is missing, or
    a kept map file needs the block and neither it nor its block file exists."""
    if not run.block(method, b).is_file():
        return True
    if cfg.maps.keep == "none":
        return False
    return any(
        not run.map(k, method, r).is_file() and not run.map(k, method, r, b).is_file()
        for k in range(Setting.of(cfg).n_models)
        for r in cfg.attribution.noise_grid()
    )


def run_attribution(
    cfg: ExperimentConfig, run: RunDir, models: list[nn.Module], info: DistInfo | None = None
) -> int:
    """Measure every missing image block; returns the number of blocks this rank computed."""
    info = info or DistInfo()
    attr = cfg.attribution
    device, dtype = rank_device(attr.device, info), getattr(torch, attr.dtype)
    x_all, y_all = load_test_images(cfg, run)
    n_images = len(x_all)
    n_blocks = -(-n_images // attr.image_batch)
    if info.is_main:
        _drop_damaged(cfg, run, n_images, n_blocks)
    barrier(info)
    # Every block is dealt, done or not, and each rank skips its own finished ones: a rank that
    # looks at the files after another has written some still takes the same share (dealing only
    # the blocks left would shift the shares: blocks skipped, others repeated).
    blocks = [(m, b) for m in attr.methods for b in range(n_blocks)]
    mine = [t for t in blocks[info.rank :: info.world_size] if _needed(cfg, run, *t)]
    if mine:
        models = [
            accel.prepare_model(m.to(device=device, dtype=dtype).eval(), attr) for m in models
        ]
        if device.type == "cuda":  # page-locked: the blocks' copies overlap the work
            x_all, y_all = x_all.pin_memory(), y_all.pin_memory()
    figures = figure_images(y_all, cfg.evaluation.grid_images)
    predicted: dict[int, list[torch.Tensor]] = {}  # per block: every method's blocks share them
    bar = Progress(len(mine), "attribute", quiet=cfg.quiet)
    for method, b in mine:
        first, stop = block_range(attr, b, n_images)
        x = x_all[first:stop].to(device=device, dtype=dtype, non_blocking=True)
        y = y_all[first:stop].to(device, non_blocking=True)
        if b not in predicted:
            predicted[b] = predict(models, x, attr)
        job = _Block(cfg, run, method, b, x, y if attr.target == "label" else None, n_images,
                     [i - first for i in figures if first <= i < stop], y,
                     predicted[b])  # fmt: skip
        measure_block(job, models).save(run.block(method, b))
        bar.update(method=method, block=b)
    bar.close()
    barrier(info)
    if info.is_main and cfg.maps.keep != "none":
        _join_kept(cfg, run, len(models), n_images, n_blocks)
    barrier(info)
    return len(mine)


def _join_kept(cfg: ExperimentConfig, run: RunDir, n_models: int, n_images: int, n_blocks: int):
    for method in cfg.attribution.methods:
        for k in range(n_models):
            for r in cfg.attribution.noise_grid():
                blocks = [map_identity(cfg, k, method, r, b, n_images) for b in range(n_blocks)]
                if run.map(k, method, r).is_file():
                    for b in range(n_blocks):  # recomputed for another file: not needed
                        run.map(k, method, r, b).unlink(missing_ok=True)
                else:
                    run.join_map(k, method, r, blocks)

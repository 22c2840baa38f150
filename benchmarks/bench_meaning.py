"""What the per-block computations of what a similarity means cost: the streamed evaluation's
measures of one image block at one noise level, with and without them.

    OMP_NUM_THREADS=1 python benchmarks/bench_meaning.py [--models 6] [--images 24] [--size 32]
        [--groups 8] [--repeats 5]

Synthetic maps (random, with Monte-Carlo groups, as a debiased run keeps them), every pair of the
models: the time of ``measure(level, MEASURES[:3])`` (the pair, model and cost measures the run
had before) against ``measure(level)`` (with the chance floors, the disagreement totals and, at
r = 0, the predictions), and the time of picking and pooling the block's extreme images' maps.
Median of ``--repeats``. The whole attribute + evaluate stages, old code against new, are timed by
``benchmarks/ab_stages.sh`` (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from smoothstab.experiments.analysis.per_image import MEASURES, LevelMaps, measure
from smoothstab.experiments.stages.attribute import _extreme_maps, extreme_images
from smoothstab.stats import SmoothStats


def level(models: int, images: int, size: int, groups: int) -> LevelMaps:
    g = torch.Generator().manual_seed(0)
    maps = []
    for _ in range(models):
        grp = torch.randn(groups, images, 3, size, size, generator=g, dtype=torch.float64)
        mean = grp.mean(0)
        maps.append(SmoothStats(mean, None, grp[:2], None, 4 * groups, groups=grp))
    ref = [m.mean for m in maps]
    zeros = [torch.zeros(images, dtype=torch.float64)] * models
    pairs = list(itertools.combinations(range(models), 2))
    partner = torch.arange(images).roll(1)
    predicted = [torch.zeros(images, dtype=torch.long)] * models
    labels = torch.zeros(images, dtype=torch.long)
    return LevelMaps("grad", 0.1, 0.1, maps, ref, zeros, zeros, pairs, True, 20, partner,
                     tuple(range(models)), predicted, labels)  # fmt: skip


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=6)
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--groups", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()

    def fresh() -> LevelMaps:  # the cached ranks and disagreement are per level
        return level(a.models, a.images, a.size, a.groups)

    before = timed(lambda: measure(fresh(), MEASURES[:3]), a.repeats)
    after = timed(lambda: measure(fresh()), a.repeats)
    base = timed(fresh, a.repeats)
    lv = fresh()
    measure(lv)
    picks = extreme_images(lv)
    extremes = timed(lambda: _extreme_maps(lv, picks), a.repeats)
    print(
        f"{a.models} models, {a.images} images of 3x{a.size}x{a.size}, {a.groups} groups; "
        f"median of {a.repeats}, the maps' making ({base:.3f} s) subtracted"
    )
    print(f"  measures before: {before - base:.3f} s")
    print(f"  with floors, disagreement, predictions: {after - base:.3f} s "
          f"({(after - base) / (before - base):.2f}x)")  # fmt: skip
    print(f"  extreme images' maps: {extremes:.4f} s")


if __name__ == "__main__":
    main()

"""Packed attribution against one noise level at a time: wall time of the same maps.

For one block of images, ``Smoothed.stats_at`` (every noise level's rows in shared model calls)
against a ``.stats`` call per level, interleaved, median of ``--repeats`` runs; the maps are the
same (tests/core/test_packing.py). Packing helps where one level's rows leave a chunk part-empty:
few images or draws per level against a large ``batch_size`` (a GPU's).

    python benchmarks/bench_packing.py [--device cuda] [--model small_cnn|resnet18]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import smoothstab as ss
from smoothstab.experiments.models.architectures import build_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--levels", type=int, default=10)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    device = torch.device(a.device)
    torch.manual_seed(0)
    model = build_model(a.model, num_classes=10, in_channels=3).to(device).eval()
    x = torch.rand(a.images, 3, a.size, a.size, device=device)
    levels = [(0.02 * (i + 1), i) for i in range(a.levels)]
    sm = ss.smooth(ss.grad, 0.1, a.samples, batch_size=a.batch_size, seed=0)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def separate() -> None:
        for sigma, seed in levels:
            ss.smooth(ss.grad, sigma, a.samples, batch_size=a.batch_size, seed=seed).stats(model, x)

    def packed() -> None:
        sm.stats_at(model, x, None, levels=levels)

    times: dict[str, list[float]] = {"separate": [], "packed": []}
    separate(), packed()  # warm-up
    for _ in range(a.repeats):
        for name, fn in (("separate", separate), ("packed", packed)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    sep, pk = (statistics.median(times[k]) for k in ("separate", "packed"))
    rows = a.images * a.samples
    calls_sep = a.levels * -(-rows // a.batch_size)
    calls_pk = -(-(rows * a.levels) // a.batch_size)
    print(
        f"{a.model} {a.size}px on {device}: {a.levels} levels x {a.images} images x {a.samples} "
        f"draws, batch_size {a.batch_size}: separate {sep * 1e3:.1f} ms ({calls_sep} calls), "
        f"packed {pk * 1e3:.1f} ms ({calls_pk} calls): {sep / pk:.2f}x"
    )


if __name__ == "__main__":
    main()

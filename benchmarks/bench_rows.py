"""Rows per model call: wall time and peak memory of the engine against its ``batch_size``.

    python benchmarks/bench_rows.py [--device cuda] [--repeats 5] [--no-memory]

Two measurements on the quickstart's small CNN (random weights, 32x32 RGB inputs):

* speed: the joint smoothed-IG sampler, 200 draws x 8 images (1,600 rows), and Smooth-Grad,
  64 draws x 8 images, at batch sizes 64 ... 1600 (1600: one call, what ``batch_size=None``
  meant before it defaulted to ``DEFAULT_BATCH_SIZE``); median of ``--repeats`` runs;
* memory: ``smooth(grad, 0.5, tol=0.01)`` on 64 images, whose last rounds hold hundreds of rows
  per image, with the default and with one call per round (a fresh process each: peak RSS).

Results, with the conditions they were measured in, are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import smoothstab as ss
from smoothstab.experiments.models.architectures import build_model
from smoothstab.montecarlo import DEFAULT_BATCH_SIZE

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from memory import peak_rss_mib, reset_peak_rss  # noqa: E402

SIZES = (64, 128, 256, 512, 1024, 1600)
UNBOUNDED = 10**9  # one call per round, as batch_size=None was


def model_on(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small_cnn", num_classes=10, in_channels=3).eval().to(device)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speed(device: str, repeats: int) -> list[dict]:
    model = model_on(device)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    rows = []
    for size in SIZES:
        ig = ss.smoothed_ig(0.5, 200, sampler="joint", seed=0, batch_size=size)
        sg = ss.smooth(ss.grad, 0.5, 64, seed=0, batch_size=size)
        rows.append(
            {
                "batch_size": size,
                "joint_ig_200x8_s": timed(lambda ig=ig: ig(model, x), repeats),
                "smoothgrad_64x8_s": timed(lambda sg=sg: sg(model, x), repeats),
            }
        )
    return rows


def memory_child(device: str, batch_size: int | None) -> None:
    model = model_on(device)
    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(2)).to(device)
    reset_peak_rss()
    t0 = time.perf_counter()
    st = ss.smooth(ss.grad, 0.5, tol=0.01, seed=0, batch_size=batch_size).stats(model, x)
    seconds = time.perf_counter() - t0
    out = {"peak_rss_mib": peak_rss_mib(), "seconds": seconds, "max_units": int(st.n_units)}
    print(json.dumps(out))


def memory(device: str) -> list[dict]:
    rows = []
    for label, size in (("default", None), ("one call per round", UNBOUNDED)):
        arg = "none" if size is None else str(size)
        cmd = [sys.executable, __file__, "--device", device, "--memory-child", arg]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append({"batch_size": label, **json.loads(done.stdout.strip().splitlines()[-1])})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-memory", action="store_true", help="the speed sweep only")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child is not None:
        memory_child(args.device, None if args.memory_child == "none" else int(args.memory_child))
        return
    print(f"DEFAULT_BATCH_SIZE = {DEFAULT_BATCH_SIZE}; torch threads {torch.get_num_threads()}")
    print("| batch_size | joint IG 200 x 8 (s) | Smooth-Grad 64 x 8 (s) |")
    print("|---|---|---|")
    for r in speed(args.device, args.repeats):
        print(f"| {r['batch_size']} | {r['joint_ig_200x8_s']:.3f} | {r['smoothgrad_64x8_s']:.3f} |")
    if args.no_memory:
        return
    print()
    print("| batch_size | peak RSS (MiB) | seconds | most units of an image |")
    print("|---|---|---|---|")
    for r in memory(args.device):
        print(f"| {r['batch_size']} | {r['peak_rss_mib']:.0f} | {r['seconds']:.1f} | "
              f"{r['max_units']} |")  # fmt: skip


if __name__ == "__main__":
    main()

"""The attribute and evaluate stages against a bare batched forward+backward of the same rows.

    python benchmarks/bench_stream_gpu.py [--device cuda] [--model resnet50] [--size 224]
        [--images 64] [--samples 32] [--models 2] [--batch-size 512] [--json FILE]

The paper's scale on one GPU (the defaults): ResNet-50 at 224 px, 32 draws per map, 2 models,
Smooth-Grad at r in {0, 0.1, 0.2, 0.3} (every level packed into shared calls with r = 0's rows,
``attribution.pack``; channels_last), 64 random test images in blocks of 16, 512 rows per model
call. For each precision, float32 and bf16 autocast, in one process:

* **stage**: ``run_attribution`` (every block measured while its maps are in memory, block
  files written) and the evaluate stage's join of the rows into ``metrics.parquet``, timed
  after a warm-up run of one block;
* **bare**: the same number of rows through the same models, in chunks of the same size, as a
  plain loop (noisy copies of the images made on the device, forward, the target logit's
  backward to the input; nothing kept), under the same autocast and memory format.

Draws per second are the smoothed rows (draws x images x levels x models) over the wall time; the
ratio stage / bare is what the stage's own work costs. The goal (issue "The paper at ImageNet
scale"): at least 0.5x the bare loop at 32 draws, and at least 5,000 draws/s on an H100/H200 in
bf16. ``--device cpu --model small_cnn --size 32 --images 16 --samples 8`` checks that the script
runs on a CPU in seconds (numbers meaningless for the goal).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

LEVELS = (0.1, 0.2, 0.3)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config(args: argparse.Namespace, amp: str, images: int):
    from smoothstab.experiments.config.load import load_config

    sets = [
        f"train.parts={args.models}",
        "train.part_size=800",
        "attribution.methods=['grad']",
        f"attribution.stability_r=[0, {', '.join(map(str, LEVELS))}]",
        "attribution.fidelity_r=[0]",
        f"attribution.table_r={LEVELS[0]}",
        f"attribution.n_samples={args.samples}",
        f"attribution.n_images={images}",
        "attribution.image_batch=16",
        f"attribution.batch_size={args.batch_size}",
        f"attribution.device={args.device}",
        f"attribution.amp={amp}",
        "attribution.channels_last=true",
        "attribution.pack=true",
        "quiet=true",
    ]
    return load_config("quickstart", sets)


def stage(args: argparse.Namespace, amp: str, nets: list, x: torch.Tensor) -> dict:
    """The two stages on ``x``, after a warm-up of one block; seconds and rows."""
    from smoothstab.experiments.rundir.layout import RunDir
    from smoothstab.experiments.rundir.metrics_table import write_table
    from smoothstab.experiments.stages import attribute, evaluate

    device = torch.device(args.device)
    rows = [0]
    hooks = [n.register_forward_hook(lambda m, i, o: rows.__setitem__(0, rows[0] + len(i[0])))
             for n in nets]  # fmt: skip
    out = {}
    for label, images in (("warm-up", 16), ("timed", len(x))):
        cfg = config(args, amp, images)
        run = RunDir(Path(tempfile.mkdtemp(prefix="bench_stream_")))
        run.save_test_images(x[:images].cpu(), torch.arange(images) % 10, list(range(images)))
        rows[0] = 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        start = time.perf_counter()
        attribute.run_attribution(cfg, run, nets)
        write_table(run.metrics, evaluate.metrics_table(cfg, run, [800] * len(nets)))
        _sync(device)
        out[label] = time.perf_counter() - start
    for h in hooks:
        h.remove()
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"seconds": out["timed"], "rows": rows[0], "peak_mib": peak}


def bare(args: argparse.Namespace, amp: str, nets: list, x: torch.Tensor, rows: int) -> float:
    """Seconds for ``rows`` rows of noisy images through ``nets`` in chunks of ``batch_size``:
    forward, the target logit's backward to the input, under the stage's autocast."""
    from smoothstab.experiments.models import accel

    device = torch.device(args.device)
    x = x.to(device)
    target = torch.arange(len(x), device=device) % 10
    per_net = rows // len(nets)

    def loop() -> None:
        for net in nets:
            done = 0
            while done < per_net:
                n = min(args.batch_size, per_net - done)
                idx = torch.arange(done, done + n, device=device) % len(x)
                xs = (x[idx] + 0.1 * torch.randn_like(x[idx])).requires_grad_(True)
                with accel.autocast(amp, device):
                    logits = net(xs)
                grad = torch.autograd.grad(logits.gather(1, target[idx, None]).sum(), xs)[0]
                del grad
                done += n

    loop()  # warm-up
    _sync(device)
    start = time.perf_counter()
    loop()
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="resnet50")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--models", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    from smoothstab.experiments.models.architectures import build_model

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    print(f"{name}, torch {torch.__version__}, cudnn/matmul TF32 {tf32}", file=sys.stderr)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.images, 3, args.size, args.size, generator=g)
    torch.manual_seed(0)
    nets = [
        build_model(args.model, num_classes=10).eval().to(device, memory_format=torch.channels_last)
        for _ in range(args.models)
    ]
    draws = args.samples * args.images * len(LEVELS) * args.models
    results = []
    for amp in ("none", "bf16"):
        s = stage(args, amp, nets, x)
        b = bare(args, amp, nets, x, s["rows"])
        res = {
            "amp": amp,
            "stage_s": s["seconds"],
            "bare_s": b,
            "rows": s["rows"],
            "draws": draws,
            "stage_draws_per_s": draws / s["seconds"],
            "bare_draws_per_s": draws / b,
            "ratio": b / s["seconds"],
            "peak_mib": s["peak_mib"],
        }
        results.append(res)
        print(json.dumps(res), file=sys.stderr, flush=True)
    what = f"{args.model}, {args.size} px, {args.samples} draws, {args.models} models"
    print(f"### attribute + evaluate against a bare forward+backward ({what}, {name})\n")
    print(
        "| precision | stage s | stage draws/s | bare s | bare draws/s | stage / bare | peak MiB |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        peak = "" if r["peak_mib"] is None else f"{r['peak_mib']:,.0f}"
        print(
            f"| {'float32' if r['amp'] == 'none' else 'bf16'} | {r['stage_s']:.2f} | "
            f"{r['stage_draws_per_s']:,.0f} | {r['bare_s']:.2f} | "
            f"{r['bare_draws_per_s']:,.0f} | {r['ratio']:.2f} | {peak} |"
        )
    worst, bf16 = min(r["ratio"] for r in results), results[-1]["stage_draws_per_s"]
    print(f"\ngoal: stage / bare >= 0.5 ({worst:.2f} at worst); >= 5,000 draws/s in bf16 on an "
          f"H100/H200 ({bf16:,.0f})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""Wall time and peak memory of the attribute and evaluate stages against images, n_samples,
image size and the number of models.

    python benchmarks/bench_scaling.py [--device cpu|cuda] [--model NAME] [--size PX]
        [--sweeps images,samples,size,models] [--json FILE]

On a GPU, the paper's scale: ``--device cuda --model resnet50 --size 224``. The peak-memory
check of the streamed stage, 4x the images: ``--sweeps images`` (16 -> 64 images, and 8, 32, 128).

Each point runs ``attribute.run_attribution`` (the stage itself: image blocks measured while their
maps are in memory, block files) and the evaluate stage's join into the metrics table, in a fresh
process, on random test images of the given size (written as the run's ``test_images.pt``, so no
dataset is read) with small CNNs, Simple-Grad and joint smoothed IG at r in {0, 0.2}, blocks of
16 images and chunks of 256 rows. One parameter moves at a time from the base point (16 images,
32 samples, 32 px, 2 models). Memory: on CPU the process's peak RSS during the stages (VmHWM,
reset just before them) above its RSS just before them (torch, the models and the images are in
the baseline); on CUDA ``max_memory_allocated``. Chunks bound the rows in flight and blocks the
images, so memory should stay flat in n_samples and in images, and grow with image size (a
block's maps and activations) and with the models (a block holds every model's maps at one r).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from memory import peak_rss_mib, reset_peak_rss, rss_mib

BASE = {"images": 16, "samples": 32, "size": 32, "models": 2}
SWEEPS = {
    "images": [8, 32, 64, 128],
    "samples": [8, 128, 512],
    "size": [64, 128],
    "models": [1, 4],
}


def point(images: int, samples: int, size: int, models: int, device: str, model: str) -> dict:
    from smoothstab.experiments.config.load import load_config
    from smoothstab.experiments.models.architectures import build_model
    from smoothstab.experiments.rundir.layout import RunDir
    from smoothstab.experiments.rundir.metrics_table import write_table
    from smoothstab.experiments.stages import attribute, evaluate

    sets = [
        f"train.parts={models}",  # the models below, compared in pairs
        "train.part_size=800",
        "attribution.methods=['grad', 'ig']",
        "attribution.ig_sampler=joint",
        "attribution.stability_r=[0, 0.2]",
        "attribution.fidelity_r=[0, 0.2]",
        "attribution.table_r=0.2",
        f"attribution.n_samples={samples}",
        f"attribution.n_images={images}",
        "attribution.image_batch=16",
        "attribution.batch_size=256",
        f"attribution.device={device}",
        "quiet=true",
    ]
    cfg = load_config("quickstart", sets)
    run = RunDir(Path(tempfile.mkdtemp(prefix="bench_scaling_")))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(images, 3, size, size, generator=g)
    run.save_test_images(x, torch.arange(images) % 10, list(range(images)))
    torch.manual_seed(0)
    nets = [build_model(model, num_classes=10).eval() for _ in range(models)]
    seen = [0]
    for net in nets:
        net.register_forward_hook(lambda m, i, o: seen.__setitem__(0, seen[0] + len(i[0])))
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    reset_peak_rss()
    before = rss_mib()
    start = time.perf_counter()
    attribute.run_attribution(cfg, run, nets)
    write_table(run.metrics, evaluate.metrics_table(cfg, run, [800] * models))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    wall = time.perf_counter() - start
    shutil.rmtree(run.root, ignore_errors=True)
    peak = (
        torch.cuda.max_memory_allocated(dev) / 2**20
        if dev.type == "cuda"
        else peak_rss_mib() - before
    )
    maps = models * 2 * 2 * images  # models x methods x noise levels x images
    return {"wall_s": wall, "peak_mib": peak, "rows": seen[0], "maps": maps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="small_cnn", help="small_cnn (any size) or torchvision")
    p.add_argument("--size", type=int, default=BASE["size"], help="the base point's image size")
    p.add_argument("--json", type=Path)
    p.add_argument("--sweeps", default=",".join(SWEEPS), help="which parameters to move")
    p.add_argument("--point", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.point:
        print(json.dumps(point(**json.loads(args.point), device=args.device, model=args.model)))
        return
    results = []
    base = {**BASE, "size": args.size}
    sweeps = {
        **SWEEPS,
        "size": [2 * args.size, 4 * args.size]
        if args.size <= 64
        else [args.size // 2, 2 * args.size],
    }
    todo = [("base", args.size, dict(base))]
    for name, values in sweeps.items():
        if name not in args.sweeps.split(","):
            continue
        todo += [(name, v, {**base, name: v}) for v in values]
    for name, value, params in todo:
        cmd = [sys.executable, __file__, "--point", json.dumps(params), "--device", args.device]
        cmd += ["--model", args.model]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        res = json.loads(out.stdout.strip().splitlines()[-1])
        results.append({"vary": name, **params, **res})
        print(f"{name}={value}: {res}", file=sys.stderr, flush=True)
    mem = "peak MiB (max_memory_allocated)" if args.device.startswith("cuda") else "peak MiB (RSS)"
    where = f"{args.model}, {args.device}, torch {torch.__version__}"
    print(f"### attribute + evaluate scaling ({where})\n")
    head = "| varied | images | n_samples | size | models | rows | wall s | rows/s | maps/s |"
    print(f"{head} {mem} |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['vary']} | {r['images']} | {r['samples']} | {r['size']} | {r['models']} | "
            f"{r['rows']:,} | {r['wall_s']:.2f} | {r['rows'] / r['wall_s']:,.0f} | "
            f"{r['maps'] / r['wall_s']:.1f} | {r['peak_mib']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""Speed and memory of smoothing, against a bare batched forward+backward and against Captum.

    python benchmarks/bench_smooth.py [--device cpu|cuda] [--quick]

Prints markdown tables (copied into benchmarks/RESULTS.md with the command and machine).
1. smooth(grad) on a torchvision ResNet-18 at 32 and 112 px: time vs a bare batched
   forward+backward over the same noisy inputs (noise pre-drawn, not timed) and vs Captum
   NoiseTunnel(Saliency) in the same run.
2. Peak memory of smooth(grad) for growing n_samples at a fixed batch_size (fresh subprocess each).
3. Smoothed IG at equal Monte-Carlo error against a high-sample reference: the joint estimator
   with the fewest samples whose error is <= that of Captum NoiseTunnel(IntegratedGradients)
   with 100 draws x 20 steps, and the time ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torchvision

import smoothstab as ss


def resnet18(device):
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).to(device).eval()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fns: dict, repeats: int, device) -> dict:
    """Median wall time of each ``fn()``, the functions interleaved round-robin after one
    warm-up each, so that drifts in machine load hit them alike."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bare_grad(model, xs, target, batch_size):
    """The floor: one forward+backward per chunk of pre-drawn noisy rows."""
    for start in range(0, len(xs), batch_size):
        xb = xs[start : start + batch_size].detach().requires_grad_(True)
        score = model(xb).gather(1, target[start : start + batch_size, None]).sum()
        torch.autograd.grad(score, xb)


def smoothgrad_speed(device, size, n_images, n_samples, batch_size, repeats):
    from captum.attr import NoiseTunnel, Saliency

    model = resnet18(device)
    x = torch.randn(n_images, 3, size, size, device=device)
    target = torch.arange(n_images, device=device) % 10
    sigma = 0.15
    xs = x.repeat(n_samples, 1, 1, 1) + sigma * torch.randn(
        n_samples * n_images, 3, size, size, device=device
    )
    rows_target = target.repeat(n_samples)
    ours = ss.smooth(ss.grad, sigma, n_samples, batch_size=batch_size, seed=0)
    nt = NoiseTunnel(Saliency(model))
    t = timed(
        {
            "bare": lambda: bare_grad(model, xs, rows_target, batch_size),
            "ours": lambda: ours(model, x, target),
            "captum": lambda: nt.attribute(
                x,
                target=target,
                nt_type="smoothgrad",
                nt_samples=n_samples,
                stdevs=sigma,
                nt_samples_batch_size=max(1, batch_size // n_images),
                abs=False,
            ),
        },
        repeats,
        device,
    )
    t_bare, t_ours, t_captum = t["bare"], t["ours"], t["captum"]
    return dict(
        size=size,
        images=n_images,
        samples=n_samples,
        batch_size=batch_size,
        bare_s=t_bare,
        ours_s=t_ours,
        captum_s=t_captum,
        ours_over_bare=t_ours / t_bare,
        ours_over_captum=t_ours / t_captum,
    )


def peak_memory_child(device: str, n_samples: int, batch_size: int) -> float:
    """Run in a subprocess: peak memory (MiB) of one smooth(grad) call."""
    import resource

    dev = torch.device(device)
    model = resnet18(dev)
    x = torch.randn(4, 3, 128, 128, device=dev)  # 128 draws at once would be ~100 MiB of input
    target = torch.arange(4, device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ss.smooth(ss.grad, 0.15, n_samples, batch_size=batch_size, seed=0)(model, x, target)
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory(device, counts, batch_size):
    rows = []
    for n in counts:
        code = (
            "import sys; sys.path.insert(0, 'benchmarks'); import bench_smooth as b; "
            f"print(b.peak_memory_child({str(device)!r}, {n}, {batch_size}))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        rows.append(dict(samples=n, batch_size=batch_size, peak_mib=float(out.stdout.split()[-1])))
    return rows


def smoothed_ig_equal_error(device, size, n_images, repeats):
    """Joint vs Captum NoiseTunnel(IG, 100 x 20) at equal error to a high-sample reference."""
    from captum.attr import IntegratedGradients, NoiseTunnel

    model = resnet18(device)
    x = torch.randn(n_images, 3, size, size, device=device)
    target = torch.arange(n_images, device=device) % 10
    sigma, batch = 0.15, 200

    def joint(n, seed):
        return ss.smoothed_ig(sigma, n, sampler="joint", batch_size=batch, seed=seed)(
            model, x, target
        )

    def captum():
        return NoiseTunnel(IntegratedGradients(model)).attribute(
            x,
            target=target,
            nt_type="smoothgrad",
            nt_samples=100,
            stdevs=sigma,
            nt_samples_batch_size=max(1, batch // (20 * n_images)),
            n_steps=20,
            internal_batch_size=batch,
        )

    reference = joint(16000, seed=12345)
    err = lambda m: (m - reference).flatten(1).norm(dim=1).mean().item()  # noqa: E731
    torch.manual_seed(0)
    captum_err = statistics.mean(err(captum()) for _ in range(2))
    n = 25
    while True:
        joint_err = statistics.mean(err(joint(n, seed=s)) for s in range(3))
        if joint_err <= captum_err or n >= 2000:
            break
        n *= 2
    t = timed({"captum": captum, "joint": lambda: joint(n, seed=0)}, repeats, device)
    t_captum, t_joint = t["captum"], t["joint"]
    return dict(
        size=size,
        images=n_images,
        captum_evals=2000,
        captum_err=captum_err,
        joint_samples=n,
        joint_err=joint_err,
        captum_s=t_captum,
        joint_s=t_joint,
        speedup=t_captum / t_joint,
    )


def table(rows):
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    big = device.type == "cuda"
    repeats = 1 if args.quick else 15
    speed = [
        smoothgrad_speed(
            device, 32, 16 if big else 8, 64 if big else 16, 256 if big else 64, repeats
        ),
        smoothgrad_speed(
            device, 112, 16 if big else 4, 32 if big else 8, 128 if big else 16, repeats
        ),
    ]
    memory = peak_memory(device, [8, 32, 128] if not args.quick else [8, 32], 16)
    ig = [smoothed_ig_equal_error(device, 32, 8 if big else 2, repeats)]
    name, threads = torch.cuda.get_device_name() if big else "CPU", torch.get_num_threads()
    print(f"device: {device} ({name}), torch {torch.__version__}, threads {threads}")
    for name, rows in (
        ("smooth(grad) speed", speed),
        ("peak memory", memory),
        ("smoothed IG at equal error", ig),
    ):
        print(f"\n### {name}\n\n{table(rows)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(speed=speed, memory=memory, ig=ig), f, indent=1)


if __name__ == "__main__":
    main()

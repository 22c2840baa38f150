"""A tolerance instead of a sample count: model evaluations and wall time to a given accuracy.

    python benchmarks/bench_adaptive.py [--device cpu|cuda] [--quick] [--work DIR]
    python benchmarks/bench_adaptive.py --sweep-antithetic [--work DIR]   (part 2, tol + pairs)

Prints markdown tables (copied into benchmarks/RESULTS.md with the command and machine).

1. Per model (the quickstart's small CNN trained on shapes; a torchvision ResNet-18 with random
   weights at 32 and 112 px, shapes test images upsampled), Smooth-Grad at r = 0.15: against a
   high-sample reference (another seed), the worst image's relative error
   ``||map - ref|| / ||ref||`` of fixed n = 5 (Captum's NoiseTunnel default), 25 (PAIR's),
   100 (the paper's); the smallest fixed n whose worst-image error is within 5% / 2% (and stays
   there for every larger n up to the cap: the fixed draws are prefixes of one canonical stream,
   so every n costs one run); and ``smooth(..., tol=E)`` (no reference needed to pick it) and
   ``tol=E`` with antithetic pairs: evaluations spent, worst error reached, wall time. Errors
   have the reference's own Monte-Carlo error taken out (``err^2 - ||se_ref||^2``).
2. The quickstart's sweep (its methods, r grid, IG steps, images; two of its models): model
   evaluations with the paper's fixed 100 draws per map, and with a tolerance equal to the
   precision those 100 draws report -- (a) one tolerance, the worst map's relative standard
   error, and (b) per method and r, the worst image's -- so every map reports at least the
   precision of the fixed run.
3. Samplers beyond antithetic pairs, measured before any is offered: at n = 32 draws, the mean
   squared error of Smooth-Grad against the reference over independent replicates, for iid
   draws, antithetic pairs, orthogonal Gaussian blocks (each image's 32 draws orthogonalised,
   norms redrawn from the chi distribution: each draw still exactly N(0, I)) and randomised QMC
   (scrambled Sobol points through the inverse normal CDF on a random 16-dimensional subspace
   per image, iid normal on its complement: again exactly N(0, I)). Ratios > 1: fewer
   evaluations for the same error.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

import smoothstab as ss
from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.models.architectures import cam_layer
from smoothstab.experiments.models.data import load_dataset
from smoothstab.experiments.models.training import load_trained

R = 0.15
TARGETS = (0.05, 0.02)
QS_GRID = (0.004, 0.016, 0.036, 0.064, 0.1, 0.144, 0.196, 0.256, 0.324, 0.4)
QS_IG_STEPS = 10


def quickstart_models(work: Path, n: int = 2) -> list[torch.nn.Module]:
    """Two quickstart CNNs (shapes, 800 images each, the quickstart's recipe), trained once."""
    if not all((work / f"model_{p}.pt").is_file() for p in range(n)):
        sets = [f"train.parts={n}", "train.part_size=[800]"]
        cmd = [sys.executable, "-m", "smoothstab", "run", "quickstart", "--out", str(work)]
        cmd += ["--quiet", "--stages", "train", *(a for s in sets for a in ("--set", s))]
        subprocess.run(cmd, check=True)
    return [load_trained(work / f"model_{p}.pt") for p in range(n)]


def shapes_images(n: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("shapes", root=None, train=False, seed=0)
    x = torch.stack([data[i][0] for i in range(n)])
    y = torch.tensor([int(data[i][1]) for i in range(n)])
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x, y


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def prefix_errors(model, x, y, sigma, n_max, ref, ref_se2, seed, batch):
    """``[n_max, B]`` relative errors of the fixed-n maps for n = 1..n_max (one stream)."""
    eps = ss.noise_draws(x, n_max, seed=seed)
    total = torch.zeros_like(ref)
    out = []
    ref_norm2 = ref.flatten(1).square().sum(1)
    step = max(1, batch // len(x))
    for j0 in range(0, n_max, step):
        k = min(step, n_max - j0)
        xs = (x[None] + sigma * eps[j0 : j0 + k]).flatten(0, 1)
        g = ss.grad(model, xs, y.repeat(k)).double().view(k, *x.shape)
        for i in range(k):
            total += g[i]
            err2 = (total / (j0 + i + 1) - ref).flatten(1).square().sum(1) - ref_se2
            out.append((err2.clamp(min=0) / ref_norm2).sqrt())
    return torch.stack(out)


def reference(model, x, y, sigma, n_ref, batch):
    st = ss.smooth(ss.grad, sigma, n_ref, seed=12345, batch_size=batch).stats(model, x, y)
    return st.mean.double(), st.mean_var.double().flatten(1).sum(1)


def rel_error(maps, ref, ref_se2):
    err2 = (maps.double() - ref).flatten(1).square().sum(1) - ref_se2
    return (err2.clamp(min=0) / ref.flatten(1).square().sum(1)).sqrt()


def timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def per_model(
    name, model, x, y, sigma, n_max, n_ref, batch, device, targets=TARGETS
) -> list[list[str]]:
    ref, ref_se2 = reference(model, x, y, sigma, n_ref, batch)
    errs = prefix_errors(model, x, y, sigma, n_max, ref, ref_se2, 0, batch)
    worst = errs.max(dim=1).values  # [n_max]
    b = len(x)
    rows = []
    for n in (5, 25, 100):
        if n <= n_max:
            rows.append([name, f"fixed n = {n}", "-", f"{n * b}", f"{worst[n - 1]:.3f}", "-"])
    for target in targets:
        ok = (worst <= target).flip(0).cumprod(0).flip(0).bool()  # within from n on
        n_fix = int(ok.nonzero()[0]) + 1 if ok.any() else None
        if n_fix is None:
            rows.append([name, f"fixed n: none <= {n_max}", f"{target:g}", "-", "-", "-"])
            fixed_evals = None
        else:
            smooth = ss.smooth(ss.grad, sigma, n_fix, seed=0, batch_size=batch)
            _, sec = timed(lambda s=smooth: s(model, x, y), device)
            fixed_evals = n_fix * b
            rows.append(
                [name, f"smallest fixed n = {n_fix}", f"{target:g}", f"{fixed_evals}",
                 f"{worst[n_fix - 1]:.3f}", f"{sec:.2f}"]
            )  # fmt: skip
        for label, anti in (("tol", False), ("tol + antithetic", True)):
            sm = ss.smooth(
                ss.grad, sigma, tol=target, max_samples=4 * n_max, seed=0, batch_size=batch,
                antithetic=anti,
            )  # fmt: skip
            st, sec = timed(lambda s=sm: s.stats(model, x, y), device)
            evals = int(st.draws_per_image.sum())
            err = rel_error(st.mean, ref, ref_se2).max().item()
            ratio = f" ({fixed_evals / evals:.1f}x fewer)" if fixed_evals else ""
            rows.append(
                [name, f"{label} = {target:g}", f"{target:g}", f"{evals}{ratio}", f"{err:.3f}",
                 f"{sec:.2f}"]
            )  # fmt: skip
    return rows


def sweep(models, x, y, x_range, batch, n_fixed=100, antithetic=False) -> list[list[str]]:
    """The quickstart sweep: fixed ``n_fixed`` draws vs a tolerance at the same precision
    (the tolerance runs with antithetic pairs when asked; the fixed run never)."""
    methods = {
        "grad": lambda m: ss.grad,
        "ig": lambda m: functools.partial(ss.integrated_gradients, steps=QS_IG_STEPS),
        "gradcam": lambda m: functools.partial(ss.grad_cam, layer=cam_layer(m)),
        "gradcampp": lambda m: functools.partial(ss.grad_cam_pp, layer=cam_layer(m)),
    }
    per_sample = {"grad": 1, "ig": QS_IG_STEPS, "gradcam": 1, "gradcampp": 1}
    fixed: dict = {}
    for name, make in methods.items():
        for k, model in enumerate(models):
            for r in QS_GRID:
                sm = ss.smooth(make(model), r * x_range, n_fixed, seed=k, batch_size=batch)
                rel = sm.stats(model, x, y).rel_se
                fixed[(name, k, r)] = rel
    one_tol = max(float(v.max()) for v in fixed.values())
    out = []
    totals = {"fixed": 0, "one": 0, "per": 0}
    for name, make in methods.items():
        spent = {"fixed": 0, "one": 0, "per": 0}
        worst = {"one": 0.0, "per": 0.0}
        for k, model in enumerate(models):
            for r in QS_GRID:
                spent["fixed"] += n_fixed * len(x) * per_sample[name]
                level_tol = max(float(fixed[(name, kk, r)].max()) for kk in range(len(models)))
                for key, tol in (("one", one_tol), ("per", level_tol)):
                    sm = ss.smooth(
                        make(model), r * x_range, tol=tol, seed=k, batch_size=batch,
                        antithetic=antithetic,
                    )  # fmt: skip
                    st = sm.stats(model, x, y)
                    spent[key] += int(st.draws_per_image.sum()) * per_sample[name]
                    worst[key] = max(worst[key], float(st.rel_se.max()))
        for key in totals:
            totals[key] += spent[key]
        out.append(
            [name, f"{spent['fixed']}", f"{spent['one']} ({spent['fixed'] / spent['one']:.1f}x)",
             f"{spent['per']} ({spent['fixed'] / spent['per']:.1f}x)",
             f"{worst['one']:.3f} / {worst['per']:.3f}"]
        )  # fmt: skip
    out.append(
        ["all", f"{totals['fixed']}", f"{totals['one']} ({totals['fixed'] / totals['one']:.1f}x)",
         f"{totals['per']} ({totals['fixed'] / totals['per']:.1f}x)", f"tol = {one_tol:.3f}"]
    )  # fmt: skip
    return out


def sampler_draws(kind: str, x: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``[n, B, ...]`` draws, each marginally N(0, I), by sampler ``kind``."""
    b, d = x.shape[0], x[0].numel()
    kw = dict(generator=gen, dtype=torch.float64)
    if kind == "iid":
        z = torch.randn(n, b, d, **kw)
    elif kind == "antithetic":
        g = torch.randn(n // 2, b, d, **kw)
        z = torch.stack([g, -g], dim=1).flatten(0, 1)
    elif kind == "orthogonal":  # exact orthogonality within each image's block of n draws
        q, _ = torch.linalg.qr(torch.randn(b, d, n, **kw))  # [b, d, n] orthonormal columns
        norms = torch.randn(b, n, d, **kw).norm(dim=2)  # chi_d, independent of the directions
        z = (q * norms[:, None, :]).permute(2, 0, 1)
    elif kind == "qmc":
        k = 16
        z = torch.empty(n, b, d, dtype=torch.float64)
        for i in range(b):
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
            sobol = torch.quasirandom.SobolEngine(k, scramble=True, seed=seed)
            u = sobol.draw(n, dtype=torch.float64)
            s = torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12))  # [n, k]
            q, _ = torch.linalg.qr(torch.randn(d, k, **kw))  # a random k-dim subspace
            g = torch.randn(n, d, **kw)
            z[:, i] = s @ q.T + g - (g @ q) @ q.T
    else:
        raise ValueError(kind)
    return z.view(n, *x.shape).to(x.dtype)


def samplers(name, model, x, y, sigma, n_ref, batch, reps, n=32) -> list[list[str]]:
    ref, ref_se2 = reference(model, x, y, sigma, n_ref, batch)
    mse = {}
    for kind in ("iid", "antithetic", "orthogonal", "qmc"):
        gen = torch.Generator().manual_seed(1)
        errs = []
        for _ in range(reps):
            z = sampler_draws(kind, x, n, gen).to(x.device)
            total = torch.zeros_like(ref)
            step = max(1, batch // len(x))
            for j0 in range(0, n, step):
                k = min(step, n - j0)
                xs = (x[None] + sigma * z[j0 : j0 + k]).flatten(0, 1)
                g = ss.grad(model, xs, y.repeat(k)).double().view(k, *x.shape)
                total += g.sum(dim=0)
            errs.append(((total / n - ref).flatten(1).square().sum(1) - ref_se2).sum().item())
        mse[kind] = sum(errs) / len(errs)
        sd = torch.tensor(errs).std().item() / len(errs) ** 0.5
        mse[kind + "_se"] = sd
    rows = []
    for kind in ("antithetic", "orthogonal", "qmc"):
        ratio = mse["iid"] / mse[kind]
        rel = ((mse["iid_se"] / mse["iid"]) ** 2 + (mse[kind + "_se"] / mse[kind]) ** 2) ** 0.5
        rows.append([name, kind, f"{ratio:.2f} +- {ratio * rel:.2f}"])
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer images, smaller caps")
    parser.add_argument("--work", default="runs/bench_adaptive", help="trained CNNs go here")
    parser.add_argument(
        "--sweep-antithetic", action="store_true", help="only the sweep, tolerance + antithetic"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x_range = dataset_info("shapes").x_range
    sigma = R * x_range
    cnns = [m.to(device) for m in quickstart_models(Path(args.work))]
    if args.sweep_antithetic:
        xs, ys = (t.to(device) for t in shapes_images(8))
        out = sweep(cnns, xs, ys, x_range, 256, antithetic=True)
        header = ["method", "fixed 100 draws", "one tolerance", "tolerance per method and r"]
        header += ["worst rel. s.e. (one / per r)"]
        print("## Quickstart sweep, tolerance + antithetic pairs\n\n" + table(header, out))
        return
    rows = []
    q = args.quick
    x32, y32 = (t.to(device) for t in shapes_images(8 if q else 16))
    cap, n_ref = (256, 2048) if q else (2048, 8192)
    rows += per_model("quickstart CNN", cnns[0], x32, y32, sigma, cap, n_ref, 256, device)
    # A random ResNet-18's gradient maps vary far more under the noise (relative s.d. of one
    # draw about 3 at 32 px, 4 at 112 px): 5% would take ~3,600 draws per image, 2% ~22,000,
    # too many for a CPU; on CPU the ResNet rows use looser targets (same comparison).
    resnet = torchvision.models.resnet18(num_classes=10).to(device).eval()
    cpu = device.type == "cpu"
    rows += per_model(
        "ResNet-18 32 px", resnet, x32[:8], y32[:8], sigma, 256 if q else 1024,
        2048 if q else 4096, 256, device, (0.2, 0.1) if cpu else TARGETS,
    )  # fmt: skip
    x112, y112 = (t.to(device) for t in shapes_images(4, 112))
    rows += per_model(
        "ResNet-18 112 px", resnet, x112, y112, sigma, 128 if q else 512, 512 if q else 1024,
        64, device, (0.25,) if cpu else TARGETS,
    )  # fmt: skip
    header = ["model", "draws", "target", "model evaluations", "worst-image error", "seconds"]
    print(f"## Smooth-Grad, r = {R}, {args.device}\n\n" + table(header, rows) + "\n", flush=True)
    xs, ys = (t.to(device) for t in shapes_images(8))
    out = sweep(cnns, xs, ys, x_range, 256)
    header = ["method", "fixed 100 draws", "one tolerance", "tolerance per method and r"]
    header += ["worst rel. s.e. (one / per r)"]
    print("## Quickstart sweep, model evaluations\n\n" + table(header, out) + "\n", flush=True)
    reps = 8 if args.quick else 16
    rows = samplers("quickstart CNN", cnns[0], x32[:8], y32[:8], sigma, 2048, 256, reps)
    rows += samplers("ResNet-18 32 px", resnet, x32[:8], y32[:8], sigma, 2048, 256, 8)
    if not args.quick:
        rows += samplers("ResNet-18 112 px", resnet, x112[:4], y112[:4], sigma, 512, 64, 8)
    header = ["model", "sampler", "MSE(iid) / MSE(sampler) at equal evaluations (+- 1 s.e.)"]
    print(f"## Samplers, Smooth-Grad, r = {R}, 32 draws\n\n" + table(header, rows))


if __name__ == "__main__":
    main()

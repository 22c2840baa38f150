"""The bounds stage: Theorems 5-6 and Proposition 7 computed from the run's networks, beside the
measured errors (``bounds.json``, ``bounds.md``, ``figures/bounds.png``).

Inputs to the bounds, and where they come from here:
* ``B_i``: spectral norms of each model's linear layers (eval BatchNorm folded), the largest over
  the run's models per layer -- a plug-in for the bound along training the theory assumes.
* ``C``: the largest ``||x||_2`` over the run's test images; ``m``: the input dimension.
* ``n``: training-set size per model; ``T``: SGD steps (epochs x batches per epoch; the theory
  assumes one example per step); ``c``: the smallest constant with ``eta_t <= c / t`` over the
  run's learning-rate schedule; ``beta``: Remark 4, for noisy SGD when ``noise_std > 0``.
Stability bounds need models trained by SGD on disjoint splits (setting DT); for DR/DA only the
fidelity bounds are given. Networks outside the theory's chains are flagged heuristic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from smoothstab import bounds
from smoothstab.experiments.blocks import Block, Paragraph, Table, render_markdown
from smoothstab.experiments.data import dataset_info
from smoothstab.experiments.rundir import Metric, RunDir, Summary, noise_grid

if TYPE_CHECKING:
    from torch import nn

    from smoothstab.experiments.experiment import ExperimentConfig, TrainConfig


def step_constant(train: TrainConfig, n: int) -> tuple[int, float]:
    """``(T, c)``: SGD steps and the smallest ``c`` with ``eta_t <= c / t`` (t from 1)."""
    per_epoch = math.ceil(n / train.batch_size)
    c = 0.0
    for epoch in range(train.epochs):
        if train.schedule == "step":
            lr = train.lr * train.gamma ** (epoch // train.step_size)
        else:
            lr = train.lr * 0.5 * (1 + math.cos(math.pi * epoch / train.epochs))
        c = max(c, lr * (epoch + 1) * per_epoch)  # eta_t * t is largest at the epoch's last step
    return train.epochs * per_epoch, c


def max_norms(all_norms: list[bounds.LayerNorms]) -> list[float]:
    if len({ln.k for ln in all_norms}) != 1:
        raise ValueError("bounds: expected models with the same layers (setting DT or DR)")
    return [max(vals) for vals in zip(*(ln.norms for ln in all_norms), strict=True)]


def compute(
    cfg: ExperimentConfig, run: RunDir, models: Sequence[nn.Module], summary: Summary
) -> dict:
    """Bounds and measured errors per sigma, as a JSON-able dict (log10 of every bound)."""
    x = run.load_test_images()[0].double()
    # Power iteration approaches the norm from below, slowly where the top singular values are
    # close: a tight tolerance keeps the underestimate far below the bounds' own looseness.
    shape = tuple(x.shape[1:])
    layer_norms = [
        bounds.layer_norms(m.double().cpu(), shape, n_iter=5000, tol=1e-8) for m in models
    ]
    norms = max_norms(layer_norms)
    C = x.flatten(1).norm(dim=1).max().item()
    m = int(np.prod(x.shape[1:]))
    x_range = dataset_info(cfg.train.dataset).x_range
    rs = [r for r in noise_grid(cfg.attribution) if r > 0]
    sigmas = np.array([r * x_range for r in rs])
    debiased = cfg.evaluation.debiased

    def measured(method: str, metric: str, r: float) -> float | None:
        found = summary.get(method, getattr(Metric, metric)(debiased), r)
        return None if found is None else found.mean

    out = {
        "C": C,
        "m": m,
        "norms": norms,
        "x_range": x_range,
        "heuristic": any(ln.heuristic for ln in layer_norms),
        "reasons": sorted({reason for ln in layer_norms for reason in ln.reasons}),
        "rows": [],
    }
    fid_sg = bounds.fidelity_bound_smoothgrad(norms, sigma=sigmas, m=m, log10=True)
    fid_ig = bounds.fidelity_bound_smoothed_ig(norms, sigma=sigmas, m=m, C=C, log10=True)
    stab = None
    if cfg.models.setting == "DT" and len(norms) >= 2:
        n = int(run.read_json(run.train_metrics)["config"]["part_size"])
        T, c = step_constant(cfg.train, n)
        beta = (
            bounds.smoothness_noisy(norms, C, cfg.train.noise_std)
            if cfg.train.noise_std > 0
            else bounds.smoothness_vanilla(norms, C)
        )
        args = dict(C=C, n=n, T=T, c=c, beta=beta, log10=True)
        out.update(n=n, T=T, c=c, beta=beta)
        out["simplegrad_log10"] = bounds.stability_bound_simplegrad(norms, **args)
        stab = bounds.stability_bound_smoothgrad(norms, sigma=sigmas, clip=True, **args)
    for i, r in enumerate(rs):
        out["rows"].append(
            {
                "r": r,
                "sigma": float(sigmas[i]),
                "stability_grad": measured("grad", "stability", r),
                "stability_bound_log10": None if stab is None else float(stab[i]),
                "fidelity_grad": measured("grad", "fidelity", r),
                "fidelity_bound_grad_log10": float(fid_sg[i]),
                "fidelity_ig": measured("ig", "fidelity", r),
                "fidelity_bound_ig_log10": float(fid_ig[i]),
            }
        )
    return out


def _sci(log10: float | None) -> str:
    if log10 is None:
        return "-"
    if not math.isfinite(log10):
        return str(log10)
    exp = math.floor(log10)
    return f"{10 ** (log10 - exp):.2f}e{exp:+d}"


def intro(res: dict) -> str:
    """What the bounds were computed from, and how to read them (one paragraph)."""
    head = (
        f"Computed from the run's networks: C = max ||x||_2 = {res['C']:.4g}, m = {res['m']}, "
        f"k = {len(res['norms'])} linear layers with spectral norms up to {max(res['norms']):.4g}"
    )
    if "T" in res:
        head += f", n = {res['n']}, T = {res['T']}, c = {res['c']:.4g}, beta = {res['beta']:.4g}"
        head += f"; Theorem 5 (Simple-Grad) bound = {_sci(res['simplegrad_log10'])}"
    head += ". Bounds are products of layer norms: read them for trends in sigma, not magnitudes."
    if res["heuristic"]:
        head += " HEURISTIC: these networks are outside the chains the theory covers ("
        head += "; ".join(res["reasons"]) + ")."
    return head


def table(res: dict) -> Table:
    """Header and rows of the bounds-vs-measured table, one row per sigma."""
    header = [
        "r", "sigma", "stability (Simple/Smooth-Grad)", "Theorem 6 bound",
        "fidelity (Smooth-Grad)", "Prop. 7 bound", "fidelity (smoothed IG)", "Prop. 7 bound (IG)",
    ]  # fmt: skip
    num = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    rows = [
        [
            f"{row['r']:g}",
            f"{row['sigma']:.4g}",
            num(row["stability_grad"]),
            _sci(row["stability_bound_log10"]),
            num(row["fidelity_grad"]),
            _sci(row["fidelity_bound_grad_log10"]),
            num(row["fidelity_ig"]),
            _sci(row["fidelity_bound_ig_log10"]),
        ]
        for row in res["rows"]
    ]
    return Table(header, rows)


def blocks(res: dict) -> list[Block]:
    """What the bounds page (``bounds.md``) and the report's bounds section show."""
    return [Paragraph(intro(res)), table(res)]


def bounds_run(
    cfg: ExperimentConfig, run: RunDir, models: Sequence[nn.Module], summary: Summary
) -> dict:
    """Write ``bounds.json``, ``bounds.md`` and ``figures/bounds.png``."""
    from smoothstab.experiments.figures import bounds_figure  # matplotlib only when drawing

    res = compute(cfg, run, models, summary)
    run.write_json(run.bounds_json, res)
    run.write_text(run.bounds_md, render_markdown(blocks(res)))
    bounds_figure(res, run.figure("bounds"))
    return res

"""The bounds stage: Theorems 5-6 and Proposition 7 computed from the run's networks, beside the
measured errors (``bounds.json``, ``bounds.md``; the stage draws ``figures/bounds.png`` with
:func:`~smoothstab.experiments.stages.figures.bounds_figure`).

Inputs to the bounds, and where they come from here:
* ``B_i``: spectral norms of each model's linear layers (eval BatchNorm folded), the largest over
  the run's models per layer -- a plug-in for the bound along training the theory assumes.
* ``C``: the largest ``||x||_2`` over the run's test images; ``m``: the input dimension.
* ``n``: training-set size per model (each size of the run gets its own Theorem 5 bound);
  ``T``: SGD steps, by default in single-example steps (epochs x n, the theory's unit; see
  :func:`step_constant`), or minibatch steps with ``evaluation.bound_steps = "minibatches"``;
  ``c``: the smallest constant with ``eta_t <= c / t`` in the same unit; ``beta``: Remark 4, for
  noisy SGD when ``noise_std > 0``.
Stability bounds need models trained by SGD on disjoint splits (setting DT); for DR/DA only the
fidelity bounds are given. Networks outside the theory's chains are flagged heuristic.

Every bound gets a ``vacuous`` flag: above the trivial bound its quantity obeys for any weights
(``smoothstab.bounds.trivial_bound_grad``, ``trivial_bound_smoothed_ig``). The page's sentences are
chosen from the numbers by :mod:`~smoothstab.experiments.pages.bounds_page`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from smoothstab import bounds
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.io.progress import Progress
from smoothstab.experiments.models.trainer import epoch_batches
from smoothstab.experiments.pages.blocks import render_markdown
from smoothstab.experiments.pages.bounds_page import blocks
from smoothstab.experiments.rundir.bounds_record import (
    Bounds,
    OtherUnit,
    Recipe,
    SigmaRow,
    SizeRow,
    Stability,
    Theorem6,
)
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.train_record import read_train_record

if TYPE_CHECKING:
    from torch import nn

    from smoothstab.experiments.config.tables import ExperimentConfig, TrainConfig

StepUnit = Literal["examples", "minibatches"]
FLAT_LOG10 = math.log10(1.01)  # a bound that moves by less than 1% over a range is "flat" there
LOG10_2 = math.log10(2)


# ---------------------------------------------------------------------------- SGD steps


def epoch_lr(train: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (from 0): the schedule steps once per epoch."""
    if train.schedule == "step":
        return train.lr * train.gamma ** (epoch // train.step_size)
    return train.lr * 0.5 * (1 + math.cos(math.pi * epoch / train.epochs))


def step_constant(train: TrainConfig, n: int, unit: StepUnit = "examples") -> tuple[int, float]:
    """``(T, c)``: SGD steps and the smallest ``c`` with ``eta_t <= c / t`` (t from 1), for a
    model trained on ``n`` examples, with steps counted in ``unit``.

    ``examples`` (the theorems' unit, one example per step): ``T = epochs x n`` (with
    ``train.drop_last``, ``n`` less the last partial batch, which is never taken). The run did
    minibatch SGD: a step moves the weights by ``lr`` times the *mean* gradient of its ``s``
    examples (``s`` = the batch size, or fewer in an epoch's last batch). We read it as ``s``
    example steps of ``eta = lr / s`` each: the same move, and the unit in which Hardt et al.'s
    argument covers minibatches -- a batch holds the one changed example with probability
    ``s / n``, and moves the two runs apart by at most ``2 (lr / s) L`` when it does, which is
    exactly the one-example step of ``lr / s``, so the first time the changed example can matter
    comes ``s`` times sooner in minibatch steps than the minibatch count says. Reading each
    example as a full step of ``lr`` would instead overstate every move ``s``-fold. With ``t``
    counting examples, ``eta_t t`` is largest at the last example of a batch, so ``c`` is the
    largest ``(lr / s) t`` over the ends of the batches: the last full batch of an epoch and its
    last, possibly smaller, batch.

    ``minibatches``: ``T = epochs x`` the batches of an epoch
    (:func:`~smoothstab.experiments.models.trainer.epoch_batches`: ``ceil(n / batch_size)``, one
    fewer where ``drop_last`` cuts one), ``eta_t = lr`` with ``t`` counting minibatches; each batch
    is taken for one example, which the theorems do not cover and which understates the bound (``T``
    is about ``batch_size`` times smaller; ``c`` is the same when the batch size divides ``n``, else
    smaller, as an epoch's last batch then has larger example steps). Momentum and weight decay,
    which the theory's SGD lacks, are left out of both.
    """
    b = train.batch_size
    per_epoch, seen = epoch_batches(n, b, train.drop_last)  # seen: n, or fewer with drop_last
    last = seen - (per_epoch - 1) * b  # the epoch's last batch, smaller when b does not divide n
    c = 0.0
    for epoch in range(train.epochs):
        lr = epoch_lr(train, epoch)
        if unit == "minibatches":
            c = max(c, lr * (epoch + 1) * per_epoch)  # the epoch's last step
            continue
        if per_epoch > 1:  # the end of the last full batch
            c = max(c, lr / b * (epoch * seen + (per_epoch - 1) * b))
        c = max(c, lr / last * (epoch + 1) * seen)  # the end of the last batch
    return train.epochs * (seen if unit == "examples" else per_epoch), c


def max_norms(all_norms: list[bounds.LayerNorms]) -> list[float]:
    if len({ln.k for ln in all_norms}) != 1:
        raise ValueError("bounds: expected models with the same layers (setting DT or DR)")
    return [max(vals) for vals in zip(*(ln.norms for ln in all_norms), strict=True)]


def train_sizes(run: RunDir) -> list[int]:
    """The training-set sizes n of a DT run, smallest first (per-model ``train_size``)."""
    return read_train_record(run.train_metrics).sizes()


# ---------------------------------------------------------------------------- the numbers


def compute(
    cfg: ExperimentConfig, run: RunDir, models: Sequence[nn.Module], summary: Summary
) -> Bounds:
    """Bounds and measured errors per sigma and per n (log10 of every bound): :func:`assemble`
    on the run's networks, images and metrics."""
    x = run.load_test_images()[0].double()
    # Power iteration approaches the norm from below, slowly where the top singular values are
    # close: a tight tolerance keeps the underestimate far below the bounds' own looseness.
    shape = tuple(x.shape[1:])
    layer_norms = []
    with Progress(len(models), "bounds: layer norms", quiet=cfg.quiet) as bar:
        for m in models:
            layer_norms.append(bounds.layer_norms(m.double().cpu(), shape, n_iter=5000, tol=1e-8))
            bar.update()
    sgd = Setting.of(cfg).sgd_bounds
    return assemble(
        max_norms(layer_norms),
        C=x.flatten(1).norm(dim=1).max().item(),
        m=int(np.prod(x.shape[1:])),
        x_range=dataset_info(cfg.train).x_range,
        rs=[r for r in cfg.attribution.noise_grid() if r > 0],
        summary=summary,
        debiased=cfg.evaluation.debiased,
        train=cfg.train if sgd else None,
        sizes=train_sizes(run) if sgd else [],
        unit=cfg.evaluation.bound_steps,
        heuristic=any(ln.heuristic for ln in layer_norms),
        reasons=sorted({reason for ln in layer_norms for reason in ln.reasons}),
    )


def _size_key(summary: Summary, n: int) -> int | None:
    """``n`` as the summary knows it (``None`` in a metrics.csv without sizes)."""
    return n if n in summary.sizes or summary.sizes != [None] else None


def assemble(
    norms: list[float],
    *,
    C: float,
    m: int,
    x_range: float,
    rs: Sequence[float],
    summary: Summary,
    debiased: bool,
    train: TrainConfig | None = None,
    sizes: Sequence[int] = (),
    unit: StepUnit = "examples",
    heuristic: bool = False,
    reasons: Sequence[str] = (),
) -> Bounds:
    """The bounds page's numbers from the plug-in constants and the measured metrics.

    Each r's sigma is the one its maps were made with (``summary.sigma``); ``x_range`` gives
    Theorem 6's r* from its sigma*.

    ``train`` and ``sizes`` (setting DT; ``None``/empty: fidelity bounds only) give Theorem 5 per
    training-set size and Theorem 6 per sigma at the largest size, the one the measured rows
    (``summary`` lookups without ``n``) are at. The same norms (the largest over all the run's
    models) serve every size, so the bounds differ across sizes only through ``n``, ``T``, ``c``.
    """
    sigmas = np.array([summary.sigma(r) for r in rs])
    trivial = bounds.trivial_bound_grad(norms, log10=True)

    def measured(method: str, metric: Metric, r: float, n: int | None = None) -> float | None:
        found = summary.get(method, metric, r, n)
        return None if found is None else found.mean

    fid_sg = bounds.fidelity_bound_smoothgrad(norms, sigma=sigmas, m=m, log10=True)
    fid_ig = bounds.fidelity_bound_smoothed_ig(norms, sigma=sigmas, m=m, C=C, log10=True)
    triv_ig = bounds.trivial_bound_smoothed_ig(norms, sigma=sigmas, m=m, C=C, log10=True)
    stab, stability = None, None
    if train is not None and sizes and len(norms) >= 2:
        beta = (
            bounds.smoothness_noisy(norms, C, train.noise_std)
            if train.noise_std > 0
            else bounds.smoothness_vanilla(norms, C)
        )

        def theorem5(n: int, step_unit: StepUnit) -> tuple[int, float, float]:
            T, c = step_constant(train, n, step_unit)
            log_b = bounds.stability_bound_simplegrad(
                norms, C=C, n=n, T=T, c=c, beta=beta, log10=True
            )
            return T, c, log_b

        n = max(sizes)
        T, c, sg = theorem5(n, unit)
        q = beta * c
        exponent = 0.0 if math.isinf(q) else 1 / (q + 1)
        other: StepUnit = "minibatches" if unit == "examples" else "examples"
        T2, c2, sg2 = theorem5(n, other)
        stab = bounds.stability_bound_smoothgrad(
            norms, sigma=sigmas, clip=True, C=C, n=n, T=T, c=c, beta=beta, log10=True
        )
        by_n = []
        for size in sorted(sizes):
            T_n, c_n, sg_n = theorem5(size, unit)
            key = _size_key(summary, size)
            by_n.append(
                SizeRow(
                    n=size,
                    T=T_n,
                    c=c_n,
                    simplegrad_log10=sg_n,
                    vacuous=bool(sg_n > trivial),
                    stability_grad=measured("grad", Metric.STABILITY, 0.0, key),
                    stability_grad_debiased=measured("grad", Metric.STABILITY_DEBIASED, 0.0, key),
                )
            )
        stability = Stability(
            step_unit=unit,
            n=n,
            T=T,
            c=c,
            beta=beta,
            q=q,
            exponent=exponent,
            simplegrad_log10=sg,
            simplegrad_vacuous=bool(sg > trivial),
            other_unit=OtherUnit(step_unit=other, T=T2, c=c2, simplegrad_log10=sg2),
            train=Recipe(
                epochs=train.epochs,
                batch_size=train.batch_size,
                lr=train.lr,
                momentum=train.momentum,
                weight_decay=train.weight_decay,
            ),
            theorem6=theorem6_shape(norms, exponent, q, sigmas, x_range),
            by_n=tuple(by_n),
        )
    rows = []
    for i, r in enumerate(rs):
        bound = None if stab is None else float(stab[i])
        rows.append(
            SigmaRow(
                r=r,
                sigma=float(sigmas[i]),
                stability_grad=measured("grad", Metric.stability(debiased), r),
                stability_bound_log10=bound,
                stability_bound_vacuous=None if bound is None else bool(bound > trivial),
                fidelity_grad=measured("grad", Metric.fidelity(debiased), r),
                fidelity_bound_grad_log10=float(fid_sg[i]),
                fidelity_bound_grad_vacuous=bool(fid_sg[i] > trivial),
                fidelity_ig=measured("ig", Metric.fidelity(debiased), r),
                fidelity_bound_ig_log10=float(fid_ig[i]),
                trivial_ig_log10=float(triv_ig[i]),
                fidelity_bound_ig_vacuous=bool(fid_ig[i] > triv_ig[i]),
            )
        )
    return Bounds(
        C=C,
        m=m,
        norms=tuple(norms),
        x_range=x_range,
        heuristic=heuristic,
        reasons=tuple(reasons),
        measured="debiased" if debiased else "plain",
        trivial_log10=trivial,
        rows=tuple(rows),
        stability=stability,
    )


def theorem6_shape(
    norms: list[float], exponent: float, q: float, sigmas: np.ndarray, x_range: float
) -> Theorem6:
    """Where Theorem 6's curve bends, in log10: ``sigma*`` (its factor ``(sigma* /
    sigma)^{1/(q+1)}`` is below 1 past it; before, the clip at Theorem 5 binds), ``r*``, whether
    the grid reaches ``sigma*``, how far (log10) the bound falls over the grid, and the sigma and
    r where the factor would halve the bound (``None`` when it never does: ``q`` infinite)."""
    star = bounds.smoothgrad_sigma_star(norms, log10=True)
    log_s = np.log10(sigmas)
    lo, hi = (float(log_s.min()), float(log_s.max())) if len(log_s) else (star, star)
    reaches = bool(len(log_s)) and star < hi
    drop = exponent * (hi - max(lo, star)) if reaches else 0.0
    half = None if math.isinf(q) else star + (q + 1) * LOG10_2
    log_x = math.log10(x_range)
    return Theorem6(
        sigma_star_log10=star,
        r_star_log10=star - log_x,
        grid_reaches=reaches,
        clip_binds_in_grid=bool(len(log_s)) and star > lo,
        drop_log10=drop,
        flat=drop < FLAT_LOG10,
        sigma_half_log10=half,
        r_half_log10=None if half is None else half - log_x,
    )


def bounds_run(
    cfg: ExperimentConfig, run: RunDir, models: Sequence[nn.Module], summary: Summary
) -> Bounds:
    """Write ``bounds.json`` and ``bounds.md``; returns what the first holds (the figures
    module draws it: :func:`~smoothstab.experiments.stages.figures.bounds_figure`)."""
    res = compute(cfg, run, models, summary)
    run.write_json(run.bounds_json, res.to_json())
    run.write_text(run.bounds_md, render_markdown(blocks(res)))
    return res

"""The bounds stage: Theorems 5-6 and Proposition 7 computed from the run's networks, beside the
measured errors (``bounds.json``, ``bounds.md``, ``figures/bounds.png``).

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
(``smoothstab.bounds.trivial_bound_grad``, ``trivial_bound_smoothed_ig``).
The page's sentences are chosen from the numbers (:func:`blocks`): whether Theorem 6's curve is
flat in sigma and why, whether any bound says something, how the bound moves with n.

Long (about 640 lines) because the bounds page explains its own numbers: the text that
chooses between a flat, a capped and a bending Theorem 6 curve, the vacuous flags and the
per-n table sit beside the computation they describe. Splitting the page text into its own
module is the next step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from smoothstab import bounds
from smoothstab.experiments.blocks import Block, Paragraph, Table, render_markdown
from smoothstab.experiments.data import dataset_info
from smoothstab.experiments.progress import Progress
from smoothstab.experiments.rundir import Metric, RunDir, Summary, noise_grid
from smoothstab.experiments.setting import Setting
from smoothstab.experiments.trainer import epoch_batches

if TYPE_CHECKING:
    from torch import nn

    from smoothstab.experiments.experiment import ExperimentConfig, TrainConfig

VERSION = 2  # of bounds.json; an older file is not rendered (delete it and rerun the stage)
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

    ``minibatches``: ``T = epochs x`` the batches of an epoch (:func:`~.trainer.epoch_batches`:
    ``ceil(n / batch_size)``, one fewer where ``drop_last`` cuts one), ``eta_t = lr`` with ``t``
    counting minibatches; each batch is taken for one example, which the theorems do not cover
    and which understates the bound (``T`` is about ``batch_size`` times smaller; ``c`` is the
    same when the batch size divides ``n``, else smaller, as an epoch's last batch then has
    larger example steps).
    Momentum and weight decay, which the theory's SGD lacks, are left out of both.
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
    saved = run.read_json(run.train_metrics)
    sizes = {int(m["train_size"]) for m in saved["models"] if "train_size" in m}
    if not sizes:  # written before models recorded their size
        part = saved["config"]["part_size"]
        sizes = set(part) if isinstance(part, list) else {int(part)}
    return sorted(sizes)


# ---------------------------------------------------------------------------- the numbers


def compute(
    cfg: ExperimentConfig, run: RunDir, models: Sequence[nn.Module], summary: Summary
) -> dict:
    """Bounds and measured errors per sigma and per n, as a JSON-able dict (log10 of every
    bound): :func:`assemble` on the run's networks, images and metrics."""
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
        rs=[r for r in noise_grid(cfg.attribution) if r > 0],
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
) -> dict:
    """The bounds page's numbers from the plug-in constants and the measured metrics.

    ``train`` and ``sizes`` (setting DT; ``None``/empty: fidelity bounds only) give Theorem 5 per
    training-set size and Theorem 6 per sigma at the largest size, the one the measured rows
    (``summary`` lookups without ``n``) are at. The same norms (the largest over all the run's
    models) serve every size, so the bounds differ across sizes only through ``n``, ``T``, ``c``.
    """
    sigmas = np.array([r * x_range for r in rs])
    kind = "debiased" if debiased else "plain"
    trivial = bounds.trivial_bound_grad(norms, log10=True)

    def measured(method: str, metric: Metric, r: float, n: int | None = None) -> float | None:
        found = summary.get(method, metric, r, n)
        return None if found is None else found.mean

    out: dict = {
        "version": VERSION,
        "C": C,
        "m": m,
        "norms": list(norms),
        "x_range": x_range,
        "heuristic": heuristic,
        "reasons": list(reasons),
        "measured": kind,
        "trivial_log10": trivial,
        "rows": [],
        "by_n": [],
    }
    fid_sg = bounds.fidelity_bound_smoothgrad(norms, sigma=sigmas, m=m, log10=True)
    fid_ig = bounds.fidelity_bound_smoothed_ig(norms, sigma=sigmas, m=m, C=C, log10=True)
    triv_ig = bounds.trivial_bound_smoothed_ig(norms, sigma=sigmas, m=m, C=C, log10=True)
    stab = None
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
        other: StepUnit = "minibatches" if unit == "examples" else "examples"
        T2, c2, sg2 = theorem5(n, other)
        out.update(
            step_unit=unit,
            n=n,
            T=T,
            c=c,
            beta=beta,
            q=q,
            exponent=0.0 if math.isinf(q) else 1 / (q + 1),
            simplegrad_log10=sg,
            simplegrad_vacuous=bool(sg > trivial),
            other_unit={"step_unit": other, "T": T2, "c": c2, "simplegrad_log10": sg2},
            train={
                "epochs": train.epochs,
                "batch_size": train.batch_size,
                "lr": train.lr,
                "momentum": train.momentum,
                "weight_decay": train.weight_decay,
            },
        )
        args = dict(C=C, n=n, T=T, c=c, beta=beta, log10=True)
        stab = bounds.stability_bound_smoothgrad(norms, sigma=sigmas, clip=True, **args)
        out["theorem6"] = theorem6_shape(norms, out["exponent"], q, sigmas, x_range)
        for size in sorted(sizes):
            T_n, c_n, sg_n = theorem5(size, unit)
            key = _size_key(summary, size)
            out["by_n"].append(
                {
                    "n": size,
                    "T": T_n,
                    "c": c_n,
                    "simplegrad_log10": sg_n,
                    "vacuous": bool(sg_n > trivial),
                    "stability_grad": measured("grad", Metric.STABILITY, 0.0, key),
                    "stability_grad_debiased": measured(
                        "grad", Metric.STABILITY_DEBIASED, 0.0, key
                    ),
                }
            )
    for i, r in enumerate(rs):
        bound = None if stab is None else float(stab[i])
        out["rows"].append(
            {
                "r": r,
                "sigma": float(sigmas[i]),
                "stability_grad": measured("grad", Metric.stability(debiased), r),
                "stability_bound_log10": bound,
                "stability_bound_vacuous": None if bound is None else bool(bound > trivial),
                "fidelity_grad": measured("grad", Metric.fidelity(debiased), r),
                "fidelity_bound_grad_log10": float(fid_sg[i]),
                "fidelity_bound_grad_vacuous": bool(fid_sg[i] > trivial),
                "fidelity_ig": measured("ig", Metric.fidelity(debiased), r),
                "fidelity_bound_ig_log10": float(fid_ig[i]),
                "trivial_ig_log10": float(triv_ig[i]),
                "fidelity_bound_ig_vacuous": bool(fid_ig[i] > triv_ig[i]),
            }
        )
    return out


def theorem6_shape(
    norms: list[float], exponent: float, q: float, sigmas: np.ndarray, x_range: float
) -> dict:
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
    return {
        "sigma_star_log10": star,
        "r_star_log10": star - log_x,
        "grid_reaches": reaches,
        "clip_binds_in_grid": bool(len(log_s)) and star > lo,
        "drop_log10": drop,
        "flat": drop < FLAT_LOG10,
        "sigma_half_log10": half,
        "r_half_log10": None if half is None else half - log_x,
    }


# ---------------------------------------------------------------------------- the page


def _sci(log10: float | None) -> str:
    """A number given by its log10, as ``1.23e+45`` (any size: no float overflow)."""
    if log10 is None:
        return "-"
    if not math.isfinite(log10):
        return str(log10)
    exp = math.floor(log10)
    mant = 10 ** (log10 - exp)
    if round(mant, 2) >= 10:  # 9.996 -> 1.00e+(exp + 1), not 10.00e+exp
        mant, exp = mant / 10, exp + 1
    if abs(exp) >= 10**6:  # the exponent itself is astronomic: 10^(6.02e+12)
        return f"10^({log10:.3g})"
    return f"{mant:.2f}e{exp:+d}"


def _num(v: float) -> str:
    return f"{v:.4g}"


def _bound(log10: float | None, vacuous: bool | None) -> str:
    return _sci(log10) + (" (vacuous)" if vacuous else "")


def _ratio(log10: float) -> str:
    """``10^log10`` as "12.3 times" (or "10^(...) times" past float range)."""
    return f"{10**log10:.3g} times" if log10 < 300 else f"{_sci(log10)} times"


def _flags(res: dict) -> list[bool]:
    """The vacuous flag of every bound on the page."""
    flags = [row["vacuous"] for row in res["by_n"]]
    for row in res["rows"]:
        if row["stability_bound_vacuous"] is not None:
            flags.append(row["stability_bound_vacuous"])
        flags += [row["fidelity_bound_grad_vacuous"], row["fidelity_bound_ig_vacuous"]]
    return flags


def verdict(res: dict) -> str:
    """The page's first sentence: whether its bounds say anything about these networks."""
    flags = _flags(res)
    trivial = (
        f"the trivial bound its quantity obeys for any weights (2 Gamma_{{k,0}} = "
        f"{_sci(res['trivial_log10'])} for the distance between two Simple- or Smooth-Grad "
        "maps and for Smooth-Grad's fidelity error, Gamma_{k,0} (2C + sigma sqrt(m)) for "
        "smoothed IG's fidelity error; Gamma_{k,0} = prod B_i bounds a chain's input gradient)"
    )
    if all(flags):
        return (
            f"**Every bound on this page is vacuous**: each of the {len(flags)} bounds is above "
            f"{trivial}, so none of them says anything about these networks."
        )
    if not any(flags):
        return (
            f"No bound on this page is vacuous: each of the {len(flags)} bounds is below {trivial}."
        )
    return (
        f"{sum(flags)} of the {len(flags)} bounds on this page are vacuous (marked "
        f'"(vacuous)"): they are above {trivial}.'
    )


def intro(res: dict) -> str:
    """What the bounds were computed from (one paragraph)."""
    head = (
        f"Computed from the run's networks: C = max ||x||_2 = {res['C']:.4g}, m = {res['m']}, "
        f"k = {len(res['norms'])} linear layers with spectral norms B_i up to "
        f"{max(res['norms']):.4g} (the largest over the run's models)"
    )
    if "T" in res:
        head += (
            f", n = {res['n']} (the run's largest training-set size), T = {res['T']} "
            f"{'single-example' if res['step_unit'] == 'examples' else 'minibatch'} SGD steps, "
            f"c = {res['c']:.4g}, beta = {res['beta']:.4g}, q = beta c = {res['q']:.4g}; "
            "Theorem 5 (Simple-Grad) bound = "
            + _bound(res["simplegrad_log10"], res["simplegrad_vacuous"])
        )
    head += "."
    if res["heuristic"]:
        head += (
            " HEURISTIC: these networks are outside the chains the theory covers, so the bounds"
            " (and the trivial bound) are plug-in numbers, not guarantees ("
            + "; ".join(res["reasons"])
            + ")."
        )
    return head


def steps_text(res: dict) -> str:
    """The unit of T and c, why, and what the other unit would give."""
    t, other = res["train"], res["other_unit"]
    b, n, epochs = t["batch_size"], res["n"], t["epochs"]
    alt = _sci(other["simplegrad_log10"])
    if res["step_unit"] == "examples":
        taken = res["T"] // epochs  # n, or fewer where drop_last dropped a last partial batch
        last = taken - (math.ceil(taken / b) - 1) * b
        per_epoch = (
            f"epochs x n = {epochs} x {n}"
            if taken == n
            else f"epochs x the {taken} examples of n = {n} an epoch takes (its last partial "
            f"batch is dropped) = {epochs} x {taken}"
        )
        text = (
            f"T = {res['T']} counts single-example SGD steps, {per_epoch}, as "
            f"the theorems assume one example per step; the run took {other['T']} minibatch "
            f"steps of {b}. A minibatch step moves the weights by lr times the mean gradient of "
            "its examples; it is read as one step of lr / (batch size) per example, the same "
            "move, so t counts examples and c = max_t eta_t t = "
            f"{res['c']:.4g}"
        )
        if last < b:
            text += f" (an epoch's last batch holds {last} examples, so its steps are lr / {last})"
        text += (
            ". This is the unit in which Hardt et al.'s argument covers minibatches: a batch "
            "holds the one changed example with probability (batch size) / n, (batch size) times "
            "as often as the one-example theorem assumes of a step. With "
            f'evaluation.bound_steps = "minibatches" (T = {other["T"]}, c = {other["c"]:.4g}) '
            f"Theorem 5 would give {alt}"
        )
        if other["simplegrad_log10"] < res["simplegrad_log10"]:
            text += f", {_ratio(res['simplegrad_log10'] - other['simplegrad_log10'])} smaller"
        text += "."
    else:
        text = (
            f"T = {res['T']} counts minibatch steps of {b} examples and c = {res['c']:.4g} has t "
            'counting minibatches (evaluation.bound_steps = "minibatches"). The theorems assume '
            "one example per step, so this takes each minibatch for one example: in "
            f"single-example steps (T = {other['T']}, c = {other['c']:.4g}, the default) "
            f"Theorem 5 gives {alt}"
        )
        if other["simplegrad_log10"] > res["simplegrad_log10"]:
            text += (
                f", {_ratio(other['simplegrad_log10'] - res['simplegrad_log10'])} larger: the "
                "minibatch count understates it"
            )
        text += "."
    if t["momentum"] > 0:
        text += (
            f" The theory's SGD has no momentum: c leaves out the run's momentum "
            f"{t['momentum']:g}, which makes the effective step up to 1 / (1 - "
            f"{t['momentum']:g}) = {1 / (1 - t['momentum']):.3g} times larger."
        )
    return text


def theorem6_text(res: dict) -> str:
    """Why Theorem 6's curve in sigma is flat, or where it bends; read from the numbers."""
    s = res["theorem6"]
    rows = res["rows"]
    star = f"sigma* = {_sci(s['sigma_star_log10'])} (r* = {_sci(s['r_star_log10'])})"
    factor = (
        "Theorem 6 is Theorem 5's bound times the factor (Gamma_{k,1} / (2 sigma Gamma_{k,0} "
        "sum_{i<k} Gamma_{i,1}))^{1/(q+1)} = (sigma* / sigma)^{1/(q+1)}, capped at 1"
    )
    if not rows:
        return f"{factor}; it is below 1 for sigma > {star}. This run has no r > 0."
    r_max = rows[-1]["r"]
    if not s["grid_reaches"]:
        return (
            f"Theorem 6's curve is flat in sigma: it equals Theorem 5's bound at every r of the "
            f"run. {factor}, and the factor is above 1 for sigma < {star}, beyond the grid's "
            f"largest r = {r_max:g}: the cap binds everywhere. The curve would bend only past r*."
        )
    where = (
        "from r* on (the cap binds for r < r*, inside the grid)"
        if s["clip_binds_in_grid"]
        else "at every r of the grid (r* is below the grid's smallest r, so the cap binds nowhere)"
    )
    exponent = f"1/(q+1) = {res['exponent']:.3g} (q = beta c = {res['q']:.3g})"
    if s["flat"]:
        fall = -math.expm1(-s["drop_log10"] * math.log(10))
        half = (
            "it never does (q is infinite)"
            if s["r_half_log10"] is None
            else f"only at r = {_sci(s['r_half_log10'])}"
        )
        return (
            f"Theorem 6's curve is flat in sigma although its factor is below 1 {where}: "
            f"{factor}, with {star}, and the factor enters as the power {exponent}. Over the "
            f"grid it lowers the bound by a fraction {fall:.2g} of itself, invisible on any "
            f"plot; it would halve the bound {half}. The bound gives no trend in sigma here."
        )
    return (
        f"Theorem 6's curve bends: {factor}, with {star}; it is below 1 {where} and falls like "
        f"sigma^(-{res['exponent']:.3g}), lowering the bound by a factor "
        f"{10 ** s['drop_log10']:.3g} over the grid ({exponent})."
    )


def caveat_text(res: dict) -> str:
    """What the stability bound bounds, and what is measured instead."""
    return (
        "What is measured is not what is bounded. Theorems 5-6, reconstructed from Hardt et "
        "al.'s uniform-stability argument, bound eps_stab: the expected distance (over SGD's "
        "draws and a test input) between the maps of the networks that one SGD run returns "
        "from two training sets of n examples that differ in a single example. The measured "
        "stability error is the distance between the maps of two networks trained on disjoint "
        "training sets (every example differs, and so do the SGD draws): a different quantity, "
        "which Theorem 6 does not bound: at most the directions in which the two move with sigma "
        "or n can be compared, never their values."
    )


def fidelity_text(res: dict) -> str:
    return (
        "Proposition 7 bounds the same quantity as the measured fidelity error (a model's "
        "smoothed map against its unsmoothed one, up to Monte-Carlo error), and grows linearly "
        "in sigma."
    )


def n_text(res: dict) -> str:
    """How Theorem 5 moves with n, predicted and computed, beside the measured trend."""
    by_n = res["by_n"]
    a = res["exponent"]
    per_tenfold = 1 - 10 ** (-a)
    unit = "epochs x n" if res["step_unit"] == "examples" else "epochs x ceil(n / batch size)"
    text = (
        "Dependence on n (Theorem 5, Simple-Grad, r = 0; the same norms at every n): at a fixed "
        f"number of epochs T is proportional to n (T = {unit}), and c grows with n, so the bound "
        "scales like T^{q/(q+1)} / (n - 1), roughly n^{-1/(q+1)}: with 1/(q+1) = "
        f"{a:.3g} a tenfold n lowers it by a fraction {per_tenfold:.2g} of itself"
    )
    if per_tenfold < 0.01:
        text += (
            ", so it is flat in n: Theorem 5 does not predict that more data at a fixed number "
            "of epochs makes Simple-Grad more stable"
        )
    text += "."
    if len(by_n) < 2:
        return text + (
            f" This run has one training-set size (n = {by_n[0]['n']}), so no measured trend in"
            " n: give train.part_size a list of sizes for one."
        )
    lo, hi = by_n[0], by_n[-1]
    ratio = 10 ** (hi["simplegrad_log10"] - lo["simplegrad_log10"])
    text += f" From n = {lo['n']} to n = {hi['n']} the bound changes by a factor {ratio:.4g}"
    for key, label in (("stability_grad", "plain"), ("stability_grad_debiased", "debiased")):
        if lo[key] and hi[key]:
            text += f", the measured error ({label}) by {hi[key] / lo[key]:.4g}"
    return text + "."


def table(res: dict) -> Table:
    """Header and rows of the bounds-vs-measured table, one row per sigma."""
    kind = res["measured"]
    header = [
        "r",
        "sigma",
        f"measured: Smooth-Grad distance between 2 models on disjoint splits ({kind})",
        "Theorem 6 bound on eps_stab (one changed example; a different quantity)",
        f"measured: Smooth-Grad fidelity error ({kind})",
        "Prop. 7 bound",
        f"measured: smoothed-IG fidelity error ({kind})",
        "Prop. 7 bound (IG)",
    ]
    num = lambda v: "-" if v is None else _num(v)  # noqa: E731
    rows = [
        [
            f"{row['r']:g}",
            f"{row['sigma']:.4g}",
            num(row["stability_grad"]),
            _bound(row["stability_bound_log10"], row["stability_bound_vacuous"]),
            num(row["fidelity_grad"]),
            _bound(row["fidelity_bound_grad_log10"], row["fidelity_bound_grad_vacuous"]),
            num(row["fidelity_ig"]),
            _bound(row["fidelity_bound_ig_log10"], row["fidelity_bound_ig_vacuous"]),
        ]
        for row in res["rows"]
    ]
    return Table(header, rows)


def n_table(res: dict) -> Table:
    """Theorem 5 and the measured Simple-Grad stability error (r = 0), one row per n."""
    header = [
        "n",
        "T",
        "c",
        "Theorem 5 bound on eps_stab (Simple-Grad)",
        "measured: Simple-Grad distance, disjoint splits (plain)",
        "(debiased)",
    ]
    num = lambda v: "-" if v is None else _num(v)  # noqa: E731
    rows = [
        [
            str(row["n"]),
            str(row["T"]),
            f"{row['c']:.4g}",
            _bound(row["simplegrad_log10"], row["vacuous"]),
            num(row["stability_grad"]),
            num(row["stability_grad_debiased"]),
        ]
        for row in res["by_n"]
    ]
    return Table(header, rows)


def blocks(res: dict) -> list[Block]:
    """What the bounds page (``bounds.md``) and the report's bounds section show."""
    if res.get("version") != VERSION:
        return [
            Paragraph(
                "This run's bounds.json was written by an older smoothstab and is not shown: "
                "delete bounds.json and run `smoothstab bounds RUN_DIR` again."
            )
        ]
    out: list[Block] = [Paragraph(verdict(res)), Paragraph(intro(res))]
    if "T" in res:
        out += [Paragraph(steps_text(res)), Paragraph(theorem6_text(res))]
        out += [Paragraph(caveat_text(res))]
    else:
        out.append(
            Paragraph(
                "No stability bounds: Theorems 5-6 need networks of k >= 2 layers trained by "
                "SGD on the run's splits (setting DT); only Proposition 7's are shown."
            )
        )
    out += [table(res), Paragraph(fidelity_text(res))]
    if res["by_n"]:
        out += [Paragraph(n_text(res)), n_table(res)]
    return out


def bounds_run(
    cfg: ExperimentConfig, run: RunDir, models: Sequence[nn.Module], summary: Summary
) -> dict:
    """Write ``bounds.json`` and ``bounds.md``; returns what the first holds (the figures
    module draws it: :func:`~.figures.bounds_figure`)."""
    res = compute(cfg, run, models, summary)
    run.write_json(run.bounds_json, res)
    run.write_text(run.bounds_md, render_markdown(blocks(res)))
    return res

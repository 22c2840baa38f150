"""The bounds page (``bounds.md``, and the report's bounds section) from ``bounds.json``'s record
(:class:`~smoothstab.experiments.rundir.bounds_record.Bounds`).

Its sentences are chosen from the numbers :mod:`~smoothstab.experiments.stages.bounds_stage`
computes: whether Theorem 6's curve is flat in sigma and why, whether any bound says something (the
vacuous flags), how the bound moves with the training-set size n, and in which unit T and c count
SGD steps.
"""

from __future__ import annotations

import math

from smoothstab.experiments.pages.blocks import Block, Paragraph, Table
from smoothstab.experiments.rundir.bounds_record import Bounds, SigmaRow, SizeRow, Stability


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


def _flags(res: Bounds) -> list[bool]:
    """The vacuous flag of every bound on the page."""
    flags = [row.vacuous for row in res.stability.by_n] if res.stability else []
    for row in res.rows:
        if row.stability_bound_vacuous is not None:
            flags.append(row.stability_bound_vacuous)
        flags += [row.fidelity_bound_grad_vacuous, row.fidelity_bound_ig_vacuous]
    return flags


def verdict(res: Bounds) -> str:
    """The page's first sentence: whether its bounds say anything about these networks."""
    flags = _flags(res)
    trivial = (
        f"the trivial bound its quantity obeys for any weights (2 Gamma_{{k,0}} = "
        f"{_sci(res.trivial_log10)} for the distance between two Simple- or Smooth-Grad "
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


def intro(res: Bounds) -> str:
    """What the bounds were computed from (one paragraph)."""
    head = (
        f"Computed from the run's networks: C = max ||x||_2 = {res.C:.4g}, m = {res.m}, "
        f"k = {len(res.norms)} linear layers with spectral norms B_i up to "
        f"{max(res.norms):.4g} (the largest over the run's models)"
    )
    if (s := res.stability) is not None:
        head += (
            f", n = {s.n} (the run's largest training-set size), T = {s.T} "
            f"{'single-example' if s.step_unit == 'examples' else 'minibatch'} SGD steps, "
            f"c = {s.c:.4g}, beta = {s.beta:.4g}, q = beta c = {s.q:.4g}; "
            "Theorem 5 (Simple-Grad) bound = " + _bound(s.simplegrad_log10, s.simplegrad_vacuous)
        )
    head += "."
    if res.heuristic:
        head += (
            " HEURISTIC: these networks are outside the chains the theory covers, so the bounds"
            " (and the trivial bound) are plug-in numbers, not guarantees ("
            + "; ".join(res.reasons)
            + ")."
        )
    return head


def steps_text(s: Stability) -> str:
    """The unit of T and c, why, and what the other unit would give."""
    t, other = s.train, s.other_unit
    b, n, epochs = t.batch_size, s.n, t.epochs
    alt = _sci(other.simplegrad_log10)
    if s.step_unit == "examples":
        taken = s.T // epochs  # n, or fewer where drop_last dropped a last partial batch
        last = taken - (math.ceil(taken / b) - 1) * b
        per_epoch = (
            f"epochs x n = {epochs} x {n}"
            if taken == n
            else f"epochs x the {taken} examples of n = {n} an epoch takes (its last partial "
            f"batch is dropped) = {epochs} x {taken}"
        )
        text = (
            f"T = {s.T} counts single-example SGD steps, {per_epoch}, as "
            f"the theorems assume one example per step; the run took {other.T} minibatch "
            f"steps of {b}. A minibatch step moves the weights by lr times the mean gradient of "
            "its examples; it is read as one step of lr / (batch size) per example, the same "
            "move, so t counts examples and c = max_t eta_t t = "
            f"{s.c:.4g}"
        )
        if last < b:
            text += f" (an epoch's last batch holds {last} examples, so its steps are lr / {last})"
        text += (
            ". This is the unit in which Hardt et al.'s argument covers minibatches: a batch "
            "holds the one changed example with probability (batch size) / n, (batch size) times "
            "as often as the one-example theorem assumes of a step. With "
            f'evaluation.bound_steps = "minibatches" (T = {other.T}, c = {other.c:.4g}) '
            f"Theorem 5 would give {alt}"
        )
        if other.simplegrad_log10 < s.simplegrad_log10:
            text += f", {_ratio(s.simplegrad_log10 - other.simplegrad_log10)} smaller"
        text += "."
    else:
        text = (
            f"T = {s.T} counts minibatch steps of {b} examples and c = {s.c:.4g} has t "
            'counting minibatches (evaluation.bound_steps = "minibatches"). The theorems assume '
            "one example per step, so this takes each minibatch for one example: in "
            f"single-example steps (T = {other.T}, c = {other.c:.4g}, the default) "
            f"Theorem 5 gives {alt}"
        )
        if other.simplegrad_log10 > s.simplegrad_log10:
            text += (
                f", {_ratio(other.simplegrad_log10 - s.simplegrad_log10)} larger: the "
                "minibatch count understates it"
            )
        text += "."
    if t.momentum > 0:
        text += (
            f" The theory's SGD has no momentum: c leaves out the run's momentum "
            f"{t.momentum:g}, which makes the effective step up to 1 / (1 - "
            f"{t.momentum:g}) = {1 / (1 - t.momentum):.3g} times larger."
        )
    return text


def theorem6_text(stability: Stability, rows: tuple[SigmaRow, ...]) -> str:
    """Why Theorem 6's curve in sigma is flat, or where it bends; read from the numbers."""
    s = stability.theorem6
    star = f"sigma* = {_sci(s.sigma_star_log10)} (r* = {_sci(s.r_star_log10)})"
    factor = (
        "Theorem 6 is Theorem 5's bound times the factor (Gamma_{k,1} / (2 sigma Gamma_{k,0} "
        "sum_{i<k} Gamma_{i,1}))^{1/(q+1)} = (sigma* / sigma)^{1/(q+1)}, capped at 1"
    )
    if not rows:
        return f"{factor}; it is below 1 for sigma > {star}. This run has no r > 0."
    r_max = rows[-1].r
    if not s.grid_reaches:
        return (
            f"Theorem 6's curve is flat in sigma: it equals Theorem 5's bound at every r of the "
            f"run. {factor}, and the factor is above 1 for sigma < {star}, beyond the grid's "
            f"largest r = {r_max:g}: the cap binds everywhere. The curve would bend only past r*."
        )
    where = (
        "from r* on (the cap binds for r < r*, inside the grid)"
        if s.clip_binds_in_grid
        else "at every r of the grid (r* is below the grid's smallest r, so the cap binds nowhere)"
    )
    exponent = f"1/(q+1) = {stability.exponent:.3g} (q = beta c = {stability.q:.3g})"
    if s.flat:
        fall = -math.expm1(-s.drop_log10 * math.log(10))
        half = (
            "it never does (q is infinite)"
            if s.r_half_log10 is None
            else f"only at r = {_sci(s.r_half_log10)}"
        )
        return (
            f"Theorem 6's curve is flat in sigma although its factor is below 1 {where}: "
            f"{factor}, with {star}, and the factor enters as the power {exponent}. Over the "
            f"grid it lowers the bound by a fraction {fall:.2g} of itself, invisible on any "
            f"plot; it would halve the bound {half}. The bound gives no trend in sigma here."
        )
    return (
        f"Theorem 6's curve bends: {factor}, with {star}; it is below 1 {where} and falls like "
        f"sigma^(-{stability.exponent:.3g}), lowering the bound by a factor "
        f"{10**s.drop_log10:.3g} over the grid ({exponent})."
    )


def caveat_text() -> str:
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


def fidelity_text() -> str:
    return (
        "Proposition 7 bounds the same quantity as the measured fidelity error (a model's "
        "smoothed map against its unsmoothed one, up to Monte-Carlo error), and grows linearly "
        "in sigma."
    )


def n_text(s: Stability) -> str:
    """How Theorem 5 moves with n, predicted and computed, beside the measured trend."""
    by_n = s.by_n
    a = s.exponent
    per_tenfold = 1 - 10 ** (-a)
    unit = "epochs x n" if s.step_unit == "examples" else "epochs x ceil(n / batch size)"
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
            f" This run has one training-set size (n = {by_n[0].n}), so no measured trend in"
            " n: give train.part_size a list of sizes for one."
        )
    lo, hi = by_n[0], by_n[-1]
    ratio = 10 ** (hi.simplegrad_log10 - lo.simplegrad_log10)
    text += f" From n = {lo.n} to n = {hi.n} the bound changes by a factor {ratio:.4g}"
    measured = (
        (lo.stability_grad, hi.stability_grad, "plain"),
        (lo.stability_grad_debiased, hi.stability_grad_debiased, "debiased"),
    )
    for low, high, label in measured:
        if low and high:
            text += f", the measured error ({label}) by {high / low:.4g}"
    return text + "."


def table(res: Bounds) -> Table:
    """Header and rows of the bounds-vs-measured table, one row per sigma."""
    kind = res.measured
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
            f"{row.r:g}",
            f"{row.sigma:.4g}",
            num(row.stability_grad),
            _bound(row.stability_bound_log10, row.stability_bound_vacuous),
            num(row.fidelity_grad),
            _bound(row.fidelity_bound_grad_log10, row.fidelity_bound_grad_vacuous),
            num(row.fidelity_ig),
            _bound(row.fidelity_bound_ig_log10, row.fidelity_bound_ig_vacuous),
        ]
        for row in res.rows
    ]
    return Table(header, rows)


def n_table(by_n: tuple[SizeRow, ...]) -> Table:
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
            str(row.n),
            str(row.T),
            f"{row.c:.4g}",
            _bound(row.simplegrad_log10, row.vacuous),
            num(row.stability_grad),
            num(row.stability_grad_debiased),
        ]
        for row in by_n
    ]
    return Table(header, rows)


def blocks(res: Bounds | None) -> list[Block]:
    """What the bounds page (``bounds.md``) and the report's bounds section show; ``None``: a
    ``bounds.json`` of an older version
    (:func:`~smoothstab.experiments.rundir.bounds_record.read_bounds`)."""
    if res is None:
        return [
            Paragraph(
                "This run's bounds.json was written by an older smoothstab and is not shown: "
                "delete bounds.json and run `smoothstab bounds RUN_DIR` again."
            )
        ]
    out: list[Block] = [Paragraph(verdict(res)), Paragraph(intro(res))]
    if (s := res.stability) is not None:
        out += [Paragraph(steps_text(s)), Paragraph(theorem6_text(s, res.rows))]
        out += [Paragraph(caveat_text())]
    else:
        out.append(
            Paragraph(
                "No stability bounds: Theorems 5-6 need networks of k >= 2 layers trained by "
                "SGD on the run's splits (setting DT); only Proposition 7's are shown."
            )
        )
    out += [table(res), Paragraph(fidelity_text())]
    if s is not None and s.by_n:
        out += [Paragraph(n_text(s)), n_table(s.by_n)]
    return out

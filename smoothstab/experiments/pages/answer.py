"""Agreement or shrinkage: whether a falling raw stability error means maps more alike or only
smaller, per method and training-set size, in words and small tables for the report's first
screen, with what each interval is over, the advice on sigma and how many models and images
would decide what this run cannot.

Smoothing averages gradients and shrinks each model's map, so the paper's raw L2 stability
error (Eq. 12) falls with the maps' size as well as with their agreement. A :class:`Split`
takes its change from r = 0 to the largest r apart into the map norm and the scale-free
unit-map distance (:mod:`smoothstab.agreement`), and the latter's interval gives the verdict,
from four models per n on (fewer: the per-pair values, and no verdict).
"""

from __future__ import annotations

from collections.abc import Callable

from smoothstab.experiments.analysis.advice import Advice, MethodAdvice, SizePlan
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.analysis.verdicts import Split
from smoothstab.experiments.pages.blocks import (
    Block,
    Bullets,
    Details,
    Figure,
    Heading,
    Paragraph,
    Side,
    Table,
)
from smoothstab.experiments.pages.findings import fmt
from smoothstab.experiments.pages.names import MEASURES, NAMES, models_phrase, over_phrase
from smoothstab.inference import MIN_MODELS


def pct(x: float) -> str:
    """A relative change as a signed percentage; one decimal below 10%, so a bound near 0 keeps
    its sign honest (-0.3%, not -0%)."""
    return f"{100 * x:+.1f}%" if abs(x) < 0.0995 else f"{100 * x:+.0f}%"


def interval_text(s: Split) -> str:
    """``-7.1% [-12%, -2.0%]``, or the bare change where there is no interval."""
    u = s.unit
    if s.change is None:
        return pct(u.mean)
    return f"{pct(u.mean)} [{pct(u.lo)}, {pct(u.hi)}]"


def verdict(s: Split) -> str:
    """The verdict of a :class:`Split` in words: from four models per n, what the interval over
    retraining says; below that, why there is none."""
    if s.k == 2:
        return "these two models only: no verdict about retrained models"
    if s.k < MIN_MODELS:
        return f"{s.k} models: too few for an interval over retraining"
    if s.sign is None:
        return "no interval to tell"
    return {-1: "the maps agree more", 1: "the maps agree less"}.get(
        s.sign, "cannot tell: the interval holds 0"
    )


def short_verdict(s: Split) -> str:
    """The verdict in a figure's title: ``maps agree more``, ``cannot tell``, ..."""
    if s.sign is None:
        return "no verdict"  # too few models: the table says why
    return {-1: "maps agree more", 1: "maps agree less"}.get(s.sign, "cannot tell")


def per_pair_text(s: Split) -> str:
    """Each pair's relative change: ``0-1 -12%, 0-2 -8.1%, 1-2 +3.0%``."""
    return ", ".join(f"{p} {pct(v)}" for p, v in s.per_pair.items())


def split_sentence(s: Split, sizes: int) -> str:
    """'Simple-Grad (n = 1600): raw L2 -19% from r = 0 to 0.4: map norm -11%, unit-map distance
    -7.0% [-12%, -2.0%] (over 6 models, 24 test images and their draws); the maps agree more.'"""
    at = f" (n = {s.n})" if sizes > 1 else ""
    unit = interval_text(s)
    if s.k < MIN_MODELS and s.k != 2:
        unit = f"{pct(s.unit.mean)} (per pair: {per_pair_text(s)})"
    over = (
        ""
        if s.change is None or (s.k < MIN_MODELS and s.k != 2)
        else f" (over {over_phrase(s.change.scope, s.k, s.m)})"
    )
    return (
        f"{NAMES[s.method]}{at}: raw L2 {pct(s.l2)} from r = 0 to {s.r1:g}: map norm "
        f"{pct(s.norm)}, unit-map distance {unit}{over}; {verdict(s)}."
    )


def shrinkage_line(s: Split) -> str:
    """Where the raw distance falls but the maps do not measurably agree more, in brief."""
    at = "" if s.n is None else f" (n = {s.n})"
    return f"{NAMES[s.method]}{at}: raw L2 {pct(s.l2)}, unit-map distance {interval_text(s)}"


def recommended_text(a: MethodAdvice | None) -> str:
    """The advice's r in a table cell."""
    if a is None or a.status == "not measured":
        return "-"
    if a.status == "too few models":
        return "- (too few models)"
    if a.status == "no smoothing":
        return "none: no r measurably better than r = 0"
    edge = " (best at the sweep's edge)" if a.best_at_sweep_edge else ""
    return f"{a.recommended_r:g}{edge}"


def answer_table(
    found: list[Split], advice: Advice | None, measure: str, within: dict | None = None
) -> Table:
    """The report's opening: a row per method (and n) with the split of the raw change, the
    unit-map distance's change with its interval (with fewer than four models, each pair's
    change), what that interval is over, the verdict, and the recommended r for the
    stability measure the advice used; with ``within`` (``{(method, n): words}``), whether the
    change holds within the model pairs that predict the same class."""
    rows = []
    for s in found:
        few = s.k < MIN_MODELS and s.k != 2
        unit = f"per pair: {per_pair_text(s)}" if few else interval_text(s)
        over = "-" if (few or s.change is None) else over_phrase(s.change.scope, s.k, s.m)
        rec = None if advice is None else advice.of(s.method, s.n)
        rows.append(
            [NAMES[s.method], "-" if s.n is None else str(s.n), f"{s.r1:g}", pct(s.l2)]
            + [pct(s.norm), unit, over, verdict(s), recommended_text(rec)]
            + ([] if within is None else [within.get((s.method, s.n), "-")])
        )
    header = ["method", "n", "r from 0 to", "raw L2", "map norm", "unit-map distance"]
    header += ["interval over", "verdict", f"recommended r (by {MEASURES[measure]})"]
    header += [] if within is None else ["same prediction"]
    return Table(header, rows)


def scope_lines(found: list[Split]) -> list[str]:
    """What the first screen must say about the intervals: what they are over, and where too
    few models leave no verdict; with an interval over retraining, a second line says how it
    is built and that a rerun differs (shown on demand)."""
    if not found:
        return []
    ks = sorted({s.k for s in found})
    ms = sorted({s.m for s in found})
    images = f"{ms[0]} test images" if len(ms) == 1 else f"{ms[0]}-{ms[-1]} test images"
    if ks == [2]:
        return [
            f"One pair of models: every interval below is about these two models, over the "
            f"{images} and their Monte-Carlo draws only. It says nothing about models trained "
            f"anew; that needs at least {MIN_MODELS} models (per training-set size)."
        ]
    if ks[-1] < MIN_MODELS:
        return [
            f"{models_phrase(ks)} per training-set size: too few for an interval over "
            f"retraining (it needs at least {MIN_MODELS}). The table gives each pair's change "
            f"and no verdict; the intervals further down are over the {images} and their "
            "Monte-Carlo draws, for these models only."
        ]
    text = (
        f"Intervals are 95%, over retraining (the {models_phrase(ks)} per training-set size "
        f"stand for models trained anew), the {images} and their Monte-Carlo draws."
    )
    if ks[0] < MIN_MODELS:
        text += f" Sizes with fewer than {MIN_MODELS} models get no verdict."
    more = (
        "Pairs share models, so they are not independent, and the interval comes from the "
        "models (docs/estimators.md). The numbers are those of this run's models: a rerun (or "
        "another CPU, whose training differs in the last bits) trains other models and gets "
        "other numbers; each interval is built to cover, 95% of the time, the value over all "
        "such retrainings, images and draws."
    )
    return [text, more]


def plan_sentence(a: MethodAdvice, sizes: int) -> str:
    """'Grad-CAM: to tell a 2.0% change from none (...): about 9 models and 64 test images; to
    tell a change as large as the observed +10%, about 10 models and 48 test images.'"""
    at = f" (n = {a.n})" if sizes > 1 and a.n is not None else ""
    plan, *rest = a.plans

    def needs(p: SizePlan) -> str:
        if p.k is None:
            return "out of reach with up to 40 models and 1024 test images"
        return f"about {p.k} models and {p.m} test images"

    text = (
        f"{NAMES[a.method]}{at}: to tell a {100 * plan.target:.1f}% change from none (a 95% "
        f"interval of +-{100 * plan.target:.1f}% on the unit-map distance's change from r = 0 to "
        f"{plan.r1:g}, against this run's {pct(plan.observed)} +-{100 * plan.current:.1f}%): "
        f"{needs(plan)}"
    )
    for p in rest:
        text += f"; to tell a change as large as the observed {pct(p.observed)}, {needs(p)}"
    return text + "."


def plan_lines(advice: Advice | None, sizes: int) -> list[str]:
    """The sample-size sentences, with how they were made."""
    if advice is None:
        return []
    lines = [plan_sentence(a, sizes) for a in advice.methods if a.plans]
    if not lines:
        return []
    first = next(a for a in advice.methods if a.plans).plans[0]
    lines.append(
        f"These plans come from this run's own variance components ({first.pilot_k} models, "
        f"{first.pilot_m} images; the cheapest design, counting a model's training as "
        f"{first.cost_per_model:,.0f} and an image's attribution as {first.cost_per_image:,.0f} "
        "model evaluations; the predicted median half-width). One run's components are noisy: "
        "treat a plan as a rough guide (`smoothstab plan --pilot RUN_DIR --target-halfwidth X` "
        "prices it)."
    )
    return lines


def no_smoothing_lines(advice: Advice | None, sizes: int) -> list[str]:
    """'No smoothing recommended' where no r within the budget is measurably better."""
    if advice is None:
        return []
    out = []
    for a in advice.methods:
        if a.status != "no smoothing":
            continue
        at = f" (n = {a.n})" if sizes > 1 and a.n is not None else ""
        best = a.level(a.best_r) if a.best_r is not None else None
        tail = ""
        if best is not None and best.change is not None:
            c = best.change
            tail = (
                f"; the most stable r within the budget, {a.best_r:g}, changes it by "
                f"{c.estimate:+.3g} [{c.lo:+.3g}, {c.hi:+.3g}] (inconclusive, not 'no effect')"
            )
        out.append(
            f"{NAMES[a.method]}{at}: no smoothing recommended: no r within the fidelity budget "
            f"is measurably more stable ({MEASURES[a.measure]}) than r = 0{tail}."
        )
    return out


def size_overview(
    summary: Summary, method: str, rs: list[float], debiased: bool, accuracy: dict[int, float]
) -> Table | None:
    """Per training-set size: the models' test accuracy and, at each r of ``rs``, the raw L2
    stability error, the unit-map distance and the map norm (each with its interval);
    ``None`` with one size."""
    if len(summary.sizes) < 2:
        return None
    parts = (("stability", "raw L2"), ("unit_distance", "unit-map distance"), ("map_norm", "norm"))
    header = ["n", "test accuracy"] + [f"{label} (r={r:g})" for r in rs for _, label in parts]
    rows = []
    for n in summary.sizes:
        acc = accuracy.get(n)
        row = [str(n), "-" if acc is None else f"{acc:.3f}"]
        row += [
            fmt(summary.get(method, Metric.of(m, debiased), r, n)) for r in rs for m, _ in parts
        ]
        rows.append(row)
    return Table(header, rows)


def shrinkage_lines(found: list[Split]) -> list[str]:
    """Where the raw distance keeps falling but agreement does not measurably improve: one
    line, or none."""
    lines = [shrinkage_line(s) for s in found if s.shrinkage_only]
    if not lines:
        return []
    r1 = found[0].r1
    return [
        f"From r = 0 to {r1:g} the raw L2 distance falls while agreement does not measurably "
        f"improve (smaller maps, not more alike ones): {'; '.join(lines)}."
    ]


def _plan_clause(a: MethodAdvice) -> str:
    """'about 10 models and 48 test images would decide it', from the advice's sample-size
    plan for this run's observed change where there is one; else what the plan for the target
    change would tell ('': no plan)."""
    if not a.plans:
        return ""
    p = a.plans[-1]
    need = (
        "more than 40 models and 1024 test images"
        if p.k is None
        else f"about {p.k} models and {p.m} test images"
    )
    if len(a.plans) > 1:  # the observed change's plan: it would decide this run's question
        return f"{need} would decide it"
    return f"{need} would tell a {100 * p.target:.1f}% change from none"


def todo_line(a: MethodAdvice, s: Split | None, sigma: Callable[[float], float]) -> str:
    """What to do with one method, in one line: the advice's r (or no smoothing, or why there
    is no advice) and whether the maps agree more, or, where this run cannot tell, how many
    models and images would decide it."""
    name = f"**{NAMES[a.method]}**"
    if a.status == "not measured":
        return f"{name}: not measured (no stability sweep with r = 0 to advise from)."
    if a.status == "too few models":
        text = f"{name}: cannot tell: {a.k} models, advice needs {MIN_MODELS} or more"
    elif a.status == "no smoothing":
        text = f"{name}: do not smooth (no r measurably more stable within the fidelity budget)"
    else:
        r = a.recommended_r
        text = f"{name}: smooth with r = {r:g} (sigma = {sigma(r):.3g})"
        if a.best_at_sweep_edge:
            text += " (the curve may keep falling beyond the sweep)"
    if s is not None and s.decided and s.sign is not None:
        unit = f"(unit-map distance from r = 0 to {s.r1:g}: {interval_text(s)})"
        if s.sign == 0:
            plan = _plan_clause(a)
            text += f"; agree more or only shrink? cannot tell yet {unit}"
            text += f": {plan}" if plan else ""
        else:
            text += f"; {verdict(s)} {unit}"
    return text + "."


def todo_lines(
    found: list[Split], advice: Advice | None, sigma: Callable[[float], float]
) -> list[str]:
    """A what-to-do line per method, at the largest training-set size."""
    if advice is None:
        return []
    out = []
    for method in dict.fromkeys(a.method for a in advice.methods):
        a = advice.of(method)
        if a is None:
            continue
        s = next((s for s in found if s.method == method and s.n == a.n), None)
        out.append(todo_line(a, s, sigma))
    return out


def _short_advice(a: MethodAdvice) -> str:
    if a.status == "smooth":
        return f"r = {a.recommended_r:g}"
    return {"no smoothing": "no smoothing", "too few models": "no advice (too few models)"}.get(
        a.status, "not measured"
    )


def sizes_sentence(advice: Advice | None) -> str:
    """Where the recommended r differs between training-set sizes: which to use ('' where it
    does not, or with one size)."""
    if advice is None:
        return ""
    differ = []
    for method in dict.fromkeys(a.method for a in advice.methods):
        per = [a for a in advice.methods if a.method == method and a.n is not None]
        if len(per) > 1 and len({recommended_text(a) for a in per}) > 1:
            at = ", ".join(f"{_short_advice(a)} at n = {a.n}" for a in per)
            differ.append(f"{NAMES[method]}: {at}")
    if not differ:
        return ""
    largest = max(a.n for a in advice.methods if a.n is not None)
    return (
        f"The recommended r depends on the training-set size ({'; '.join(differ)}): use the "
        "one of the size nearest your own models' training set; the lines above are for the "
        f"largest, n = {largest}, the closest guide for models trained on more data."
    )


ANSWER = "The answer: more alike, or only smaller?"


def answer(
    found: list[Split],
    advice: Advice | None,
    *,
    measure: str,
    debiased: bool,
    sizes: int,
    sigma: Callable[[float], float],
    picture: Figure | None = None,
    within: dict | None = None,
) -> list[Block]:
    """The report's first screen: do the smoothed maps of different models agree more, or only
    shrink? What the intervals are over, a row per method (and n), the picture that shows it
    beside what to do per method (the advice, or how many models and images would decide it),
    and, on demand, how to read the table and the sample-size plans in full."""
    intro = (
        "Smoothing shrinks maps, so the raw L2 stability error falls with their size as well "
        "as with their agreement. Per method, its change from r = 0 to the largest r split "
        "into each model's map norm and the scale-free unit-map distance "
        f"({'debiased' if debiased else 'plain'} estimates); the maps agree more only where "
        "the unit-map distance's interval lies below 0."
    )
    todo: list[Block] = [Heading(3, "What to do"), Bullets(todo_lines(found, advice, sigma))]
    if sentence := sizes_sentence(advice):
        todo.append(Paragraph(sentence))
    scope, *rest = scope_lines(found) or [""]
    blocks: list[Block] = [Paragraph(f"**{ANSWER}** {scope}".strip())]
    blocks.append(answer_table(found, advice, measure, within))
    blocks.append(Side([[picture], todo]) if picture is not None else Side([todo]))
    more = [Paragraph(line) for line in rest] + [Paragraph(intro)]
    more += [Paragraph(line) for line in no_smoothing_lines(advice, sizes)]
    more += [Paragraph(line) for line in plan_lines(advice, sizes)]
    blocks.append(
        Details("How to read the table, and how many models and images would decide it", more)
    )
    return blocks

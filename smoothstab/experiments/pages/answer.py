"""Agreement or shrinkage: whether a falling raw stability error means maps more alike or only
smaller, per method and training-set size, in words and small tables for the report.

Smoothing averages gradients and shrinks each model's map, so the paper's raw L2 stability
error (Eq. 12) falls with the maps' size as well as with their agreement. A :class:`Split`
takes its change from r = 0 to the largest r apart into the map norm and the scale-free
unit-map distance (:mod:`smoothstab.agreement`), and gives a verdict from the latter's interval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smoothstab.experiments.analysis.advice import recommend
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.analysis.verdicts import Split, splits
from smoothstab.experiments.pages.blocks import Block, Heading, Paragraph, Table
from smoothstab.experiments.pages.findings import fmt
from smoothstab.experiments.pages.names import BANDS, MEASURES, NAMES

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import ExperimentConfig


def pct(x: float) -> str:
    """A relative change as a signed percentage; one decimal below 10%, so a bound near 0 keeps
    its sign honest (-0.3%, not -0%)."""
    return f"{100 * x:+.1f}%" if abs(x) < 0.0995 else f"{100 * x:+.0f}%"


def split_sentence(s: Split, sizes: int) -> str:
    """'Simple-Grad (n = 1600): raw L2 -19% from r = 0 to 0.4: map norm -11%, unit-map distance
    -7% [-12%, -2%]; the maps agree more.'"""
    at = f" (n = {s.n})" if sizes > 1 else ""
    u = s.unit
    return (
        f"{NAMES[s.method]}{at}: raw L2 {pct(s.l2)} from r = 0 to {s.r1:g}: map norm "
        f"{pct(s.norm)}, unit-map distance {pct(u.mean)} [{pct(u.lo)}, {pct(u.hi)}] "
        f"({s.how}); {s.verdict}."
    )


def shrinkage_line(s: Split) -> str:
    """Where the raw distance falls but the maps do not measurably agree more, in brief."""
    at = "" if s.n is None else f" (n = {s.n})"
    u = s.unit
    unit = f"{pct(u.mean)} [{pct(u.lo)}, {pct(u.hi)}]"
    return f"{NAMES[s.method]}{at}: raw L2 {pct(s.l2)}, unit-map distance {unit}"


def answer_table(
    summary: Summary, methods: list[str], *, debiased: bool, kind: str, budget: float, measure: str
) -> Table:
    """The report's opening: a row per method (and n) with the split of the raw change, the
    verdict, and the recommended r (the most stable within the fidelity budget, else the knee)
    for the stability measure the advice used."""
    rows = []
    for s in splits(summary, methods, debiased, kind):
        rec = recommend(
            summary, [s.method], debiased=debiased, budget=budget, measure=measure, n=s.n
        )[s.method]
        r, why = rec["budget_r"], "within budget"
        if r is None:
            r, why = rec["knee_r"], "knee"
        u = s.unit
        rows.append(
            [NAMES[s.method], "-" if s.n is None else str(s.n), f"{s.r1:g}", pct(s.l2)]
            + [pct(s.norm), f"{pct(u.mean)} [{pct(u.lo)}, {pct(u.hi)}]", s.verdict]
            + ["-" if r is None else f"{r:g} ({why})", MEASURES[measure]]
        )
    header = ["method", "n", "r from 0 to", "raw L2", "map norm", "unit-map distance"]
    header += ["verdict", "recommended r", "measured by"]
    return Table(header, rows)


def size_overview(
    summary: Summary, method: str, rs: list[float], debiased: bool, accuracy: dict[int, float]
) -> Table | None:
    """Per training-set size: the models' test accuracy and, at each r of ``rs``, the raw L2
    stability error, the unit-map distance and the map norm; ``None`` with one size."""
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
    """Where the raw distance keeps falling but agreement does not improve: one line, or none."""
    lines = [shrinkage_line(s) for s in found if s.shrinkage_only]
    if not lines:
        return []
    r1 = found[0].r1
    return [
        f"From r = 0 to {r1:g} the raw L2 distance falls while agreement does not improve "
        f"(smaller maps, not more alike ones): {'; '.join(lines)}."
    ]


def answer(cfg: ExperimentConfig, summary: Summary) -> list[Block]:
    """The report's opening: do the smoothed maps of different models agree more, or only
    shrink? A row per method (and n)."""
    e = cfg.evaluation
    kw = dict(debiased=e.debiased, kind=e.band, budget=e.fidelity_budget)
    table = answer_table(summary, list(cfg.attribution.methods), measure=e.stability_measure, **kw)
    return [
        Heading(2, "The answer: more alike, or only smaller?"),
        Paragraph(
            "Smoothing shrinks maps, so the raw L2 stability error falls with their size as well "
            "as with their agreement. Per method, its change from r = 0 to the largest r split "
            "into each model's map norm and the scale-free unit-map distance (interval: "
            f"{BANDS[e.band]}; {'debiased' if e.debiased else 'plain'} estimates); the maps "
            "agree more only where that interval lies below 0."
        ),
        table,
    ]

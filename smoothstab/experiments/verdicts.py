"""Agreement or shrinkage: whether a falling raw stability error means maps more alike or only
smaller, per method and training-set size, in words and small tables for the report.

Smoothing averages gradients and shrinks each model's map, so the paper's raw L2 stability
error (Eq. 12) falls with the maps' size as well as with their agreement. A :class:`Split`
takes its change from r = 0 to the largest r apart into the map norm and the scale-free
unit-map distance (:mod:`smoothstab.agreement`), and gives a verdict from the latter's interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smoothstab.experiments.advice import recommend
from smoothstab.experiments.aggregate import Band, band
from smoothstab.experiments.blocks import Block, Heading, Paragraph, Table
from smoothstab.experiments.findings import fmt
from smoothstab.experiments.measures import Metric
from smoothstab.experiments.metrics_table import Summary
from smoothstab.experiments.names import BANDS, MEASURES, NAMES
from smoothstab.experiments.rundir import RunDir

if TYPE_CHECKING:
    from smoothstab.experiments.experiment import ExperimentConfig


@dataclass(frozen=True)
class Split:
    """How the raw stability error of one method and training-set size changes from r = 0 to
    ``r1``, split into the models' map norm (size) and the unit-map distance (direction).

    ``l2``, ``norm``: relative changes of the means over pairs and models; ``unit``: the
    relative change of the unit-map distance, its mean over pairs and the interval (``how``
    says of what: the spread over model pairs, or the Monte-Carlo error when there is one pair).
    Since ``||a - b||^2 = (||a|| - ||b||)^2 + ||a|| ||b|| u^2``, the raw change is about the
    product of the other two when the models' norms are alike.
    """

    method: str
    n: int | None
    r1: float
    l2: float
    norm: float
    unit: Band
    how: str
    bounded: bool = True  # False: one pair and no Monte-Carlo error, so no interval

    @property
    def verdict(self) -> str:
        if not self.bounded:
            return "no interval to tell"
        if self.unit.hi < 0:
            return "the maps agree more"
        if self.unit.lo > 0:
            return "the maps agree less"
        return "no more or less than the interval can tell"

    @property
    def shrinkage_only(self) -> bool:
        """The raw distance falls while the maps do not measurably come to agree more."""
        return self.l2 < 0 and self.verdict != "the maps agree more"


def pct(x: float) -> str:
    """A relative change as a signed percentage; one decimal below 10%, so a bound near 0 keeps
    its sign honest (-0.3%, not -0%)."""
    return f"{100 * x:+.1f}%" if abs(x) < 0.0995 else f"{100 * x:+.0f}%"


def split(
    summary: Summary, method: str, n: int | None, debiased: bool, kind: str = "t95"
) -> Split | None:
    """The :class:`Split` from r = 0 to the largest r of the stability sweep (``None`` when the
    run lacks a curve)."""
    unit_metric = Metric.of("unit_distance", debiased)
    curve = summary.curve(method, unit_metric, n)
    if len(curve) < 2 or curve[0][0] != 0:
        return None
    r1 = curve[-1][0]
    at0, at1 = (summary.per_pair_or_model(method, unit_metric, r, n) for r in (0.0, r1))
    per_pair = [at1[p] / at0[p] - 1 for p in at0 if p in at1 and at0[p] > 0]
    if not per_pair:
        return None
    if len(per_pair) > 1:
        unit, how = band(per_pair, kind), f"interval over {len(per_pair)} model pairs"
    else:  # no spread over pairs to show: the Monte-Carlo error alone, when the run has it
        se = summary.mc_stderr(method, unit_metric, r1, n)
        half = 0.0 if se is None else 1.96 * se / curve[0][1].mean
        unit = Band(per_pair[0], per_pair[0] - half, per_pair[0] + half)
        how = "one model pair, " + ("no interval" if se is None else "Monte-Carlo interval only")

    def change(metric: Metric) -> float:
        return (
            summary.get(method, metric, r1, n).mean / summary.get(method, metric, 0.0, n).mean - 1
        )

    l2, norm = change(Metric.stability(debiased)), change(Metric.of("map_norm", debiased))
    bounded = len(per_pair) > 1 or summary.mc_stderr(method, unit_metric, r1, n) is not None
    return Split(method, n, r1, l2, norm, unit, how, bounded)


def splits(summary: Summary, methods: list[str], debiased: bool, kind: str) -> list[Split]:
    found = (split(summary, m, n, debiased, kind) for m in methods for n in summary.sizes)
    return [s for s in found if s is not None]


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


def accuracy_by_size(run: RunDir) -> dict[int, float]:
    """The mean test accuracy of the models of each training-set size."""
    models = (
        run.read_json(run.train_metrics).get("models", []) if run.train_metrics.is_file() else []
    )
    per: dict[int, list[float]] = {}
    for m in models:
        if isinstance(m.get("test_accuracy"), float) and "train_size" in m:
            per.setdefault(int(m["train_size"]), []).append(m["test_accuracy"])
    return {n: sum(v) / len(v) for n, v in per.items()}

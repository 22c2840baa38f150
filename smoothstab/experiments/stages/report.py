"""The report stage: ``report.md`` and a self-contained ``report.html`` (figures embedded).

The report is a list of typed blocks (:mod:`~smoothstab.experiments.pages.blocks`): a first
screen that answers (:func:`first_screen`: the verdict table, the answer picture, what to do per
method), the contents, then one :class:`~smoothstab.experiments.pages.blocks.Section` per entry
of :data:`SECTIONS`, each a function of the run's :class:`Inputs`; the renderer gives every
section its anchor and contents entry and collapses its tables in the HTML. The conventions,
from the config alone, are :mod:`~smoothstab.experiments.pages.conventions`. Building it imports
no plotting library. Long (about 610 lines) because each section's function stays beside the
others it orders, one job: the page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from smoothstab.experiments.analysis.advice import Advice, Interval, MethodAdvice
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.analysis.verdicts import Split, splits
from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.pages import bounds_page, meaning_page
from smoothstab.experiments.pages.answer import (
    answer,
    shrinkage_lines,
    size_overview,
    split_sentence,
)
from smoothstab.experiments.pages.blocks import (
    Block,
    Bullets,
    Code,
    Contents,
    Details,
    Figure,
    Heading,
    Paragraph,
    Section,
    Table,
    as_sections,
    render_html,
    render_markdown,
)
from smoothstab.experiments.pages.conventions import conventions
from smoothstab.experiments.pages.findings import best_levels, fmt, size_table, trends
from smoothstab.experiments.pages.names import BANDS, MEASURES, NAMES
from smoothstab.experiments.rundir.advice_record import read_advice
from smoothstab.experiments.rundir.bounds_record import read_bounds
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.table1_file import read_table1
from smoothstab.experiments.rundir.train_record import TrainRecord, read_train_record
from smoothstab.inference import MIN_MODELS

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import ExperimentConfig


def table1_note(rows: list[dict], k: int, m: int) -> str:
    """One sentence: what Table 1's intervals are over (``k`` models, ``m`` images)."""
    over = {row["interval_over"] for row in rows if row.get("interval_over")}
    if not over:
        return "Table 1 gives means without intervals."
    if over == {"retraining"}:
        return (
            "The mean row's brackets are 95% intervals over retraining (the "
            f"{k} models of the largest n stand for models trained anew), the {m} test images "
            "and their Monte-Carlo draws; a pair's row is that pair's mean over the images."
        )
    return (
        "The mean row's brackets are 95% intervals over the test images and their Monte-Carlo "
        f"draws for these {k} models only: too few models for an interval over retraining."
    )


def table1_block(rows: list[dict], cfg: ExperimentConfig) -> Table:
    """Table 1 as the evaluate stage wrote it (``table1.csv``, read by :func:`.read_table1`)."""
    r = round(float(cfg.attribution.table_r), 6)
    header = ["method", "models", "SSIM", f"smoothed SSIM (r={r:g})", "top-k mIoU"]
    header += ["smoothed top-k mIoU", "unit-map distance", "smoothed unit-map distance"]
    keys = ("ssim", "smoothed_ssim", "topk_miou", "smoothed_topk_miou")
    keys += ("unit_distance", "smoothed_unit_distance")
    body = [[NAMES[row["method"]], row["pair"], *(fmt(row[k]) for k in keys)] for row in rows]
    return Table(header, body)


def sweep_block(summary: Summary, method: str, debiased: bool, n: int | None = None) -> Table:
    """Per r: sigma, the paper's plain stability and fidelity errors and, when asked, ours
    (debiased) with their Monte-Carlo standard errors."""
    header = ["r", "sigma", "stability (paper)", "fidelity (paper)"]
    if debiased:
        header += ["stability (ours)", "MC s.e.", "fidelity (ours)", "MC s.e."]
    rows = []
    for r, _ in summary.curve(method, Metric.STABILITY, n):
        row = [f"{r:g}", f"{summary.sigma(r):.4g}"]
        row += [fmt(summary.get(method, m, r, n)) for m in (Metric.STABILITY, Metric.FIDELITY)]
        for m in (Metric.STABILITY_DEBIASED, Metric.FIDELITY_DEBIASED) if debiased else ():
            se = summary.mc_stderr(method, m, r, n)
            row += [fmt(summary.get(method, m, r, n)), "-" if se is None else f"{se:.2g}"]
        rows.append(row)
    return Table(header, rows)


def cost_section(x: Inputs) -> Section | None:
    """Per method and r: draws and model evaluations spent, and the relative Monte-Carlo
    standard error of the maps (mean and worst image), from ``rel_se``/``model_evals`` rows
    (only those rows are made into dicts)."""
    return cost_blocks(x.cfg, x.run.iter_rows((Metric.REL_SE, Metric.MODEL_EVALS)))


def cost_blocks(cfg: ExperimentConfig, rows: Iterable[dict]) -> Section | None:
    a = cfg.attribution
    per: dict[tuple[str, float], dict[str, list[float]]] = {}
    for row in rows:
        if row["metric"] in (Metric.REL_SE, Metric.MODEL_EVALS):
            per.setdefault((row["method"], row["r"]), {}).setdefault(row["metric"], [])
            per[(row["method"], row["r"])][row["metric"]].append(row["value"])
    if not per:
        return None
    tol = a.tolerance
    header = ["method", "r", "model evaluations", "per map (mean, min-max)", "rel. s.e. (mean)"]
    header += ["rel. s.e. (worst image)"] + ([f"maps within {tol:g}"] if tol else [])
    body, totals = [], {}
    for (method, r), found in per.items():
        evals, rel = found.get(Metric.MODEL_EVALS, []), found.get(Metric.REL_SE, [])
        totals[method] = totals.get(method, 0) + sum(evals)
        row = [NAMES[method], f"{r:g}", f"{sum(evals):.0f}"]
        row.append(
            f"{sum(evals) / len(evals):.1f} ({min(evals):.0f}-{max(evals):.0f})" if evals else "-"
        )
        row += [f"{sum(rel) / len(rel):.3g}", f"{max(rel):.3g}"] if rel else ["-", "-"]
        if tol:
            row.append(f"{sum(v <= tol for v in rel)}/{len(rel)}" if r > 0 else "exact")
        body.append(row)
    spent = "; ".join(f"{NAMES[m]} {v:.0f}" for m, v in totals.items())
    how = (
        f"draws until each map's relative standard error is at most {tol:g}"
        if tol
        else f"a fixed {a.n_samples} draws per map"
    )
    table = Table(
        header,
        body,
        f"Per method and r: model evaluations and relative Monte-Carlo "
        f"error of the maps ({len(body)} rows)",
    )
    return Section(
        "Monte-Carlo error and cost",
        [
            Paragraph(
                f"Every smoothed map is a Monte-Carlo mean ({how}); its relative standard error "
                "estimates its root-mean-square distance from the exact smoothed map, relative to "
                "the exact map's norm (estimated as sqrt(||map||^2 - ||se||^2)). Model "
                "evaluations are forward and backward passes (one per draw, one per quadrature "
                "point for nested IG), summed over models and images; the "
                f"unsmoothed maps (r = 0) are exact. In all: {spent} model evaluations."
            ),
            table,
        ],
    )


def advice_items(advice: Advice, summary: Summary) -> list[str]:
    """The recommended noise level per method (largest n), from ``recommendation.json``'s
    record: the r and why, the knee where the curve falls measurably, the edges."""
    items = []
    first = next((a for a in advice.methods if a.levels), None)
    if first is not None:
        rs = [lv.r for lv in first.levels]
        size = "" if first.n is None else f" at n = {first.n}"
        items.append(
            f"From the {'debiased' if first.debiased else 'plain'} stability "
            f"({MEASURES[first.measure]}) and fidelity curves{size}, over the swept r = "
            f"{min(rs):g} to {max(rs):g}, with the fidelity budget: fidelity error <= "
            f"{first.fidelity_budget:g} x ||unsmoothed map|| (point estimates). An r is "
            "measurably more stable than r = 0 where the 95% interval of the paired change lies "
            "below 0; the recommended r is the smallest such r within the budget that cannot be "
            "told from the most stable one within the budget (one standard error of their "
            "paired difference)."
        )
    for method in dict.fromkeys(a.method for a in advice.methods):
        a = advice.of(method)
        if a is not None:
            items.append(advice_text(a, summary))
    return items


def advice_text(a: MethodAdvice, summary: Summary) -> str:
    name = NAMES[a.method]
    if a.status == "not measured":
        return f"{name}: no stability sweep with r = 0 and per-image values to advise from."
    if a.status == "too few models":
        who = "these two models" if a.k == 2 else f"{a.k} models"
        return (
            f"{name}: {who}: too few for advice that holds for models trained anew (it needs "
            f"{MIN_MODELS} or more); the most stable r within the budget is {a.best_r:g} here."
        )
    if a.status == "no smoothing":
        return (
            f"{name}: no smoothing recommended: no r within the budget is measurably more "
            "stable than r = 0."
        )
    text = f"{name}: r = {a.recommended_r:g} (sigma = {summary.sigma(a.recommended_r):.4g})"
    lv = a.level(a.recommended_r)
    if lv is not None and lv.change is not None:
        c = lv.change
        text += f", stability change from r = 0: {c.estimate:+.3g} [{c.lo:+.3g}, {c.hi:+.3g}]"
    same = a.best_r == a.recommended_r
    if not same:
        text += f"; the most stable r within the budget, {a.best_r:g}, cannot be told from it"
    if a.best_at_sweep_edge:
        text += "; the most stable r is the sweep's largest: the curve may keep falling beyond"
    elif a.best_at_budget_edge:
        text += (
            "; it is the most stable r within the budget" if same else "; that r"
        ) + " and the budget's edge: the next r's fidelity error is over the budget"
    if a.knee_r is not None:
        text += f"; knee of the trade-off at r = {a.knee_r:g}"
        if a.knee_range is not None:
            lo, hi = a.knee_range
            alone = f"{lo:g} with any one model left out" if lo == hi else None
            text += f" ({alone or f'{lo:g} to {hi:g} with one model left out'})"
    return text + "."


def models_text(cfg: ExperimentConfig, trained: TrainRecord | None) -> str:
    parts = []
    for k, m in enumerate(trained.models if trained is not None else ()):
        acc = m.get("test_accuracy")
        name = m.get("name") or cfg.train.model
        if m.get("label"):  # DR/DA: what tells two checkpoints of one architecture apart
            name = f"{m['label']} ({name}, weights {m.get('weights') or 'random init'})"
        parts.append(
            f"model {k}: {name}" + (f" (test accuracy {acc:.3f})" if isinstance(acc, float) else "")
        )
    return f"{Setting.of(cfg).title}. " + "; ".join(parts) + "."


@dataclass(frozen=True)
class Inputs:
    """What every section reads: the config, the run directory and its records."""

    cfg: ExperimentConfig
    run: RunDir
    summary: Summary
    advice: Advice
    found: list[Split]
    table1: list[dict]
    trained: TrainRecord | None
    x_range: float


def recommended_section(x: Inputs) -> Section:
    """The recommended noise level: the advice per method and the trade-off figure."""
    blocks: list[Block] = [Bullets(advice_items(x.advice, x.summary) + shrinkage_lines(x.found))]
    blocks.append(
        Figure(
            x.run.figure("tradeoff"),
            "Trade-off: fidelity error against stability error, one point per r.",
        )
    )
    return Section("Recommended noise level", blocks)


def sweep_findings(x: Inputs) -> Section:
    """What the sweep shows: trends, agreement or shrinkage, where the maps agree most."""
    methods, e, summary = list(x.cfg.attribution.methods), x.cfg.evaluation, x.summary
    return Section(
        "What the sweep shows",
        [
            Bullets(trends(summary, methods, e.debiased)),
            Heading(3, "Agreement or shrinkage"),
            Bullets([split_sentence(s, len(summary.sizes)) for s in x.found] or ["not measured"]),
            Heading(3, "Where the models' maps agree most (Fig 6)"),
            Paragraph(
                "Where a similarity peaks: the r whose paired difference to the peak has a 95% "
                "interval holding 0 cannot be told from it (intervals over retraining, the "
                "images and their draws from four models on; else over images for these models)."
            ),
            Bullets(best_levels(summary, methods, e.topk) or ["SSIM and top-k not measured"]),
        ],
    )


def models_section(x: Inputs) -> Section:
    return Section("Setting and models", [Paragraph(models_text(x.cfg, x.trained))])


def conventions_section(x: Inputs) -> Section:
    return Section(
        "Conventions",
        [
            Details(
                "How maps, distances, noise levels and intervals are defined here",
                [Bullets(conventions(x.cfg, x.x_range))],
            )
        ],
    )


def sizes_section(x: Inputs) -> Section | None:
    """Stability error against the training-set size, per method and r (when there are two)."""
    cfg, summary, trained = x.cfg, x.summary, x.trained
    if len(summary.sizes) < 2:
        return None
    out: list[Block] = [
        Paragraph(
            "The paper's claim: stability error falls as the models see more training data. "
            "Per r, the paper's plain stability error at each n with its 95% interval, and the "
            "largest n's minus the smallest's with its interval: two independent sets of "
            "models on the same test images, so the interval adds both sets' spread over "
            "retraining to the images' (over images only, for these models, below four models "
            "per n)."
        ),
    ]
    rs = [0.0, round(float(cfg.attribution.table_r), 6)]
    accuracy = {} if trained is None else trained.accuracy_by_size()
    for m in cfg.attribution.methods:
        table = size_table(summary, m, Metric.STABILITY)
        if table is not None:
            summary_ = f"{NAMES[m]}: the stability error per r at each n, and its change with n"
            out += [Heading(3, NAMES[m]), replace(table, summary=summary_)]
        overview_ = size_overview(summary, m, rs, cfg.evaluation.debiased, accuracy)
        if overview_ is not None:
            out += [
                Paragraph(
                    f"{NAMES[m]} per n: the raw L2 stability error, the scale-free unit-map "
                    "distance, the map norm (each with its 95% interval, as above), and the "
                    "models' test accuracy."
                ),
                replace(overview_, summary=f"{NAMES[m]} per n: error, distance, norm, accuracy"),
            ]
    return Section("Stability and the training-set size", out)


def table1_section(x: Inputs) -> Section:
    """Table 1 (its rows as ``table1.csv`` holds them)."""
    k, m = _scope(x)
    summary = "Per method and pair: SSIM, top-k mIoU and unit-map distance, unsmoothed and smoothed"
    return Section(
        "Table 1: similarity of the two models' maps",
        [
            Paragraph(table1_note(x.table1, k, m)),
            replace(table1_block(x.table1, x.cfg), summary=summary),
        ],
    )


def _scope(x: Inputs) -> tuple[int, int]:
    """Models and images of the first method's unsmoothed unit-map distance."""
    first = x.summary.cells(x.cfg.attribution.methods[0], Metric.UNIT_DISTANCE, 0.0)
    return (0, 0) if first is None else (first.k, first.m)


def curves_section(x: Inputs) -> Section:
    """The error curves (Figs 2-6) and a table per method and size."""
    cfg, run, summary = x.cfg, x.run, x.summary
    k, m = _scope(x)
    e = cfg.evaluation
    out: list[Block] = [
        Figure(
            run.figure("stability"),
            "Stability error vs r, one colour per training-set size n (Figs 2-3): the paper's "
            "plain estimate dashed, ours (debiased) solid, with bands: "
            f"{BANDS[e.band]}. Below it, the same split into direction (the scale-free "
            "unit-map distance) and size (each model's map norm).",
        ),
        Figure(run.figure("fidelity"), "Fidelity error vs r (Figs 4-5), as above."),
        Figure(run.figure("ssim_topk"), "SSIM and top-k mIoU vs r (Fig 6)."),
    ]
    out.append(
        Paragraph(
            "Per method and r: each error is the mean over model pairs (or models) and images "
            "with its 95% interval, "
            + (
                f"over retraining ({k} models), the {m} test images and their Monte-Carlo draws; "
                if k >= MIN_MODELS
                else f"over the {m} test images and their draws, for these {k} models only; "
            )
            + "the MC s.e. is the Monte-Carlo error alone (already inside the interval, each "
            "image having its own draws)."
        )
    )
    for method in cfg.attribution.methods:
        for n in summary.sizes:
            at = f", n = {n}" if len(summary.sizes) > 1 else ""
            table = sweep_block(summary, method, cfg.evaluation.debiased, n)
            what = f"{NAMES[method]}{at}: stability and fidelity errors per r ({len(table.rows)} r)"
            out.append(replace(table, summary=what))  # its summary names it: no heading
    return Section("Stability and fidelity against the noise level", out)


def map_grids(x: Inputs) -> Section:
    cfg, run, summary = x.cfg, x.run, x.summary
    out: list[Block] = []
    labels = Setting.of(cfg).pair_labels()
    for m in cfg.attribution.methods:
        for i, j in Setting.of(cfg).grid_pairs(summary):
            who = labels.get(f"{i}-{j}", f"models {i} and {j}")
            caption = f"{NAMES[m]}: {who}, unsmoothed and smoothed (Figs 7 and 10-16)."
            out.append(Figure(run.figure(f"grid_{m}_{i}-{j}"), caption))
        out.append(Figure(run.figure(f"sigma_{m}"), f"{NAMES[m]} across noise levels (Figs 8-9)."))
    return Section("Maps", out)


SANITY_INTRO = (
    "A map stable across retraining may be stable because it no longer depends on the model. "
    "Model {model} (the first of the largest training-set size) was compared with {copies} "
    "copies of itself with layers re-initialised ({mode}; Adebayo et al. 2018), every copy "
    "seeing the same noise draws. Sensitivity is 1 - the similarity of the model's map to the "
    "{random}'s. A noise level passes where, on both SSIM and rank agreement, retrained "
    "models' maps agree more with each other than the model's map agrees with the randomised "
    "model's: the gap (per image, retrained models' similarity minus the randomised one's on "
    "the same image) has a 95% interval above 0, over the retrained models (from four; else "
    "for these models) and the images; the randomised side is model {model}'s. It fails where "
    "the interval lies at or below 0, and is undecided in between. A sigma is good only where "
    "maps are both measurably more stable across retraining than at the smallest r checked "
    "(the paired change's interval below 0) and pass."
)


def sanity_section(x: Inputs) -> Section | None:
    """The sanity stage's table, figure and advice per method, when it ran."""
    cfg, run, summary = x.cfg, x.run, x.summary
    if not (cfg.sanity.enabled and run.sanity_csv.is_file()):
        return None
    from smoothstab.experiments.analysis.advice import sanity_advice, sanity_levels
    from smoothstab.experiments.rundir.sanity_rows import config_rows, per_image_similarity

    rows, e = config_rows(cfg, run), cfg.evaluation
    cascade = cfg.sanity.mode == "cascading"
    intro = SANITY_INTRO.format(
        model=rows[0]["model"],
        copies=len({row["step"] for row in rows}),
        mode=cfg.sanity.mode,
        random="fully randomised model" if cascade else "single-layer copies (mean)",
    )
    out: list[Block] = [Paragraph(intro)]
    similar = per_image_similarity(rows, cfg.sanity.mode)
    labels = any(row["metric"] == "sanity_label_ssim" for row in rows)
    if labels:
        out.append(Paragraph(LABEL_INTRO.format(name=label_name(rows))))
    header = ["r", MEASURES[e.stability_measure], "SSIM retrained", "SSIM random", "SSIM gap"]
    header += ["rank retrained", "rank random", "rank gap"]
    keys = ["stability", "ssim_retrained", "ssim_random", "ssim_gap"]
    keys += ["rank_retrained", "rank_random", "rank_gap"]
    checks = ["parameter_verdict", "label_verdict"] if labels else []
    if labels:
        header += ["SSIM permuted labels", "rank permuted labels", "parameters", "labels"]
        keys += ["label_ssim_random", "label_rank_random"]
    header.append("verdict")
    for m in cfg.attribution.methods:
        levels = sanity_levels(summary, similar, m, e.stability_measure, e.debiased)
        body = [
            [f"{lv['r']:g}", *(cell(lv[k]) for k in keys), *(lv[c] for c in checks), lv["verdict"]]
            for lv in levels
        ]
        what = f"{NAMES[m]}: per r, retrained models' and the randomised model's similarity"
        out += [Heading(3, NAMES[m]), Table(header, body, what)]
        out.append(Paragraph(sanity_sentence(NAMES[m], sanity_advice(levels), labels)))
        if labels:
            out.append(Paragraph(label_sentence(NAMES[m], levels)))
        caption = "Stability across retraining against sensitivity to randomisation, per r."
        out.append(Figure(run.figure(f"sanity_{m}"), caption))
    return Section("Sanity check: do the maps depend on the model?", out)


def cell(value) -> str:
    """A table cell: a gap's interval (``+0.12 [+0.05, +0.19]``), else :func:`fmt`."""
    if isinstance(value, Interval):
        return f"{value.estimate:+.3g} [{value.lo:+.3g}, {value.hi:+.3g}]"
    return fmt(value)


LABEL_INTRO = (
    "Label check (Adebayo et al.'s data randomisation): the model's twin {name} was trained "
    "with the same recipe and images and a seed of its own, its training labels permuted across "
    "images. A map "
    "as similar to the twin's as retrained models' maps are to each other does not depend on "
    "what the labels taught the model. The columns 'permuted labels' give the model's map's "
    "similarity to the twin's; 'parameters' and 'labels' each check's verdict (the same "
    "interval rule); a level passes only where both pass."
)


def label_name(rows: list[dict]) -> str:
    return next(r["randomized"] for r in rows if r["metric"] == "sanity_label_ssim")


def label_sentence(name: str, levels: list[dict]) -> str:
    """Which r the label check passes, fails or leaves undecided."""
    by = {v: [f"{lv['r']:g}" for lv in levels if lv["label_verdict"] == v]
          for v in ("passes", "undecided", "fails")}  # fmt: skip
    parts = [f"{v} at r = {', '.join(rs)}" for v, rs in by.items() if rs]
    text = f"{name}, label check: " + "; ".join(parts) + "."
    if by["fails"]:
        text += " Where it fails the map is as similar to the twin's as to a real model's: "
        text += "it does not reflect the labels."
    return text


def sanity_sentence(name: str, advice: dict, labels: bool = False) -> str:
    """The advice on one method's sigma, from
    :func:`~smoothstab.experiments.analysis.advice.sanity_advice` (``labels``: the label check ran,
    and a failure may be its)."""
    other = "the randomised model's" + (" (or the permuted-label twin's)" if labels else "")
    most, good = advice["most_stable_r"], advice["good_r"]
    if most is None:
        return f"{name}: no noise level checked."
    if advice["most_stable_passes"]:
        text = f"{name}: the most stable r = {most:g} passes: its maps still depend on the model."
    elif advice["most_stable_verdict"] == "undecided":
        text = (
            f"{name}: at the most stable r = {most:g} the check is undecided: the gap between "
            "retrained models' agreement and the agreement with the randomised model is within "
            "its 95% interval (more images or models would narrow it)."
        )
    elif advice["first_passes"]:
        text = (
            f"{name}: the most stable r = {most:g} is stable only because the map stopped "
            f"depending on the model: it agrees at least as much with {other} map as "
            f"retrained models' maps agree with each other, which at r = "
            f"{advice['first_r']:g} it did not."
        )
    else:
        text = (
            f"{name}: the most stable r = {most:g} fails, and r = {advice['first_r']:g} does "
            f"not pass either ({advice['first_verdict']}): the map agrees at least as much with "
            f"{other} as retrained models' maps agree with each other, so its "
            "stability is no evidence that it explains the model."
        )
    if good is None:
        return text + " No r is both more stable than the smallest r and passes."
    return text + f" The good sigma: r = {good:g}, the most stable r that passes."


def bounds_section(x: Inputs) -> Section | None:
    """The bounds stage's page, when it ran."""
    run = x.run
    if not run.bounds_json.is_file():
        return None
    out = list(bounds_page.blocks(read_bounds(run.bounds_json)))
    if run.figure("bounds").is_file():
        caption = (
            "Bounds of Theorem 6 and Proposition 7 (log scale), beside measured errors: the "
            "measured stability error is a different quantity from the one bounded."
        )
        out.append(Figure(run.figure("bounds"), caption))
    return Section("Theory: bounds beside the measured errors", out)


def config_section(x: Inputs) -> Section:
    text = x.run.config.read_text()
    return Section(
        "Resolved config", [Code(text, "toml", "The config this run resolved, every key (TOML)")]
    )


# The report's sections after its first screen, in order: each a function of the run's inputs
# returning a Section, or blocks whose level-2 headings open sections (None: nothing to show);
# a new section is one entry here, and gets its contents entry, anchor and collapsed tables from
# the renderer.
def meaning_section(x: Inputs) -> list[Block]:
    """What a similarity means (:func:`meaning_blocks`): its level-2 headings open sections."""
    return meaning_blocks(x.cfg, x.run, x.summary, x.advice)


SECTIONS: tuple[Callable[[Inputs], Section | list[Block] | None], ...] = (
    recommended_section,
    sweep_findings,
    table1_section,
    curves_section,
    map_grids,
    sizes_section,
    cost_section,
    sanity_section,
    bounds_section,
    meaning_section,
    models_section,
    conventions_section,
    config_section,
)


def first_screen(x: Inputs, title: str) -> list[Block]:
    """The title, the verdict table, the picture that shows the answer and what to do."""
    e, picture = x.cfg.evaluation, x.run.figure("answer")
    caption = (
        "Per method: the scale-free unit-map distance between the models' maps against r, "
        "with its 95% interval; a dashed line marks the recommended r, where there is one."
    )
    found = answer(
        x.found,
        x.advice,
        measure=e.stability_measure,
        debiased=e.debiased,
        sizes=len(x.summary.sizes),
        sigma=x.summary.sigma,
        picture=Figure(picture, caption) if picture.is_file() else None,
        within=same_prediction_verdicts(x.cfg, x.summary, x.found),
    )
    return [Heading(1, title), *found]


def same_prediction_verdicts(cfg: ExperimentConfig, summary: Summary, found: list[Split]):
    """Per verdict row, whether the unit-map distance's change holds within the pairs that
    predict the same class (``None`` where the run has no predictions)."""
    from smoothstab.experiments.analysis import meaning

    e, out = cfg.evaluation, {}
    for s in found:
        split = meaning.prediction_split(summary, s.method, s.r1, e.debiased, n=s.n)
        if split is not None:
            share = split.group("same prediction").share
            out[s.method, s.n] = f"{split.holds_within()} ({100 * share:.0f}% of pairs x images)"
    return out or None


def meaning_blocks(
    cfg: ExperimentConfig, run: RunDir, summary: Summary, advice: Advice | None
) -> list[Block]:
    """What a similarity means (:mod:`~smoothstab.experiments.pages.meaning_page`): chance
    floors, the same-prediction split, where the models disagree, which images to trust."""
    from smoothstab.experiments.analysis import meaning

    e, methods = cfg.evaluation, list(cfg.attribution.methods)
    levels = meaning.shown_levels(cfg.attribution, summary, advice)
    k = len(meaning_page.consensus_of(summary, methods[0]))
    blocks = meaning_page.floor_section(summary, methods, levels, k)
    found = [meaning.prediction_split(summary, m, levels[m][-1], e.debiased, e.stability_measure)
             for m in methods if levels[m]]  # fmt: skip
    blocks += meaning_page.split_section([s for s in found if s is not None])
    curves = {m: c for m in methods if (c := meaning.disagreement_curve(summary, m, e.debiased))}
    shown = [(m, run.figure(f"disagreement_{m}")) for m in methods]

    def said(m: str) -> str:
        a = None if advice is None else advice.of(m, summary.default_n)
        recommended = a is not None and bool(a.recommended_r) and a.recommended_r in levels[m]
        return meaning_page.levels_phrase(levels[m], recommended)

    blocks += meaning_page.disagreement_section(
        [(m, p) for m, p in shown if p.is_file()], curves, e.debiased, said
    )
    changes = {}
    for m in methods:
        if len(levels[m]) == 2 and (ch := meaning.reliability_change(summary, m, *levels[m])):
            changes[m] = ch
    shown = [(m, run.figure(f"reliability_{m}")) for m in methods]
    blocks += meaning_page.reliability_section([(m, p) for m, p in shown if p.is_file()],
                                               changes, k, said)  # fmt: skip
    return blocks


def make_report(cfg: ExperimentConfig, run: RunDir, summary: Summary) -> None:
    """Write ``report.md`` and ``report.html`` from the evaluated run (``table1.csv`` and
    ``recommendation.json``, the evaluate stage's records) and its figures: the first screen,
    the contents, then every entry of :data:`SECTIONS` that has something to show."""
    x = Inputs(
        cfg=cfg,
        run=run,
        summary=summary,
        table1=read_table1(run.table1),  # the evaluate stage's, read before anything is laid out
        advice=read_advice(run.recommendation),
        trained=read_train_record(run.train_metrics) if run.train_metrics.is_file() else None,
        x_range=dataset_info(cfg.train).x_range,
        found=splits(summary, list(cfg.attribution.methods), cfg.evaluation.debiased),
    )
    title = f"smoothstab report: {cfg.name}"
    blocks = [*first_screen(x, title), Contents()]
    for make in SECTIONS:
        made = make(x)
        blocks += as_sections(made) if isinstance(made, list) else [made] if made else []
    run.write_text(run.report_md, render_markdown(blocks, run.root))
    run.write_text(run.report_html, render_html(blocks, title))

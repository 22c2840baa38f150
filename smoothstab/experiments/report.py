"""The report stage: ``report.md`` and a self-contained ``report.html`` (figures embedded).

The report is a list of typed blocks (:mod:`.blocks`), one function per section, rendered once
to Markdown and once to HTML. Building it imports no plotting library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smoothstab.experiments.blocks import (
    Block,
    Bullets,
    Code,
    Figure,
    Heading,
    Paragraph,
    Table,
    render_html,
    render_markdown,
)
from smoothstab.experiments.data import dataset_info
from smoothstab.experiments.evaluate import table1
from smoothstab.experiments.names import BANDS, NAMES, SETTINGS
from smoothstab.experiments.rundir import Metric, RunDir, Summary

if TYPE_CHECKING:
    from smoothstab.experiments.aggregate import Band
    from smoothstab.experiments.experiment import ExperimentConfig

CONVENTIONS = [
    "Maps are computed in the model's input space (after normalisation), signed, full "
    "[B, C, H, W]; CAMs are [B, 1, H, W], upsampled bilinearly to the input size.",
    "The explained score is the logit of the target class ({target}); models are in eval mode.",
    "Noise level r = sigma / (x_max - x_min) with x_max - x_min = {x_range:.4f} for this "
    "dataset's normalisation; every table gives r and the absolute sigma.",
    "Stability error (Eq. 12): per image ||Sal_A(x) - Sal_B(x)||_2 on raw maps, mean over "
    "images, then mean and band over model pairs. Fidelity error (Eq. 13): per image "
    "||Smoothed(x) - Unsmoothed(x)||_2 for the same model, mean over images and models.",
    "Bands: {band_name}.",
    "SSIM: on 2-D views (sum of |values| over channels, scaled by min and 99th percentile, "
    "clipped), scikit-image settings of Wang et al. 2004. Top-k mIoU: k = {topk} most salient "
    "pixels of the abs-sum maps, IoU = |A n B| / |A u B|, ties broken by lower pixel index.",
    "Smoothing: {n_samples} noise draws{antithetic}, {crn}; IG: {ig_steps} points, rule "
    "'{ig_rule}', smoothed-IG estimator '{ig_estimator}', baseline 0 in input space.",
    "Debiased distances (split-half, Monte-Carlo noise removed from ||a - b||) are {debiased}.",
]


def conventions(cfg: ExperimentConfig, x_range: float) -> list[str]:
    a, e = cfg.attribution, cfg.evaluation
    fields = dict(
        target="ground-truth label" if a.target == "label" else "predicted class",
        x_range=x_range,
        band_name=BANDS[e.band],
        topk=e.topk,
        n_samples=a.n_samples,
        antithetic=" in antithetic pairs" if a.antithetic else "",
        crn="common random numbers across models and noise levels"
        if a.common_random_numbers
        else "independent draws per model and noise level",
        ig_steps=a.ig_steps,
        ig_rule=a.ig_rule,
        ig_estimator=a.ig_estimator,
        debiased="reported beside the plain ones" if e.debiased else "off",
    )
    return [line.format(**fields) for line in CONVENTIONS]


def fmt(band: Band | None) -> str:
    """``mean [lo, hi]`` of a Band, or a dash when missing."""
    if band is None:
        return "-"
    if band.lo == band.hi:
        return f"{band.mean:.4g}"
    return f"{band.mean:.4g} [{band.lo:.4g}, {band.hi:.4g}]"


def trend(summary: Summary, method: str, metric: Metric) -> str:
    """Whether the mean of ``metric`` falls or rises with r (first vs last, and step by step)."""
    pts = [(r, b.mean) for r, b in summary.curve(method, metric)]
    if len(pts) < 2:
        return "not measured"
    steps = [b - a for (_, a), (_, b) in zip(pts, pts[1:], strict=False)]
    direction = "falls" if pts[-1][1] < pts[0][1] else "rises"
    mono = all(s < 0 for s in steps) if direction == "falls" else all(s > 0 for s in steps)
    return (
        f"{direction} from {pts[0][1]:.4g} (r={pts[0][0]:g}) to {pts[-1][1]:.4g} "
        f"(r={pts[-1][0]:g}){', monotonically' if mono else ', not monotonically'}"
    )


def table1_block(summary: Summary, cfg: ExperimentConfig) -> Table:
    r = round(float(cfg.attribution.table_r), 6)
    header = ["method", "SSIM", f"smoothed SSIM (r={r:g})", "top-k mIoU", "smoothed top-k mIoU"]
    keys = ("ssim", "smoothed_ssim", "topk_miou", "smoothed_topk_miou")
    rows = table1(summary, cfg.attribution.methods, r)
    return Table(header, [[NAMES[row["method"]], *(fmt(row[k]) for k in keys)] for row in rows])


def sweep_block(summary: Summary, method: str, debiased: bool, x_range: float) -> Table:
    """Per r: sigma, stability and fidelity (and their debiased versions)."""
    metrics = [Metric.STABILITY, Metric.FIDELITY]
    if debiased:
        metrics += [Metric.STABILITY_DEBIASED, Metric.FIDELITY_DEBIASED]
    header = ["r", "sigma", "stability", "fidelity"]
    header += ["stability (debiased)", "fidelity (debiased)"] if debiased else []
    rs = [r for r, _ in summary.curve(method, Metric.STABILITY)]
    rows = [
        [f"{r:g}", f"{r * x_range:.4g}", *(fmt(summary.get(method, m, r)) for m in metrics)]
        for r in rs
    ]
    return Table(header, rows)


def advice_items(advice: dict, x_range: float) -> list[str]:
    items = []
    for method, rec in advice.items():
        knee, budget = rec["knee_r"], rec["budget_r"]
        text = (
            f"{NAMES[method]}: knee of the trade-off at r = {knee:g} (sigma = {knee * x_range:.4g})"
            if knee is not None
            else f"{NAMES[method]}: too few noise levels for a knee"
        )
        text += (
            f"; most stable r with fidelity error <= {rec['fidelity_budget']:g} x "
            "||unsmoothed map||: "
            + (f"r = {budget:g} (sigma = {budget * x_range:.4g})" if budget is not None else "none")
        )
        items.append(text)
    return items


def models_text(cfg: ExperimentConfig, run: RunDir) -> str:
    models = (
        run.read_json(run.train_metrics).get("models", []) if run.train_metrics.is_file() else []
    )
    parts = []
    for k, m in enumerate(models):
        acc = m.get("test_accuracy")
        name = m.get("name") or cfg.train.model
        if m.get("label"):  # DR/DA: what tells two checkpoints of one architecture apart
            name = f"{m['label']} ({name}, weights {m.get('weights') or 'random init'})"
        parts.append(
            f"model {k}: {name}" + (f" (test accuracy {acc:.3f})" if isinstance(acc, float) else "")
        )
    return f"{SETTINGS[cfg.models.setting]}. " + "; ".join(parts) + "."


def overview(
    cfg: ExperimentConfig, run: RunDir, summary: Summary, advice: dict, x_range: float
) -> list[Block]:
    """Conventions, models, the recommended noise level and what the sweep shows."""
    debiased = cfg.evaluation.debiased
    trends = [
        f"{NAMES[m]}: stability error {trend(summary, m, Metric.stability(debiased))}; "
        f"fidelity error {trend(summary, m, Metric.fidelity(debiased))}."
        for m in cfg.attribution.methods
    ]
    return [
        Heading(2, "Conventions"),
        Bullets(conventions(cfg, x_range)),
        Heading(2, "Setting and models"),
        Paragraph(models_text(cfg, run)),
        Heading(2, "Recommended noise level"),
        Bullets(advice_items(advice, x_range)),
        Figure(
            run.figure("tradeoff"),
            "Trade-off: fidelity error against stability error, one point per r.",
        ),
        Heading(2, "What the sweep shows"),
        Bullets(trends),
    ]


def sweeps(cfg: ExperimentConfig, run: RunDir, summary: Summary, x_range: float) -> list[Block]:
    """Table 1, the error curves (Figs 2-6) and a table per method."""
    out: list[Block] = [
        Heading(2, "Table 1: similarity of the two models' maps"),
        table1_block(summary, cfg),
        Heading(2, "Stability and fidelity against the noise level"),
        Figure(run.figure("stability"), "Stability error vs r (Figs 2-3)."),
        Figure(run.figure("fidelity"), "Fidelity error vs r (Figs 4-5)."),
        Figure(run.figure("ssim_topk"), "SSIM and top-k mIoU vs r (Fig 6)."),
    ]
    for m in cfg.attribution.methods:
        out += [Heading(3, NAMES[m]), sweep_block(summary, m, cfg.evaluation.debiased, x_range)]
    return out


def map_grids(cfg: ExperimentConfig, run: RunDir) -> list[Block]:
    out: list[Block] = [Heading(2, "Maps")]
    for m in cfg.attribution.methods:
        out += [
            Figure(
                run.figure(f"grid_{m}"),
                f"{NAMES[m]}: two models, unsmoothed and smoothed (Figs 7-9).",
            ),
            Figure(run.figure(f"sigma_{m}"), f"{NAMES[m]} across noise levels (Figs 10-16)."),
        ]
    return out


def bounds_section(run: RunDir) -> list[Block]:
    """The bounds stage's page, when it ran."""
    if not run.bounds_json.is_file():
        return []
    from smoothstab.experiments import theory

    out = [Heading(2, "Theory: bounds beside the measured errors")]
    out += theory.blocks(run.read_json(run.bounds_json))
    if run.figure("bounds").is_file():
        caption = "Bounds of Theorem 6 and Proposition 7 vs measured errors (log scale)."
        out.append(Figure(run.figure("bounds"), caption))
    return out


def make_report(cfg: ExperimentConfig, run: RunDir, summary: Summary, advice: dict) -> None:
    """Write ``report.md`` and ``report.html`` from the evaluated run and its figures."""
    x_range = dataset_info(cfg.train.dataset).x_range
    title = f"smoothstab report: {cfg.name}"
    blocks: list[Block] = [Heading(1, title)]
    blocks += overview(cfg, run, summary, advice, x_range)
    blocks += sweeps(cfg, run, summary, x_range)
    blocks += map_grids(cfg, run)
    blocks += bounds_section(run)
    blocks += [Heading(2, "Resolved config"), Code(run.config.read_text(), "toml")]
    run.write_text(run.report_md, render_markdown(blocks, run.root))
    run.write_text(run.report_html, render_html(blocks, title))

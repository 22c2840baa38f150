"""The report stage: ``report.md`` and a self-contained ``report.html`` (figures embedded).

The report is built once as a list of blocks -- headings, paragraphs, bullet lists, tables,
figures, preformatted text -- and rendered twice, to Markdown and to HTML.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

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
BAND_NAMES = {"t95": "95% Student-t interval of the mean over pairs/models", "sd": "+-1 sd"}


def conventions(cfg, x_range: float) -> list[str]:
    a, e = cfg.attribution, cfg.evaluation
    fields = dict(
        target="ground-truth label" if a.target == "label" else "predicted class",
        x_range=x_range,
        band_name=BAND_NAMES[e.band],
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


def render_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *args in blocks:
        if kind == "h":
            out.append("#" * args[0] + " " + args[1])
        elif kind == "p":
            out.append(args[0])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in args[0]))
        elif kind == "table":
            header, rows = args
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{args[1]}]({args[0]})\n\n*{args[1]}*")
        elif kind == "pre":
            out.append(f"```{args[1] if len(args) > 1 else ''}\n{args[0].rstrip()}\n```")
    return "\n\n".join(out) + "\n"


def render_html(blocks: list[tuple], title: str) -> str:
    esc = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>body{{font-family:sans-serif;max-width:1100px;"
        "margin:2em auto;padding:0 1em}table{border-collapse:collapse}td,th{border:1px solid "
        "#ccc;padding:3px 8px;text-align:right}img{max-width:100%}pre{background:#f5f5f5;"
        "padding:1em;overflow:auto}</style></head><body>",
    ]
    for kind, *args in blocks:
        if kind == "h":
            out.append(f"<h{args[0]}>{esc(args[1])}</h{args[0]}>")
        elif kind == "p":
            out.append(f"<p>{esc(args[0])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in args[0]) + "</ul>")
        elif kind == "table":
            header, rows = args
            head = "".join(f"<th>{esc(h)}</th>" for h in header)
            body = "".join(
                "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows
            )
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            data = base64.b64encode(Path(args[0]).read_bytes()).decode()
            out.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{esc(args[1])}'>"
                f"<figcaption>{esc(args[1])}</figcaption></figure>"
            )
        elif kind == "pre":
            out.append(f"<pre>{esc(args[0])}</pre>")
    return "\n".join(out + ["</body></html>"]) + "\n"


def fmt(band) -> str:
    """``mean [lo, hi]`` of a Band, or an en dash when missing."""
    if band is None:
        return "-"
    if band.lo == band.hi:
        return f"{band.mean:.4g}"
    return f"{band.mean:.4g} [{band.lo:.4g}, {band.hi:.4g}]"


def trend(summary, method: str, metric: str) -> str:
    """Whether the mean of ``metric`` falls or rises with r (first vs last, and step by step)."""
    pts = sorted((r, b.mean) for (m, k, r), b in summary.items() if m == method and k == metric)
    if len(pts) < 2:
        return "not measured"
    steps = [b - a for (_, a), (_, b) in zip(pts, pts[1:], strict=False)]
    direction = "falls" if pts[-1][1] < pts[0][1] else "rises"
    mono = all(s < 0 for s in steps) if direction == "falls" else all(s > 0 for s in steps)
    return (
        f"{direction} from {pts[0][1]:.4g} (r={pts[0][0]:g}) to {pts[-1][1]:.4g} "
        f"(r={pts[-1][0]:g}){', monotonically' if mono else ', not monotonically'}"
    )


def _table1_block(summary, cfg) -> tuple:
    from smoothstab.experiments.evaluate import table1
    from smoothstab.experiments.figures import NAMES

    r = round(float(cfg.attribution.table_r), 6)
    rows = table1(summary, cfg.attribution.methods, r)
    header = ["method", "SSIM", f"smoothed SSIM (r={r:g})", "top-k mIoU", "smoothed top-k mIoU"]
    body = [
        [
            NAMES[row["method"]],
            *(fmt(row[k]) for k in ("ssim", "smoothed_ssim", "topk_miou", "smoothed_topk_miou")),
        ]
        for row in rows
    ]
    return ("table", header, body)


def _sweep_block(summary, method: str, debiased: bool, x_range: float) -> tuple:
    suffix = "_debiased" if debiased else ""
    rs = sorted({r for (m, k, r) in summary if m == method and k == "stability"})
    header = ["r", "sigma", "stability", "fidelity"]
    if debiased:
        header += ["stability (debiased)", "fidelity (debiased)"]
    body = []
    for r in rs:
        row = [
            f"{r:g}",
            f"{r * x_range:.4g}",
            fmt(summary.get((method, "stability", r))),
            fmt(summary.get((method, "fidelity", r))),
        ]
        if debiased:
            row += [
                fmt(summary.get((method, "stability" + suffix, r))),
                fmt(summary.get((method, "fidelity" + suffix, r))),
            ]
        body.append(row)
    return ("table", header, body)


def _advice_items(advice: dict, x_range: float) -> list[str]:
    from smoothstab.experiments.figures import NAMES

    items = []
    for method, rec in advice.items():
        knee = rec["knee_r"]
        budget = rec["budget_r"]
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


def make_report(cfg, run_dir: Path, summary: dict, advice: dict) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` from the evaluated run and its figures."""
    from smoothstab.experiments.data import dataset_info
    from smoothstab.experiments.figures import NAMES
    from smoothstab.experiments.io import atomic_write

    run_dir = Path(run_dir)
    x_range = dataset_info(cfg.train.dataset).x_range
    debiased = cfg.evaluation.debiased
    suffix = "_debiased" if debiased else ""
    fig = run_dir / "figures"
    blocks: list[tuple] = [("h", 1, f"smoothstab report: {cfg.name}")]
    blocks += [("h", 2, "Conventions"), ("ul", conventions(cfg, x_range))]
    blocks += [("h", 2, "Setting and models"), ("p", _models_text(cfg, run_dir))]
    blocks += [("h", 2, "Recommended noise level"), ("ul", _advice_items(advice, x_range))]
    blocks += [
        (
            "img",
            fig / "tradeoff.png",
            "Trade-off: fidelity error against stability error, one point per r.",
        )
    ]
    blocks += [
        ("h", 2, "What the sweep shows"),
        (
            "ul",
            [
                f"{NAMES[m]}: stability error {trend(summary, m, 'stability' + suffix)}; "
                f"fidelity error {trend(summary, m, 'fidelity' + suffix)}."
                for m in cfg.attribution.methods
            ],
        ),
    ]
    blocks += [("h", 2, "Table 1: similarity of the two models' maps"), _table1_block(summary, cfg)]
    blocks += [("h", 2, "Stability and fidelity against the noise level")]
    blocks += [
        ("img", fig / "stability.png", "Stability error vs r (Figs 2-3)."),
        ("img", fig / "fidelity.png", "Fidelity error vs r (Figs 4-5)."),
        ("img", fig / "ssim_topk.png", "SSIM and top-k mIoU vs r (Fig 6)."),
    ]
    for m in cfg.attribution.methods:
        blocks += [("h", 3, NAMES[m]), _sweep_block(summary, m, debiased, x_range)]
    blocks += [("h", 2, "Maps")]
    for m in cfg.attribution.methods:
        blocks += [
            (
                "img",
                fig / f"grid_{m}.png",
                f"{NAMES[m]}: two models, unsmoothed and smoothed (Figs 7-9).",
            ),
            ("img", fig / f"sigma_{m}.png", f"{NAMES[m]} across noise levels (Figs 10-16)."),
        ]
    bounds_path = run_dir / "bounds.json"
    if bounds_path.is_file():
        from smoothstab.experiments import theory

        res = json.loads(bounds_path.read_text())
        blocks += [
            ("h", 2, "Theory: bounds beside the measured errors"),
            ("p", theory.intro(res)),
            ("table", *theory.table(res)),
        ]
        if (fig / "bounds.png").is_file():
            blocks += [
                (
                    "img",
                    fig / "bounds.png",
                    "Bounds of Theorem 6 and Proposition 7 vs measured errors (log scale).",
                )
            ]
    blocks += [("h", 2, "Resolved config"), ("pre", (run_dir / "config.toml").read_text(), "toml")]
    md = render_markdown([_relative(b, run_dir) for b in blocks])
    page = render_html(blocks, f"smoothstab report: {cfg.name}")
    atomic_write(run_dir / "report.md", lambda tmp: tmp.write_text(md))
    atomic_write(run_dir / "report.html", lambda tmp: tmp.write_text(page))
    return run_dir / "report.md", run_dir / "report.html"


def _relative(block: tuple, run_dir: Path) -> tuple:
    if block[0] == "img":
        return ("img", Path(block[1]).relative_to(run_dir), block[2])
    return block


def _models_text(cfg, run_dir: Path) -> str:
    setting = {
        "DT": "DT: same architecture trained on disjoint splits of the training set",
        "DR": "DR: same architecture, different training recipe or weights",
        "DA": "DA: different architectures",
    }[cfg.models.setting]
    path = run_dir / "train_metrics.json"
    models = json.loads(path.read_text()).get("models", []) if path.is_file() else []
    parts = []
    for k, m in enumerate(models):
        acc = m.get("test_acc", m.get("test_accuracy"))
        name = m.get("name") or cfg.train.model
        if m.get("label"):  # DR/DA: what tells two checkpoints of one architecture apart
            name = f"{m['label']} ({name}, weights {m.get('weights') or 'random init'})"
        parts.append(
            f"model {k}: {name}" + (f" (test accuracy {acc:.3f})" if isinstance(acc, float) else "")
        )
    return f"{setting}. " + "; ".join(parts) + "."

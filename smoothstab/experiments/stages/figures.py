"""The figures stage: PNGs of the paper's figures from the metrics table and the kept maps,
legible at 100% zoom (text of :data:`FONT` points or more, legends below the panels).

* ``stability.png`` / ``fidelity.png``: error vs noise level r per method, mean over model pairs
  (models) with the configured band (``evaluation.band``: the 95% interval over retraining,
  images and draws, or the paper's bands to replicate its figures), one curve per training-set
  size n (Figs 2-5): the paper's
  plain estimate dashed, our debiased one solid. The stability figure's second and third rows
  split the raw distance into direction and size: the scale-free unit-map distance and each
  model's map norm.
* ``ssim_topk.png``: SSIM and top-k mIoU between the two models of a pair vs r (Fig 6).
* ``tradeoff.png``: fidelity vs stability error, one point per r with its interval, the
  recommended r and the knee marked (``recommendation.json``'s record).
* ``answer.png``: the report's first picture, per method the scale-free unit-map distance
  between the models' maps against r with its 95% interval, the level at r = 0 and the
  recommended r, the verdict in each panel's title.
* ``grid_{method}_{i}-{j}.png``: input, models i and j, unsmoothed and smoothed, for each pair
  drawn (Figs 7 and 10-16), the maps of an image on one colour scale (:mod:`smoothstab.plot`),
  so that a weaker or shrunken map looks fainter instead of being stretched to full contrast.
* ``sigma_{method}.png``: one image's map as the noise level grows (Figs 8-9), on one scale.

The maps drawn are those the attribute stage always keeps: the mean maps of the figure images
(:func:`~smoothstab.experiments.models.recipe.figure_images`), every model at every r, in its block
files (each checked against what the run expects before it is read); no map is computed here.
* ``disagreement_{method}.png``: the test images whose unsmoothed maps disagree most and least
  across the models: input, mean unit map and disagreement map at r = 0 and the recommended r.
* ``reliability_{method}.png``: each test image's reliability score at r = 0 against the
  recommended r, and the least and most reliable images' mean unit maps at both.
  Both draw the maps the block files keep of each block's extreme images (the extremes of the test
  set are the extremes of the blocks' extremes).
* ``sanity_{method}.png`` (when the sanity stage ran): stability across retraining against
  sensitivity to randomisation, one point per r (docs/sanity.md).
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from smoothstab import plot  # noqa: E402
from smoothstab.experiments.analysis.meaning import shown_levels  # noqa: E402
from smoothstab.experiments.analysis.measures import Metric  # noqa: E402
from smoothstab.experiments.analysis.summary import Summary  # noqa: E402
from smoothstab.experiments.config.datasets import dataset_info  # noqa: E402
from smoothstab.experiments.config.setting import Setting  # noqa: E402
from smoothstab.experiments.io.files import atomic_write  # noqa: E402
from smoothstab.experiments.io.progress import Progress  # noqa: E402
from smoothstab.experiments.models.recipe import (  # noqa: E402
    block_identity,
    figure_images,
)
from smoothstab.experiments.pages.names import MEASURES, NAMES, SMOOTHED  # noqa: E402
from smoothstab.experiments.rundir.blockfile import BlockFile  # noqa: E402
from smoothstab.experiments.rundir.layout import RunDir  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from smoothstab.experiments.analysis.advice import Advice
    from smoothstab.experiments.analysis.aggregate import Band
    from smoothstab.experiments.config.tables import ExperimentConfig, TrainConfig
    from smoothstab.experiments.rundir.bounds_record import Bounds


def save(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    # zlib level 1 instead of matplotlib's 6: 20% less time per figure for 9% more bytes
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", pil_kwargs={"compress_level": 1})
    plt.close(fig)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buf.getvalue()))


def _curve(
    summary: Summary, method: str, metric: Metric, n: int | None = None, band: str = "interval"
) -> tuple[list[float], list[Band]]:
    """The curve with the band ``evaluation.band`` names: ``interval`` (the 95% interval over
    retraining, images and draws), or the paper's ``t95``/``sd`` over pair means."""
    if band == "interval":
        pts = summary.curve(method, metric, n)
    else:
        pts = summary.paper_curve(method, metric, n, band)
    return [p[0] for p in pts], [p[1] for p in pts]


BAND_LABELS = {  # the figures' titles say which band they draw
    "interval": "bands: 95% intervals over models, images and draws (below 4 models: images)",
    "t95": "bands: the paper's t interval over pairs (replication)",
    "sd": "bands: the paper's +-1 sd over pairs",
}

FONT = 9  # the smallest font size of any text in a figure (legible at 100% zoom at 110 dpi)


STABILITY_ROWS = (  # the stability figure's rows: (measure, y label)
    ("stability", "raw L2 stability error"),
    ("unit_distance", "unit-map distance"),
    ("map_norm", "map norm ||a||"),
)


def _legend_below(fig, axes, ncols: int = 2) -> None:
    """One legend for the figure, below its panels (never over data), from every panel's
    labelled artists (each label once)."""
    found: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            found.setdefault(label, handle)
    if found:
        n = max(1, min(ncols, len(found)))
        fig.legend(found.values(), found.keys(), loc="outside lower center", ncols=n, fontsize=FONT)


def error_figure(
    summary: Summary,
    methods: Sequence[str],
    rows: Sequence[tuple[str, str]],
    band: str,
    path: Path,
) -> Path:
    """A row per ``(measure, ylabel)`` (``stability``, ``unit_distance``, ``map_norm``,
    ``fidelity``), a column per method; per training-set size n (one colour each), the paper's
    plain curve (dashed) and our debiased one (solid), each with its band."""
    fig, axes = plt.subplots(
        len(rows),
        len(methods),
        figsize=(3.4 * len(methods), 2.7 * len(rows) + 0.9),
        squeeze=False,
        layout="constrained",
    )
    for i, (ax_row, (measure, ylabel)) in enumerate(zip(axes, rows, strict=True)):
        for ax, method in zip(ax_row, methods, strict=True):
            _error_panel(ax, summary, method, measure, band)
            if i == 0:
                ax.set_title(f"{NAMES[method]} / {SMOOTHED[method]}", fontsize=FONT + 1)
        ax_row[0].set_ylabel(ylabel)
    for ax in axes[-1]:
        ax.set_xlabel("noise level r = sigma / (x_max - x_min)", fontsize=FONT)
    fig.suptitle(BAND_LABELS[band], fontsize=FONT + 1)
    _legend_below(fig, axes.flat, ncols=4)
    return save(fig, path)


def _error_panel(ax, summary: Summary, method: str, measure: str, band: str) -> None:
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, n in enumerate(summary.sizes):
        size = "" if n is None else f"n={n}, "
        for debiased, style in ((False, "--"), (True, "-")):
            rs, bands = _curve(summary, method, Metric.of(measure, debiased), n, band)
            if not rs:
                continue
            label = size + ("debiased (ours)" if debiased else "plain (as the paper)")
            colour = colours[c % len(colours)]
            ax.plot(rs, [b.mean for b in bands], style, color=colour, marker="o", ms=3, label=label)
            lo, hi = [b.lo for b in bands], [b.hi for b in bands]
            ax.fill_between(rs, lo, hi, color=colour, alpha=0.12 if debiased else 0.06)
    ax.grid(alpha=0.3)


def similarity_figure(
    summary: Summary, methods: Sequence[str], topk: int, path: Path, band: str = "interval"
) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), layout="constrained")
    panels = ((axes[0], Metric.SSIM, "SSIM"), (axes[1], Metric.TOPK_IOU, f"top-{topk} mIoU"))
    for ax, metric, title in panels:
        for method in methods:
            rs, bands = _curve(summary, method, metric, band=band)
            ax.plot(rs, [b.mean for b in bands], marker="o", ms=3, label=NAMES[method])
            ax.fill_between(rs, [b.lo for b in bands], [b.hi for b in bands], alpha=0.15)
        ax.set_title(f"{title} between the models of a pair", fontsize=FONT + 1)
        ax.set_xlabel("noise level r")
        ax.grid(alpha=0.3)
    fig.suptitle(BAND_LABELS[band], fontsize=FONT)
    _legend_below(fig, axes, ncols=4)
    return save(fig, path)


def tradeoff_figure(advice: Advice, path: Path) -> Path:
    """Fidelity against stability error per method (own axes: their scales differ widely) at
    the largest n, each stability point with its 95% interval; the recommended r and the knee
    (where the advice gives them) marked and named in the panel's title, the r outside the
    fidelity budget hollow; one legend below the panels."""
    from matplotlib.lines import Line2D

    found = [advice.of(m) for m in dict.fromkeys(a.method for a in advice.methods)]
    found = [a for a in found if a is not None and any(lv.stability for lv in a.levels)]
    if not found:
        fig, ax = plt.subplots(figsize=(3.6, 3.3))
        ax.text(0.5, 0.5, "no stability sweep to advise from", ha="center", va="center")
        ax.axis("off")
        return save(fig, path)
    fig, axes = plt.subplots(
        1, len(found), figsize=(3.4 * len(found), 3.9), squeeze=False, layout="constrained"
    )
    for ax, a in zip(axes[0], found, strict=True):
        levels = [lv for lv in a.levels if lv.stability is not None]
        s, f = [lv.stability.estimate for lv in levels], [lv.fidelity for lv in levels]
        err = [
            [lv.stability.estimate - lv.stability.lo for lv in levels],
            [lv.stability.hi - lv.stability.estimate for lv in levels],
        ]
        ax.errorbar(s, f, xerr=err, marker="o", ms=3, capsize=2, lw=1, color="C0")
        for lv, x, y in zip(levels, s, f, strict=True):
            ax.annotate(f"{lv.r:g}", (x, y), xytext=(4, 3), textcoords="offset points",
                        fontsize=FONT)  # fmt: skip
            if not lv.within_budget:
                ax.plot(x, y, "o", ms=6, mfc="white", color="grey")
        said = []
        for key, marker, label in (("recommended_r", "s", "recommended"), ("knee_r", "*", "knee")):
            r = getattr(a, key)
            hit = [(x, y) for lv, x, y in zip(levels, s, f, strict=True) if lv.r == r]
            if (
                hit
                and r is not None
                and not (a.status == "no smoothing" and key == "recommended_r")
            ):
                ax.plot(*hit[0], marker, ms=12, mfc="none", color="k")
                said.append(f"{label} r = {r:g}")
        if a.status == "no smoothing":
            ax.plot(s[0], f[0], "s", ms=12, mfc="none", color="k")
            said.append("no smoothing")
        ax.set_title(f"{NAMES[a.method]}\n{', '.join(said) or a.status}", fontsize=FONT + 1)
        ax.set_xlabel(f"{MEASURES[a.measure]} (95% interval)", fontsize=FONT)
        ax.grid(alpha=0.3)
        ax.margins(x=0.12, y=0.1)  # room for the r labels inside the panel
    axes[0][0].set_ylabel("fidelity error")
    keys = [
        Line2D([], [], marker="o", ms=3, color="C0", label="one r (annotated), 95% interval"),
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            ms=6,
            mfc="white",
            color="grey",
            label="outside the fidelity budget",
        ),  # fmt: skip
        Line2D(
            [],
            [],
            ls="",
            marker="s",
            ms=10,
            mfc="none",
            color="k",
            label="recommended r (at r = 0: no smoothing)",
        ),  # fmt: skip
        Line2D([], [], ls="", marker="*", ms=10, mfc="none", color="k", label="knee"),
    ]
    fig.legend(handles=keys, loc="outside lower center", ncols=4, fontsize=FONT)
    return save(fig, path)


def answer_figure(
    summary: Summary, advice: Advice, methods: Sequence[str], debiased: bool, path: Path
) -> Path:
    """The report's first picture: per method, the scale-free unit-map distance between the
    models' maps against r with its 95% interval, one colour per training-set size; the level
    at r = 0 dotted, the recommended r (largest n) dashed; the verdict in the panel's title."""
    from smoothstab.experiments.analysis.verdicts import splits
    from smoothstab.experiments.pages.answer import short_verdict

    found = {(s.method, s.n): s for s in splits(summary, list(methods), debiased)}
    metric = Metric.of("unit_distance", debiased)
    cols = 1 if len(methods) == 1 else 2
    rows = math.ceil(len(methods) / cols)
    ncols = 2  # the legend's, below the panels
    entries = len(summary.sizes) + 3
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(3.0 * cols if cols > 1 else 4.6, 1.3 * rows + 0.45 + 0.22 * -(-entries // ncols)),
        squeeze=False,
        layout="constrained",
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, method in zip(axes.flat, methods, strict=False):
        last = summary.sizes[-1]
        for c, n in enumerate(summary.sizes):
            rs, bands = _curve(summary, method, metric, n)
            if not rs:
                continue
            colour = colours[c % len(colours)]
            label = "unit-map distance" + (f", n = {n}" if len(summary.sizes) > 1 else "")
            ax.plot(rs, [b.mean for b in bands], "-o", ms=3, color=colour, label=label)
            ax.fill_between(rs, [b.lo for b in bands], [b.hi for b in bands], color=colour,
                            alpha=0.15, label="95% interval" if n == last else None)  # fmt: skip
            if n == last:
                ax.axhline(bands[0].mean, color=colour, ls=":", lw=1, label="level at r = 0")
        a = advice.of(method, last)
        if a is not None and a.status == "smooth" and a.recommended_r is not None:
            ax.axvline(a.recommended_r, color="k", ls="--", lw=1, label="recommended r")
        s = found.get((method, last))
        ax.set_title(NAMES[method] + ("" if s is None else f": {short_verdict(s)}"), fontsize=FONT)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=FONT)
    for ax in axes.flat[len(methods) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("noise level r", fontsize=FONT)
    for ax in axes[:, 0]:
        ax.set_ylabel("unit-map distance", fontsize=FONT)
    _legend_below(fig, axes.flat, ncols=ncols)
    return save(fig, path)


def _inputs(x: torch.Tensor, data: TrainConfig) -> torch.Tensor:
    """Test images ``[B, C, H, W]`` back in [0, 1] (the dataset's normalisation undone)."""
    info = dataset_info(data)
    mean = torch.tensor(info.mean, dtype=x.dtype).view(-1, 1, 1)
    std = torch.tensor(info.std, dtype=x.dtype).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1)


class FigureMaps:
    """The kept mean maps of the figure images, read from the block files that hold them (each
    read once, checked against what the run expects)."""

    def __init__(self, cfg: ExperimentConfig, run: RunDir, n_images: int) -> None:
        self.cfg, self.run, self.n_images = cfg, run, n_images
        self.files: dict[tuple[str, int], BlockFile] = {}

    def maps(self, method: str, model: int, r: float, images: list[int]) -> torch.Tensor:
        """Model ``model``'s maps of test images ``images`` (figure images) at ``r``."""
        out = []
        for i in images:
            b = i // self.cfg.attribution.image_batch
            out.append(self._file(method, b).figure_map(model, r, i))
        return torch.stack(out).float()

    def _file(self, method: str, b: int) -> BlockFile:
        if (method, b) not in self.files:
            want = block_identity(self.cfg, method, b, self.n_images)
            self.files[method, b] = BlockFile.load(self.run.block(method, b), want)
        return self.files[method, b]

    def extreme_images(self, method: str) -> list[int]:
        """Every block's extreme images (test-image indices)."""
        n_blocks = -(-self.n_images // self.cfg.attribution.image_batch)
        return [i for b in range(n_blocks) for i in self._file(method, b).extreme_images]

    def extreme(self, method: str, r: float, image: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean unit map's view and the disagreement map ``[H, W]`` of an extreme image."""
        b = image // self.cfg.attribution.image_batch
        mean, spread = self._file(method, b).extreme(r, image)
        return mean.float(), spread.float()


def grid_figure(
    cfg: ExperimentConfig,
    kept: FigureMaps,
    x: torch.Tensor,
    labels: torch.Tensor,
    method: str,
    pair: tuple[int, int],
    path: Path,
) -> Path:
    """Rows: images; columns: input, A, B, A smoothed, B smoothed (at the Table-1 r)."""
    images = figure_images(labels, cfg.evaluation.grid_images)
    r = round(float(cfg.attribution.table_r), 6)
    cols = [(pair[0], 0.0), (pair[1], 0.0), (pair[0], r), (pair[1], r)]
    maps = {
        f"model {k}" + (f", r={rr:g}" if rr else ""): kept.maps(method, k, rr, images)
        for k, rr in cols
    }
    fig = plot.map_grid(maps, _inputs(x[images], cfg.train), image_range=(0, 1))
    fig.suptitle(
        f"{NAMES[method]} (left) and {SMOOTHED[method]} (right), models {pair[0]} and {pair[1]}; "
        "one colour scale per row",
        fontsize=9,
    )
    return save(fig, path)


def sigma_figure(
    cfg: ExperimentConfig,
    kept: FigureMaps,
    x: torch.Tensor,
    method: str,
    path: Path,
    *,
    model: int = 0,
    image: int = 0,
) -> Path:
    grid = cfg.attribution.noise_grid()
    picks = grid[:: max(1, len(grid) // 6)][:7]
    maps = {f"r={r:g}": kept.maps(method, model, r, [image]) for r in picks}
    fig = plot.map_grid(maps, _inputs(x[[image]], cfg.train), image_range=(0, 1))
    fig.set_layout_engine("constrained")
    fig.suptitle(
        f"{NAMES[method]} of model {model} as the noise level grows (one colour scale)",
        fontsize=FONT,
    )
    return save(fig, path)


def sanity_figure(levels: list[dict], advice: dict, method: str, measure: str, path: Path) -> Path:
    """Per view (SSIM, rank agreement): 1 - similarity to the randomised model (solid) and 1 -
    similarity between retrained models (dashed) against the stability error, one point per r; an r
    passes where the solid point lies above the dashed one by more than the interval
    (:func:`~smoothstab.experiments.analysis.advice.sanity_levels`). With the label check, 1 -
    similarity to the permuted-label twin (dotted, crosses), read against the dashed line the same
    way.
    """
    fig, ax = plt.subplots(figsize=(5.6, 5.2), layout="constrained")
    x = [lv["stability"] for lv in levels]
    for view, label, colour in (("ssim", "SSIM", "C0"), ("rank", "rank agreement", "C1")):
        y = [1 - lv[f"{view}_random"] for lv in levels]
        ax.plot(x, y, "-o", ms=3, color=colour, label=f"1 - {label} to the randomised model")
        ax.plot(
            x,
            [1 - lv[f"{view}_retrained"] for lv in levels],
            "--",
            color=colour,
            lw=1,
            label=f"1 - {label} between retrained models",
        )
        for lv, xi, yi in zip(levels, x, y, strict=True):
            ax.annotate(f"{lv['r']:g}", (xi, yi), xytext=(3, 3), textcoords="offset points",
                        fontsize=FONT)  # fmt: skip
        if levels and f"label_{view}_random" in levels[0]:  # the label check (sanity.labels)
            y = [1 - lv[f"label_{view}_random"] for lv in levels]
            ax.plot(x, y, ":x", ms=4, color=colour, label=f"1 - {label} to the permuted-label twin")
    most = [lv for lv in levels if lv["r"] == advice["most_stable_r"]]
    if most:
        verdict = most[0]["verdict"]
        ax.axvline(
            most[0]["stability"],
            color="k",
            lw=0.8,
            ls=":",
            label=f"most stable: r={most[0]['r']:g} ({verdict})",
        )
    ax.set_xlabel(f"stability across retraining: {MEASURES[measure]}\n(lower: more stable)")
    ax.set_ylabel("1 - similarity (r annotated)")
    ax.set_title(f"{NAMES[method]}: stable, and still tied to the model?", fontsize=FONT + 1)
    ax.grid(alpha=0.3)
    ax.margins(x=0.1, y=0.1)
    _legend_below(fig, [ax], ncols=1)
    return save(fig, path)


def _sanity_jobs(cfg: ExperimentConfig, run: RunDir, summary: Summary) -> list[Callable]:
    """The sanity figures, when the sanity stage ran."""
    if not (cfg.sanity.enabled and run.sanity_csv.is_file()):
        return []
    from smoothstab.experiments.analysis.advice import sanity_advice, sanity_levels
    from smoothstab.experiments.rundir.sanity_rows import config_rows, per_image_similarity

    similar = per_image_similarity(config_rows(cfg, run), cfg.sanity.mode)
    e, jobs = cfg.evaluation, []
    for method in cfg.attribution.methods:
        levels = sanity_levels(summary, similar, method, e.stability_measure, e.debiased)
        path = run.figure(f"sanity_{method}")
        jobs.append(
            functools.partial(
                sanity_figure, levels, sanity_advice(levels), method, e.stability_measure, path
            )
        )
    return jobs


def _per_image(summary: Summary, method: str, metric: Metric, r: float) -> dict[int, float]:
    """Each test image's value of a per-image measure of no pair or model (one unit), or the
    mean over pairs (the reliability score)."""
    cells = summary.cells(method, metric, r)
    if cells is None or not cells.rectangular:
        return {}
    return dict(zip(cells.images, cells.values.mean(0).tolist(), strict=True))


def _show(ax, image: torch.Tensor, title: str, **kw) -> None:
    ax.imshow(image.numpy() if image.dim() == 2 else image.permute(1, 2, 0).numpy(), **kw)
    ax.set_title(title, fontsize=FONT)
    ax.set_xticks([])
    ax.set_yticks([])


def disagreement_figure(
    cfg: ExperimentConfig,
    kept: FigureMaps,
    summary: Summary,
    x: torch.Tensor,
    method: str,
    levels: list[float],
    path: Path,
) -> Path | None:
    """Rows: the test images whose unsmoothed maps disagree most and least (by the total at
    r = 0, the debiased one where the run debiases); columns: the input, then per level the mean
    unit map and the disagreement map (one colour scale per row and kind)."""
    metric = Metric.of("disagreement", cfg.evaluation.debiased)
    totals = _per_image(summary, method, metric, 0.0)
    found = [i for i in kept.extreme_images(method) if i in totals]
    if not found:
        return None
    picks = list(dict.fromkeys([max(found, key=totals.get), min(found, key=totals.get)]))
    fig, axes = plt.subplots(len(picks), 1 + 2 * len(levels), squeeze=False, layout="constrained",
                             figsize=(2.0 * (1 + 2 * len(levels)), 2.2 * len(picks)))  # fmt: skip
    inputs = _inputs(x[picks], cfg.train)
    for row, i in enumerate(picks):
        maps = [kept.extreme(method, r, i) for r in levels]
        top_mean = max(float(m.max()) for m, _ in maps) or 1.0
        top_spread = max(float(d.clamp(min=0).max()) for _, d in maps) or 1.0
        word = "most" if row == 0 else "least"
        _show(axes[row][0], inputs[row].squeeze(0) if inputs.shape[1] == 1 else inputs[row],
              f"image {i}: {word}\n(total {totals[i]:.2f})", cmap="gray")  # fmt: skip
        for c, (r, (mean, spread)) in enumerate(zip(levels, maps, strict=True)):
            _show(axes[row][1 + 2 * c], mean, f"mean map\nr = {r:g}", cmap="magma", vmin=0,
                  vmax=top_mean)  # fmt: skip
            _show(axes[row][2 + 2 * c], spread.clamp(min=0), f"disagreement\nr = {r:g}",
                  cmap="viridis", vmin=0, vmax=top_spread)  # fmt: skip
    fig.suptitle(f"{NAMES[method]}: where the models' maps disagree (total at r = 0)",
                 fontsize=FONT + 1)  # fmt: skip
    return save(fig, path)


def reliability_figure(
    cfg: ExperimentConfig,
    kept: FigureMaps,
    summary: Summary,
    x: torch.Tensor,
    method: str,
    levels: list[float],
    path: Path,
) -> Path | None:
    """Left: each test image's reliability score at r = 0 against the last of ``levels``;
    right: the least and most reliable images (at r = 0, among the kept extremes) with the mean
    unit map at each level."""
    scores = {r: _per_image(summary, method, Metric.RANK_AGREEMENT, r) for r in levels}
    if len(levels) < 2 or not scores[0.0]:
        return None
    r1 = levels[-1]
    found = [i for i in kept.extreme_images(method) if i in scores[0.0]]
    picks = list(dict.fromkeys([min(found, key=scores[0.0].get),
                                max(found, key=scores[0.0].get)])) if found else []  # fmt: skip
    fig = plt.figure(figsize=(3.4 + 2.0 * (1 + len(levels)), 2.3 * max(len(picks), 1.4)),
                     layout="constrained")  # fmt: skip
    widths = [2.2, *[1] * (1 + len(levels))]
    grid = fig.add_gridspec(max(len(picks), 1), 2 + len(levels), width_ratios=widths)
    ax = fig.add_subplot(grid[:, 0])
    images = sorted(scores[0.0])
    a = [scores[0.0][i] for i in images]
    b = [scores[r1].get(i, math.nan) for i in images]
    ax.scatter(a, b, s=10)
    lo, hi = min(a + b), max(a + b)
    ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8, ls="--")
    ax.set_xlabel("reliability at r = 0", fontsize=FONT)
    ax.set_ylabel(f"reliability at r = {r1:g}", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    inputs = _inputs(x[picks], cfg.train) if picks else None
    for row, i in enumerate(picks):
        word = "least" if row == 0 else "most"
        img = inputs[row].squeeze(0) if inputs.shape[1] == 1 else inputs[row]
        _show(fig.add_subplot(grid[row, 1]), img, f"image {i}\n({word})", cmap="gray")
        maps = [kept.extreme(method, r, i)[0] for r in levels]
        top = max(float(m.max()) for m in maps) or 1.0
        for c, (r, m) in enumerate(zip(levels, maps, strict=True)):
            title = f"r = {r:g}\nscore {scores[r].get(i, math.nan):.2f}"
            _show(fig.add_subplot(grid[row, 2 + c]), m, title, cmap="magma", vmin=0, vmax=top)
    fig.suptitle(f"{NAMES[method]}: reliability (mean pairwise rank agreement) per test image",
                 fontsize=FONT + 1)  # fmt: skip
    return save(fig, path)


def make_figures(
    cfg: ExperimentConfig, run: RunDir, summary: Summary, advice: Advice
) -> list[Path]:
    """Every figure of the run into ``run.figures`` (existing ones are redrawn: cheap)."""
    a, e = cfg.attribution, cfg.evaluation
    x, labels = run.load_test_images()
    jobs: list[Callable[[], Path]] = [
        lambda: error_figure(summary, a.methods, STABILITY_ROWS, e.band, run.figure("stability")),
        lambda: error_figure(
            summary, a.methods, [("fidelity", "fidelity error")], e.band, run.figure("fidelity")
        ),
        lambda: similarity_figure(summary, a.methods, e.topk, run.figure("ssim_topk"), e.band),
        lambda: tradeoff_figure(advice, run.figure("tradeoff")),
        lambda: answer_figure(summary, advice, a.methods, e.debiased, run.figure("answer")),
    ]
    pairs = Setting.of(cfg).grid_pairs(summary)
    kept = FigureMaps(cfg, run, len(x))
    for method in a.methods:
        for pair in pairs:
            path = run.figure(f"grid_{method}_{pair[0]}-{pair[1]}")
            jobs.append(functools.partial(grid_figure, cfg, kept, x, labels, method, pair, path))
        path = run.figure(f"sigma_{method}")
        jobs.append(functools.partial(sigma_figure, cfg, kept, x, method, path, model=pairs[0][0]))
    levels = shown_levels(a, summary, advice)
    for method in a.methods:
        for fn, name in (
            (disagreement_figure, "disagreement"),
            (reliability_figure, "reliability"),
        ):
            path = run.figure(f"{name}_{method}")
            jobs.append(functools.partial(fn, cfg, kept, summary, x, method, levels[method], path))
    jobs += _sanity_jobs(cfg, run, summary)
    paths = []
    with Progress(len(jobs), "figures", quiet=cfg.quiet) as bar:
        for job in jobs:
            if (path := job()) is not None:
                paths.append(path)
            bar.update()
    return paths


def bounds_figure(res: Bounds, path: Path) -> Path:
    """Bounds of Theorem 6 and Proposition 7 beside the measured errors, log scale, with the
    trivial bounds (a bound above its trivial one is vacuous) and Theorem 6's r* when in view.
    The measured stability error (two models on disjoint splits) is not what Theorem 6 bounds
    (one changed example): the legend says so."""
    log = lambda v: None if v is None or v <= 0 else math.log10(v)  # noqa: E731
    rows = res.rows
    r = [row.r for row in rows]
    kind = res.measured
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6), layout="constrained")
    curves = [  # axes, (measured, bound) of a row, labels
        (
            axes[0],
            lambda row: (row.stability_grad, row.stability_bound_log10),
            f"measured: Smooth-Grad distance, 2 models on disjoint splits ({kind})",
            "Theorem 6 bound on eps_stab (one changed example)",
        ),
        (
            axes[1],
            lambda row: (row.fidelity_grad, row.fidelity_bound_grad_log10),
            f"measured: Smooth-Grad fidelity error ({kind})",
            "Prop. 7 bound (Smooth-Grad)",
        ),
        (
            axes[1],
            lambda row: (row.fidelity_ig, row.fidelity_bound_ig_log10),
            f"measured: smoothed-IG fidelity error ({kind})",
            "Prop. 7 bound (smoothed IG)",
        ),
    ]
    for ax, pick, label, blabel in curves:
        points = [pick(row) for row in rows]
        if points and points[0][1] is not None:
            ax.plot(r, [bound for _, bound in points], "--", label=blabel)
        ax.plot(r, [log(measured) for measured, _ in points], "o-", ms=3, label=label)
    for ax in axes:
        ax.axhline(res.trivial_log10, color="grey", ls=":", label="trivial: 2 Gamma_{k,0}")
    ig = [row.trivial_ig_log10 for row in rows]
    axes[1].plot(r, ig, ":", color="k", label="trivial (IG): Gamma_{k,0} (2C + sigma sqrt(m))")
    r_star = None if res.stability is None else res.stability.theorem6.r_star_log10
    if r_star is not None and r and r[0] <= 10**r_star <= r[-1]:
        axes[0].axvline(10**r_star, color="grey", ls="-.", label="r*: Theorem 6 bends")
    stab_title = "stability: bound and measurement are different quantities"
    for ax, title in zip(axes, (stab_title, "fidelity"), strict=True):
        ax.set_xlabel("noise level r")
        ax.set_ylabel("log10 error (above trivial: vacuous)")
        ax.set_title(title + (" (heuristic)" if res.heuristic else ""), fontsize=FONT + 1)
        ax.grid(alpha=0.3)
    _legend_below(fig, axes, ncols=2)
    return save(fig, path)

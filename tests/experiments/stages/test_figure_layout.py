"""The run's figures are legible at 100% zoom: every text at 9 pt or more and inside the
canvas, no text over another or over a panel's plotting area (a cut or overlapping label), and
no legend over plotted data; the figures with several kinds of line have a legend.

The figures are drawn from designed metrics rows (no training) and caught before they are
saved; the check itself is shown to fail on a figure with each fault. The slow test checks
every figure of the session's tiny run, map grids, sanity and bounds figures included."""

from __future__ import annotations

import itertools
import random
import shutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.text import Annotation, Text  # noqa: E402

from helpers import crossed_rows  # noqa: E402
from smoothstab import plot  # noqa: E402
from smoothstab.experiments.analysis.advice import advise  # noqa: E402
from smoothstab.experiments.analysis.summary import Summary  # noqa: E402
from smoothstab.experiments.stages import figures  # noqa: E402

MIN_POINTS = 9
METHODS = ("grad", "ig", "gradcam", "gradcampp")


def _inside(inner, outer, slack: float = 1.0) -> bool:
    return (
        inner.x0 >= outer.x0 - slack
        and inner.y0 >= outer.y0 - slack
        and inner.x1 <= outer.x1 + slack
        and inner.y1 <= outer.y1 + slack
    )


def _overlap(a, b, slack: float = 1.0) -> bool:
    """The two boxes share more than ``slack`` pixels in both directions."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w > slack and h > slack


def _data_points(ax) -> np.ndarray:
    """The display coordinates of what ``ax`` plots: its lines' points and its collections'
    (bands, error bars, scatter) vertices."""
    pts = [line.get_transform().transform(line.get_xydata()) for line in ax.lines]
    for coll in ax.collections:
        for path in coll.get_paths():
            if len(path.vertices):
                pts.append(coll.get_transform().transform(path.vertices))
    pts = [p[np.isfinite(p).all(axis=1)] for p in pts]
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def _undrawn(fig) -> set[int]:
    """The tick labels matplotlib keeps but does not draw: those of ticks outside the view."""
    out = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            eps = (hi - lo) * 1e-9
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - eps <= tick.get_loc() <= hi + eps:
                    out |= {id(tick.label1), id(tick.label2)}
    return out


def layout_problems(fig) -> list[str]:
    """What a reader would see wrong in ``fig`` at 100% zoom, one line each."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    undrawn = _undrawn(fig)
    texts = [
        t
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and id(t) not in undrawn
    ]
    found = []
    in_axes = {id(t) for ax in fig.axes for t in ax.texts}  # annotations and in-panel notes
    boxes = []
    for t in texts:
        label = t.get_text().strip().replace("\n", " ")[:50]
        if t.get_fontsize() < MIN_POINTS:
            found.append(f"{t.get_fontsize():g} pt: {label!r}")
        box = t.get_window_extent(renderer)
        if not _inside(box, canvas):
            found.append(f"outside the canvas (cut): {label!r}")
        if id(t) not in in_axes and not isinstance(t, Annotation):
            boxes.append((label, box, t))
    for (la, a, _), (lb, b, _) in itertools.combinations(boxes, 2):
        if _overlap(a, b):
            found.append(f"text over text: {la!r} and {lb!r}")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    for label, box, t in boxes:
        for ax in panels:
            if t in ax.get_xticklabels() + ax.get_yticklabels():
                continue
            if _overlap(box, ax.get_window_extent(renderer), slack=2.0):
                found.append(f"text over a panel: {label!r}")
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in panels:
            pts = _data_points(ax)
            inside = (
                (pts[:, 0] > box.x0)
                & (pts[:, 0] < box.x1)
                & (pts[:, 1] > box.y0)
                & (pts[:, 1] < box.y1)
            )
            if inside.any():
                found.append(f"legend over data: {int(inside.sum())} points")
    return found


@pytest.fixture
def caught(monkeypatch):
    """The figures the stage would save, kept open instead."""
    kept = []

    def save(fig, path):
        kept.append(fig)
        return path

    monkeypatch.setattr(figures, "save", save)
    yield kept
    plt.close("all")


def designed_summary() -> Summary:
    """Four methods (their scales apart by 100x, as Grad-CAM++'s are), two training-set sizes
    of six models, SSIM and top-k rows beside the distances."""
    rows = []
    rng = random.Random(0)
    changes = {0.0: 0.0, 0.016: -0.02, 0.064: -0.06, 0.144: -0.1, 0.256: -0.12, 0.4: -0.13}
    for j, method in enumerate(METHODS):
        for n in (400, 800):
            found = crossed_rows(6, 8, changes, method=method, n=n, seed=j)
            for row in found:
                if row["metric"] in ("stability", "stability_debiased", "map_norm"):
                    row["value"] *= 10**j
            rows += found
            for row in [r for r in found if r["metric"] == "unit_distance"]:
                for metric in ("ssim", "topk_iou"):
                    value = 1 - row["value"] / 2 + rng.gauss(0, 0.02)
                    rows.append({**row, "metric": metric, "value": value})
    return Summary.from_rows(rows)


def test_the_summary_figures_are_legible(caught, tmp_path):
    summary = designed_summary()
    advice = advise(summary, METHODS, debiased=True, budget=0.3, measure="unit_distance")
    assert {a.status for a in advice.methods} >= {"smooth"}
    figures.error_figure(summary, METHODS, figures.STABILITY_ROWS, "interval", tmp_path / "s")
    figures.error_figure(summary, METHODS, [("fidelity", "fidelity error")], "t95", tmp_path / "f")
    figures.similarity_figure(summary, METHODS, 100, tmp_path / "ssim")
    figures.tradeoff_figure(advice, tmp_path / "t")
    figures.answer_figure(summary, advice, METHODS, True, tmp_path / "a")
    figures.answer_figure(summary, advice, METHODS[:1], True, tmp_path / "a1")
    assert len(caught) == 6
    problems = {i: layout_problems(fig) for i, fig in enumerate(caught)}
    assert {i: p for i, p in problems.items() if p} == {}
    # every figure with more than one kind of curve or mark has a legend that names them
    for fig in caught:
        assert fig.legends, fig
    answer = caught[4].legends[0]
    names = [t.get_text() for t in answer.get_texts()]
    assert "recommended r" in names and "95% interval" in names, names


def test_the_sanity_and_grid_figures_are_legible(caught, tmp_path):
    levels = []
    for j, r in enumerate((0.0, 0.016, 0.064, 0.144, 0.256, 0.4)):
        lv = {"r": r, "stability": 0.9 - 0.05 * j, "verdict": "passes"}
        for view in ("ssim", "rank"):
            lv |= {f"{view}_random": 0.2 + 0.1 * j, f"{view}_retrained": 0.5 + 0.05 * j}
            lv[f"label_{view}_random"] = 0.3 + 0.08 * j
        levels.append(lv)
    advice = {"most_stable_r": 0.4}
    figures.sanity_figure(levels, advice, "grad", "unit_distance", tmp_path / "sanity")
    maps = {f"model {k}, r={r:g}": torch.rand(3, 1, 16, 16) for k in (0, 1) for r in (0, 0.144)}
    grid = plot.map_grid(maps, torch.rand(3, 1, 16, 16), image_range=(0, 1))
    assert {i: p for i, p in enumerate(map(layout_problems, [*caught, grid])) if p} == {}


def test_the_layout_check_sees_each_fault():
    """A small label, a label longer than its figure, titles over each other and a legend over
    the curve: each is found."""
    fig, axes = plt.subplots(1, 2, figsize=(4, 2))
    axes[0].plot(np.linspace(0, 1, 11), np.linspace(0, 1, 11), "o-", label="data")
    axes[0].legend(loc="center", fontsize=10)
    axes[0].set_ylabel("a y label far longer than this small figure is tall, so it is cut")
    axes[0].set_title("a long title running into the next one", fontsize=12)
    axes[1].set_title("the next title", fontsize=12)
    axes[1].set_xlabel("tiny", fontsize=6)
    found = "\n".join(layout_problems(fig))
    plt.close(fig)
    assert "6 pt: 'tiny'" in found, found
    assert "outside the canvas (cut): 'a y label far longer" in found, found
    assert "text over text: 'a long title running into the next one' and 'the next title'" in (
        found
    ), found
    assert "legend over data" in found, found


@pytest.mark.slow
def test_every_figure_of_a_run_is_legible(tiny_run, tmp_path, caught):
    """The tiny run's figures, drawn again from its files: the paper's figures, the answer,
    the trade-off, the map grids and noise-level strips, the sanity and bounds figures."""
    from smoothstab.experiments.config.load import load_config
    from smoothstab.experiments.rundir.bounds_record import read_bounds
    from smoothstab.experiments.rundir.layout import RunDir

    d = tmp_path / "run"
    shutil.copytree(tiny_run, d)
    run = RunDir(d)
    cfg = load_config(str(run.config))
    figures.make_figures(cfg, run, run.summary(), run.advice())
    figures.bounds_figure(read_bounds(run.bounds_json), d / "bounds.png")
    assert len(caught) >= 8
    problems = {i: layout_problems(fig) for i, fig in enumerate(caught)}
    assert {i: p for i, p in problems.items() if p} == {}

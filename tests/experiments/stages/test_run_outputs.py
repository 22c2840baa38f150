"""What one tiny run writes: every output file, the block files, the metrics table, Table 1, the
advice and the report."""

from __future__ import annotations

import csv
import dataclasses
import math
import re

import pytest
import torch

import smoothstab as ss
from helpers import (
    FIGURES,
    GRID,
    N_IMAGES,
    N_MODELS,
    TINY,
    TRAINED,
    block_files,
    figure_means,
    leftovers,
)
from smoothstab.experiments.analysis import advice as sigma_advice
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.models.source import RunModels
from smoothstab.experiments.rundir.advice_record import read_advice
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.metrics_table import COLUMNS


@pytest.mark.slow
def test_run_writes_every_output(tiny_run):
    for name in (
        *TRAINED,
        "test_images.pt",
        "metrics.parquet",
        "table1.csv",
        "recommendation.json",
        "bounds.json",
        "bounds.md",
        "report.md",
        "report.html",
    ):
        assert (tiny_run / name).is_file(), name
    for method in ss.METHODS:  # two image blocks of two images; no map file by default
        assert [p.name for p in sorted((tiny_run / "blocks" / method).iterdir())] == [
            "block00000.pt",
            "block00001.pt",
        ]
    assert not (tiny_run / "maps").exists()
    figures = {p.stem for p in (tiny_run / "figures").glob("*.png")}
    expected = {*FIGURES, *(f"grid_{m}_0-1" for m in ss.METHODS)}
    expected |= {f"sigma_{m}" for m in ss.METHODS}
    expected |= {f"{kind}_{m}" for m in ss.METHODS for kind in ("disagreement", "reliability")}
    assert figures == expected
    assert not leftovers(tiny_run)


@pytest.mark.slow
def test_resolved_config_is_saved(tiny_run):
    saved = load_config(tiny_run / "config.toml")
    assert saved == dataclasses.replace(load_config(None, TINY[1::2]), quiet=True)
    assert saved.attribution.n_samples == 6 and saved.train.parts == 2


@pytest.mark.slow
def test_block_files(tiny_run):
    """Each block file says what it is (method, block, images, levels, sigmas, seeds) and holds
    a value per image for each row group, and the figure images' mean maps: here every image
    (4 images, grid_images = 4), every model at every r."""
    x = torch.load(tiny_run / "test_images.pt", weights_only=True)["x"]
    assert x.shape == (N_IMAGES, 3, 32, 32)
    x_range = dataset_info("shapes").x_range
    for method, channels in (("grad", 3), ("ig", 3), ("gradcam", 1), ("gradcampp", 1)):
        for b, f in enumerate(block_files(tiny_run, method)):
            assert (f["method"], f["block"], f["images"], f["models"]) == (
                method,
                b,
                [2 * b, 2 * b + 2],
                2,
            )
            assert f["rs"] == GRID and f["sigmas"] == pytest.approx([r * x_range for r in GRID])
            assert f["values"].shape == f["stderr"].shape == (len(f["metric"]), 2)
            assert f["values"].dtype == torch.float64 and len(f["sha256"]) == 64
            assert f["figure_images"] == [2 * b, 2 * b + 1]
            assert f["figure_maps"].shape == (N_MODELS, len(GRID), 2, channels, 32, 32)
        assert not torch.equal(
            figure_means(tiny_run, 0, method, 0.0), figure_means(tiny_run, 0, method, 0.4)
        )
    # The unsmoothed maps are the library's, for the checkpoint's model and the saved images.
    model = RunModels(load_config(tiny_run / "config.toml"), RunDir(tiny_run)).models()[1]
    y = torch.load(tiny_run / "test_images.pt", weights_only=True)["y"]
    torch.testing.assert_close(figure_means(tiny_run, 1, "grad", 0.0), ss.grad(model, x, y))


@pytest.mark.slow
def test_metrics_table_is_tidy(tiny_run, tiny_rows):
    import pyarrow.parquet as pq

    header = pq.read_schema(tiny_run / "metrics.parquet").names
    assert header == list(COLUMNS)
    assert {"method", "r", "sigma", "metric", "value", "pair", "model", "image", "n"} <= set(header)
    assert {row["n"] for row in tiny_rows} == {"400"}  # the models' training-set size
    metrics = {row["metric"] for row in tiny_rows}
    assert {"stability", "fidelity", "ssim", "topk_iou"} <= metrics
    assert {"stability_debiased", "fidelity_debiased"} <= metrics
    assert {row["method"] for row in tiny_rows} == set(ss.METHODS)
    assert sorted({row["r"] for row in tiny_rows}) == GRID
    assert {row["setting"] for row in tiny_rows} == {"DT"}
    x_range = dataset_info("shapes").x_range
    for row in tiny_rows:
        assert math.isclose(row["sigma"], row["r"] * x_range, rel_tol=1e-9, abs_tol=0)
        assert math.isfinite(row["value"])
    # One row per image and pair (pair metrics) or per image and model (fidelity).
    counts = {}
    for row in tiny_rows:
        unit = ("pair", row["pair"]) if row["pair"] else ("model", row["model"])
        key = (row["method"], row["r"], row["metric"])
        counts.setdefault(key, set()).add((unit, row["image"]))
    pair_metrics = {"stability", "ssim", "topk_iou", "unit_distance", "rank_agreement"}
    pair_metrics |= {f"{m}_debiased" for m in pair_metrics} | {f"{m}_floor" for m in pair_metrics}
    # of no pair or model: the two models' disagreement totals
    pair_metrics |= {"disagreement", "disagreement_debiased"}
    assert {"unit_distance_debiased", "rank_agreement", "map_norm_debiased"} <= metrics
    assert {"ssim_floor", "disagreement_debiased", "predicted", "correct"} <= metrics
    for (_, r, metric), units in counts.items():
        n_units = 1 if metric in pair_metrics else 2
        assert len(units) == n_units * N_IMAGES, metric
        assert r == 0 or metric not in ("predicted", "correct")  # predictions once, at r = 0
    # With two models, exactly one pair.
    assert {row["pair"] for row in tiny_rows if row["pair"]} == {"0-1"}


@pytest.mark.slow
def test_metric_values(tiny_rows):
    by = lambda metric, r: [  # noqa: E731
        row["value"] for row in tiny_rows if row["metric"] == metric and row["r"] == r
    ]
    # A map against itself: fidelity is exactly 0 at r = 0, and > 0 once it is smoothed.
    assert by("fidelity", 0.0) == [0.0] * (4 * N_MODELS * N_IMAGES)
    assert by("fidelity_debiased", 0.0) == [0.0] * (4 * N_MODELS * N_IMAGES)
    assert all(v > 0 for r in GRID[1:] for v in by("fidelity", r))
    assert all(v > 0 for r in GRID for v in by("stability", r))
    assert all(-1 <= v <= 1 for r in GRID for v in by("ssim", r))
    assert all(0 <= v <= 1 for r in GRID for v in by("topk_iou", r))
    # The debiased estimate removes Monte-Carlo noise, so it sits below the plain one on average.
    for r in GRID[1:]:
        assert sum(by("fidelity_debiased", r)) < sum(by("fidelity", r))


@pytest.mark.slow
def test_table1_and_recommendation(tiny_run, tiny_rows):
    summary = Summary.from_rows(tiny_rows)
    with open(tiny_run / "table1.csv", newline="") as f:
        table = {row["method"]: row for row in csv.DictReader(f)}
    assert set(table) == set(ss.METHODS)
    assert {row["pair"] for row in table.values()} == {"mean over pairs"}
    for method, row in table.items():
        for column, metric, r in (
            ("ssim", "ssim", 0.0),
            ("smoothed_ssim", "ssim", 0.15),
            ("topk_miou", "topk_iou", 0.0),
            ("smoothed_topk_miou", "topk_iou", 0.15),
            ("unit_distance", "unit_distance_debiased", 0.0),
            ("smoothed_unit_distance", "unit_distance_debiased", 0.15),
        ):
            assert float(row[column]) == pytest.approx(
                summary.get(method, metric, r).mean, rel=1e-5
            )
    advice = read_advice(tiny_run / "recommendation.json")
    assert {a.method for a in advice.methods} == set(ss.METHODS)
    for a in advice.methods:
        # The advice follows the debiased curve (debiased is on) over the whole grid, stability
        # in the scale-free unit-map distance (the default measure); two models: no verdict.
        assert [lv.r for lv in a.levels] == GRID and a.measure == "unit_distance" and a.debiased
        assert (a.k, a.status, a.recommended_r, a.knee_r) == (2, "too few models", None, None)
        points = sigma_advice.tradeoff(summary, a.method, debiased=True, measure="unit_distance")
        for lv, point in zip(a.levels, points, strict=True):
            assert (lv.r, lv.stability.estimate, lv.fidelity) == pytest.approx(point)
        assert all(lv.stability.scope == "these models" for lv in a.levels)
        assert a.map_norm == pytest.approx(summary.get(a.method, "map_norm_debiased", 0.0).mean)
        budget = a.fidelity_budget * a.map_norm
        assert [lv.within_budget for lv in a.levels] == [f <= budget for _, _, f in points]
        assert a.best_r == sigma_advice.within_budget(points, a.map_norm, a.fidelity_budget)


@pytest.mark.slow
def test_report(tiny_run):
    md = (tiny_run / "report.md").read_text()
    page = (tiny_run / "report.html").read_text()
    config = (tiny_run / "config.toml").read_text()
    for text in (md, page):
        assert "Conventions" in text and "r = sigma / (x_max - x_min)" in text
        assert "Recommended noise level" in text
        assert "Simple-Grad: these two models: too few for advice" in text
        assert "Theory: bounds beside the measured errors" in text
        assert "stability error falls" in text or "stability error rises" in text
        # The answer opens the report, before the conventions: a verdict per method.
        opening = text[: text.index("Conventions")]
        assert "The answer: more alike, or only smaller?" in opening
        assert opening.count("unit-map distance") >= len(ss.METHODS)
        assert "One pair of models: every interval below is about these two models" in opening
        assert opening.count("these two models only: no verdict") == len(ss.METHODS)
        assert "Agreement or shrinkage" in text and "raw L2" in text
    # The resolved config, verbatim in Markdown and escaped in HTML.
    assert config.strip() in md
    assert "name = &quot;quickstart&quot;" in page and "n_samples = 6" in page
    # report.html stands alone: every figure embedded, none linked.
    assert page.count("data:image/png;base64,") == len(list((tiny_run / "figures").glob("*.png")))
    assert 'src="figures/' not in page and "src='figures/" not in page
    # report.md links figures that exist.
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == len(list((tiny_run / "figures").glob("*.png")))
    assert all((tiny_run / link).is_file() for link in links)

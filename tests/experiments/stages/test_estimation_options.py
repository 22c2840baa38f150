"""Estimation options on the tiny run's trained models: common random numbers, antithetic draws and
the joint IG sampler, debiasing off, the predicted class in float64, close noise levels, maps
smaller than the SSIM window, training-set sizes."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import smoothstab as ss
from helpers import (
    GRID,
    N_IMAGES,
    TINY,
    attribute_again,
    figure_means,
    load_map,
    map_path,
    run,
    same_map,
    values,
    without_values,
)
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.models.source import RunModels
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.metrics_table import read_rows


@pytest.mark.slow
@pytest.mark.parametrize("crn", [True, False])
def test_common_random_numbers(tiny_run, tmp_path, crn):
    """Two copies of one model: with common random numbers they see the same noise, so their
    smoothed maps agree exactly (stability 0, SSIM and top-k IoU 1); without, they differ."""
    rows = attribute_again(
        tiny_run, tmp_path / "run", f"attribution.common_random_numbers={str(crn).lower()}",
        twins=True,
    )  # fmt: skip
    assert values(rows, "stability", r=0.0) == [0.0] * (2 * N_IMAGES)
    for r in GRID[1:]:
        stab = values(rows, "stability", r=r)
        if crn:
            assert stab == [0.0] * (2 * N_IMAGES)
            assert values(rows, "topk_iou", r=r) == [1.0] * (2 * N_IMAGES)
            assert values(rows, "ssim", r=r) == pytest.approx([1.0] * (2 * N_IMAGES), abs=1e-6)
        else:
            assert min(stab) > 0


@pytest.mark.slow
def test_antithetic_and_joint_ig(tiny_run, tiny_rows, tmp_path):
    d = tmp_path / "run"
    rows = attribute_again(
        tiny_run, d, "attribution.antithetic=true", "attribution.ig_sampler=joint", "maps.keep=all"
    )
    for method in ("grad", "ig"):
        smoothed = load_map(d, 0, method, 0.2)
        assert smoothed["n_units"] == 3  # 6 draws in 3 antithetic pairs
        assert not same_map(d, tiny_run, 0, method, 0.2)
    # Unsmoothed maps do not depend on the estimator, except that the joint estimator's IG
    # reference uses an accurate quadrature (attribution.ig_reference_steps).
    assert same_map(d, tiny_run, 0, "grad", 0.0)
    assert not same_map(d, tiny_run, 0, "ig", 0.0)
    assert {row["metric"] for row in rows} >= {"stability_debiased", "fidelity_debiased"}
    same = [row for row in tiny_rows if row["method"] == "grad" and row["r"] == 0.0]
    assert [row for row in rows if row["r"] == 0.0 and row["method"] == "grad"] == same


@pytest.mark.slow
def test_without_debiasing(tiny_run, tiny_rows, tmp_path):
    """Debiasing off: kept map files hold no halves and the metrics table no debiased rows; the
    plain numbers are those of the debiased run (the same draws, the same means)."""
    d = tmp_path / "run"
    rows = attribute_again(tiny_run, d, "evaluation.debiased=false", "maps.keep=all")
    assert not any(row["metric"].endswith("_debiased") for row in rows)
    saved = load_map(d, 1, "ig", 0.4)
    assert "halves" not in saved and "unit_var" not in saved
    plain = [
        row
        for row in tiny_rows
        if row["method"] in ("grad", "ig") and not row["metric"].endswith("_debiased")
    ]
    assert len(rows) == len(plain)
    for a, b in zip(rows, plain, strict=True):
        assert without_values(a) == without_values(b)
        assert a["value"] == pytest.approx(b["value"], rel=1e-6, abs=1e-9)


@pytest.mark.slow
def test_predicted_class_in_float64(tiny_run, tmp_path):
    """target = predicted explains each model's own top class; dtype = float64 computes in
    double and agrees with the float32 run where the targets agree."""
    d = tmp_path / "run"
    rows = attribute_again(
        tiny_run, d, "attribution.target=predicted", "attribution.dtype=float64", "maps.keep=all"
    )
    assert {row["metric"] for row in rows} >= {"stability", "fidelity", "ssim", "topk_iou"}
    saved = torch.load(d / "test_images.pt", weights_only=True)
    x, y = saved["x"], saved["y"]
    agree = []
    for k, model in enumerate(RunModels(load_config(d / "config.toml"), RunDir(d)).models()):
        model = model.double()
        predicted = model(x.double()).argmax(1)
        ours = load_map(d, k, "grad", 0.0)["mean"]
        assert ours.dtype == torch.float64 and load_map(d, k, "ig", 0.2)["mean"].dtype == ours.dtype
        torch.testing.assert_close(ours, ss.grad(model, x.double(), predicted))
        same = predicted == y
        float32 = figure_means(tiny_run, k, "grad", 0.0).double()
        torch.testing.assert_close(ours[same], float32[same], rtol=1e-4, atol=1e-6)
        agree += same.tolist()
    # Not vacuous: the barely trained models get some labels right and some wrong.
    assert any(agree) and not all(agree)


@pytest.mark.slow
def test_close_noise_levels_get_their_own_maps(tiny_run, tmp_path):
    """Noise levels that agree to 4 decimals (and r = 2e-5 against r = 0) are different levels:
    each has its own map file, so r = 0 stays unsmoothed and r = 2e-5 is smoothed."""
    d = tmp_path / "run"
    rows = attribute_again(
        tiny_run,
        d,
        "attribution.stability_r=[0, 0.00002]",
        "attribution.fidelity_r=[0.1, 0.10004]",
        "maps.keep=means",
    )
    rs = sorted({row["r"] for row in rows})
    assert rs == [0.0, 0.00002, 0.1, 0.10004, 0.15]
    assert len({map_path(d, 0, "grad", r) for r in rs}) == len(rs)
    for r in rs:
        assert load_map(d, 0, "grad", r)["r"] == r
    assert same_map(d, tiny_run, 0, "grad", 0.0)
    assert all(v > 0 for v in values(rows, "fidelity", r=0.00002))
    assert values(rows, "fidelity", r=0.1) != values(rows, "fidelity", r=0.10004)


@pytest.mark.slow
def test_digits_maps_are_smaller_than_the_ssim_window(tmp_path):
    """8x8 digits: no SSIM nor its chance floor (its 11x11 window does not fit), every other
    metric, floor and stage."""
    out = tmp_path / "digits"
    args = ["--set", "train.dataset=digits", "--set", 'attribution.methods=["grad", "gradcam"]']
    args += ["--stages", "train", "attribute", "evaluate", "figures", "report"]
    assert run("run", "--out", out, "--quiet", *TINY, *args) == 0
    rows = read_rows(out / "metrics.parquet")
    assert {row["metric"] for row in rows} == {
        "stability", "stability_debiased", "fidelity", "fidelity_debiased", "topk_iou", "map_norm",
        "rel_se", "model_evals", "map_norm_debiased", "rank_agreement", "unit_distance",
        "unit_distance_debiased", "stability_floor", "topk_iou_floor", "rank_agreement_floor",
        "unit_distance_floor", "disagreement", "disagreement_debiased", "predicted", "correct",
    }  # fmt: skip
    with open(out / "table1.csv", newline="") as f:
        assert all(row["ssim"] == "" and row["topk_miou"] for row in csv.DictReader(f))
    assert "| Simple-Grad | mean over pairs | - | - |" in (out / "report.md").read_text()


@pytest.mark.slow
def test_training_set_sizes(tmp_path):
    """part_size as a list: parts models per size, disjoint within a size and nested across
    sizes; only models of one size are compared; n in the metrics table, a curve per n, and the
    report's statement of how stability changes with n."""
    out = tmp_path / "sizes"
    args = ["--set", "train.part_size=[200, 400]", "--set", 'attribution.methods=["grad"]']
    args += ["--stages", "train", "attribute", "evaluate", "figures", "report"]
    assert run("run", "--out", out, "--quiet", *TINY, *args) == 0
    models = json.loads((out / "train_metrics.json").read_text())["models"]
    assert [m["train_size"] for m in models] == [200, 200, 400, 400]
    parts = json.loads((out / "splits.json").read_text())
    assert not set(parts[0]) & set(parts[1]) and not set(parts[2]) & set(parts[3])
    assert parts[0] == parts[2][:200] and parts[1] == parts[3][:200]  # nested across sizes
    rows = read_rows(out / "metrics.parquet")
    assert {row["pair"] for row in rows if row["pair"]} == {"0-1", "2-3"}
    assert {(row["pair"], row["n"]) for row in rows if row["pair"]} == {
        ("0-1", "200"),
        ("2-3", "400"),
    }
    assert {(row["model"], row["n"]) for row in rows if row["model"]} == {
        ("0", "200"),
        ("1", "200"),
        ("2", "400"),
        ("3", "400"),
    }
    summary = Summary.from_rows(rows)
    assert summary.sizes == [200, 400] and summary.default_n == 400
    md = (out / "report.md").read_text()
    section = md[md.index("## Stability and the training-set size") :]
    assert "| r | n = 200 | n = 400 | n = 400 vs n = 200 |" in section
    head = "| n | test accuracy | raw L2 (r=0) | unit-map distance (r=0) | norm (r=0) |"
    assert head in section
    accuracy = [m["test_accuracy"] for m in models]
    assert f"| 400 | {(accuracy[2] + accuracy[3]) / 2:.3f} |" in section
    assert "- Simple-Grad (n = 200): raw L2" in md and "- Simple-Grad (n = 400): raw L2" in md
    assert "with n" in section or "no monotone change" in section
    for n in (200, 400):
        assert f"*Simple-Grad, n = {n}: stability and fidelity errors per r (" in md
    with open(out / "table1.csv", newline="") as f:  # Table 1 at the largest n
        (row,) = list(csv.DictReader(f))
    assert float(row["topk_miou"]) == pytest.approx(
        summary.get("grad", "topk_iou", 0.0, n=400).mean, rel=1e-5
    )
    assert (out / "figures" / "grid_grad_2-3.png").is_file()

"""The sanity stage (``[sanity]``): the model-randomisation check in the pipeline."""

from __future__ import annotations

import json
import time

import pytest
import torch

import smoothstab as ss
from helpers import TINY_SETTINGS
from smoothstab import inference
from smoothstab.experiments.analysis.advice import (
    Interval,
    sanity_advice,
    sanity_levels,
    sanity_verdict,
)
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.cli import main
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.config.parse import ConfigError
from smoothstab.experiments.models.architectures import build_model
from smoothstab.experiments.models.data import derive_seed
from smoothstab.experiments.plan import counts as plan
from smoothstab.experiments.rundir import sanity_rows
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.stages import sanity_stage as sanity


def upper_end(per_image: dict[int, float]) -> float:
    """The upper end of the 95% interval over images of a per-image similarity."""
    return inference.model_mean([list(per_image.values())], scope="these models").interval()[1]


def _setup(monkeypatch, methods: str):
    """The tiny config with ``methods`` and the check on, and an untrained small CNN (its
    random He initialisation stands in for trained weights) on 4 random 32x32 images."""
    monkeypatch.setitem(ss.METHODS, "edge", ss.edge_map)  # the control, as a method of the run
    sets = [*TINY_SETTINGS, f"attribution.methods={methods}", "sanity.enabled=true"]
    cfg = load_config(None, sets)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model("small_cnn", num_classes=10, in_channels=3).eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return cfg, model, x, torch.arange(4)


def test_edge_control_is_identical_to_every_randomised_model_and_grad_is_not(monkeypatch):
    """Through the stage's own code path (the run's smoothed method, block seeds, copies):
    the edge detector ignores the model, so both similarities are exactly 1 for every copy,
    image and r; the gradient's similarity to the fully randomised model is not."""
    cfg, model, x, y = _setup(monkeypatch, '["grad", "edge"]')
    edge = sanity.check_rows(cfg, model, x, y, "edge")
    assert edge and all(row["value"] == 1.0 for row in edge)
    grad = sanity.check_rows(cfg, model, x, y, "grad")
    similar = sanity_rows.per_image_similarity(grad, "cascading")
    for r in sanity.levels(cfg.attribution):
        for metric in (Metric.SANITY_SSIM, Metric.SANITY_RANK):
            assert upper_end(similar[("grad", str(metric), r)]) < 0.5, (r, metric)
    assert len(grad) == len(edge)  # 2 metrics x 2 r x copies x 4 images each


def test_plan_counts_the_stage_model_evaluations(monkeypatch):
    """``plan`` counts every input row the stage puts through the model and its copies."""
    cfg, model, x, y = _setup(monkeypatch, '["grad", "ig"]')
    rows = [0]
    model.register_forward_pre_hook(lambda m, args: rows.__setitem__(0, rows[0] + len(args[0])))
    for method in cfg.attribution.methods:  # copies are deep copies: the hook comes along
        before = rows[0]
        sanity.check_rows(cfg, model, x, y, method)
        cost = plan.sanity_cost(cfg)
        assert rows[0] - before == (1 + cost.copies) * cost.per_model[method], method
    assert cost.copies == len(ss.randomizable_layers(model)[0])
    assert plan.sanity_cost(load_config(None, TINY_SETTINGS)) is None  # off by default


def test_label_check_rows_against_the_twin(monkeypatch):
    """With a twin the rows are the label check's (metrics, the permutation's name, one step):
    the edge control is exactly 1 against it too, the gradient is not, and ``similarity``
    reads both checks from one file."""
    cfg, model, x, y = _setup(monkeypatch, '["grad", "edge"]')
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        twin = build_model("small_cnn", num_classes=10, in_channels=3).eval()
    edge = sanity.check_rows(cfg, model, x, y, "edge", twin)
    assert {row["metric"] for row in edge} == {"sanity_label_ssim", "sanity_label_rank"}
    assert {(row["step"], row["randomized"]) for row in edge} == {(0, "labels-permuted-0")}
    assert len(edge) == 2 * 2 * 4 and all(row["value"] == 1.0 for row in edge)
    grad = sanity.check_rows(cfg, model, x, y, "grad", twin)
    rows = sanity.check_rows(cfg, model, x, y, "grad") + grad
    similar = sanity_rows.per_image_similarity(rows, "cascading")
    for r in sanity.levels(cfg.attribution):
        assert upper_end(similar[("grad", "sanity_label_rank", r)]) < 0.5, r
        assert ("grad", "sanity_rank", r) in similar


def test_plan_counts_the_label_check(monkeypatch):
    """``sanity.labels``: the model's maps again and the twin's, counted by hooks on both, and
    the twin's training as one model of the checked model's size."""
    cfg, model, x, y = _setup(monkeypatch, '["grad", "ig"]')
    cfg = load_config(None, [*TINY_SETTINGS, 'attribution.methods=["grad", "ig"]',
                             "sanity.enabled=true", "sanity.labels=true"])  # fmt: skip
    twin = build_model("small_cnn", num_classes=10, in_channels=3).eval()
    rows = [0]
    for m in (model, twin):
        m.register_forward_pre_hook(lambda m, args: rows.__setitem__(0, rows[0] + len(args[0])))
    cost = plan.sanity_cost(cfg)
    for method in cfg.attribution.methods:
        before = rows[0]
        sanity.check_rows(cfg, model, x, y, method, twin)
        assert rows[0] - before == 2 * cost.per_model[method], method
    assert cost.models_evaluated == 1 + cost.copies + 2
    assert cost.total == cost.models_evaluated * sum(cost.per_model.values())
    largest = plan.training_costs(cfg)[-1]
    assert cost.label_training.models == 1 and cost.label_training.steps == largest.steps
    assert plan.sanity_cost(load_config(None, [*TINY_SETTINGS, "sanity.enabled=true"]))\
        .label_training is None  # fmt: skip


def test_label_check_refused_where_it_cannot_run():
    """Off without the stage; and where the setting trains nothing here (DR's given
    checkpoints), one line naming the key."""
    with pytest.raises(ConfigError, match="^sanity.labels: the label check is part of the sanity"):
        load_config(None, [*TINY_SETTINGS, "sanity.labels=true"])
    with pytest.raises(ConfigError, match="^sanity.labels: setting DR trains no model here"):
        load_config("paper/table1_dr", ["sanity.enabled=true", "sanity.labels=true"])


def gap(estimate: float, lo: float, hi: float) -> Interval:
    return Interval(estimate, lo, hi, (hi - lo) / 4, 10.0, "retraining", 4, 8)


@pytest.mark.parametrize(
    ("found", "want"),
    [
        (gap(0.20, 0.13, 0.27), "passes"),
        (gap(0.05, -0.02, 0.12), "undecided"),  # the point estimate passes; the interval not
        (gap(-0.07, -0.15, 0.01), "undecided"),
        (gap(-0.15, -0.22, -0.08), "fails"),
        (gap(0.0, 0.0, 0.0), "fails"),  # a map identical for every model: gap 0, width 0
        (gap(float("nan"), float("nan"), float("nan")), "undecided"),
        (None, "undecided"),
    ],
)
def test_verdict_needs_the_gap_interval_off_zero(found, want):
    """The gap (retrained models' similarity minus the randomised one's) passes only where its
    interval lies above 0."""
    assert sanity_verdict(found) == want


def _levels(pairs: list[float], images: list[float], spread: float = 0.02) -> list[dict]:
    """:func:`sanity_levels` of one method at r = 0.1 whose four retrained models' pairs agree
    ``pairs`` (per pair, varying by +-``spread`` over the images) and whose images agree
    ``images`` with the fully random copy, on both views."""
    rows, random = [], []
    base = {"method": "grad", "r": 0.1, "n": 100, "model": "", "stderr": ""}
    for i in range(len(images)):
        rows.append({**base, "metric": "stability", "pair": "0-1", "image": i, "value": 1.0})
    for across, check in ((Metric.SSIM, "sanity_ssim"), (Metric.RANK_AGREEMENT, "sanity_rank")):
        for p, v in zip(("0-1", "0-2", "0-3", "1-2", "1-3", "2-3"), pairs, strict=True):
            for i in range(len(images)):
                value = v + spread * (-1) ** (i + p.count("2"))
                rows.append({**base, "metric": str(across), "pair": p, "image": i, "value": value})
        for i, v in enumerate(images):
            random.append({"method": "grad", "metric": check, "r": 0.1, "step": 0, "image": i,
                           "value": v})  # fmt: skip
    similar = sanity_rows.per_image_similarity(random, "cascading")
    return sanity_levels(Summary.from_rows(rows), similar, "grad", "l2", False)


def test_levels_pass_fail_or_stay_undecided_with_the_intervals():
    """Four models whose six pairs agree 0.76-0.84 with each other, against the randomised
    model on eight images: a clear gap passes, a small one is undecided though the point
    estimate lies below, and a higher similarity fails; the advice carries the verdicts."""
    pairs = [0.80, 0.82, 0.78, 0.84, 0.76, 0.80]
    clear = _levels(pairs, [0.30, 0.35, 0.25, 0.30, 0.32, 0.28, 0.31, 0.29])
    assert clear[0]["verdict"] == "passes" and clear[0]["passes"]
    assert clear[0]["ssim_gap"].scope == "retraining" and clear[0]["ssim_gap"].lo > 0
    close = _levels(pairs, [0.74, 0.84, 0.70, 0.80, 0.78, 0.76, 0.82, 0.72])
    assert close[0]["ssim_random"] < close[0]["ssim_retrained"]  # the old rule passed it
    assert close[0]["verdict"] == "undecided" and not close[0]["passes"]
    high = _levels(pairs, [0.97, 0.99, 0.98, 0.98, 0.97, 0.99, 0.98, 0.98])
    assert high[0]["verdict"] == "fails"
    advice = sanity_advice(close)
    assert advice["most_stable_verdict"] == "undecided" and advice["good_r"] is None


@pytest.mark.slow
def test_tiny_run_with_the_check_writes_rows_figures_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    sets = [a for s in [*TINY_SETTINGS, "sanity.enabled=true"] for a in ("--set", s)]
    assert main(["run", "quickstart", "--out", str(out), "--quiet", *sets, "--stages",
                 "train", "attribute", "evaluate"]) == 0  # fmt: skip
    start = time.perf_counter()
    assert main(["run", "quickstart", "--out", str(out), "--quiet", *sets, "--stages",
                 "sanity", "figures", "report"]) == 0  # fmt: skip
    print(f"sanity, figures, report: {time.perf_counter() - start:.1f} s")
    cfg = load_config(None, [*TINY_SETTINGS, "sanity.enabled=true"])
    rows = sanity_rows.read_rows(RunDir(out))
    methods, rs = cfg.attribution.methods, sanity.levels(cfg.attribution)
    copies = plan.sanity_cost(cfg).copies
    assert len(rows) == len(methods) * len(rs) * copies * 2 * cfg.attribution.n_images
    assert {row["model"] for row in rows} == {"0"} and {row["n"] for row in rows} == {"400"}
    assert {row["metric"] for row in rows} == {"sanity_ssim", "sanity_rank"}
    assert all(-1 <= row["value"] <= 1 for row in rows)
    for method in methods:
        assert (out / "figures" / f"sanity_{method}.png").is_file()
    report = (out / "report.md").read_text()
    assert "## Sanity check" in report and "figures/sanity_grad.png" in report
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["stages"]["sanity"]) == ["sanity.csv"]
    assert "figures/sanity_grad.png" in manifest["stages"]["figures"]
    # the manifest protects sanity.csv: damaged, the sanity stage recomputes it (the same bytes),
    # and a later stage refuses it with the command that rewrites it
    csv_path, good = out / "sanity.csv", (out / "sanity.csv").read_bytes()
    stage = ["run", "quickstart", "--out", str(out), "--quiet", *sets, "--stages"]
    csv_path.write_bytes(good.replace(b"sanity_rank", b"sanity_rang", 1))
    assert main([*stage, "sanity"]) == 0 and csv_path.read_bytes() == good
    csv_path.write_bytes(good.replace(b"sanity_rank", b"sanity_rang", 1))
    capsys.readouterr()
    assert main([*stage, "figures"]) == 2
    assert "--stages sanity" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_run_with_the_label_check(tmp_path):
    """``sanity.labels``: the train stage trains the twin beside the models (recorded in the
    manifest), the sanity stage writes both checks' rows, the report shows the label check,
    and ``plan`` counted the rows the stage wrote."""
    out = tmp_path / "run"
    settings = [*TINY_SETTINGS, "sanity.enabled=true", "sanity.labels=true"]
    sets = [a for s in settings for a in ("--set", s)]
    assert main(["run", "quickstart", "--out", str(out), "--quiet", *sets]) == 0
    cfg = load_config(None, settings)
    twin = out / "model_labels-permuted-0_0.pt"
    manifest = json.loads((out / "manifest.json").read_text())
    assert twin.is_file() and twin.name in manifest["stages"]["train"]
    saved = torch.load(twin, weights_only=False)
    real = torch.load(out / "model_0.pt", weights_only=False)
    # the same recipe, a seed of its own (as one more retrained model): not the real model's
    # initial weights, which would make their maps alike whatever the labels did
    assert saved["config"]["seed"] == derive_seed(cfg.train.seed, cfg.sanity.label_seed, 0)
    assert saved["metrics"]["seed"] != real["metrics"]["seed"]
    assert {k: v for k, v in saved["config"].items() if k != "seed"} == {
        k: v for k, v in real["config"].items() if k != "seed"
    }
    rows = sanity_rows.read_rows(RunDir(out))
    label = [row for row in rows if row["metric"].startswith("sanity_label_")]
    methods, rs = cfg.attribution.methods, sanity.levels(cfg.attribution)
    assert len(label) == len(methods) * len(rs) * 2 * cfg.attribution.n_images
    assert {row["randomized"] for row in label} == {"labels-permuted-0"}
    cost = plan.sanity_cost(cfg)
    assert len(rows) == len(methods) * len(rs) * 2 * cfg.attribution.n_images * (cost.copies + 1)
    report = (out / "report.md").read_text()
    assert "Label check" in report and "labels-permuted-0" in report
    assert "label check: " in report and "SSIM permuted labels" in report

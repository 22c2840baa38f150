"""The sanity stage (``[sanity]``): the model-randomisation check in the pipeline."""

from __future__ import annotations

import json
import time

import pytest
import torch

import smoothstab as ss
from conftest import TINY_SETTINGS
from smoothstab.experiments import plan, sanity
from smoothstab.experiments.cli import main
from smoothstab.experiments.experiment import load_config
from smoothstab.experiments.measures import Metric
from smoothstab.experiments.models import build_model
from smoothstab.experiments.rundir import RunDir


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
    similar = sanity.similarity(grad, "cascading")
    for r in sanity.levels(cfg.attribution):
        for metric in (Metric.SANITY_SSIM, Metric.SANITY_RANK):
            assert similar[("grad", str(metric), r)] < 0.5, (r, metric)
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
    rows = sanity.read_rows(RunDir(out))
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

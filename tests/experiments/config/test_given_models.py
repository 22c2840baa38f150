"""Settings DR and DA: given checkpoints through the whole pipeline."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch

import smoothstab as ss
from helpers import given_models_run, same_map, state_dict_file
from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.config.tables import ModelsConfig, ModelSpec
from smoothstab.experiments.models.architectures import build_model
from smoothstab.experiments.models.source import RunModels
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.metrics_table import read_rows


@pytest.mark.slow
def test_setting_dr_gives_the_dt_numbers_for_the_same_weights(tiny_run, tiny_rows, tmp_path):
    """DR with the two DT checkpoints as given weights: the same maps and, apart from the
    setting column, the same metrics.csv; bounds without the DT-only stability bound."""
    specs = [
        ModelSpec("small_cnn", state_dict_file(tiny_run, k, tmp_path / f"w{k}.pt"), f"recipe {k}")
        for k in range(2)
    ]
    out = given_models_run(tiny_run, tmp_path, "DR", specs)
    rows = read_rows(out / "metrics.parquet")
    assert {row["setting"] for row in rows} == {"DR"}
    assert [{**row, "setting": "DT", "n": "400"} for row in rows] == tiny_rows
    assert {row["n"] for row in rows} == {""}  # given checkpoints: no training-set size
    md = (out / "report.md").read_text()
    assert "DR: same architecture" in md
    assert "model 0: recipe 0 (small_cnn, weights /" in md and "model 1: recipe 1 (" in md
    dr, dt = (json.loads((d / "bounds.json").read_text()) for d in (out, tiny_run))
    assert all(row["stability_bound_log10"] is None for row in dr["rows"])
    assert [row["fidelity_bound_grad_log10"] for row in dr["rows"]] == pytest.approx(
        [row["fidelity_bound_grad_log10"] for row in dt["rows"]], rel=1e-9
    )
    assert (out / "figures" / "bounds.png").is_file()


@pytest.mark.slow
def test_setting_da_three_architectures(tiny_run, tmp_path):
    """DA: a Table 1 row per pair of architectures (labelled by both models), the mean over
    pairs, and the map grids of every pair; bounds are skipped (they need one architecture)."""
    n_classes = dataset_info("shapes").num_classes
    specs = [ModelSpec("small_cnn", state_dict_file(tiny_run, 0, tmp_path / "cnn.pt"), "CNN")]
    for name, label in (("resnet18_cifar", "ResNet-18"), ("mobilenet_v3_small", "MobileNet")):
        torch.manual_seed(0)
        torch.save(build_model(name, num_classes=n_classes).state_dict(), tmp_path / f"{name}.pt")
        specs.append(ModelSpec(name, str((tmp_path / f"{name}.pt").resolve()), label))
    out = given_models_run(tiny_run, tmp_path, "DA", specs)
    rows = read_rows(out / "metrics.parquet")
    assert {row["setting"] for row in rows} == {"DA"}
    assert {row["pair"] for row in rows if row["pair"]} == {"0-1", "0-2", "1-2"}
    # Model 0 is the tiny run's model 0: its maps are those of the DT run.
    for method in ss.METHODS:
        for r in (0.0, 0.4):
            assert same_map(out, tiny_run, 0, method, r)
    with open(out / "table1.csv", newline="") as f:
        table = list(csv.DictReader(f))
    pairs = ["CNN vs ResNet-18", "CNN vs MobileNet", "ResNet-18 vs MobileNet", "mean over pairs"]
    for method in ss.METHODS:
        got = [row for row in table if row["method"] == method]
        assert [row["pair"] for row in got] == pairs
        per_pair = [float(row["smoothed_topk_miou"]) for row in got]
        assert per_pair[-1] == pytest.approx(sum(per_pair[:3]) / 3, rel=1e-4)
        for pair in ("0-1", "0-2", "1-2"):
            assert (out / "figures" / f"grid_{method}_{pair}.png").is_file()
    # The bounds need one architecture: skipped, not failed, and absent from the report.
    assert not (out / "bounds.json").exists() and not (out / "figures" / "bounds.png").exists()
    md = (out / "report.md").read_text()
    assert "DA: different architectures" in md and "Theory" not in md
    assert "| Simple-Grad | ResNet-18 vs MobileNet |" in md
    assert "figures/grid_grad_1-2.png" in md


@pytest.mark.slow
def test_given_models_without_weights_are_the_same_in_every_stage(tiny_run):
    """A spec without weights is a random init; every stage (and rank) must see the same one."""
    cfg = load_config(tiny_run / "config.toml")
    specs = (ModelSpec("small_cnn"), ModelSpec("small_cnn"))
    cfg = dataclasses.replace(cfg, models=ModelsConfig("DR", specs))
    first, second = (RunModels(cfg, RunDir(tiny_run)).models() for _ in range(2))
    for a, b in zip(first, second, strict=True):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(p, q), name
    # ... and the two models are two draws, not one.
    assert not torch.equal(*(next(m.parameters()) for m in first))

"""The experiment pipeline end to end through the CLI: one tiny run, shared by the module.

``tiny_run`` trains two small CNNs on disjoint parts of the generated shapes and runs every
stage with a small sweep (4 images, 6 noise draws, r in {0, 0.1, 0.15, 0.2, 0.4}); the tests read
its files, or copy its trained models to try resumes, estimation options, the DR/DA settings
and ``torchrun`` without training again. Unit tests of the sigma advice use synthetic curves.

Long because every test shares one tiny run (a module-scoped fixture): splitting the file
would train it once per file.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import smoothstab as ss
from conftest import TINY_SETTINGS
from smoothstab.experiments.analysis import advice as sigma_advice
from smoothstab.experiments.analysis.aggregate import band
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.cli import main
from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.config.parse import to_toml
from smoothstab.experiments.config.tables import ModelsConfig, ModelSpec
from smoothstab.experiments.io import files as io
from smoothstab.experiments.models.architectures import build_model
from smoothstab.experiments.models.distributed import DistInfo, rank_device
from smoothstab.experiments.models.source import RunModels
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.metrics_table import COLUMNS, read_csv
from smoothstab.experiments.stages import attribute, evaluate

ROOT = Path(__file__).resolve().parents[1]
TINY = [a for s in TINY_SETTINGS for a in ("--set", s)]
GRID = [0.0, 0.1, 0.15, 0.2, 0.4]  # both sweeps, 0 and the Table-1 level
N_IMAGES, N_MODELS = 4, 2
TRAINED = ("config.toml", "splits.json", "model_0.pt", "model_1.pt", "train_metrics.json")
FIGURES = ("stability", "fidelity", "ssim_topk", "tradeoff", "bounds")


def run(*args) -> int:
    return main([str(a) for a in args])


def copy_trained(src: Path, dst: Path, names=TRAINED) -> Path:
    """A new run directory holding only ``src``'s trained models (and config), so that later
    stages run again without training."""
    dst.mkdir(parents=True)
    for name in names:
        shutil.copy2(src / name, dst / name)
    return dst


def mean_curve(rows: list[dict], method: str, metric: str) -> dict[float, float]:
    """``{r: value}``: mean over images, then over pairs (or models), as the paper plots."""
    summary = Summary.from_rows([row for row in rows if row["method"] == method])
    return {r: b.mean for r, b in summary.curve(method, metric)}


def leftovers(run_dir: Path) -> list[Path]:
    """Temporary files of atomic writes and unjoined block files: none may outlive a stage."""
    return [p for p in run_dir.rglob("*") if p.name.endswith(".tmp") or ".block" in p.name]


def map_path(run_dir: Path, model: int, method: str, r: float, block: int | None = None) -> Path:
    return RunDir(run_dir).map(model, method, r, block)


def load_map(run_dir: Path, model: int, method: str, r: float) -> dict:
    return torch.load(map_path(run_dir, model, method, r), weights_only=True)


def same_map(run_a: Path, run_b: Path, model: int, method: str, r: float) -> bool:
    return torch.equal(
        load_map(run_a, model, method, r)["mean"], load_map(run_b, model, method, r)["mean"]
    )


def rises(values: list[float]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def without_values(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("value", "stderr")}


def attribute_again(tiny_run: Path, d: Path, *overrides: str, twins: bool = False) -> list[dict]:
    """Attribute and evaluate on ``tiny_run``'s trained models (or twice model 0: ``twins``)
    with Simple-Grad and IG and extra ``--set`` overrides; the rows of metrics.csv."""
    copy_trained(tiny_run, d, names=TRAINED[1:])  # not the config: this is another one
    if twins:
        shutil.copy2(d / "model_0.pt", d / "model_1.pt")
    args = [*TINY, "--set", 'attribution.methods=["grad", "ig"]']
    args += [a for o in overrides for a in ("--set", o)]
    assert run("run", "--out", d, "--quiet", "--stages", "attribute", "evaluate", *args) == 0
    assert not leftovers(d)
    return read_csv(d / "metrics.csv")


def values(rows: list[dict], metric: str, *, r: float | None = None, method: str | None = None):
    return [
        row["value"]
        for row in rows
        if row["metric"] == metric
        and (r is None or row["r"] == r)
        and (method is None or row["method"] == method)
    ]


def given_models_run(tiny_run: Path, tmp_path: Path, setting: str, specs) -> Path:
    """Run every stage for ``specs`` with the tiny run's other settings; the run directory."""
    cfg = load_config(tiny_run / "config.toml")
    cfg = dataclasses.replace(cfg, name=setting, models=ModelsConfig(setting, tuple(specs)))
    path = tmp_path / f"{setting}.toml"
    path.write_text(to_toml(cfg))
    out = tmp_path / setting
    assert run("run", path, "--out", out, "--quiet") == 0
    assert not leftovers(out)
    return out


def state_dict_file(tiny_run: Path, part: int, path: Path) -> str:
    """A trained model of the tiny run as a plain state-dict file, as DR/DA specs take them."""
    saved = torch.load(tiny_run / f"model_{part}.pt", weights_only=True)
    torch.save(saved["state_dict"], path)
    return str(path.resolve())


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true", "OMP_NUM_THREADS": "1"}


class Killed(Exception):
    """Stands in for a kill: not a ValueError, so the CLI does not turn it into an exit code."""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """The tiny run, made without ``--out`` from an empty working directory: so it also shows
    that a run lands in ``runs/<name>`` (the quickstart's name, here with overrides)."""
    cwd, old = tmp_path_factory.mktemp("tiny"), os.getcwd()
    os.chdir(cwd)
    try:
        assert run("run", "--quiet", *TINY) == 0
    finally:
        os.chdir(old)
    assert [p.name for p in cwd.iterdir()] == ["runs"]
    return cwd / "runs" / "quickstart"


@pytest.fixture(scope="module")
def tiny_rows(tiny_run) -> list[dict]:
    return read_csv(tiny_run / "metrics.csv")


# --- the run directory ----------------------------------------------------------------------------


@pytest.mark.slow
def test_run_writes_every_output(tiny_run):
    for name in (
        *TRAINED,
        "test_images.pt",
        "metrics.csv",
        "table1.csv",
        "recommendation.json",
        "bounds.json",
        "bounds.md",
        "report.md",
        "report.html",
    ):
        assert (tiny_run / name).is_file(), name
    for k in range(N_MODELS):
        for method in ss.METHODS:
            for r in GRID:
                assert map_path(tiny_run, k, method, r).is_file(), (k, method, r)
    figures = {p.stem for p in (tiny_run / "figures").glob("*.png")}
    expected = {*FIGURES, *(f"grid_{m}_0-1" for m in ss.METHODS)}
    expected |= {f"sigma_{m}" for m in ss.METHODS}
    assert figures == expected
    assert not leftovers(tiny_run)


@pytest.mark.slow
def test_resolved_config_is_saved(tiny_run):
    saved = load_config(tiny_run / "config.toml")
    assert saved == dataclasses.replace(load_config(None, TINY[1::2]), quiet=True)
    assert saved.attribution.n_samples == 6 and saved.train.parts == 2


@pytest.mark.slow
def test_map_files(tiny_run):
    x = torch.load(tiny_run / "test_images.pt", weights_only=True)["x"]
    assert x.shape == (N_IMAGES, 3, 32, 32)
    x_range = dataset_info("shapes").x_range
    for method, channels in (("grad", 3), ("ig", 3), ("gradcam", 1), ("gradcampp", 1)):
        unsmoothed = load_map(tiny_run, 0, method, 0.0)
        assert unsmoothed["mean"].shape == (N_IMAGES, channels, 32, 32)
        assert "halves" not in unsmoothed and unsmoothed["sigma"] == 0.0
        smoothed = load_map(tiny_run, 0, method, 0.4)
        assert smoothed["sigma"] == pytest.approx(0.4 * x_range, rel=1e-12)
        assert smoothed["n_units"] == 6
        # debiased distances need the two half means, joined over the blocks of 2 images
        assert smoothed["halves"].shape == (2, N_IMAGES, channels, 32, 32)
        assert smoothed["unit_var"].shape == (N_IMAGES, channels, 32, 32)
        torch.testing.assert_close(smoothed["halves"].mean(0), smoothed["mean"], rtol=0, atol=1e-5)
    # The unsmoothed maps are the library's, for the checkpoint's model and the saved images.
    model = RunModels(load_config(tiny_run / "config.toml"), RunDir(tiny_run)).models()[1]
    y = torch.load(tiny_run / "test_images.pt", weights_only=True)["y"]
    torch.testing.assert_close(load_map(tiny_run, 1, "grad", 0.0)["mean"], ss.grad(model, x, y))


@pytest.mark.slow
def test_metrics_csv_is_tidy(tiny_run, tiny_rows):
    with open(tiny_run / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
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
    pair_metrics |= {f"{m}_debiased" for m in pair_metrics}
    assert {"unit_distance_debiased", "rank_agreement", "map_norm_debiased"} <= metrics
    for (_, _, metric), units in counts.items():
        n_units = 1 if metric in pair_metrics else 2
        assert len(units) == n_units * N_IMAGES, metric
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
    advice = json.loads((tiny_run / "recommendation.json").read_text())
    assert set(advice) == set(ss.METHODS)
    for method, rec in advice.items():
        # The advice follows the debiased curve (debiased is on) over the whole grid, stability
        # in the scale-free unit-map distance (the default measure).
        assert [c["r"] for c in rec["curve"]] == GRID
        assert rec["stability_measure"] == "unit_distance"
        points = sigma_advice.tradeoff(summary, method, debiased=True, measure="unit_distance")
        assert rec["curve"] == [{"r": r, "stability": s, "fidelity": f} for r, s, f in points]
        assert rec["knee_r"] == sigma_advice.knee(points)
        assert rec["map_norm"] == pytest.approx(summary.get(method, "map_norm", 0.0).mean)
        budget = rec["fidelity_budget"] * rec["map_norm"]
        inside = [c for c in rec["curve"] if c["fidelity"] <= budget]
        best = min(inside, key=lambda c: c["stability"])
        assert rec["budget_r"] == best["r"]


@pytest.mark.slow
def test_report(tiny_run):
    md = (tiny_run / "report.md").read_text()
    page = (tiny_run / "report.html").read_text()
    config = (tiny_run / "config.toml").read_text()
    advice = json.loads((tiny_run / "recommendation.json").read_text())
    for text in (md, page):
        assert "Conventions" in text and "r = sigma / (x_max - x_min)" in text
        assert "Recommended noise level" in text
        assert f"knee of the trade-off at r = {advice['grad']['knee_r']:g}" in text
        assert "Theory: bounds beside the measured errors" in text
        assert "stability error falls" in text or "stability error rises" in text
        # The answer opens the report, before the conventions: a verdict per method.
        opening = text[: text.index("Conventions")]
        assert "The answer: more alike, or only smaller?" in opening
        assert opening.count("unit-map distance") >= len(ss.METHODS)
        assert sum(v in opening for v in ("agree more", "agree less", "interval can tell")) >= 1
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


# --- resume: stages skip finished work and end with the same numbers ------------------------------


@pytest.mark.slow
def test_resume_after_deleting_outputs(tiny_run, tmp_path):
    """Deleted outputs come back byte-identical; a map with one block done is completed."""
    d = tmp_path / "run"
    shutil.copytree(tiny_run, d)
    models_before = {p.name: p.stat().st_mtime_ns for p in d.glob("model_*.pt")}
    for name in ("metrics.csv", "table1.csv", "bounds.json", "report.md", "report.html"):
        (d / name).unlink()
    shutil.rmtree(d / "figures")
    map_path(d, 1, "ig", 0.1).unlink()
    # A map killed after its first block of 2 images: that block's file, no final file.
    full = load_map(d, 0, "grad", 0.2)
    block0 = {k: v[:2] if torch.is_tensor(v) else v for k, v in full.items()}  # per image
    block0["halves"] = full["halves"][:, :2]
    torch.save(block0, map_path(d, 0, "grad", 0.2, block=0))
    map_path(d, 0, "grad", 0.2).unlink()

    assert run("run", "--out", d, "--quiet", *TINY) == 0
    assert (d / "metrics.csv").read_bytes() == (tiny_run / "metrics.csv").read_bytes()
    assert (d / "table1.csv").read_bytes() == (tiny_run / "table1.csv").read_bytes()
    for k, method, r in ((1, "ig", 0.1), (0, "grad", 0.2)):
        again, first = load_map(d, k, method, r), load_map(tiny_run, k, method, r)
        assert again.keys() == first.keys()
        for key in ("mean", "halves", "unit_var"):
            assert torch.equal(again[key], first[key]), (k, method, r, key)
    assert {p.stem for p in (d / "figures").glob("*.png")} == {
        p.stem for p in (tiny_run / "figures").glob("*.png")
    }
    assert (d / "report.html").is_file() and (d / "bounds.json").is_file()
    # Training was skipped: the checkpoints were not rewritten.
    assert {p.name: p.stat().st_mtime_ns for p in d.glob("model_*.pt")} == models_before
    assert not leftovers(d)


@pytest.mark.slow
def test_killed_attribution_resumes_to_the_same_numbers(tiny_run, tmp_path, monkeypatch):
    d = copy_trained(tiny_run, tmp_path / "run")
    real, calls = attribute.attribute_blocks, []

    def dies_on_the_eighth_block(*args, **kwargs):
        calls.append(args[1:3])
        if len(calls) == 8:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(attribute, "attribute_blocks", dies_on_the_eighth_block)
    with pytest.raises(Killed):
        run("run", "--out", d, "--quiet", "--stages", "attribute", *TINY)
    # Blocks are visited model, method, r, then block: 7 blocks of model 0's grad were saved,
    # the last map (r = 0.2) with one of its two blocks; no map was joined.
    assert len(list((d / "maps").rglob("*.block*.pt"))) == 7
    assert map_path(d, 0, "grad", 0.2, block=0).is_file()
    assert all(".block" in p.name for p in (d / "maps").rglob("*.pt"))
    assert not [p for p in d.rglob("*") if p.name.endswith(".tmp")]

    monkeypatch.undo()
    assert run("run", "--out", d, "--quiet", "--stages", "attribute", "evaluate", *TINY) == 0
    assert (d / "metrics.csv").read_bytes() == (tiny_run / "metrics.csv").read_bytes()
    assert not leftovers(d)


@pytest.mark.slow
def test_a_late_rank_does_not_change_the_share_of_work(tiny_run, tmp_path, monkeypatch):
    """Ranks deal the blocks among themselves; one that lists the work after another has
    already written blocks must still take its own share, or blocks are skipped or repeated.
    Simulated in one process: rank 1 works first, then rank 0 (barriers are no-ops here)."""
    d = copy_trained(tiny_run, tmp_path / "run")
    cfg = load_config(d / "config.toml")
    models = RunModels(cfg, RunDir(d)).models()
    monkeypatch.setattr(attribute, "barrier", lambda info: None)
    done = [attribute.run_attribution(cfg, RunDir(d), models, DistInfo(rank, 2)) for rank in (1, 0)]
    n_blocks = N_MODELS * len(ss.METHODS) * len(GRID) * 2
    assert done == [n_blocks // 2, n_blocks // 2]
    evaluate.evaluate_run(cfg, RunDir(d), RunModels(cfg, RunDir(d)).model_sizes())
    assert (d / "metrics.csv").read_bytes() == (tiny_run / "metrics.csv").read_bytes()


def test_each_rank_works_on_its_own_gpu(monkeypatch):
    """Under torchrun ``device = "cuda"`` is the rank's GPU (LOCAL_RANK), in training and
    attribution alike; an explicit index, CPU, or a single process keep the device as given."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert rank_device("cuda", DistInfo(3, 4, local_rank=1)) == torch.device("cuda", 1)
    assert chosen == [torch.device("cuda", 1)]
    assert rank_device("cuda:2", DistInfo(3, 4, 1)) == torch.device("cuda", 2)
    assert rank_device("cuda", DistInfo()) == torch.device("cuda")
    assert rank_device("cpu", DistInfo(1, 2, 1)) == torch.device("cpu")
    assert len(chosen) == 1


@pytest.mark.slow
def test_a_changed_config_is_refused(tiny_run, tmp_path, capsys):
    """A result-changing setting may not resume another config's run: exit 2, one line, and
    nothing in the run directory changes. Settings that change no result are accepted."""
    d = tmp_path / "run"
    shutil.copytree(tiny_run, d)
    # the lock file holds the PID of whoever runs in d (io.locked): not the run's content
    files = lambda: [p for p in d.rglob("*") if p.is_file() and p.name != io.LOCK]  # noqa: E731
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files()}
    for override, key in (
        ("attribution.n_samples=7", "attribution.n_samples"),
        ("train.epochs=3", "train.epochs"),
        ("evaluation.topk=10", "evaluation.topk"),
    ):
        args = [*TINY, "--set", override]
        assert run("run", "--out", d, "--quiet", *args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and key in err[0] and "use another --out" in err[0], err
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files()}
    assert after == before
    # A device or batch-size change is free: the run goes on (here: nothing left to do but
    # redraw), and its numbers stay.
    free = ["--set", "attribution.batch_size=64", "--stages", "train", "attribute", "evaluate"]
    assert run("run", "--out", d, "--quiet", *TINY, *free) == 0
    assert (d / "metrics.csv").read_bytes() == before[d / "metrics.csv"][0]
    assert "batch_size = 64" in (d / "config.toml").read_text()


@pytest.mark.slow
def test_a_stage_before_its_inputs_is_one_line(tiny_run, tmp_path, capsys):
    """A stage subcommand run before the stage that writes its inputs: exit 2, one line."""
    d = copy_trained(tiny_run, tmp_path / "run")
    for stage, missing in (("evaluate", "r0.000000.pt"), ("report", "metrics.csv")):
        assert run(stage, d, "--quiet") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and missing in err[0] and "run the stages before" in err[0], err


# --- estimation options ---------------------------------------------------------------------------


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
        tiny_run, d, "attribution.antithetic=true", "attribution.ig_sampler=joint"
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
    """Debiasing off: map files hold no halves and metrics.csv no debiased rows; the plain
    numbers are those of the debiased run (the same draws, the same means)."""
    d = tmp_path / "run"
    rows = attribute_again(tiny_run, d, "evaluation.debiased=false")
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
    rows = attribute_again(tiny_run, d, "attribution.target=predicted", "attribution.dtype=float64")
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
        float32 = load_map(tiny_run, k, "grad", 0.0)["mean"].double()
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
        tiny_run, d, "attribution.stability_r=[0, 0.00002]", "attribution.fidelity_r=[0.1, 0.10004]"
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
    """8x8 digits: no SSIM (its 11x11 window does not fit), every other metric and stage."""
    out = tmp_path / "digits"
    args = ["--set", "train.dataset=digits", "--set", 'attribution.methods=["grad", "gradcam"]']
    args += ["--stages", "train", "attribute", "evaluate", "figures", "report"]
    assert run("run", "--out", out, "--quiet", *TINY, *args) == 0
    rows = read_csv(out / "metrics.csv")
    assert {row["metric"] for row in rows} == {
        "stability", "stability_debiased", "fidelity", "fidelity_debiased", "topk_iou", "map_norm",
        "rel_se", "model_evals", "map_norm_debiased", "rank_agreement", "unit_distance",
        "unit_distance_debiased",
    }  # fmt: skip
    with open(out / "table1.csv", newline="") as f:
        assert all(row["ssim"] == "" and row["topk_miou"] for row in csv.DictReader(f))
    assert "| Simple-Grad | mean over pairs | - | - |" in (out / "report.md").read_text()


@pytest.mark.slow
def test_training_set_sizes(tmp_path):
    """part_size as a list: parts models per size, disjoint within a size and nested across
    sizes; only models of one size are compared; n in metrics.csv, a curve per n, and the
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
    rows = read_csv(out / "metrics.csv")
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
    assert "| r | n = 200 | n = 400 | with more training data |" in section
    head = "| n | test accuracy | raw L2 (r=0) | unit-map distance (r=0) | norm (r=0) |"
    assert head in section
    accuracy = [m["test_accuracy"] for m in models]
    assert f"| 400 | {(accuracy[2] + accuracy[3]) / 2:.3f} |" in section
    assert "- Simple-Grad (n = 200): raw L2" in md and "- Simple-Grad (n = 400): raw L2" in md
    assert "with n" in section or "no monotone change" in section
    assert "### Simple-Grad, n = 200" in md and "### Simple-Grad, n = 400" in md
    with open(out / "table1.csv", newline="") as f:  # Table 1 at the largest n
        (row,) = list(csv.DictReader(f))
    assert float(row["topk_miou"]) == pytest.approx(
        summary.get("grad", "topk_iou", 0.0, n=400).mean, rel=1e-5
    )
    assert (out / "figures" / "grid_grad_2-3.png").is_file()


# --- the sigma advice: knee and fidelity budget on curves with known answers ----------------------

# An L-shaped trade-off: stability error drops steeply up to r = 0.1, then barely moves while
# fidelity error keeps growing. (r, stability, fidelity).
L_CURVE = [(0.0, 10.0, 0.0), (0.1, 2.0, 0.5), (0.2, 1.5, 3.0), (0.3, 1.2, 6.0), (0.4, 1.0, 10.0)]


def test_knee_of_an_l_shaped_curve():
    assert sigma_advice.knee(L_CURVE) == 0.1
    # Kneedle scales both errors to [0, 1] first: units do not move the knee.
    scaled = [(r, 1000 * s, f / 1000) for r, s, f in L_CURVE]
    assert sigma_advice.knee(scaled) == 0.1
    # A curve that bends late: the knee moves with it.
    late = [(0.0, 10.0, 0.0), (0.1, 9.5, 0.1), (0.2, 9.0, 0.2), (0.3, 1.0, 0.5), (0.4, 0.9, 10.0)]
    assert sigma_advice.knee(late) == 0.3
    assert sigma_advice.knee(L_CURVE[:2]) is None  # two points have no knee


def test_most_stable_r_within_a_fidelity_budget():
    # norm 10: budget 0.2 allows fidelity <= 2, i.e. r <= 0.1; the most stable of those is 0.1.
    assert sigma_advice.within_budget(L_CURVE, norm=10.0, budget=0.2) == 0.1
    assert sigma_advice.within_budget(L_CURVE, norm=10.0, budget=0.6) == 0.3
    assert sigma_advice.within_budget(L_CURVE, norm=10.0, budget=1.0) == 0.4
    assert sigma_advice.within_budget(L_CURVE, norm=10.0, budget=0.0) == 0.0
    assert sigma_advice.within_budget(L_CURVE, norm=float("nan"), budget=0.2) is None
    assert sigma_advice.within_budget([(0.1, 1.0, 5.0)], norm=1.0, budget=0.2) is None
    # Equally stable: the smaller r, which costs less fidelity.
    flat = [(0.0, 2.0, 0.0), (0.1, 1.0, 0.1), (0.2, 1.0, 0.2)]
    assert sigma_advice.within_budget(flat, norm=1.0, budget=1.0) == 0.1


def test_recommend_reads_the_summary():
    """From a summary of bands: the debiased curve when asked for, knee and budget per method."""
    bands = {("grad", "map_norm", 0.0, None): band([10.0, 10.0])}
    for r, s, f in L_CURVE:
        bands[("grad", "stability_debiased", r, None)] = band([s, s])
        bands[("grad", "fidelity_debiased", r, None)] = band([f, f])
        # The plain curve is another one, so the test sees which is read.
        bands[("grad", "stability", r, None)] = band([s + 1, s + 1])
        bands[("grad", "fidelity", r, None)] = band([0.0, 0.0])
    summary = Summary(bands)
    rec = sigma_advice.recommend(summary, ["grad"], debiased=True, budget=0.2)["grad"]
    assert (rec["knee_r"], rec["budget_r"], rec["map_norm"]) == (0.1, 0.1, 10.0)
    assert [(c["r"], c["stability"], c["fidelity"]) for c in rec["curve"]] == L_CURVE
    plain = sigma_advice.recommend(summary, ["grad"], debiased=False, budget=0.2)["grad"]
    assert plain["budget_r"] == 0.4  # fidelity 0 everywhere: the most stable r of the grid


# --- settings DR and DA: given checkpoints --------------------------------------------------------


@pytest.mark.slow
def test_setting_dr_gives_the_dt_numbers_for_the_same_weights(tiny_run, tiny_rows, tmp_path):
    """DR with the two DT checkpoints as given weights: the same maps and, apart from the
    setting column, the same metrics.csv; bounds without the DT-only stability bound."""
    specs = [
        ModelSpec("small_cnn", state_dict_file(tiny_run, k, tmp_path / f"w{k}.pt"), f"recipe {k}")
        for k in range(2)
    ]
    out = given_models_run(tiny_run, tmp_path, "DR", specs)
    rows = read_csv(out / "metrics.csv")
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
    rows = read_csv(out / "metrics.csv")
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


# --- bounds ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bounds_subcommand(tiny_run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(tiny_run, d)
    for path in (d / "bounds.json", d / "bounds.md", d / "figures" / "bounds.png"):
        path.unlink()
    assert run("bounds", d, "--quiet") == 0
    res = json.loads((d / "bounds.json").read_text())
    assert res == json.loads((tiny_run / "bounds.json").read_text())
    assert (d / "bounds.md").is_file() and (d / "figures" / "bounds.png").is_file()
    # Finished work is skipped: a second call leaves the files as they are.
    stamps = {p: p.stat().st_mtime_ns for p in (d / "bounds.json", d / "bounds.md")}
    assert run("bounds", d, "--quiet") == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    x_range = dataset_info("shapes").x_range
    assert [row["r"] for row in res["rows"]] == GRID[1:]
    summary = Summary.from_rows(read_csv(d / "metrics.csv"))
    for row in res["rows"]:
        assert row["sigma"] == pytest.approx(row["r"] * x_range, rel=1e-12)
        # Measured values are the run's (debiased, as the run asks for).
        assert row["stability_grad"] == summary.get("grad", "stability_debiased", row["r"]).mean
        assert row["fidelity_ig"] == summary.get("ig", "fidelity_debiased", row["r"]).mean
        assert row["stability_bound_log10"] is not None
    # Prop. 7 bounds are linear in sigma: log10(bound) - log10(sigma) is one constant.
    for key in ("fidelity_bound_grad_log10", "fidelity_bound_ig_log10"):
        offsets = [row[key] - math.log10(row["sigma"]) for row in res["rows"]]
        assert max(offsets) - min(offsets) < 1e-9, key
        assert rises([row[key] for row in res["rows"]]), key
    # The Simple-Grad bound (Theorem 5) caps the Smooth-Grad bound (Theorem 6), which cannot
    # grow with sigma.
    stab = [row["stability_bound_log10"] for row in res["rows"]]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(stab))
    assert max(stab) <= res["simplegrad_log10"] + 1e-9
    # T in single-example steps (2 epochs x 400), every bound flagged against 2 Gamma_{k,0},
    # and Theorem 5 with the measured Simple-Grad stability (r = 0) per training-set size.
    assert (res["step_unit"], res["n"], res["T"]) == ("examples", 400, 2 * 400)
    for row in res["rows"]:
        vacuous = row["stability_bound_log10"] > res["trivial_log10"]
        assert row["stability_bound_vacuous"] == vacuous
    (by_n,) = res["by_n"]
    assert (by_n["n"], by_n["simplegrad_log10"]) == (400, res["simplegrad_log10"])
    assert by_n["stability_grad"] == summary.get("grad", "stability", 0.0, n=400).mean
    # The report's bounds section holds the bounds table, per sigma.
    assert run("report", d, "--quiet") == 0
    md = (d / "report.md").read_text()
    section = md[md.index("## Theory: bounds beside the measured errors") :]
    assert "Prop. 7 bound" in section and "figures/bounds.png" in section
    assert all(f"| {r:g} | {r * x_range:.4g} |" in section for r in GRID[1:])
    # ... and in HTML as a table, one row per sigma, not Markdown pipes in a paragraph.
    page = (d / "report.html").read_text()
    section = page[page.index("<h2>Theory: bounds") :]
    assert "<th>Theorem 6 bound on eps_stab" in section and "| r | sigma |" not in page
    assert all(f"<tr><td>{r:g}</td><td>{r * x_range:.4g}</td>" in section for r in GRID[1:])


# --- torchrun, the command line, and the quickstart itself ----------------------------------------


def test_python_m_smoothstab_help():
    done = subprocess.run(
        [sys.executable, "-m", "smoothstab", "--help"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for command in ("train", "attribute", "evaluate", "figures", "report", "bounds", "run"):
        assert f"\n    {command}" in done.stdout, command


@pytest.mark.slow
def test_torchrun_shards_attribution(tiny_run, tiny_rows, tmp_path):
    """Two processes deal the blocks between them and rank 0 joins them: the same numbers as
    one process (the noise seeds depend only on the block)."""
    d = copy_trained(tiny_run, tmp_path / "run")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "smoothstab", "run", "--out", str(d), "--quiet"]
    cmd += ["--stages", "attribute", "evaluate", *TINY]
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_csv(d / "metrics.csv")
    assert len(rows) == len(tiny_rows)
    for a, b in zip(rows, tiny_rows, strict=True):
        assert without_values(a) == without_values(b)
        assert a["value"] == pytest.approx(b["value"], rel=1e-6, abs=1e-12)
    assert not leftovers(d)


@pytest.mark.slow
def test_quickstart_acceptance(tmp_path):
    """The embedded quickstart shows the paper's trade-off for Simple-Grad and IG: stability
    error lower at the largest r than at r = 0, fidelity error rising step by step; and the
    report says so. The maps shrink with r, and Smooth-Grad's agree more all the same."""
    out = tmp_path / "quickstart"
    assert run("run", "--out", out, "--quiet") == 0
    rows = read_csv(out / "metrics.csv")
    for method in ("grad", "ig"):
        for suffix in ("", "_debiased"):
            stab = mean_curve(rows, method, "stability" + suffix)
            fid = mean_curve(rows, method, "fidelity" + suffix)
            rs = sorted(fid)
            assert len(rs) >= 5 and rs[0] == 0.0
            assert stab[rs[-1]] < stab[0.0], (method, suffix, stab)
            assert rises([fid[r] for r in rs]), (method, suffix, fid)
    md = (out / "report.md").read_text()
    for name in ("Simple-Grad", "Integrated-Gradients"):
        for n in (800, 1600):
            for estimate in ("paper's plain estimate", "our debiased estimate"):
                start = f"- {name} (n = {n}), {estimate}: stability"
                line = next(line for line in md.splitlines() if line.startswith(start))
                assert "stability error falls" in line and "fidelity error rises" in line, line
    assert "## Stability and the training-set size" in md
    # Smoothing shrinks every method's maps; by the scale-free measure Smooth-Grad's maps still
    # come to agree more, and the report opens with that answer.
    for method in ss.METHODS:
        norm = mean_curve(rows, method, "map_norm")
        assert norm[0.4] < 0.95 * norm[0.0], (method, norm)
    opening = md[: md.index("## Conventions")]
    row = next(line for line in opening.splitlines() if line.startswith("| Simple-Grad | 1600 |"))
    assert "the maps agree more" in row and row.endswith("| unit-map distance |"), row
    for name in ("config.toml", "metrics.csv", "table1.csv", "report.html", "bounds.json"):
        assert (out / name).is_file()

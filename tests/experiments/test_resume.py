"""Resume: stages skip finished work and end with the same numbers; a killed attribution, a late
rank, a changed config and a stage run before its inputs."""

from __future__ import annotations

import shutil

import pytest
import torch

import smoothstab as ss
from helpers import GRID, N_MODELS, TINY, Killed, copy_trained, leftovers, load_map, map_path, run
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.io import files as io
from smoothstab.experiments.models.distributed import DistInfo, rank_device
from smoothstab.experiments.models.source import RunModels
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.stages import attribute, evaluate


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

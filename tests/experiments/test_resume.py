"""Resume: stages skip finished work and end with the same numbers; a killed attribution (with and
without kept maps), a late rank, a changed config and a stage run before its inputs."""

from __future__ import annotations

import shutil

import pytest
import torch

import smoothstab as ss
from helpers import GRID, N_MODELS, TINY, TRAINED, Killed, copy_trained, leftovers, run
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.io import files as io
from smoothstab.experiments.models.distributed import DistInfo, rank_device
from smoothstab.experiments.models.source import RunModels
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.stages import attribute, evaluate


@pytest.mark.slow
def test_resume_after_deleting_outputs(tiny_run, tmp_path):
    """Deleted outputs come back byte-identical: a deleted block file is measured again, the
    metrics table joined again, the figures drawn again."""
    d = tmp_path / "run"
    shutil.copytree(tiny_run, d)
    models_before = {p.name: p.stat().st_mtime_ns for p in d.glob("model_*.pt")}
    for name in ("metrics.parquet", "table1.csv", "bounds.json", "report.md", "report.html"):
        (d / name).unlink()
    shutil.rmtree(d / "figures")
    block = d / "blocks" / "ig" / "block00001.pt"
    block.unlink()

    assert run("run", "--out", d, "--quiet", *TINY) == 0
    assert block.read_bytes() == (tiny_run / "blocks" / "ig" / "block00001.pt").read_bytes()
    assert (d / "metrics.parquet").read_bytes() == (tiny_run / "metrics.parquet").read_bytes()
    assert (d / "table1.csv").read_bytes() == (tiny_run / "table1.csv").read_bytes()
    assert {p.stem for p in (d / "figures").glob("*.png")} == {
        p.stem for p in (tiny_run / "figures").glob("*.png")
    }
    assert (d / "report.html").is_file() and (d / "bounds.json").is_file()
    # Training was skipped: the checkpoints were not rewritten.
    assert {p.name: p.stat().st_mtime_ns for p in d.glob("model_*.pt")} == models_before
    assert not leftovers(d)


METHODS = ("grad", "ig", "gradcam", "gradcampp")  # the tiny run's, in order
BLOCKS = [(m, b) for m in METHODS for b in (0, 1)]  # the order the stage measures them in


@pytest.mark.slow
@pytest.mark.parametrize("keep", ["none", "all"])
def test_killed_attribution_resumes_to_the_same_numbers(tiny_run, tmp_path, monkeypatch, keep):
    """Killed as it starts its sixth image block (of 8: 4 methods x 2 blocks), the stage leaves
    the five finished block files (with ``keep = "all"``, their map blocks too) and nothing
    half-written; resumed, it computes only the three blocks left and ends with the numbers of
    an uninterrupted run."""
    d = copy_trained(tiny_run, tmp_path / "run", names=TRAINED[1:])  # its own config
    sets = [*TINY, "--set", f"maps.keep={keep}"]
    real, calls = attribute.measure_block, []

    def dies_in_the_sixth_block(job, models):
        calls.append((job.method, job.block))
        if len(calls) == 6:
            raise Killed
        return real(job, models)

    monkeypatch.setattr(attribute, "measure_block", dies_in_the_sixth_block)
    with pytest.raises(Killed):
        run("run", "--out", d, "--quiet", "--stages", "attribute", *sets)
    assert calls == BLOCKS[:6]
    assert len(list((d / "blocks").rglob("block*.pt"))) == 5
    assert not [p for p in d.rglob("*") if p.name.endswith(".tmp")]
    if keep == "all":  # every model's at every r of the five blocks; no map joined
        assert len(list((d / "maps").rglob("*.block*.pt"))) == 5 * N_MODELS * len(GRID)
        assert not [p for p in (d / "maps").rglob("*.pt") if ".block" not in p.name]

    calls.clear()
    monkeypatch.setattr(attribute, "measure_block", lambda job, models: calls.append(
        (job.method, job.block)) or real(job, models))  # fmt: skip
    assert run("run", "--out", d, "--quiet", "--stages", "attribute", "evaluate", *sets) == 0
    assert calls == BLOCKS[5:]
    assert (d / "metrics.parquet").read_bytes() == (tiny_run / "metrics.parquet").read_bytes()
    assert not leftovers(d)
    if keep == "all":
        assert len(list((d / "maps").rglob("r*.pt"))) == N_MODELS * len(METHODS) * len(GRID)


@pytest.mark.slow
def test_a_block_killed_while_writing_its_maps_is_measured_again(tiny_run, tmp_path, monkeypatch):
    """With ``keep = "all"`` a block writes its map blocks before its block file: killed after
    three of them, the block has no block file and is measured again whole on resuming (its map
    blocks rewritten with the same bytes); every kept map joins as in an uninterrupted run."""
    d = copy_trained(tiny_run, tmp_path / "run", names=TRAINED[1:])  # its own config
    sets = [*TINY, "--set", "maps.keep=all"]
    real, written = attribute._keep, []

    def dies_at_the_third_map_of_block_1(job, k, f):
        if job.block == 1:
            written.append((k, f.r))
            if len(written) == 3:
                raise Killed
        return real(job, k, f)

    monkeypatch.setattr(attribute, "_keep", dies_at_the_third_map_of_block_1)
    with pytest.raises(Killed):
        run("run", "--out", d, "--quiet", "--stages", "attribute", *sets)
    assert [p.name for p in (d / "blocks").rglob("block*.pt")] == ["block00000.pt"]
    assert len(list((d / "maps").rglob("*.block1.pt"))) == 2
    monkeypatch.undo()
    assert run("run", "--out", d, "--quiet", "--stages", "attribute", "evaluate", *sets) == 0
    assert (d / "metrics.parquet").read_bytes() == (tiny_run / "metrics.parquet").read_bytes()
    assert len(list((d / "maps").rglob("r*.pt"))) == N_MODELS * len(METHODS) * len(GRID)
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
    n_blocks = len(ss.METHODS) * 2
    assert done == [n_blocks // 2, n_blocks // 2]
    evaluate.evaluate_run(cfg, RunDir(d), RunModels(cfg, RunDir(d)).model_sizes())
    assert (d / "metrics.parquet").read_bytes() == (tiny_run / "metrics.parquet").read_bytes()


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
    assert (d / "metrics.parquet").read_bytes() == before[d / "metrics.parquet"][0]
    assert "batch_size = 64" in (d / "config.toml").read_text()


@pytest.mark.slow
def test_a_stage_before_its_inputs_is_one_line(tiny_run, tmp_path, capsys):
    """A stage subcommand run before the stage that writes its inputs: exit 2, one line."""
    d = copy_trained(tiny_run, tmp_path / "run")
    for stage, missing in (("evaluate", "test_images.pt"), ("report", "metrics.parquet")):
        assert run(stage, d, "--quiet") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and missing in err[0] and "run the stages before" in err[0], err

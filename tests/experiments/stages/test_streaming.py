"""The streamed attribute stage against the two-stage path it replaced, the maps it keeps, and the
block files it checks.

* Numbers that do not change: the tiny run measured while its maps are in memory, and the same
  maps kept on disk (``maps.keep = "all"``) and measured afterwards the way the evaluate stage
  used to (every image of a map file at once, read back from disk), give bitwise the same rows;
  keeping maps changes no number.
* What is kept: the figure images' mean maps in the block files are the kept maps' own; mean maps
  in float16 or as their 2-D |map| view are within float16's rounding of the full ones.
* Blocks are checked: a block file of another image block, method or run put in place, or one with
  a flipped bit, is refused by the evaluate stage in one line naming it, and the attribute stage
  says so, deletes it and measures the block again; the same for a kept map's blocks.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from helpers import (
    GRID,
    N_MODELS,
    TINY,
    TRAINED,
    Killed,
    block_files,
    copy_trained,
    figure_means,
    run,
)
from smoothstab import metrics as ss_metrics
from smoothstab.disagreement import chance_floor, disagreement_map
from smoothstab.experiments.analysis.per_image import MEASURES, LevelMaps, measure
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.models.recipe import floor_partner, map_identity
from smoothstab.experiments.models.source import RunModels
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.metrics_table import read_rows
from smoothstab.experiments.stages import attribute
from smoothstab.stats import SmoothStats
from smoothstab.views import abs_sum

METHODS = ("grad", "ig", "gradcam", "gradcampp")


def two_stage_rows(d) -> list[dict]:
    """The rows as the evaluate stage computed them before it measured maps in memory: every
    model's map file of a method at an r, all images at once, read back from disk."""
    cfg, run_dir = load_config(d / "config.toml"), RunDir(d)
    sizes = RunModels(cfg, run_dir).model_sizes()
    e, pairs, n_images = cfg.evaluation, Setting.of(cfg).pairs(), 4
    rows = []
    for method in cfg.attribution.methods:
        files = {r: [] for r in GRID}
        for k in range(N_MODELS):
            for r in GRID:
                want = map_identity(cfg, k, method, r, None, n_images)
                files[r].append(run_dir.load_map(k, method, r, want))
        reference = [f.estimate() for f in files[0.0]]
        for r in GRID:
            level = LevelMaps(method, r, files[r][0].sigma, [f.estimate() for f in files[r]],
                              reference, [f.rel_se for f in files[r]],
                              [f.evals for f in files[r]], pairs, e.debiased, e.topk)  # fmt: skip
            for g in measure(level, MEASURES[:3]):  # pairs, models, costs: no partner images
                k = g.pair[0] if g.pair else g.model
                se = [""] * n_images if g.stderr is None else [repr(v) for v in g.stderr.tolist()]
                for i, v in enumerate(g.values.tolist()):
                    rows.append(dict(
                        setting="DT", n=str(sizes[k]), method=method, r=r, sigma=files[r][0].sigma,
                        metric=str(g.metric), pair=f"{g.pair[0]}-{g.pair[1]}" if g.pair else "",
                        model="" if g.pair else str(g.model), image=str(i), value=float(v),
                        stderr=se[i],
                    ))  # fmt: skip
    return rows


def keyed(rows: list[dict]) -> dict:
    return {tuple((k, v) for k, v in r.items() if k not in ("value", "stderr")): r for r in rows}


@pytest.fixture(scope="module")
def kept(tiny_run, tmp_path_factory):
    """The tiny run's models attributed again, every map kept (``maps.keep = "all"``)."""
    d = copy_trained(tiny_run, tmp_path_factory.mktemp("kept") / "run", names=TRAINED[1:])
    sets = [*TINY, "--set", "maps.keep=all"]
    assert run("run", "--out", d, "--quiet", "--stages", "attribute", "evaluate", *sets) == 0
    return d


@pytest.mark.slow
def test_the_streamed_rows_are_those_of_the_two_stage_path(tiny_run, kept):
    """Measured in memory, block by block, or from the kept map files, all images at once: the
    same rows, bitwise (every value and standard error); keeping maps changes no number."""
    assert (kept / "metrics.parquet").read_bytes() == (tiny_run / "metrics.parquet").read_bytes()
    old = keyed(two_stage_rows(kept))
    measured = {row["metric"] for row in old.values()}
    streamed = keyed([r for r in read_rows(kept / "metrics.parquet") if r["metric"] in measured])
    assert len(streamed) == len(old) == 1520 and streamed.keys() == old.keys()
    moved = [k for k in old if (old[k]["value"], old[k]["stderr"]) != (
        streamed[k]["value"], streamed[k]["stderr"])]  # fmt: skip
    assert moved == []


@pytest.mark.slow
def test_the_streamed_floors_and_disagreement_are_those_of_the_kept_maps(kept):
    """The floors pair each image with its partner within its block of 2 images (the other one),
    as :func:`floor_partner` seeds it; the disagreement totals, per image, do not depend on the
    blocks: both recomputed from the kept map files, all images at once, match the table's."""
    cfg, d = load_config(kept / "config.toml"), RunDir(kept)
    rows = read_rows(kept / "metrics.parquet")
    partner = torch.cat([floor_partner(cfg.attribution, b, 2) + 2 * b for b in range(2)])
    assert partner.tolist() == [1, 0, 3, 2]  # a block of two: each image's partner is the other
    for method in ("grad", "gradcam"):
        for r in (0.0, 0.4):
            maps = [d.load_map(k, method, r, map_identity(cfg, k, method, r, None, 4)).estimate()
                    for k in range(N_MODELS)]  # fmt: skip
            means = [m.mean if isinstance(m, SmoothStats) else m for m in maps]
            want = {
                "ssim_floor": chance_floor(ss_metrics.ssim_maps, means[0], means[1], partner),
                "unit_distance_floor": ss_metrics.unit_distance(means[0], means[1][partner]),
                "disagreement": disagreement_map(means).total,
                "disagreement_debiased": disagreement_map(maps).total,
            }
            for metric, value in want.items():
                at = (method, r, metric)
                got = [row["value"] for row in rows
                       if (row["method"], row["r"], row["metric"]) == at]  # fmt: skip
                torch.testing.assert_close(torch.tensor(got, dtype=torch.float64),
                                           value.double().cpu(), rtol=1e-5, atol=1e-6)  # fmt: skip


@pytest.mark.slow
def test_kept_map_files_say_what_they_are(kept):
    """One map file per model, method and r, joined from the blocks of 2 images: it records the
    method, model, r, sigma, the images and each block's seed, and keeps the halves and variances
    of the debiased distances; the block files' figure maps are its means."""
    cfg, d = load_config(kept / "config.toml"), RunDir(kept)
    assert not list(kept.rglob("*.block*.pt"))
    for method in METHODS:
        for k in range(N_MODELS):
            for r in GRID:
                f = d.load_map(k, method, r, map_identity(cfg, k, method, r, None, 4))
                assert f.images == (0, 4) and f.block is None and len(f.seeds) == 2
                assert (f.halves is None) == (r == 0) and f.mean.dtype == torch.float32
                assert torch.equal(figure_means(kept, k, method, r), f.mean)


@pytest.mark.slow
def test_kept_means_in_float16_or_as_their_view(tiny_run, kept, tmp_path):
    """``keep = "means"`` with ``precision = "float16"`` and ``view = "abs"``: each map file holds
    the mean maps alone, as ``[N, 1, H, W]`` float16, within float16's rounding (2^-11 of the
    largest value) of the 2-D view of the full maps; so do the block files' figure maps; the
    figures are drawn from them; the numbers are unchanged."""
    d = copy_trained(tiny_run, tmp_path / "run", names=TRAINED[1:])
    sets = [*TINY, "--set", "maps.keep=means", "--set", "maps.precision=float16"]
    sets += ["--set", "maps.view=abs"]
    assert run("run", "--out", d, "--quiet", *sets) == 0
    assert (d / "metrics.parquet").read_bytes() == (tiny_run / "metrics.parquet").read_bytes()
    assert (d / "figures" / "grid_grad_0-1.png").is_file()
    full = RunDir(kept)
    for method in METHODS:
        for r in (0.0, 0.4):
            f = torch.load(RunDir(d).map(1, method, r), weights_only=True)
            assert f["mean"].dtype == torch.float16 and f["mean"].shape[1] == 1
            assert "halves" not in f and (f["view"], f["precision"]) == ("abs", "float16")
            want = abs_sum(full.load_map(1, method, r).mean)[:, None]
            tol = float(want.abs().max()) * 2**-11
            torch.testing.assert_close(f["mean"].float(), want, rtol=0, atol=tol)
            figure = block_files(d, method)[1]["figure_maps"][1, GRID.index(r)]
            assert torch.equal(figure, f["mean"][2:])


def flip_in(path, needle: bytes) -> None:
    """Flip one bit of ``path`` inside the first occurrence of ``needle`` (a tensor's bytes)."""
    data = bytearray(path.read_bytes())
    at = data.index(needle)
    data[at + len(needle) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def one_error(capsys, command: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"smoothstab {command}: error: "), lines
    return lines[0]


@pytest.mark.slow
def test_planted_and_flipped_block_files_are_refused_then_measured_again(
    tiny_run, tmp_path, capsys, monkeypatch
):
    """Each damage, in a copy of the tiny run as a kill before the attribute stage's record
    leaves it (no manifest entry, no metrics table; a recorded block is caught by its hash in the
    manifest too): ``evaluate`` refuses the block in one line naming it and what it holds, with
    the command that recomputes it; the attribute stage says so, deletes it and measures that
    block again: the metrics table comes out byte-identical."""
    monkeypatch.setenv("CI", "true")
    blocks = tiny_run / "blocks"
    other = tmp_path / "other"  # a run of another config: a block of it is of another run
    copy_trained(tiny_run, other, names=TRAINED[1:])
    sets = [*TINY, "--set", "attribution.n_samples=4", "--set", 'attribution.methods=["grad"]']
    assert run("run", "--out", other, "--quiet", "--stages", "attribute", *sets) == 0
    capsys.readouterr()
    computed, real = [], attribute.measure_block
    monkeypatch.setattr(attribute, "measure_block", lambda job, models: computed.append(
        (job.method, job.block)) or real(job, models))  # fmt: skip
    values = torch.load(blocks / "grad" / "block00001.pt", weights_only=True)["values"]
    needle = values[len(values) // 2].numpy().tobytes()
    cases = {  # the block damaged, how, what the refusal says
        "another image block": ("grad/block00001.pt", blocks / "grad" / "block00000.pt",
                                "holds block = 0, not 1"),
        "another method": ("ig/block00000.pt", blocks / "gradcam" / "block00000.pt",
                           "holds method = 'gradcam', not 'ig'"),
        "another run": ("grad/block00000.pt", other / "blocks" / "grad" / "block00000.pt",
                        "holds run = "),
        "a flipped bit": ("grad/block00001.pt", None,
                          "damaged (its content does not match the SHA-256 it records)"),
    }  # fmt: skip
    for name, (rel, source, says) in cases.items():
        d = tmp_path / name.replace(" ", "-")
        shutil.copytree(tiny_run, d)
        (d / "metrics.parquet").unlink()
        recorded = json.loads((d / "manifest.json").read_text())
        for stage in ("attribute", "evaluate", "figures", "bounds", "report"):
            del recorded["stages"][stage]
        (d / "manifest.json").write_text(json.dumps(recorded))
        target = d / "blocks" / rel
        if source is None:
            flip_in(target, needle)
        else:
            shutil.copyfile(source, target)
        assert run("evaluate", d) == 2, name
        line = one_error(capsys, "evaluate")
        assert f"{target}: {says}" in line, (name, line)
        assert line.endswith(f"--out {d} --stages attribute"), (name, line)
        computed.clear()
        assert run("run", "--out", d, "--quiet", "--stages", "attribute", "evaluate", *TINY) == 0
        err = capsys.readouterr().err
        assert f"{target}: {says}" in err and "recomputing it" in err, (name, err)
        block = rel.split("/")
        assert computed == [(block[0], int(block[1][5:10]))], (name, computed)
        assert (d / "metrics.parquet").read_bytes() == (tiny_run / "metrics.parquet").read_bytes()


@pytest.mark.slow
def test_planted_and_flipped_map_blocks_are_measured_again(tiny_run, tmp_path, capsys, monkeypatch):
    """With kept maps, a run killed after its first image block leaves map blocks; one replaced by
    another r's, and one with a flipped bit, are said and deleted on resuming, and the block is
    measured again (the issue's reproduction used to join the planted block as the r = 0.2 map):
    every joined map file is what an uninterrupted run keeps."""
    d = copy_trained(tiny_run, tmp_path / "run", names=TRAINED[1:])
    sets = [*TINY, "--set", "maps.keep=all", "--set", 'attribution.methods=["grad"]']
    real = attribute.measure_block

    def dies_in_the_second(job, models):
        if job.block == 1:
            raise Killed
        return real(job, models)

    monkeypatch.setattr(attribute, "measure_block", dies_in_the_second)
    with pytest.raises(Killed):
        run("run", "--out", d, "--quiet", "--stages", "attribute", *sets)
    monkeypatch.undo()
    maps = d / "maps" / "model0" / "grad"
    planted, flipped = (
        maps / "r0.200000.block0.pt",
        d / "maps" / "model1" / "grad" / "r0.400000.block0.pt",
    )
    shutil.copyfile(maps / "r0.100000.block0.pt", planted)
    mean = torch.load(flipped, weights_only=True)["mean"]
    flip_in(flipped, mean[1].numpy().tobytes())
    assert run("run", "--out", d, "--stages", "attribute", "evaluate", *sets) == 0
    err = capsys.readouterr().err
    assert f"{planted}: holds r = 0.1, not 0.2" in err and f"{flipped}: damaged" in err, err
    assert err.count("recomputing it") == 2
    cfg = load_config(d / "config.toml")
    for k in range(N_MODELS):
        for r in GRID:
            f = RunDir(d).load_map(k, "grad", r, map_identity(cfg, k, "grad", r, None, 4))
            assert torch.equal(f.mean, figure_means(tiny_run, k, "grad", r)), (k, r)
    rows = [row for row in read_rows(tiny_run / "metrics.parquet") if row["method"] == "grad"]
    assert keyed(read_rows(d / "metrics.parquet")) == keyed(rows)


def test_a_map_of_another_place_is_named_in_the_refusal():
    """What the records compare, on their own: ``check_fields`` names the first field that
    differs, with both values; floats within 1e-9 are equal."""
    from smoothstab.experiments.io.files import DamagedFile
    from smoothstab.experiments.rundir.seal import check_fields, check_seal, digest, sealed

    saved = sealed({"method": "grad", "r": 0.1, "seeds": [1, 2], "x": torch.arange(3)})
    check_fields("f.pt", saved, {"method": "grad", "r": 0.1 + 1e-12, "seeds": [1, 2]})
    with pytest.raises(DamagedFile, match=r"f\.pt: holds seeds = \[1, 2\], not \[1, 3\]"):
        check_fields("f.pt", saved, {"method": "grad", "seeds": [1, 3]})
    with pytest.raises(DamagedFile, match=r"holds r = 0\.1, not 0\.2"):
        check_fields("f.pt", saved, {"r": 0.2})
    assert check_seal("f.pt", saved, "a file") is saved
    changed = dict(saved, x=torch.tensor([0, 1, 3]))
    with pytest.raises(DamagedFile, match="does not match the SHA-256"):
        check_seal("f.pt", changed, "a file")
    ones = torch.ones(2)
    assert digest({"a": 1, "b": ones}) == digest({"b": ones, "a": 1})
    assert digest({"a": 1, "b": ones}) != digest({"a": 1, "b": ones.double()})  # dtype counts
    assert digest({"a": [1]}) != digest({"a": (1, 2)}) != digest({"a": "1"})
    with pytest.raises(DamagedFile, match="no record of what it holds"):
        check_seal("f.pt", {"mean": torch.zeros(1)}, "a map file")

"""Reliability you can count: kills, Ctrl-C, a full disk, escaping paths, determinism, memory.

The slow tests share one uninterrupted tiny run (``reference``, a subprocess like a user's).

* ``test_interrupted_run_ends_byte_identical``: one run directory is interrupted at
  :data:`INTERRUPTIONS` points -- SIGKILL, SIGINT (Ctrl-C) and a full disk (``OSError(ENOSPC)``
  injected into the atomic writer) -- each chosen by watching the run's own files appear, then
  resumed; the end result is byte-identical to the reference, and no temporary or block file
  is left.
* ``test_a_really_full_disk_keeps_every_earlier_file``: a real full disk (a small tmpfs; skipped
  where mounting one is not allowed).
* ``test_two_fresh_runs_are_byte_identical``: determinism on CPU.
* ``test_names_and_labels_stay_inside_the_run_directory``: ``../`` and absolute paths.
* ``test_attribute_stage_memory_is_flat``: 1,000 images through the attribute stage.

The fast ones: the API's memory over 1,000 images, hooks and graphs after a call and after an
exception, orphan clean-up and damaged-file detection of the manifest, and the CLI's one-line
Ctrl-C and full-disk messages.

Long because the kill, Ctrl-C and full-disk tests share one reference run (a module-scoped
fixture).
"""

from __future__ import annotations

import ctypes
import errno
import gc
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import smoothstab as ss
from helpers import BROWSER, NO_BROWSER, ROOT, TINY_SETTINGS, ConvNet, hook_count, make
from smoothstab.experiments.cli import main
from smoothstab.experiments.io import files as io
from smoothstab.experiments.rundir import manifest

TINY = [a for s in TINY_SETTINGS for a in ("--set", s)]
# Files that legitimately differ between two runs: wall-clock seconds in the training metrics
# (also inside the checkpoints, compared by their weights), hence their hash in the manifest, and
# the lock file (the PID of a run killed while it held it).
TIMED = {"train_metrics.json", "manifest.json", io.LOCK}

# A subprocess ``smoothstab`` whose atomic writer fails with ENOSPC on the nth file whose name
# matches a glob: argv = [pattern, n, *smoothstab arguments].
FULL_DISK = """
import errno, fnmatch, os, sys
from smoothstab.experiments.io import files as io
pattern, nth, seen, real = sys.argv[1], int(sys.argv[2]), [0], io._commit
def commit(tmp, path):
    if fnmatch.fnmatch(os.path.basename(str(path)), pattern):
        seen[0] += 1
        if seen[0] == nth:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    real(tmp, path)
io._commit = commit
from smoothstab.experiments.cli import main
sys.exit(main(sys.argv[3:]))
"""


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true", "OMP_NUM_THREADS": "1"}


def smoothstab(*args: str, prefix: tuple[str, ...] = ("-m", "smoothstab")) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *prefix, *map(str, args)],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_args(out: Path) -> list[str]:
    return ["run", "--out", str(out), "--quiet", *TINY]


def leftovers(run_dir: Path) -> list[Path]:
    """Temporary files of atomic writes and map blocks: none may outlive a finished run."""
    return [p for p in run_dir.rglob("*") if p.name.endswith(".tmp") or ".block" in p.name]


def digests(root: Path, skip: set[str] = frozenset()) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def assert_same_outputs(a: Path, b: Path) -> int:
    """Every file of run ``a`` is byte-identical in run ``b`` and no other file is there, except
    the timed ones; checkpoints hold the same weights. Returns the number of files compared."""
    da, db = digests(a, TIMED), digests(b, TIMED)
    assert da.keys() == db.keys()
    checkpoints = [k for k in da if re.fullmatch(r"model_\d+\.pt", k)]
    for k in checkpoints:
        sa, sb = (torch.load(d / k, weights_only=True)["state_dict"] for d in (a, b))
        assert sa.keys() == sb.keys() and all(torch.equal(sa[n], sb[n]) for n in sa), k
    differ = [k for k in da if k not in checkpoints and da[k] != db[k]]
    assert not differ, differ
    return len(da)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The tiny run, uninterrupted, made the way every other run here is (a subprocess, one
    thread): the session's tiny run is made in-process with the suite's threads, whose float
    sums may differ in the last bits, so it cannot stand in for it byte for byte."""
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = smoothstab(*run_args(out))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out


# --- kills, Ctrl-C and a full disk ---------------------------------------------------------------


def written(run_dir: Path, pattern: str) -> Callable[[int], bool]:
    """A trigger: a file matching ``pattern`` was written since ``start`` (ns)."""

    def fired(start: int) -> bool:
        for p in run_dir.glob(pattern):
            try:
                if p.stat().st_mtime_ns >= start:
                    return True
            except FileNotFoundError:  # replaced or joined meanwhile
                continue
        return False

    return fired


# (what the run is doing, how it is interrupted, when): "kill" and "int" send SIGKILL and SIGINT
# when the glob is first written by that attempt; "full" makes the nth write of files matching
# the glob fail with ENOSPC. Each attempt resumes the run directory the previous one left.
INTERRUPTIONS = [
    ("training model 0, epoch 2", "kill", "model_0.pt"),
    ("training model 1", "int", "model_1.pt"),
    ("attribution, first blocks", "kill", "blocks/*/block*.pt"),
    ("attribution, a block", "full", ("block*.pt", 3)),
    ("attribution, the last method", "kill", "blocks/gradcampp/*.pt"),
    ("evaluate, the metrics table", "full", ("metrics.parquet", 1)),
    ("evaluate, table 1", "kill", "metrics.parquet"),
    ("figures, the first", "kill", "figures/stability.png"),
    ("figures, the grids", "int", "figures/grid_grad_0-1.png"),
    ("bounds, power iteration", "kill", "figures/sigma_gradcampp.png"),
    ("bounds, its figure", "kill", "bounds.md"),
    ("report", "kill", "report.md"),  # the report takes ~10 ms here: the kill may come late
]
MIN_KILLS = 7  # every SIGKILL but the best-effort one in the report
INTERRUPTED = "interrupted; rerun the same command to resume"


def interrupt(run_dir: Path, how: str, when) -> tuple[int, str]:
    """One attempt of the run in ``run_dir``, interrupted as told; (exit code, stderr)."""
    if how == "full":
        pattern, nth = when
        proc = smoothstab(pattern, nth, *run_args(run_dir), prefix=("-c", FULL_DISK))
        _, err = proc.communicate(timeout=600)
        return proc.returncode, err
    fired = written(run_dir, when)
    start = time.time_ns()
    proc = smoothstab(*run_args(run_dir))
    while proc.poll() is None:
        if fired(start):
            proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGINT)
            break
        time.sleep(0.003)
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


@pytest.mark.slow
def test_interrupted_run_ends_byte_identical(reference, tmp_path):
    d = tmp_path / "run"
    landed = {"kill": 0, "int": 0, "full": 0}
    for what, how, when in INTERRUPTIONS:
        # every file there before, except map blocks (joined into their map), stays intact
        before = (
            {k: v for k, v in digests(d, TIMED).items() if ".block" not in k} if d.exists() else {}
        )
        code, err = interrupt(d, how, when)
        if code == 0:  # the run finished before the signal: only allowed at the very end
            assert what == INTERRUPTIONS[-1][0], (what, err)
            continue
        landed[how] += 1
        if how == "kill":
            assert code == -signal.SIGKILL, (what, code, err)
            continue
        lines = err.strip().splitlines()
        assert "Traceback" not in err, (what, err)
        if how == "int":
            assert code == 130, (what, code, err)
            assert (
                lines[-1] == "smoothstab run: error: interrupted; rerun the same command to resume"
            )
        else:
            assert code == 2, (what, code, err)
            assert re.fullmatch(r"smoothstab run: error: no space left on the device .*", lines[-1])
            assert "rerun the same command" in lines[-1]
            after = digests(d, TIMED)
            assert {k: after.get(k) for k in before} == before, what
            assert not [p for p in d.rglob("*.tmp")], what
    assert landed["kill"] >= MIN_KILLS and landed["int"] == 2 and landed["full"] == 2, landed
    print(f"interruptions that landed: {landed}")

    proc = smoothstab(*run_args(d))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert not leftovers(d)
    assert_same_outputs(reference, d)


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, tmp_path, capsys):
    def interrupted(cfg, run_dir, stages):
        raise KeyboardInterrupt

    monkeypatch.setattr("smoothstab.experiments.pipeline.run_all", interrupted)
    assert main(["run", "--out", str(tmp_path / "run"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err == f"smoothstab run: error: {INTERRUPTED}\n"


def test_a_full_disk_is_one_line_and_keeps_the_old_file(monkeypatch, tmp_path, capsys):
    """ENOSPC while a file is replaced: exit 2, one line naming the file (not its temporary),
    the old content stays, no temporary file is left."""
    target = tmp_path / "metrics.parquet"
    io.atomic_write(target, lambda tmp: tmp.write_text("old\n"))

    def full(tmp, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    def stage(cfg, run_dir, stages):
        io.atomic_write(target, lambda tmp: tmp.write_text("new\n"))

    monkeypatch.setattr(io, "_commit", full)
    monkeypatch.setattr("smoothstab.experiments.pipeline.run_all", stage)
    assert main(["run", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"no space left on the device ({target})" in err[0], err
    assert target.read_text() == "old\n"
    assert not list(tmp_path.glob(".*.tmp"))


def mount_tmpfs(where: Path, size: int) -> bool:
    """A tmpfs of ``size`` bytes at ``where``; False where mounting is not allowed (not root,
    or a container without the capability)."""
    where.mkdir(parents=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    return done.returncode == 0


def disk_usage(root: Path, globs: tuple[str, ...]) -> int:
    """Bytes the files matching ``globs`` take on a tmpfs (whole 4 KiB pages)."""
    files = {p for g in globs for p in root.glob(g) if p.is_file()}
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in files)


@pytest.mark.slow
def test_a_really_full_disk_keeps_every_earlier_file(reference, tmp_path):
    """A real full disk, not an injected error: the run goes on a tmpfs with room for training
    and about half of the block files. It stops with exit 2 and one line; every file it wrote
    before is intact (byte-identical to the reference run's); no temporary file is left; moved to
    a disk with room, the run resumes to the reference's outputs."""
    earlier = ("config.toml", "splits.json", "model_*.pt", "train_metrics.json", "test_images.pt")
    blocks = disk_usage(reference, ("blocks/**/*.pt",))
    size = disk_usage(reference, earlier) + 4 * 4096 + blocks // 2
    mnt = tmp_path / "small"
    if not mount_tmpfs(mnt, size):
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        proc = smoothstab(*run_args(mnt / "run"))
        _, err = proc.communicate(timeout=600)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (proc.returncode, err)
        assert "Traceback" not in err, err
        assert re.fullmatch(r"smoothstab run: error: no space left on the device .*", lines[-1])
        assert not list((mnt / "run").rglob("*.tmp"))
        ours, ref = digests(mnt / "run", TIMED), digests(reference, TIMED)
        kept = [k for k in ours if ".block" not in k and not re.fullmatch(r"model_\d+\.pt", k)]
        assert "test_images.pt" in kept and any(k.startswith("blocks/") for k in ours), sorted(ours)
        assert {k: ours[k] for k in kept} == {k: ref[k] for k in kept}
        moved = tmp_path / "big" / "run"
        shutil.copytree(mnt / "run", moved)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    proc = smoothstab(*run_args(moved))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert not leftovers(moved)
    assert_same_outputs(reference, moved)


# --- the manifest and clean-up -------------------------------------------------------------------


def test_resume_removes_temporaries_and_joined_blocks(tmp_path):
    """What a SIGKILL can leave: temporaries of atomic writes (a checkpoint, a block) and the
    block files of a map joined just before the kill. Unjoined blocks are progress: kept."""
    maps = tmp_path / "maps" / "model0" / "grad"
    maps.mkdir(parents=True)
    orphans = [
        tmp_path / ".model_0.pt.k2j3h4.tmp",
        maps / ".r0.000000.block0.pt.x8y9z0.tmp",
        maps / "r0.100000.block0.pt",  # r0.100000.pt exists: joined, then killed
        maps / "r0.100000.block1.pt",
    ]
    kept = [tmp_path / "model_0.pt", maps / "r0.100000.pt", maps / "r0.200000.block0.pt"]
    for p in orphans + kept:
        p.write_bytes(b"x")
    assert sorted(manifest.clean(tmp_path)) == sorted(orphans)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in orphans)


def test_manifest_finds_damaged_files(tmp_path, capsys):
    """A file cut or changed after its stage recorded it: the stage's own file is deleted (to be
    recomputed, with one line), an earlier stage's file is refused naming that stage."""
    manifest.record_config(tmp_path, 'name = "x"\n')  # as the run's first stage does
    (tmp_path / "metrics.parquet").write_text("a,b\n1,2\n")
    (tmp_path / "report.md").write_text("# report\n")
    manifest.record(tmp_path, "evaluate")
    manifest.record(tmp_path, "report")
    assert manifest.check(tmp_path, "report", ["evaluate", "report"]) == []
    (tmp_path / "report.md").write_text("# edited\n")  # same size, other bytes
    assert manifest.check(tmp_path, "report", ["evaluate", "report"]) == ["report.md"]
    assert not (tmp_path / "report.md").exists()
    assert "report.md: damaged (its SHA-256 differs" in capsys.readouterr().err
    (tmp_path / "metrics.parquet").write_text("a,b\n1,")
    with pytest.raises(ValueError, match=r"metrics\.parquet: damaged \(6 bytes, 8 were written"):
        manifest.check(tmp_path, "report", ["evaluate", "report"])
    assert (tmp_path / "metrics.parquet").exists()


@pytest.mark.slow
def test_a_cut_metrics_table_is_joined_again_or_refused(reference, tmp_path, capsys):
    """``smoothstab evaluate`` on a metrics table cut short joins it again from the block files
    (no model evaluation; it used to rewrite table1.csv from the cut file); a later stage alone
    refuses it; unrecorded (the evaluate stage killed before its record) the cut is still found
    (Parquet's footer is gone)."""
    d = tmp_path / "run"
    shutil.copytree(reference, d)
    data = (d / "metrics.parquet").read_bytes()
    (d / "metrics.parquet").write_bytes(data[: len(data) // 2])
    assert main(["report", str(d), "--quiet"]) == 2
    assert "metrics.parquet: damaged" in capsys.readouterr().err
    assert main(["evaluate", str(d), "--quiet"]) == 0
    assert (d / "metrics.parquet").read_bytes() == data
    recorded = json.loads((d / "manifest.json").read_text())
    del recorded["stages"]["evaluate"]
    (d / "manifest.json").write_text(json.dumps(recorded))
    (d / "metrics.parquet").write_bytes(data[: len(data) // 2])
    assert main(["evaluate", str(d), "--quiet"]) == 0
    assert (d / "metrics.parquet").read_bytes() == data
    assert (d / "table1.csv").read_bytes() == (reference / "table1.csv").read_bytes()


# --- determinism ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_fresh_runs_are_byte_identical(reference, tmp_path):
    """Two fresh runs of one config on CPU: the metrics table and every other output byte-identical
    (checkpoints: the same weights; only wall-clock seconds differ)."""
    d = tmp_path / "again"
    proc = smoothstab(*run_args(d))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert (d / "metrics.parquet").read_bytes() == (reference / "metrics.parquet").read_bytes()
    assert assert_same_outputs(reference, d) >= 30  # 8 block files among them


# --- paths stay inside the run directory ---------------------------------------------------------


DR_TOML = """\
name = "{name}"
[train]
dataset = "digits"
[models]
setting = "DR"
[[models.specs]]
name = "small_cnn"
label = "{label0}"
[[models.specs]]
name = "small_cnn"
label = "{label1}"
[attribution]
methods = ["grad", "gradcam"]
n_images = 2
n_samples = 2
stability_r = [0.0, 0.1]
fidelity_r = [0.0, 0.1]
[evaluation]
topk = 5
"""


@pytest.mark.slow
def test_names_and_labels_stay_inside_the_run_directory(tmp_path, monkeypatch, capsys):
    """A run name that is not a plain name is refused, with or without --out; model labels with
    ``../`` or absolute paths only ever appear as text. Nothing outside --out is written."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("CI", "true")
    escape = tmp_path / "escape"
    for name in ("../../escape", str(escape), "a/b", "..", ".hidden", ""):
        cfg = work / "c.toml"
        cfg.write_text(DR_TOML.format(name=name, label0="a", label1="b"))
        for out in ([], ["--out", str(work / "out")]):
            assert main(["run", str(cfg), "--quiet", *out]) == 2
            assert "name: expected a plain name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["c.toml", "work"]

    labels = ("../../../label-escape", f"{tmp_path}/label-abs")
    cfg = work / "c.toml"
    cfg.write_text(DR_TOML.format(name="ok", label0=labels[0], label1=labels[1]))
    before = digests(tmp_path)
    assert main(["run", str(cfg), "--quiet"]) == 0
    created = {k for k in digests(tmp_path).keys() - before.keys()}
    assert all(k.startswith("work/runs/ok/") for k in created), created
    assert labels[0] in (work / "runs" / "ok" / "table1.csv").read_text()
    assert not [p for p in tmp_path.rglob("label-*")]


# --- memory, hooks and graphs --------------------------------------------------------------------


def rss() -> int:
    """Resident memory of this process, bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trim() -> None:
    """Return the allocator's free memory to the system (glibc's ``malloc_trim``), where there
    is one."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


N_IMAGES, FIRST, TOLERANCE = 1000, 100, 8 << 20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_api_memory_is_flat_over_1000_images():
    """1,000 images, ten at a time, through every method smoothed: the resident memory after
    the last 100 images is within 8 MiB of that after the first 100."""
    model = make(ConvNet(), dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(N_IMAGES, 3, 8, 8, generator=gen)
    methods = [
        ss.smooth(ss.grad, 0.1, 4, seed=0),
        ss.smoothed_ig(0.1, 4, steps=4, seed=0),
        ss.smooth(lambda m, x, t: ss.grad_cam(m, x, t, layer="features.3"), 0.1, 4, seed=0),
    ]
    marks = {}
    for start in range(0, N_IMAGES, 10):
        x = images[start : start + 10]
        for method in methods:
            method.stats(model, x, None)
        done = start + 10
        if done in (FIRST, N_IMAGES):
            gc.collect()
            marks[done] = rss()
    growth = marks[N_IMAGES] - marks[FIRST]
    assert growth < TOLERANCE, f"RSS grew by {growth / 2**20:.1f} MiB"


class Boom(ConvNet):
    """Raises in the head, after the CAM layer's forward hook ran: an exception mid-method."""

    def forward(self, x):
        self.features(x)
        raise RuntimeError("boom")


def all_hooks(model: torch.nn.Module) -> int:
    from torch.nn.modules import module as M

    per_module = hook_count(model) + sum(
        len(m._backward_pre_hooks) + len(m._forward_hooks_with_kwargs) for m in model.modules()
    )
    globals_ = (
        M._global_forward_hooks,
        M._global_forward_pre_hooks,
        M._global_backward_hooks,
        M._global_backward_pre_hooks,
    )
    return per_module + sum(len(g) for g in globals_)


METHODS = {
    "grad": ss.grad,
    "ig": lambda m, x, t: ss.integrated_gradients(m, x, t, steps=3),
    "gradcam": lambda m, x, t: ss.grad_cam(m, x, t, layer="features.3"),
    "gradcampp": lambda m, x, t: ss.grad_cam_pp(m, x, t, layer="features.3"),
    "smoothed gradcam": ss.smooth(
        lambda m, x, t: ss.grad_cam(m, x, t, layer="features.3"), 0.1, 4, seed=0
    ),
    "smoothed ig (joint)": ss.smoothed_ig(0.1, 4, sampler="joint", seed=0),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_no_hook_graph_or_gradient_survives_a_call(name):
    """After a normal return and after an exception inside the model: no hook on any module
    (nor a global one), no parameter gradient, no graph attached to the result."""
    method = METHODS[name]
    model, boom = make(ConvNet()), make(Boom())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    target = torch.tensor([0, 1])
    assert all_hooks(model) + all_hooks(boom) == 0
    out = method(model, x, target)
    assert out.grad_fn is None and not out.requires_grad
    with pytest.raises(RuntimeError, match="boom"):
        method(boom, x, target)
    assert all_hooks(model) + all_hooks(boom) == 0
    assert all(p.grad is None for m in (model, boom) for p in m.parameters())


def test_no_tensor_outlives_the_calls():
    """Every method of the table, three times each, normally and through an exception: the
    number of live tensors is what it was before (nothing cached or kept in a graph)."""
    model, boom = make(ConvNet()), make(Boom())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    target = torch.tensor([0, 1])

    def calls() -> None:
        for method in METHODS.values():
            method(model, x, target)
            with pytest.raises(RuntimeError):
                method(boom, x, target)

    def live() -> int:
        gc.collect()
        return sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())

    calls()  # first calls may create lasting state (lazy modules, caches of torch itself)
    before = live()
    for _ in range(3):
        calls()
    assert live() <= before


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_attribute_stage_memory_is_flat(tmp_path, monkeypatch):
    """The attribute stage over 1,000 generated test images (two untrained small CNNs, DR,
    Simple-Grad at r = 0, 0.1, 0.15, blocks of 50 images, each measured while in memory): after
    its first 100 images, the resident memory never exceeds that by 8 MiB (what the stage holds
    is one block's maps, whatever the number of images)."""
    from smoothstab.experiments.config.load import load_config
    from smoothstab.experiments.models.source import RunModels
    from smoothstab.experiments.rundir.layout import RunDir
    from smoothstab.experiments.stages import attribute

    monkeypatch.setenv("CI", "true")
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(
        DR_TOML.format(name="mem", label0="a", label1="b")
        .replace('dataset = "digits"', 'dataset = "shapes"')
        .replace('methods = ["grad", "gradcam"]', 'methods = ["grad"]')
        .replace("n_images = 2", f"n_images = {N_IMAGES}\nimage_batch = 50")
    )
    cfg = load_config(cfg_path)
    run = RunDir(tmp_path / "run")
    models = RunModels(cfg, run).models()
    real, seen = attribute.measure_block, []

    def measured(*args, **kwargs):
        out = real(*args, **kwargs)
        gc.collect()
        trim()  # freed blocks back to the system: RSS is what is alive, not the allocator's
        seen.append(rss())
        return out

    monkeypatch.setattr(attribute, "measure_block", measured)
    attribute.run_attribution(cfg, run, models)
    assert len(seen) == N_IMAGES // 50  # one method, 20 blocks
    # Measured after each block, the allocator's free memory returned (RSS moves by +-30 MiB
    # between blocks without it: freed buffers kept or not), from the block that ends at image
    # FIRST: the first blocks warm up caches of torch itself.
    first, top = seen[FIRST // 50 - 1], max(seen[FIRST // 50 - 1 :])
    assert top - first < TOLERANCE, f"RSS grew by {(top - first) / 2**20:.1f} MiB"
    assert not leftovers(tmp_path / "run")


# --- progress ------------------------------------------------------------------------------------


def test_progress_shows_rate_and_eta_and_is_quiet_under_ci(monkeypatch):
    import io as stdio

    from smoothstab.experiments.io import progress

    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    monkeypatch.delenv("CI", raising=False)
    stream = stdio.StringIO()
    bar = progress.Progress(10, "attribute", stream=stream)
    bar.update(2, loss=0.5)
    now[0] = 104.0
    line = bar.line()  # 2 steps in 4 s: 2.00 s a step, 8 to go
    assert line.startswith("attribute:  20%") and "2/10 [00:04<00:16,  2.00s/it" in line, line
    assert line.endswith("loss=0.5000]"), line
    bar.close()  # not a terminal: one line when it closes
    assert stream.getvalue().count("\n") == 1 and "\r" not in stream.getvalue()
    resumed = progress.Progress(10, "train", stream=stdio.StringIO(), start=6)
    resumed.update(2)
    now[0] = 105.0  # the rate counts this run's 2 steps in 1 s, not the 6 done before
    assert "8/10 [00:01<00:01,  2.00it/s]" in resumed.line(), resumed.line()
    monkeypatch.setenv("CI", "true")
    quiet = stdio.StringIO()
    with progress.Progress(10, "attribute", stream=quiet) as q:
        q.update(10)
    assert quiet.getvalue() == ""


def test_progress_in_a_log_writes_a_line_every_ten_seconds_of_work(monkeypatch):
    """In a log or a pipe a long stage is not silent until it closes: a line when a step
    finishes at least ``LOG_EVERY`` (10) s after the last line, none in between, and the
    closing line."""
    import io as stdio

    from smoothstab.experiments.io import progress

    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    monkeypatch.delenv("CI", raising=False)
    stream = stdio.StringIO()
    with progress.Progress(100, "attribute", stream=stream) as bar:
        for _ in range(60):  # 60 steps of 0.5 s: lines at 10, 20 and 30 s
            now[0] += 0.5
            bar.update()
        assert stream.getvalue().count("\n") == 3
        assert "attribute:  20%" in stream.getvalue().splitlines()[0]
    assert stream.getvalue().count("\n") == 4 and "\r" not in stream.getvalue()


# --- the report in a real browser ----------------------------------------------------------------

# Put first in <head>: records uncaught errors, failed resources and console.error; on load,
# writes what every <img> decoded to into the page, which --dump-dom prints.
PROBE = """<script>
window.__errors = [];
addEventListener('error', e => __errors.push(e.message || 'failed: ' +
  String(e.target && (e.target.src || e.target.href)).slice(0, 60)), true);
const consoleError = console.error;
console.error = (...a) => { __errors.push('console.error: ' + a.join(' ')); consoleError(...a); };
addEventListener('load', () => {
  const imgs = [...document.images];
  const probe = document.createElement('pre');
  probe.id = 'probe';
  probe.textContent = JSON.stringify({images: imgs.length, errors: __errors,
    widths: imgs.map(i => i.complete ? i.naturalWidth : 0)});
  document.body.appendChild(probe);
});
</script>"""


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp / 'profile'}"]
    return subprocess.run(
        [BROWSER, *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)
def test_report_renders_in_headless_chromium(reference, tmp_path):
    """report.html of the tiny run in headless Chromium: every <img> decodes (naturalWidth > 0),
    no error reaches the console, and a full-page screenshot is not blank."""
    import json

    from PIL import Image

    html = (reference / "report.html").read_text()
    n_images = html.count("<img ")
    assert n_images >= 10
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("<head>", "<head>" + PROBE, 1))
    dom = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["errors"] == []
    assert result["images"] == n_images and all(w > 0 for w in result["widths"]), result

    shot = tmp_path / "report.png"
    logged = chromium(
        tmp_path,
        "--window-size=1200,4000",
        f"--screenshot={shot}",
        "--enable-logging=stderr",
        "--v=0",
        (reference / "report.html").as_uri(),
    )
    assert not re.search(r"CONSOLE.*(Uncaught|rror)", logged.stderr), logged.stderr[-2000:]
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 4000)
    lo, hi = image.getextrema()
    assert hi - lo > 128, "the screenshot is blank"


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.0])
def test_ctrl_c_while_the_command_starts_is_one_line(delay, tmp_path):
    """Ctrl-C while ``python -m smoothstab`` still imports torch (here 2-3 s; later, during
    training, is the same line): exit 130 and one line, no traceback (before: a traceback from
    inside torch's import). Earlier than ~0.1 s Python itself is starting (its ``site``
    module), before any code of the package could answer."""
    proc = smoothstab(*run_args(tmp_path / "run"))
    time.sleep(delay)
    assert proc.poll() is None, "the command ended before the signal"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err == f"smoothstab run: error: {INTERRUPTED}\n"

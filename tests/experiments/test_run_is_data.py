"""A run directory is data, and a config says when it is code.

A checkpoint never chooses the code that builds its model; a ``python:`` model name is looked up
by one documented rule and never silently from the working directory; ``plan --no-timing`` runs
none of a config's code; an ``hf:`` folder runs no code of its own unless the config says so; a
FIFO (or any special file) where a run file belongs is refused before it is opened; a lock file
never reaches the terminal raw; a write into a locked run directory goes through no link made
after the command's first check; a file hash is not reused while a process has the file open for
writing. Run directories are made by hand (``test_bad_inputs.fake_run``: untrained checkpoints),
so nothing here trains but the tests marked slow.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from helpers import ROOT, TINY_HF_VIT, TINY_TOML, config, fake_run
from smoothstab.experiments.cli import main
from smoothstab.experiments.io import files as io
from smoothstab.experiments.models.external import model_code
from smoothstab.experiments.rundir import manifest


def one_error(capsys, command: str) -> str:
    """The single stderr line of a refused ``smoothstab COMMAND``."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"smoothstab {command}: error: "), lines
    return lines[0]


def marker_module(folder: Path, module: str, said: str) -> Path:
    """``folder/module.py``: importing it writes ``said`` to ``folder/imported-<module>``, and
    its ``make`` raises a ValueError saying ``said`` (so a command ends at once, naming which
    module it imported)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(
        "from pathlib import Path\n"
        f"Path(__file__).with_name('imported-{module}').write_text({said!r})\n"
        f"def make(num_classes):\n    raise ValueError({said!r})\n"
    )
    return folder / f"imported-{module}"


def set_checkpoint_model(run_dir: Path, name: str, *, record: bool = True) -> None:
    """Every checkpoint of ``run_dir`` rewritten to name the model ``name``, and (``record``)
    their manifest entries updated to match, as whoever ships a run directory can."""
    for path in sorted(run_dir.glob("model_*.pt")):
        saved = torch.load(path, weights_only=True)
        saved["config"]["model"] = name
        torch.save(saved, path)
    if record:
        manifest.record(run_dir, "train")


@contextmanager
def no_hang(seconds: int = 30):
    """Fail, instead of hanging the suite, if the block blocks (on a FIFO) longer than this."""

    def hung(signum, frame):
        raise AssertionError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --- 1. a checkpoint is data ------------------------------------------------------------------


@pytest.mark.parametrize("with_manifest", [True, False], ids=["manifest", "no manifest"])
def test_a_checkpoint_naming_code_runs_none(tmp_path, capsys, monkeypatch, with_manifest):
    """The issue's reproduction: both checkpoints of a run say their model is
    ``python:tempfile:mkdtemp`` (their manifest entries updated, or no manifest at all).
    ``attribute`` refuses in one line, exit 2, naming the checkpoint and the config's model,
    before anything is imported: no temporary directory appears (main called mkdtemp, then said
    "returned str, not an nn.Module")."""
    monkeypatch.setenv("CI", "true")
    d = fake_run(tmp_path)
    set_checkpoint_model(d, "python:tempfile:mkdtemp", record=with_manifest)
    if not with_manifest:
        (d / manifest.MANIFEST).unlink()
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    assert main(["attribute", str(d)]) == 2
    line = one_error(capsys, "attribute")
    assert "model_0.pt: a checkpoint of the model 'python:tempfile:mkdtemp'" in line, line
    assert "config.toml names 'small_cnn'" in line, line
    assert list(temp.iterdir()) == []


def test_a_checkpoint_naming_a_planted_module_imports_nothing(tmp_path, capsys, monkeypatch):
    """A module planted in the working directory and named by the checkpoints is never
    imported (main imported and called it)."""
    monkeypatch.setenv("CI", "true")
    d = fake_run(tmp_path)
    work = tmp_path / "work"
    imported = marker_module(work, "planted33", "planted")
    monkeypatch.chdir(work)
    set_checkpoint_model(d, "python:planted33:make")
    assert main(["attribute", str(d)]) == 2
    assert "a checkpoint of the model 'python:planted33:make'" in one_error(capsys, "attribute")
    assert not imported.exists() and "planted33" not in sys.modules


def test_load_trained_builds_what_the_caller_names(tmp_path):
    """The API: a checkpoint whose record names code loads only when the caller names that
    model; a class count other than the caller's is refused before the model is built; a
    shipped architecture still loads from the checkpoint alone."""
    from smoothstab.experiments.io.files import DamagedFile
    from smoothstab.experiments.models.training import load_trained

    d = fake_run(tmp_path)
    assert type(load_trained(d / "model_0.pt")).__name__ == "SmallCNN"
    model = load_trained(d / "model_0.pt", "small_cnn", num_classes=10, in_channels=1)
    assert not model.training
    with pytest.raises(DamagedFile, match="with 10 classes, but the run's config gives 7"):
        load_trained(d / "model_0.pt", "small_cnn", num_classes=7, in_channels=1)
    set_checkpoint_model(d, "python:tempfile:mkdtemp", record=False)
    with pytest.raises(DamagedFile, match="which would import code: name the model"):
        load_trained(d / "model_0.pt")


# --- 2. where a config is code ---------------------------------------------------------------


def dt_config(tmp: Path, model: str, name: str = "c.toml", folder: Path | None = None) -> Path:
    """The tiny DT config with ``train.model = model``, in ``folder`` (default ``tmp``)."""
    folder = folder or tmp
    folder.mkdir(parents=True, exist_ok=True)
    text = TINY_TOML.replace("[train]\n", f'[train]\nmodel = "{model}"\n')
    return Path(config(folder, text, name))


def test_python_modules_are_looked_up_beside_the_config_first(tmp_path, capsys, monkeypatch):
    """The lookup rule: the config's folder first (silently: the user put it there), the
    working directory next (one notice line naming the file), then the installed packages; a
    miss names the places looked in; the run directory's config.toml records the config's
    folder, so a stage command run later (anywhere) imports the same module."""
    monkeypatch.setenv("CI", "true")
    mine, work = tmp_path / "mine", tmp_path / "work"
    beside = marker_module(mine, "nets33a", "beside the config")
    in_work = marker_module(work, "nets33a", "in the working directory")
    monkeypatch.chdir(work)
    cfg = dt_config(tmp_path, "python:nets33a:make", folder=mine)
    assert main(["run", str(cfg), "--out", str(tmp_path / "r"), "--stages", "train"]) == 2
    err = capsys.readouterr().err
    assert "python:nets33a:make raised ValueError: beside the config" in err, err
    assert "working directory" not in err and beside.exists() and not in_work.exists()
    # refused by the check before a new run, which builds the models as the run would: no run
    # directory is made (what one records: the next test)
    assert not (tmp_path / "r" / "config.toml").exists()

    only_work = marker_module(work, "nets33b", "in the working directory")
    cfg = dt_config(tmp_path, "python:nets33b:make", folder=mine, name="b.toml")
    assert main(["run", str(cfg), "--out", str(tmp_path / "r2"), "--stages", "train"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    assert f"importing nets33b from the working directory ({work / 'nets33b.py'})" in lines[0]
    assert "raised ValueError: in the working directory" in lines[1] and only_work.exists()

    cfg = dt_config(tmp_path, "python:nets33c:make", folder=mine, name="c.toml")
    assert main(["run", str(cfg), "--out", str(tmp_path / "r3"), "--stages", "train"]) == 2
    line = one_error(capsys, "run")
    assert f"no module nets33c in {mine.resolve()} (the config's folder), {work} (the " in line
    assert "or the installed packages" in line


def test_a_stage_on_a_run_directory_imports_from_the_recorded_folder(tmp_path, monkeypatch):
    """``smoothstab attribute R`` reads R/config.toml, whose ``models.code_dir`` the run
    recorded: the module beside the original config is imported (not one in R, nor in the
    working directory)."""
    from smoothstab.experiments.config.load import load_config

    mine = tmp_path / "mine"
    marker_module(mine, "nets33d", "beside the config")
    cfg = load_config(dt_config(tmp_path, "python:nets33d:make", folder=mine))
    assert cfg.models.code_dir == str(mine.resolve())
    from smoothstab.experiments.pipeline import prepare
    from smoothstab.experiments.rundir.layout import RunDir

    run = RunDir(tmp_path / "run")
    prepare(cfg, run)
    marker_module(run.root, "nets33d", "in the run directory")
    monkeypatch.chdir(tmp_path)
    again = load_config(run.config)
    assert again.models.code_dir == str(mine.resolve())
    from smoothstab.experiments.models.architectures import build_model

    with model_code(again.models.code_dir), pytest.raises(ValueError, match="beside the config"):
        build_model(again.train.model, num_classes=10, in_channels=1)


@pytest.mark.slow
def test_the_console_script_and_python_m_look_up_alike(tmp_path):
    """``smoothstab`` and ``python -m smoothstab`` in one working directory, with one config:
    both import the module beside the config, not the working directory's of the same name
    (``python -m`` used to find the working directory's first, silently)."""
    script = Path(sys.executable).with_name("smoothstab")
    if not script.is_file():
        pytest.skip("no smoothstab console script beside this Python")
    mine, work = tmp_path / "mine", tmp_path / "work"
    marker_module(mine, "nets33e", "beside the config")
    marker_module(work, "nets33e", "in the working directory")
    cfg = dt_config(tmp_path, "python:nets33e:make", folder=mine)
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(ROOT)}
    for i, command in enumerate(([str(script)], [sys.executable, "-m", "smoothstab"])):
        out = tmp_path / f"r{i}"
        args = [*command, "run", str(cfg), "--out", str(out), "--stages", "train"]
        done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr
        assert "raised ValueError: beside the config" in done.stderr, (command, done.stderr)
        assert "working directory" not in done.stderr


def test_plan_without_timing_runs_none_of_the_configs_code(tmp_path, capsys, monkeypatch):
    """``plan --no-timing`` of a config with a ``python:`` factory and the sanity check on
    (whose layer count needed the model built) imports nothing; its help says when plan does
    import."""
    monkeypatch.setenv("CI", "true")
    mine = tmp_path / "mine"
    imported = marker_module(mine, "nets33f", "imported")
    cfg = dt_config(tmp_path, "python:nets33f:make", folder=mine)
    sets = ["--set", "sanity.enabled=true", "--set", "train.dataset=shapes"]  # 32x32: SSIM fits
    assert main(["plan", str(cfg), "--no-timing", *sets]) == 0
    assert "copies unknown" in capsys.readouterr().out
    assert not imported.exists() and "nets33f" not in sys.modules
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "imports and calls a python: model factory" in help_text
    assert "with --no-timing plan runs none of a config's code" in help_text


def tiny_vit(folder: Path, **changes) -> Path:
    """A folder holding the config.json of a tiny Hugging Face ViT, edited by ``changes`` (no
    weights: what is checked here happens before any are read)."""
    tr = pytest.importorskip("transformers")

    folder.mkdir(parents=True)
    tr.ViTConfig(**TINY_HF_VIT, num_labels=10).to_json_file(folder / "config.json")
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, **changes}))
    return folder


def test_an_hf_folder_runs_its_own_code_only_when_the_config_allows(tmp_path, monkeypatch):
    """A folder whose config.json asks for its own Python (``auto_map``) is refused in one line
    before transformers sees it (it used to ask on a terminal, "Do you wish to run the custom
    code?"); ``trust_remote_code`` is passed always, ``True`` only with
    ``models.trust_remote_code`` (here transformers then finds no such code)."""
    tr = pytest.importorskip("transformers")
    auto = tr.AutoModelForImageClassification
    calls, real = [], auto.from_pretrained
    monkeypatch.setattr(auto, "from_pretrained", lambda *a, **k: calls.append(k) or real(*a, **k))
    from smoothstab.experiments.models.architectures import build_model

    plain = tiny_vit(tmp_path / "plain")
    with pytest.raises(ValueError, match="model: cannot load hf:"):  # no weights in the folder
        build_model(f"hf:{plain}", num_classes=10)
    assert calls[-1]["trust_remote_code"] is False and calls[-1]["local_files_only"] is True
    folder = tiny_vit(tmp_path / "vit", auto_map={"AutoModelForImageClassification": "m.Net"})
    calls.clear()
    with pytest.raises(ValueError, match=r"auto_map\); that code runs only with models\.trust"):
        build_model(f"hf:{folder}", num_classes=10)
    assert calls == []
    with model_code(None, trust_remote_code=True), pytest.raises(ValueError) as err:
        build_model(f"hf:{folder}", num_classes=10)
    assert calls[-1]["trust_remote_code"] is True
    assert "model: cannot load hf:" in str(err.value) and "\n" not in str(err.value)


# --- 3. no hang: special files where run files belong ----------------------------------------

# Each run file and a command that reads (or writes) it.
RUN_FILES = {
    "config.toml": "attribute",
    "manifest.json": "attribute",
    ".lock": "evaluate",
    "splits.json": "run",
    "model_0.pt": "attribute",
    "train_metrics.json": "evaluate",
    "test_images.pt": "figures",
    "maps/model0/grad/r0.000000.pt": "evaluate",
    "maps/model0/grad/r0.100000.block0.pt": "attribute",
    "blocks/grad/block00000.pt": "evaluate",
    "metrics.parquet": "figures",
    "table1.csv": "report",
    "recommendation.json": "report",
    "sanity.csv": "report",
    "figures/stability.png": "figures",
    "bounds.json": "report",
    "bounds.md": "report",
    "report.md": "report",
    "report.html": "report",
}


@pytest.mark.parametrize("rel", list(RUN_FILES))
def test_a_fifo_where_a_run_file_belongs_is_refused(tmp_path, capsys, monkeypatch, rel):
    """``mkfifo R/FILE`` for every run file, then a command that reads or writes it: one line,
    exit 2, before the FIFO is opened (5 of 16 such cases hung forever; a directory in the same
    places was already refused). A socket is refused the same way."""
    monkeypatch.setenv("CI", "true")
    d = fake_run(tmp_path)
    manifest.record(d, "train")
    path = d / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    command = RUN_FILES[rel]
    run = ["run", str(tmp_path / "run.toml"), "--out", str(d)]
    argv = run if command == "run" else [command, str(d)]
    with no_hang():
        assert main(argv) == 2
    line = one_error(capsys, command)
    if rel == "config.toml":  # not a regular file: no run directory here
        assert "expected a run directory with config.toml" in line, line
    else:
        assert f"{path}: a FIFO (named pipe) where a run file belongs" in line, line


def test_a_socket_in_a_run_directory_is_refused(tmp_path, capsys, monkeypatch):
    import socket

    monkeypatch.setenv("CI", "true")
    d = fake_run(tmp_path)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(d / "metrics.parquet"))
        assert main(["figures", str(d)]) == 2
        assert "metrics.parquet: a socket where a run file belongs" in one_error(capsys, "figures")
    finally:
        sock.close()


def test_a_fifo_is_refused_by_the_readers_themselves(tmp_path):
    """Below the walk before a command: each reader of run files refuses a FIFO unopened."""
    from smoothstab.experiments.io.files import load_torch, read_json
    from smoothstab.experiments.rundir.metrics_table import read_csv

    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    with no_hang():
        for read in (load_torch, read_json, read_csv, manifest.sha256):
            with pytest.raises(ValueError, match="a FIFO"):
                read(fifo)


# --- 6. the smaller items ----------------------------------------------------------------------


def test_a_lock_file_is_never_echoed_raw(tmp_path, capsys, monkeypatch):
    """A lock held by another holder whose file holds an escape sequence and a newline: the
    refusal says "PID unknown" on one line (the file's bytes used to reach the terminal)."""
    import fcntl

    monkeypatch.setenv("CI", "true")
    d = fake_run(tmp_path)
    (d / io.LOCK).write_bytes(b"\x1b[31mred\nline two")
    fd = os.open(d / io.LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: another holder
        assert main(["evaluate", str(d)]) == 2
        line = one_error(capsys, "evaluate")
        assert "(PID unknown)" in line and "\x1b" not in line, line
    finally:
        os.close(fd)


def test_a_write_into_a_locked_run_directory_follows_no_late_link(tmp_path):
    """A link made below a locked run directory after the command's walk (``maps`` pointing
    outside): the next write refuses it in one line and writes nothing there."""
    d, outside = tmp_path / "run", tmp_path / "outside"
    d.mkdir()
    outside.mkdir()
    with io.locked(d):
        io.write_json(d / "maps" / "a.json", {})  # a plain folder: written
        shutil.rmtree(d / "maps")
        (d / "maps").symlink_to(outside, target_is_directory=True)
        with pytest.raises(ValueError, match=r"maps: a symbolic link \(to .*outside\)"):
            io.write_json(d / "maps" / "b.json", {})
    assert list(outside.iterdir()) == []
    io.write_json(d / "maps" / "c.json", {})  # unlocked (the library's own use): no check
    assert [p.name for p in outside.iterdir()] == ["c.json"]


def test_a_hash_is_not_reused_while_a_memory_map_can_write(tmp_path, monkeypatch):
    """A write through a shared memory map opened before the hash leaves the file's times as
    they were; while such a map (or any writer) has the file open, the kept hash is not reused,
    so the change is found (it used to be missed)."""
    import hashlib

    if not hasattr(__import__("fcntl"), "F_SETLEASE"):
        pytest.skip("no file leases on this system: the memo goes by the file's version")
    monkeypatch.setattr(io, "SETTLED_NS", 0)
    path = tmp_path / "m.bin"
    path.write_bytes(b"a" * 8192)
    memo = io.FileMemo(lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest())
    with open(path, "r+b") as f:
        view = mmap.mmap(f.fileno(), 0)
    try:
        view[0:1] = b"b"  # the page is writable from now on: later writes move no time
        first = memo(path)
        version = io.file_version(path)
        view[1:2] = b"c"
        assert io.file_version(path) == version  # the version cannot tell
        assert memo(path) == hashlib.sha256(path.read_bytes()).hexdigest() != first
    finally:
        view.close()
    assert memo(path) == memo(path)  # no writer left: kept from now on


def test_a_manifest_is_read_once_per_version_and_resolves_no_path(tmp_path, monkeypatch):
    """A manifest of 20,000 planted entries that all name map files: read and checked once per
    version of the file in a process (a `report` of 200,000 such entries took 72 s), with no
    path resolved where no link is (each resolve walked the whole path)."""
    d = fake_run(tmp_path)
    entries = {
        f"maps/model{i % 2}/grad/r{i / 1e6:.6f}.pt": {"size": 1, "sha256": "0" * 64}
        for i in range(20_000)
    }
    data = json.loads((d / manifest.MANIFEST).read_text())
    data["stages"]["attribute"] = entries
    (d / manifest.MANIFEST).write_text(json.dumps(data))
    monkeypatch.setattr(io, "SETTLED_NS", 0)
    calls = []
    monkeypatch.setattr(Path, "resolve", lambda self, *a: calls.append(self) or self.absolute())
    assert len(manifest.load(d)["attribute"]) == 20_000
    parsed, parse = [], manifest._parsed.fn
    monkeypatch.setattr(manifest._parsed, "fn", lambda path: parsed.append(path) or parse(path))
    for _ in range(3):
        assert len(manifest.load(d)["attribute"]) == 20_000
    assert calls == [] and parsed == []


def test_smoothstab_train_verifies_what_the_manifest_records(tmp_path, capsys, monkeypatch):
    """``smoothstab train R/config.toml --out R`` in a run directory with a manifest checks
    the train stage's recorded files first: a checkpoint changed since (size kept) is deleted
    with one line, to be trained again (it was kept, and attribute refused it again). Here the
    retraining is stopped before its first step, so the test stays fast."""
    from smoothstab.experiments.config.load import load_config
    from smoothstab.experiments.models.data import load_dataset, save_splits, size_splits
    from smoothstab.experiments.models.trainer import Trainer

    monkeypatch.setenv("CI", "true")
    d = fake_run(tmp_path)
    t = load_config(d / "config.toml").train
    n = len(load_dataset(t.dataset, train=True, seed=t.data_seed))
    save_splits(d / "splits.json", size_splits(n, t.parts, t.sizes, t.split_seed), t.parts)
    manifest.record(d, "train")
    checkpoint = d / "model_0.pt"
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))

    def stop(self, *args, **kwargs):
        raise ValueError("stopped before the first step")

    monkeypatch.setattr(Trainer, "sgd_step", stop)
    assert main(["train", str(d / "config.toml"), "--out", str(d)]) == 2
    err = capsys.readouterr().err
    assert f"{checkpoint}: damaged (its SHA-256 differs from the one written); recomputing" in err
    assert "stopped before the first step" in err and not checkpoint.exists()


def test_sanity_layers_are_checked_before_anything_trains(tmp_path, capsys, monkeypatch):
    """``sanity.layers = ["nope"]``: ``plan`` refuses it, and ``run`` refuses it before the
    train stage (it used to be refused after training and attribution)."""
    monkeypatch.setenv("CI", "true")
    sets = ["--set", "sanity.enabled=true", "--set", 'sanity.layers=["nope"]']
    sets += ["--set", "train.dataset=shapes"]  # 32x32: the SSIM window fits
    assert main(["plan", config(tmp_path), "--no-timing", *sets]) == 2
    assert "sanity.layers: expected module names of SmallCNN" in one_error(capsys, "plan")
    out = tmp_path / "out"
    assert main(["run", config(tmp_path), "--out", str(out), *sets]) == 2
    assert "sanity.layers: expected module names of SmallCNN" in one_error(capsys, "run")
    assert not list(out.glob("model_*.pt"))

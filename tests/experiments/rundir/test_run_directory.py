"""What a run directory refuses to trust: the paths its manifest names, links inside it, a second
run into it, an edited config, damage the size and time of a file do not show.

Each test hands a run directory (made by hand, as ``test_bad_inputs.fake_run`` makes one: no
training) something a user, a tool or an attacker could have put there, and checks that the
command refuses it with one line and exit 2 and that nothing outside the run directory changed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import config, digests, fake_run, truncate
from smoothstab.experiments.cli import main
from smoothstab.experiments.io import files as io
from smoothstab.experiments.io.files import DamagedFile
from smoothstab.experiments.rundir import manifest
from smoothstab.experiments.rundir.metrics_table import COLUMNS, read_rows


def one_error(capsys, command: str) -> str:
    """The single stderr line of a refused ``smoothstab COMMAND``."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"smoothstab {command}: error: "), lines
    return lines[0]


def plant(run_dir: Path, stage: str, rel: str) -> None:
    """A manifest entry for ``rel`` under ``stage``, as a hand-edited manifest would hold."""
    path = run_dir / manifest.MANIFEST
    data = json.loads(path.read_text())
    data["stages"].setdefault(stage, {})[rel] = {"size": 1, "mtime_ns": 0, "sha256": "0" * 64}
    path.write_text(json.dumps(data))


def test_manifest_paths_outside_the_run_directory_are_refused(tmp_path, capsys, monkeypatch):
    """Entries naming a file outside the run directory (absolute, with ``..``) or no output of
    their stage: the stage refuses the manifest and deletes nothing (it used to say "damaged;
    recomputing it" and unlink the file)."""
    monkeypatch.setenv("CI", "true")
    d = fake_run(tmp_path)
    manifest.record(d, "train")
    (d / io.LOCK).touch()  # as a run leaves it
    (tmp_path / "outside.txt").write_text("not the run's\n")
    (d / "notes.txt").write_text("the user's, not an output\n")
    planted = [str(tmp_path / "outside.txt"), "../outside.txt", "maps/../../outside.txt"]
    for rel in [*planted, "notes.txt"]:
        for stage in ("evaluate", "train"):
            clean = json.loads((d / manifest.MANIFEST).read_text())
            plant(d, stage, rel)
            before = digests(tmp_path)
            assert main(["evaluate", str(d)]) == 2, (rel, stage)
            line = one_error(capsys, "evaluate")
            assert "manifest.json: damaged" in line and repr(rel) in line, line
            assert digests(tmp_path) == before, (rel, stage)
            (d / manifest.MANIFEST).write_text(json.dumps(clean))


def test_links_inside_the_run_directory_are_refused(tmp_path, capsys, monkeypatch):
    """A link inside the run directory (``maps``, ``figures``, ``maps/model0/grad``, a file)
    that leads elsewhere: the stage refuses it with one line before it writes or deletes
    anything; the target is unchanged (a resume used to delete the block files there, and the
    stage to write its maps there)."""
    monkeypatch.setenv("CI", "true")
    d = fake_run(tmp_path)
    manifest.record(d, "train")
    target = tmp_path / "target"
    grad = target / "model0" / "grad"
    grad.mkdir(parents=True)
    for name in ("r0.100000.pt", "r0.100000.block0.pt", "r0.200000.block0.pt"):
        (grad / name).write_bytes(b"theirs")
    (target / "stability.png").write_bytes(b"theirs")
    links = {"maps": target, "blocks": target, "figures": target, "maps/model0/grad": grad,
             "report.md": grad}  # fmt: skip
    for rel, to in links.items():
        link = d / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(to, target_is_directory=to.is_dir())
        before = digests(target)
        for command in (["attribute", str(d)], ["run", str(d / "config.toml"), "--out", str(d)]):
            assert main(command) == 2, (rel, command)
            line = one_error(capsys, command[0])
            assert f"{link}: a symbolic link" in line, line
            assert digests(target) == before, (rel, command)
        link.unlink()
        if rel == "maps/model0/grad":
            (d / "maps" / "model0").rmdir()
            (d / "maps").rmdir()


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\\n".encode())
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_run_into_one_directory_is_refused(tmp_path, capsys, monkeypatch):
    """While another process holds the run directory's lock, a stage and ``smoothstab train``
    refuse with one line naming its PID and change nothing; once it dies (SIGKILL: the lock
    file stays, with its PID), the lock is free again."""
    monkeypatch.setenv("CI", "true")
    d = fake_run(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(d / io.LOCK)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        before = digests(tmp_path)
        train = ["train", str(tmp_path / "run.toml"), "--out", str(d)]
        for command in (["attribute", str(d)], train):
            assert main(command) == 2
            line = one_error(capsys, command[0])
            assert f"another smoothstab command is writing into it (PID {holder.pid})" in line
            assert digests(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()
    assert str(holder.pid) in (d / io.LOCK).read_text()  # stale: its holder is gone
    with io.locked(d):
        assert (d / io.LOCK).read_text() == f"{os.getpid()}\n"
    assert (d / io.LOCK).read_text() == ""


def test_an_edited_config_toml_is_refused(tmp_path, capsys, monkeypatch):
    """config.toml edited after the run recorded its files (n_samples 2 -> 50): every stage
    refuses, naming the key and both values, instead of mixing maps of both configs. A key that
    changes no result (a device, a batch size) may be edited."""
    monkeypatch.setenv("CI", "true")
    d = fake_run(tmp_path)
    assert main(["evaluate", str(d)]) == 2  # a run whose train stage is done
    assert "does not exist" in one_error(capsys, "evaluate")
    text = (d / "config.toml").read_text()
    (d / "config.toml").write_text(text.replace("n_samples = 2\n", "n_samples = 50\n"))
    before = digests(tmp_path)
    for stage in ("attribute", "evaluate", "report"):
        assert main([stage, str(d)]) == 2
        line = one_error(capsys, stage)
        made = "attribution.n_samples is 50, the run's files were made with 2;"
        assert f"{d}/config.toml: {made}" in line, line
        assert "smoothstab run" in line, line
        assert digests(tmp_path) == before
    (d / "config.toml").write_text(text.replace("batch_size = 256\n", "batch_size = 8\n"))
    assert main(["evaluate", str(d)]) == 2  # past the config: the maps are missing
    assert "does not exist; run the stages before this one" in one_error(capsys, "evaluate")


def test_a_run_made_with_the_old_ig_sampler_key_resumes(tmp_path, capsys, monkeypatch):
    """A run directory whose config (and manifest) say ``ig_estimator``, the old name of
    ``ig_sampler``, resumes: the key is read as the new one, with a warning, not refused."""
    monkeypatch.setenv("CI", "true")
    d = fake_run(tmp_path)
    for path in (d / "config.toml", d / manifest.MANIFEST):
        text = path.read_text()
        assert "ig_sampler = " in text
        path.write_text(text.replace("ig_sampler = ", "ig_estimator = "))
    assert main(["evaluate", str(d)]) == 2  # past the config: the maps are missing
    err = capsys.readouterr().err
    assert "attribution.ig_estimator is renamed attribution.ig_sampler" in err
    assert "does not exist; run the stages before this one" in err
    assert "was made with" not in err and "the run's files were made with" not in err


def test_damage_that_keeps_size_and_time_and_a_lost_manifest_are_found(tmp_path, capsys):
    """A checkpoint changed in one byte with its size and modification time kept, a garbled
    manifest, a missing one (while maps exist): each is refused with one line, where the
    attribute stage used to go on with them (a changed tensor loads without complaint)."""
    d = fake_run(tmp_path)
    manifest.record(d, "train")
    checkpoint = d / "model_0.pt"
    data, stat = bytearray(checkpoint.read_bytes()), checkpoint.stat()
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert main(["attribute", str(d)]) == 2
    assert "model_0.pt: damaged (its SHA-256 differs" in one_error(capsys, "attribute")
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    (d / "maps").mkdir()
    (d / "test_images.pt").write_bytes(b"made by the attribute stage")
    for garbled in ('{"version": 1, "stag', "[]", '{"version": 1, "stages": {"train": []}}', None):
        if garbled is None:
            (d / manifest.MANIFEST).unlink()
        else:
            (d / manifest.MANIFEST).write_text(garbled)
        before = digests(tmp_path)
        assert main(["attribute", str(d)]) == 2, garbled
        line = one_error(capsys, "attribute")
        what = "missing" if garbled is None else "damaged"
        assert f"{d}/manifest.json: {what}" in line and "--out NEW_DIR" in line, line
        assert digests(tmp_path) == before


def parquet(path: Path, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def test_a_metrics_table_that_is_no_table_is_refused(tmp_path, capsys):
    """A metrics.parquet that is text, cut short, of other columns or of no row is damage:
    figures and report refuse it with one line (figures used to crash with an IndexError after
    evaluate wrote an empty Table 1); read_rows names what is wrong."""
    d = fake_run(tmp_path)
    row = dict(setting=["DT"], n=[50], method=["grad"], r=[0.0], sigma=[0.0],
               metric=["stability"], pair=["0-1"], model=[None], image=[0], value=[0.5],
               stderr=[None])  # fmt: skip
    table = d / "metrics.parquet"
    good = parquet(tmp_path / "good.parquet", row).read_bytes()
    for damage, why in (
        (lambda: table.write_text("hello\n"), "cannot be read as the metrics table"),
        (lambda: table.write_bytes(good[: len(good) // 2]), "cannot be read as the metrics table"),
        (lambda: parquet(table, {**row, "score": row.pop("value")}), "its columns are not"),
        (lambda: parquet(table, {k: v[:0] for k, v in row.items()}), "(no rows)"),
        (lambda: parquet(table, {**row, "value": ["0.5x"]}), "its column value"),
    ):
        damage()
        row.setdefault("value", [0.5])
        with pytest.raises(DamagedFile, match=re.escape(why)):
            read_rows(table)
        for stage in ("figures", "report"):
            assert main([stage, str(d)]) == 2
            line = one_error(capsys, stage)
            assert "metrics.parquet: " in line and why in line, line
    table.write_bytes(good)
    (first,) = read_rows(table)
    assert first == dict(zip(COLUMNS, ["DT", "50", "grad", 0.0, 0.0, "stability", "0-1", "",
                                       "0", 0.5, ""], strict=True))  # fmt: skip


def follow(line: str, tmp: Path) -> None:
    """Run the commands a refusal's advice gives (after its last ': '), as a user would paste
    them: ``rm FILE`` and ``smoothstab ...`` joined by ``&&``; NEW_DIR becomes a new folder."""
    for part in line.rsplit(": ", 1)[1].replace("NEW_DIR", str(tmp / "new")).split(" && "):
        words = shlex.split(part)
        if words[0] == "rm":
            Path(words[1]).unlink()
        else:
            assert words[0] == "smoothstab" and main(words[1:]) == 0, part


def unrecord(run_dir: Path, stage: str) -> None:
    """The manifest as a stage killed before its record leaves it."""
    data = json.loads((run_dir / manifest.MANIFEST).read_text())
    del data["stages"][stage]
    (run_dir / manifest.MANIFEST).write_text(json.dumps(data))


@pytest.mark.slow
def test_every_repair_advice_is_a_command_that_works(tmp_path, capsys, monkeypatch):
    """Each kind of refusal that advises a repair -- an input not made yet, a damaged recorded
    file of an earlier stage, an unreadable unrecorded block file, checkpoint or metrics table,
    an edited config -- on a finished tiny run: the advised commands succeed, then the refused
    command does. (The advice used to be ``smoothstab train R``, an argparse error.)"""
    monkeypatch.setenv("CI", "true")
    d = tmp_path / "run"
    assert main(["run", config(tmp_path), "--out", str(d), "--quiet"]) == 0
    capsys.readouterr()
    a_block, metrics = next((d / "blocks").rglob("block*.pt")), d / "metrics.parquet"

    def flip(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    cases = [  # (stage refused, damage, the stage the advice reruns)
        ("report", lambda: metrics.unlink(), "evaluate"),
        ("attribute", lambda: flip(d / "model_0.pt"), "train"),
        ("report", lambda: metrics.write_text("hello\n"), "evaluate"),
        ("figures", lambda: (unrecord(d, "evaluate"), metrics.write_text("hi\n")), "evaluate"),
        ("attribute", lambda: (unrecord(d, "train"), truncate(d / "model_1.pt", 900)), "train"),
        ("evaluate", lambda: (unrecord(d, "attribute"), truncate(a_block, 9), metrics.unlink()), "attribute"),  # noqa: E501
    ]  # fmt: skip
    for stage, damage, rerun in cases:
        damage()
        assert main([stage, str(d)]) == 2, stage
        line = one_error(capsys, stage)
        assert line.endswith(f"smoothstab run {d}/config.toml --out {d} --stages {rerun}"), line
        follow(line, tmp_path)
        assert main([stage, str(d)]) == 0, line
        capsys.readouterr()
    text = (d / "config.toml").read_text()
    (d / "config.toml").write_text(text.replace("n_samples = 2\n", "n_samples = 4\n"))
    assert main(["report", str(d)]) == 2
    follow(one_error(capsys, "report"), tmp_path)
    assert "n_samples = 4" in (tmp_path / "new" / "config.toml").read_text()


def test_files_are_created_with_the_umask(tmp_path):
    """Every writer honours the umask, as open() would (mkstemp alone made every output 600)."""
    old = os.umask(0o027)
    try:
        for mask, mode in ((0o027, 0o640), (0o002, 0o664)):
            os.umask(mask)
            written = [
                io.atomic_write(tmp_path / f"{mask}.txt", lambda t: t.write_text("x")),
                io.write_json(tmp_path / f"{mask}.json", {}),
                io.save_torch(tmp_path / f"{mask}.pt", {"x": 1}),
            ]
            assert [oct(p.stat().st_mode & 0o777) for p in written] == [oct(mode)] * 3, mask
    finally:
        os.umask(old)


def test_file_memo_keeps_a_value_only_while_the_file_is_unchanged(tmp_path, monkeypatch):
    """What is computed from a file is kept per version of it: reused while the file is as it
    was, recomputed after any change (one that keeps the size and the modification time too),
    and never kept for a file changed within :data:`~.io.SETTLED_NS` (the file system's clock
    is coarse: a second change in the same tick could leave the version as it was)."""
    calls = []

    def read(path):
        calls.append(path)
        return Path(path).read_bytes()

    memo = io.FileMemo(read)
    f = tmp_path / "a.bin"
    f.write_bytes(b"one")
    assert memo(f) == memo(f) == b"one" and len(calls) == 2  # just written: not kept
    monkeypatch.setattr(io, "SETTLED_NS", 0)
    assert memo(f) == memo(f) == b"one" and len(calls) == 3  # settled: kept
    stat = f.stat()
    time.sleep(0.05)  # past a tick of the file system's clock
    f.write_bytes(b"two")
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert memo(f) == b"two" and len(calls) == 4
    f.unlink()
    with pytest.raises(FileNotFoundError):
        memo(f)
    f.write_bytes(b"two")  # a new file at the same path: another inode or change time
    assert memo(f) == b"two" and len(calls) == 6


def test_a_hash_kept_from_an_earlier_check_still_finds_damage(tmp_path, capsys, monkeypatch):
    """The manifest's hashes are kept per file version within a process (a run's later stages
    do not rehash its maps); a byte changed afterwards, size and modification time kept, is
    still found by the next check."""
    monkeypatch.setattr(io, "SETTLED_NS", 0)
    d = fake_run(tmp_path)
    manifest.record(d, "train")  # hashes and keeps every checkpoint's hash
    assert manifest.check(d, "attribute", ["train", "attribute"]) == []
    checkpoint = d / "model_0.pt"
    data, stat = bytearray(checkpoint.read_bytes()), checkpoint.stat()
    data[len(data) // 2] ^= 0xFF
    time.sleep(0.05)  # past a tick of the file system's clock
    checkpoint.write_bytes(bytes(data))
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(DamagedFile, match="model_0.pt: damaged .its SHA-256 differs"):
        manifest.check(d, "attribute", ["train", "attribute"])


def test_kept_map_blocks_are_checked_before_they_are_joined(tmp_path):
    """A kept map's blocks are joined only once each is what the join expects (its record and
    its own hash): a block of another r put in its place, or one with a flipped bit, is one
    DamagedFile line and nothing is written; the good blocks join into one file that records the
    whole range of images and every block's seed."""
    import dataclasses

    import torch

    import smoothstab as ss
    from smoothstab.experiments.rundir.layout import RunDir
    from smoothstab.experiments.rundir.mapfile import MapFile

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    x = torch.randn(4, 3, 8, 8)
    net(x)
    run = RunDir(tmp_path / "run")
    want = []
    for b, r in ((0, 0.1), (1, 0.1), (0, 0.2)):
        st = ss.smooth(ss.grad, 0.3 * r, 8, seed=b, groups=4).stats(
            net.eval(), x[2 * b : 2 * b + 2]
        )
        ident = dict(method="grad", model=0, r=r, sigma=0.3 * r, images=(2 * b, 2 * b + 2),
                     block=b, seeds=(b,))  # fmt: skip
        f = dataclasses.replace(MapFile.from_stats(st, r, 0.3 * r, keep=True), **ident)
        run.map(0, "grad", r, b).parent.mkdir(parents=True, exist_ok=True)
        f.save(run.map(0, "grad", r, b))
        want += [f.identity()] if r == 0.1 else []
    good = run.map(0, "grad", 0.1, 1).read_bytes()
    run.map(0, "grad", 0.1, 1).write_bytes(run.map(0, "grad", 0.2, 0).read_bytes())  # planted
    with pytest.raises(DamagedFile, match=r"r0.100000.block1.pt: holds r = 0.2, not 0.1"):
        run.join_map(0, "grad", 0.1, want)
    flipped = bytearray(good)
    flipped[len(flipped) // 3] ^= 0x01
    run.map(0, "grad", 0.1, 1).write_bytes(bytes(flipped))
    with pytest.raises(DamagedFile, match=r"block1.pt: (damaged|cannot be read)"):
        run.join_map(0, "grad", 0.1, want)
    assert not run.map(0, "grad", 0.1).exists()
    run.map(0, "grad", 0.1, 1).write_bytes(good)
    run.join_map(0, "grad", 0.1, want)
    assert not run.map(0, "grad", 0.1, 0).exists() and not run.map(0, "grad", 0.1, 1).exists()
    whole = dict(want[0], images=[0, 4], block=None, seeds=[0, 1])
    joined = run.load_map(0, "grad", 0.1, whole)
    assert joined.mean.shape == (4, 3, 8, 8) and joined.groups.shape == (4, 4, 3, 8, 8)


def test_rows_of_some_metrics_are_those_of_the_whole_table(tmp_path):
    """``iter_rows(path, metrics)`` chooses rows on the columns: the same dicts, in the same
    order, as filtering every row of the table."""
    from helpers import crossed_rows
    from smoothstab.experiments.rundir.metrics_table import iter_rows, rows_table, write_table

    base = crossed_rows(4, 3, {0.0: 0.0, 0.1: -0.1}, model_sd=0.05, noise=0.05)
    rows = [dict(row, metric=metric) for row in base for metric in ("stability", "rel_se", "ssim")]
    path = write_table(tmp_path / "metrics.parquet", rows_table(rows))
    every = list(iter_rows(path))
    assert len(every) == len(rows)
    for chosen in (["rel_se"], ["ssim", "stability"], []):
        assert list(iter_rows(path, chosen)) == [r for r in every if r["metric"] in chosen]

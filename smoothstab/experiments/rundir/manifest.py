"""What each stage wrote, with sizes and hashes, so that a later run trusts no damaged file.

Stages skip work whose output file exists, and read the files of the stages before them. Files are
written atomically (:mod:`~smoothstab.experiments.io.files`), so a kill never leaves half a file;
but a file can still be cut or changed afterwards (a full disk while copying a run, an editor, a bad
sync). So when a stage finishes, :func:`record` writes ``manifest.json`` last: for that stage, each
output file's size and SHA-256. The manifest also keeps the text of the config the run is made with
(:func:`record_config`, from the first stage on), so that an edited ``config.toml`` is found
(``stages.prepare``). Before a stage runs, :func:`check` verifies the files recorded for it and for
the stages before it, hashing each (about 0.7 GB/s on one core: a trade against damage that keeps a
file's size and modification time, which ``torch.load`` would not notice; within one process a file
is hashed again only if its version moved, :class:`~smoothstab.experiments.io.files.FileMemo`):

* a damaged file of the stage itself is deleted (one line says so) and the stage recomputes it;
* a damaged file of an earlier stage is refused with one line naming the stage that rewrites it.

Every path in the manifest must name an output file of its stage inside the run directory (no
absolute path, no ``..``, nothing a link leads out of): a manifest naming anything else is refused
as damaged, so that the manifest never makes a stage delete a file the run did not write. So is
a manifest that cannot be read, or a missing one where files of a stage after ``train`` exist
(only a standalone ``smoothstab train`` writes none). Files no stage has recorded yet (a stage
killed before its record) are not checked here: the attribute stage's block and map files carry
their own record and hash, which every reader checks (:mod:`~smoothstab.experiments.rundir.seal`).
:func:`clean` removes what killed writers leave: temporary files, and block files whose map
was joined.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from smoothstab.experiments.io.files import (
    TMP_SUFFIX,
    DamagedFile,
    FileMemo,
    check_inside,
    check_regular,
    first_line,
    is_temporary,
    remove_temporaries,
    write_json,
)
from smoothstab.experiments.io.progress import say

MANIFEST = "manifest.json"
CONFIG = "config.toml"  # the resolved config (rundir.RunDir.config)
VERSION = 1
# Each stage's output files, as globs relative to the run directory (see
# :mod:`~smoothstab.experiments.rundir.layout`).
OUTPUTS: dict[str, tuple[str, ...]] = {
    "train": ("splits.json", "val_split.json", "model_*.pt", "train_metrics.json"),
    "attribute": ("test_images.pt", "blocks/*/block*.pt", "maps/model*/*/r*.pt"),
    "evaluate": ("metrics.parquet", "table1.csv", "recommendation.json"),
    "sanity": ("sanity.csv",),
    "figures": ("figures/*.png",),
    "bounds": ("bounds.json", "bounds.md", "figures/bounds.png"),
    "report": ("report.md", "report.html"),
}
# Files of an earlier layout of the run directory: a manifest naming one is of an older version.
EARLIER: dict[str, tuple[str, ...]] = {"evaluate": ("metrics.csv",)}
# Files a glob above matches that belong to another stage.
NOT_OWNED: dict[str, tuple[str, ...]] = {"figures": ("figures/bounds.png",)}
BLOCK = re.compile(r"\.block\d+(?=\.pt$)")
# What to do when the run's own record cannot be trusted: start over beside it.
NEW_RUN = "start a new run directory: smoothstab run {root}/config.toml --out NEW_DIR"


def outputs(root: str | Path, stage: str) -> list[str]:
    """The output files of ``stage`` present under ``root``, relative, sorted (no temporary or
    block files)."""
    root = Path(root)
    found = set()
    for pattern in OUTPUTS.get(stage, ()):
        for p in root.glob(pattern):
            if p.is_file() and not is_temporary(p) and not BLOCK.search(p.name):
                found.add(p.relative_to(root).as_posix())
    return sorted(found - set(NOT_OWNED.get(stage, ())))


def owned(root: Path, stage: str, rel: object, links: dict[str, bool | None] | None = None) -> bool:
    """``rel`` names an output file of ``stage`` inside ``root``: a relative POSIX path without
    ``..`` that one of the stage's globs matches part by part, and that stays inside ``root``
    once links are resolved (``links``: what is known of which paths below ``root`` are links,
    shared by the calls for one manifest)."""
    if not isinstance(rel, str) or not rel or rel in NOT_OWNED.get(stage, ()):
        return False
    parts = rel.split("/")
    if rel.startswith("/") or any(part in ("", ".", "..") for part in parts):
        return False
    name = parts[-1]
    if BLOCK.search(name) or (name.startswith(".") and name.endswith(TMP_SUFFIX)):
        return False  # a block or temporary file (io.files.is_temporary, without a Path)
    matched = any(
        len(glob) == len(parts)
        and all(p.fullmatch(part) for p, part in zip(glob, parts, strict=True))
        for glob in _globs(stage)
    )
    return matched and _inside(root, parts, {} if links is None else links)


@functools.cache
def _globs(stage: str) -> tuple[tuple[re.Pattern, ...], ...]:
    """Each of the stage's globs as one compiled pattern per path part."""
    return tuple(
        tuple(re.compile(fnmatch.translate(part)) for part in glob.split("/"))
        for glob in OUTPUTS.get(stage, ())
    )


def _inside(root: Path, parts: list[str], links: dict[str, bool | None]) -> bool:
    """The path ``root/parts`` stays inside ``root``: resolved only when one of its parts is a
    link (one ``lstat`` per part not seen before; nothing below a missing part is looked at)."""
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        if sub not in links:
            try:
                links[sub] = stat.S_ISLNK(os.lstat(os.path.join(root, sub)).st_mode)
            except OSError:
                links[sub] = None  # missing: nothing below it is a link
        if links[sub] is None:
            return True
        if links[sub]:
            return (root / sub).resolve().is_relative_to(root.resolve()) and (
                (root.joinpath(*parts)).resolve().is_relative_to(root.resolve())
            )
    return True


def stage_of(path: str | Path) -> tuple[Path, str] | None:
    """``(run directory, stage)`` of a path that names an output file of a stage of a run
    directory holding a ``config.toml``; ``None`` for any other path."""
    parts = Path(path).parts
    for depth in range(1, min(len(parts), 5)):
        root, rel = Path(*parts[:-depth]), "/".join(parts[-depth:])
        for stage in OUTPUTS:
            if (root / CONFIG).is_file() and owned(root, stage, rel):
                return root, stage
    return None


def rerun(root: str | Path, stage: str) -> str:
    """The command that runs ``stage`` (alone) in the run directory ``root``, recomputing its
    missing files and, once :func:`check` deleted them, its damaged ones."""
    return f"smoothstab run {root}/{CONFIG} --out {root} --stages {stage}"


def recompute(path: str | Path) -> str:
    """Advice for a file that cannot be read: the commands that delete and recompute it."""
    found = stage_of(path)
    if found is None:
        return "delete it and rerun the same command to recompute it"
    return f"recompute it: rm {path} && {rerun(*found)}"


def _sha256(path: Path) -> str:
    check_regular(path)  # a FIFO would block the read
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# Hashed once per version of the file in this process: a run's later stages do not rehash the
# files (the kept maps, with [maps] keep = "all") that the stages before them checked or recorded.
sha256 = FileMemo(_sha256)


def _entry(path: Path) -> dict:
    return {"size": path.stat().st_size, "sha256": sha256(path)}


def load(root: str | Path) -> dict[str, dict[str, dict]]:
    """``{stage: {relative path: {size, sha256}}}``; empty for a run with no manifest yet."""
    return _read(Path(root))["stages"]


def made_with(root: str | Path) -> str | None:
    """The text of the config the run's recorded files were made with (``None``: not recorded,
    a manifest of an older version)."""
    return _read(Path(root)).get("config")


def _read(root: Path) -> dict:
    """The manifest's content; a damaged one, or a missing one in a run directory that holds files
    of a stage after the first, is one :class:`~smoothstab.experiments.io.files.DamagedFile`
    line."""
    path = root / MANIFEST
    check_regular(path)
    if not path.is_file():
        later = [rel for stage in list(OUTPUTS)[1:] for rel in outputs(root, stage)]
        if later:  # standalone `smoothstab train` writes no manifest: the first stage may lack one
            raise DamagedFile(
                path,
                f"missing, but {root} holds files of a run ({later[0]}, ...) that it should verify",
                NEW_RUN.format(root=root),
            )
        return {"stages": {}}
    data = _parsed(path)
    return {**data, "stages": {stage: dict(entries) for stage, entries in data["stages"].items()}}


def _parse(path: Path) -> dict:
    """An existing manifest's content, checked (see :func:`_read`)."""
    root = path.parent
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise _damaged(root, first_line(e)) from None
    stages = data.get("stages") if isinstance(data, dict) else None
    if not isinstance(stages, dict) or data.get("version") != VERSION:
        raise _damaged(root, f"not a manifest of version {VERSION}")
    links: dict[str, bool | None] = {}
    for stage, entries in stages.items():
        if not isinstance(entries, dict):
            raise _damaged(root, f"the {stage} stage lists no files")
        for rel, entry in entries.items():
            if rel in EARLIER.get(stage, ()):
                raise DamagedFile(
                    path,
                    f"written by an earlier version of smoothstab (its {stage} stage lists {rel}, "
                    "which runs now keep as metrics.parquet, with the maps measured in memory)",
                    NEW_RUN.format(root=root),
                )
            if not owned(root, stage, rel, links):
                why = f"the {stage} stage lists {rel!r}, which is none of its files in the run"
                raise _damaged(root, why + " directory")
            if not isinstance(entry, dict) or not {"size", "sha256"} <= entry.keys():
                raise _damaged(root, f"no size and SHA-256 for {rel!r}")
    config = data.get("config")
    return {"stages": stages, **({"config": config} if isinstance(config, str) else {})}


# Read and checked once per version of the file in this process: a command reads the manifest
# a few times per stage (a planted one of 200,000 entries took 72 s to `report`, 0.3 s per read
# now). A link planted below the run directory after the first read is refused by the writes'
# and deletes' own checks (io.files).
_parsed = FileMemo(_parse)


def _damaged(root: Path, why: str) -> DamagedFile:
    return DamagedFile(root / MANIFEST, f"damaged ({why})", NEW_RUN.format(root=root))


def _save(root: Path, data: dict) -> None:
    write_json(root / MANIFEST, {"version": VERSION, **data})


def record_config(root: str | Path, text: str) -> None:
    """Record the config the run is made with, once: before its first stage records a file
    (``prepare`` refuses another config from then on)."""
    root = Path(root)
    data = _read(root)
    if "config" not in data:
        _save(root, {**data, "config": text})


def record(root: str | Path, stage: str) -> None:
    """Record the output files of ``stage`` as they are now (call it when the stage is done)."""
    root = Path(root)
    data = _read(root)
    data["stages"][stage] = {rel: _entry(root / rel) for rel in outputs(root, stage)}
    _save(root, data)


def damage(path: str | Path, entry: dict) -> str | None:
    """Why ``path`` differs from its manifest ``entry``; ``None`` when it matches or is gone.
    Hashed (once per version of the file in this process): a change that keeps the size and
    the modification time (``torch.load`` does not check its archive's CRCs) is found too."""
    try:
        st = os.stat(path)  # a plain stat: a planted manifest may list 200,000 files
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    if st.st_size != entry.get("size"):
        return f"{st.st_size} bytes, {entry.get('size')} were written"
    if sha256(Path(path)) != entry.get("sha256"):
        return "its SHA-256 differs from the one written"
    return None


def check(root: str | Path, stage: str, order: Sequence[str]) -> list[str]:
    """Verify the recorded files of ``stage`` and of the stages before it in ``order``.

    Damaged files of ``stage`` are deleted, so that it recomputes them; their relative paths
    are returned. A damaged file of an earlier stage, or a damaged manifest, raises
    :class:`~smoothstab.experiments.io.files.DamagedFile`."""
    root = Path(root)
    stages = _read(root)["stages"]
    before = list(order)[: list(order).index(stage)] if stage in order else []
    removed, base, folders = [], f"{root}{os.sep}", {"": True}
    for name in [*before, stage]:
        for rel, entry in stages.get(name, {}).items():
            folder = rel.rpartition("/")[0]  # a missing folder: none of its files to check
            if folder not in folders:
                folders[folder] = os.path.isdir(base + folder)
            why = damage(base + rel, entry) if folders[folder] else None
            if why is None:
                continue
            if name != stage:
                raise DamagedFile(
                    root / rel,
                    f"damaged ({why})",
                    f"rerun the {name} stage to recompute it: {rerun(root, name)}",
                )
            say(f"{root / rel}: damaged ({why}); recomputing it")
            check_inside(root, root / rel)  # no link made since the manifest was read
            (root / rel).unlink()
            removed.append(rel)
    return removed


def clean(root: str | Path) -> list[Path]:
    """Remove what killed writers left under ``root``: temporary files of atomic writes, and
    block files of maps whose final file exists. Call it only while nothing else writes there."""
    root = Path(root)
    removed = remove_temporaries(root)
    maps = root / "maps"
    if maps.is_dir():
        for block in sorted(maps.rglob("*.block*.pt")):
            if BLOCK.search(block.name) and block.with_name(BLOCK.sub("", block.name)).is_file():
                block.unlink(missing_ok=True)
                removed.append(block)
    return removed

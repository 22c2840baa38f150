"""What each stage wrote, with sizes and hashes, so that a later run trusts no damaged file.

Stages skip work whose output file exists, and read the files of the stages before them. Files
are written atomically (:mod:`.io`), so a kill never leaves half a file; but a file can still be
cut or changed afterwards (a full disk while copying a run, an editor, a bad sync). So when a
stage finishes, :func:`record` writes ``manifest.json`` last: for that stage, each output file's
size and SHA-256. The manifest also keeps the text of the config the run is made with
(:func:`record_config`), so that an edited ``config.toml`` is found (``stages.prepare``). Before
a stage runs, :func:`check` verifies the files recorded for it and for
the stages before it:

* a damaged file of the stage itself is deleted (one line says so) and the stage recomputes it;
* a damaged file of an earlier stage is refused with one line naming the stage that rewrites it.

Every path in the manifest must name an output file of its stage inside the run directory (no
absolute path, no ``..``, nothing a link leads out of): a manifest naming anything else is refused
as damaged, so that the manifest never makes a stage delete a file the run did not write. A
file whose size and modification time are those recorded is not hashed again. Files no stage
has recorded (a run killed before its manifest, or made by an older version) are not checked.
:func:`clean` removes what killed writers leave: temporary files, and block files whose map
was joined.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from smoothstab.experiments.io import (
    DamagedFile,
    is_temporary,
    read_json,
    remove_temporaries,
    write_json,
)
from smoothstab.experiments.progress import say

MANIFEST = "manifest.json"
VERSION = 1
# Each stage's output files, as globs relative to the run directory (see :mod:`.rundir`).
OUTPUTS: dict[str, tuple[str, ...]] = {
    "train": ("splits.json", "val_split.json", "model_*.pt", "train_metrics.json"),
    "attribute": ("test_images.pt", "maps/model*/*/r*.pt"),
    "evaluate": ("metrics.csv", "table1.csv", "recommendation.json"),
    "figures": ("figures/*.png",),
    "bounds": ("bounds.json", "bounds.md", "figures/bounds.png"),
    "report": ("report.md", "report.html"),
}
# Files a glob above matches that belong to another stage.
NOT_OWNED: dict[str, tuple[str, ...]] = {"figures": ("figures/bounds.png",)}
BLOCK = re.compile(r"\.block\d+(?=\.pt$)")
# What to do when the run's own record cannot be trusted: start over beside it.
NEW_RUN = "start a new run directory (smoothstab run {root}/config.toml --out NEW_DIR)"


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


def owned(root: Path, stage: str, rel: object) -> bool:
    """``rel`` names an output file of ``stage`` inside ``root``: a relative POSIX path without
    ``..`` that one of the stage's globs matches part by part, and that stays inside ``root``
    once links are resolved."""
    if not isinstance(rel, str) or not rel or rel in NOT_OWNED.get(stage, ()):
        return False
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or path.as_posix() != rel:
        return False
    if BLOCK.search(path.name) or is_temporary(Path(rel)):
        return False
    matched = any(
        len(glob.parts) == len(path.parts) and all(map(fnmatch.fnmatchcase, path.parts, glob.parts))
        for glob in map(PurePosixPath, OUTPUTS.get(stage, ()))
    )
    return matched and (root / rel).resolve().is_relative_to(root.resolve())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _entry(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256(path)}


def load(root: str | Path) -> dict[str, dict[str, dict]]:
    """``{stage: {relative path: {size, mtime_ns, sha256}}}``; a missing or unreadable
    manifest is empty (nothing is checked then)."""
    return _read(Path(root))["stages"]


def made_with(root: str | Path) -> str | None:
    """The text of the config the run's recorded files were made with (``None``: not recorded,
    a manifest of an older version)."""
    return _read(Path(root)).get("config")


def _read(root: Path) -> dict:
    path = root / MANIFEST
    empty = {"stages": {}}
    if not path.is_file():
        return empty
    try:
        data = read_json(path, "a manifest")
    except DamagedFile:
        return empty
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return empty
    stages = data.get("stages")
    if not isinstance(stages, dict):
        return empty
    for stage, entries in stages.items():
        for rel in entries if isinstance(entries, dict) else ():
            if not owned(root, stage, rel):
                raise DamagedFile(
                    f"{path}: damaged (the {stage} stage lists {rel!r}, which is none of its "
                    f"files in the run directory); {NEW_RUN.format(root=root)}"
                )
    config = data.get("config")
    return {"stages": stages, **({"config": config} if isinstance(config, str) else {})}


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


def damage(path: Path, entry: dict) -> str | None:
    """Why ``path`` differs from its manifest ``entry``; ``None`` when it matches or is gone
    (a match found by hashing updates ``entry["mtime_ns"]``)."""
    if not path.is_file():
        return None
    st = path.stat()
    if st.st_size != entry.get("size"):
        return f"{st.st_size} bytes, {entry.get('size')} were written"
    if st.st_mtime_ns == entry.get("mtime_ns"):
        return None
    if sha256(path) != entry.get("sha256"):
        return "its SHA-256 differs from the one written"
    entry["mtime_ns"] = st.st_mtime_ns  # verified: no need to hash it again
    return None


def check(root: str | Path, stage: str, order: Sequence[str]) -> list[str]:
    """Verify the recorded files of ``stage`` and of the stages before it in ``order``.

    Damaged files of ``stage`` are deleted, so that it recomputes them; their relative paths
    are returned. A damaged file of an earlier stage raises :class:`~.io.DamagedFile`."""
    root = Path(root)
    data = _read(root)
    stages = data["stages"]
    before = list(order)[: list(order).index(stage)] if stage in order else []
    removed, refreshed = [], False
    for name in [*before, stage]:
        for rel, entry in stages.get(name, {}).items():
            mtime = entry.get("mtime_ns")
            why = damage(root / rel, entry)
            refreshed |= entry.get("mtime_ns") != mtime
            if why is None:
                continue
            if name != stage:
                raise DamagedFile(
                    f"{root / rel}: damaged ({why}); rerun the {name} stage to recompute it "
                    f"(smoothstab {name} {root}, or smoothstab run)"
                )
            say(f"{root / rel}: damaged ({why}); recomputing it")
            (root / rel).unlink()
            removed.append(rel)
    if refreshed:
        _save(root, data)  # verified by hash: not hashed again next time
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

"""Files that say what they are: a record of what a file holds, sealed with a hash of its content,
checked against what the reader expects before anything is used.

The attribute stage writes its work block by block (:mod:`~smoothstab.experiments.rundir.blockfile`,
:mod:`~smoothstab.experiments.rundir.mapfile`), while the stage runs and before the manifest records
anything; a resumed stage, the join and the later stages read those files back. A file copied into
another's place (a block of another r, image block or run) or changed by a bit on disk must not be
read as the one expected. So each such file is a plain dict (loaded with ``weights_only=True``)
holding its fields, among them what it is (method, r, sigma, model, image range, seed, ...), and
``sha256``: :func:`digest` of every other field, tensors by their dtype, shape and bytes. Reading
checks the seal (:func:`check_seal`), then each field the reader expects (:func:`check_fields`);
either failing is one :class:`~smoothstab.experiments.io.files.DamagedFile` line.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from smoothstab.experiments.io.files import DamagedFile

SEAL = "sha256"


def _feed(h: hashlib._Hash, value: Any) -> None:
    """``value`` into ``h``, unambiguously: a type tag, then the content."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        h.update(f"D{len(value)}".encode())
        for key in sorted(value, key=str):
            _feed(h, str(key))
            _feed(h, value[key])
    elif isinstance(value, list | tuple):
        h.update(f"L{len(value)}".encode())
        for item in value:
            _feed(h, item)
    else:  # str, int, float, bool, None: JSON spells each one way (floats by their repr)
        h.update(b"V" + json.dumps(value).encode() + b";")


def digest(fields: Mapping[str, Any]) -> str:
    """The SHA-256 of ``fields`` (but the seal itself): names, plain values and tensors."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in fields.items() if k != SEAL})
    return h.hexdigest()


def sealed(fields: Mapping[str, Any]) -> dict:
    """``fields`` with their seal."""
    return {**fields, SEAL: digest(fields)}


def check_seal(path: str | Path, saved: Any, what: str) -> dict:
    """``saved`` (what ``path`` loaded to) if it is a dict whose seal matches its content."""
    if not isinstance(saved, dict) or not isinstance(saved.get(SEAL), str):
        raise DamagedFile(path, f"not {what} of this version (no record of what it holds)")
    if digest(saved) != saved[SEAL]:
        raise DamagedFile(path, "damaged (its content does not match the SHA-256 it records)")
    return saved


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, float) or isinstance(got, float):
        numbers = all(isinstance(v, int | float) for v in (got, want))
        return numbers and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(want, list | tuple):
        return (
            isinstance(got, list | tuple) and len(got) == len(want) and all(map(_same, got, want))
        )
    return got == want


def check_fields(path: str | Path, saved: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Each field of ``expected`` as ``saved`` records it (floats to 1e-9): else one line naming
    the first that differs, what the file holds and what belongs here."""
    for key, want in expected.items():
        got = saved.get(key)
        if not _same(got, want):
            raise DamagedFile(
                path,
                f"holds {key} = {_short(got)}, not {_short(want)} (a file of another place or "
                "another run)",
            )


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

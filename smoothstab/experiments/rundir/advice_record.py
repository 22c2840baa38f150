"""``recommendation.json``'s typed record: the evaluate stage's advice on sigma, per method and
training-set size, with its intervals (:class:`~smoothstab.experiments.analysis.advice.Advice`,
computed by :func:`~smoothstab.experiments.analysis.advice.advise`). :func:`write_advice` is the
one writer and :func:`read_advice` the one reader, checked; the report and the figures read the
record instead of computing the advice again."""

from __future__ import annotations

from pathlib import Path

from smoothstab.experiments.analysis.advice import VERSION, Advice
from smoothstab.experiments.io.files import DamagedFile, read_json, write_json


def write_advice(path: str | Path, advice: Advice) -> Path:
    return write_json(path, advice.to_json())


def read_advice(path: str | Path) -> Advice:
    """``recommendation.json`` as :func:`write_advice` wrote it; a damaged file, or one from
    before the advice had intervals, is one :class:`~smoothstab.experiments.io.files.DamagedFile`
    line."""
    data = read_json(path, "recommendation.json")
    try:
        return Advice.from_json(data)
    except (TypeError, ValueError, KeyError) as e:
        raise DamagedFile(
            path,
            f"not a recommendation.json of version {VERSION} ({e}); rerun the evaluate stage",
        ) from None

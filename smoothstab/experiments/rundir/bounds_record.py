"""``bounds.json``'s typed record: the numbers :mod:`~smoothstab.experiments.stages.bounds_stage`
computes, which the bounds page (:mod:`~smoothstab.experiments.pages.bounds_page`) and
:func:`~smoothstab.experiments.stages.figures.bounds_figure` read by attribute.

:meth:`Bounds.to_json` is the file's content (keys in the order the file has always had them:
the stability numbers flat at the top level after ``by_n``, absent without stability bounds),
:func:`read_bounds` reads it back checked. Every bound is given by its log10; measured errors
are ``None`` where the run has none.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smoothstab.experiments.io.files import DamagedFile, first_line, read_json

VERSION = 2  # of bounds.json; an older file is not rendered (delete it and rerun the stage)


@dataclass(frozen=True)
class SigmaRow:
    """One noise level: the measured errors beside Theorem 6's and Proposition 7's bounds."""

    r: float
    sigma: float  # as the run recorded it
    stability_grad: float | None
    stability_bound_log10: float | None  # None without stability bounds
    stability_bound_vacuous: bool | None
    fidelity_grad: float | None
    fidelity_bound_grad_log10: float
    fidelity_bound_grad_vacuous: bool
    fidelity_ig: float | None
    fidelity_bound_ig_log10: float
    trivial_ig_log10: float
    fidelity_bound_ig_vacuous: bool


@dataclass(frozen=True)
class SizeRow:
    """Theorem 5 (Simple-Grad, r = 0) at one training-set size, beside the measured error."""

    n: int
    T: int
    c: float
    simplegrad_log10: float
    vacuous: bool
    stability_grad: float | None
    stability_grad_debiased: float | None


@dataclass(frozen=True)
class OtherUnit:
    """Theorem 5 with SGD steps counted in the unit the run did not choose."""

    step_unit: str
    T: int
    c: float
    simplegrad_log10: float


@dataclass(frozen=True)
class Recipe:
    """What of the training recipe the page discusses."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float


@dataclass(frozen=True)
class Theorem6:
    """Where Theorem 6's curve bends
    (:func:`~smoothstab.experiments.stages.bounds_stage.theorem6_shape`), in log10."""

    sigma_star_log10: float
    r_star_log10: float
    grid_reaches: bool
    clip_binds_in_grid: bool
    drop_log10: float
    flat: bool
    sigma_half_log10: float | None
    r_half_log10: float | None


@dataclass(frozen=True)
class Stability:
    """Theorems 5-6 (setting DT): at the largest training-set size ``n``, and per size in
    ``by_n``."""

    step_unit: str
    n: int
    T: int
    c: float
    beta: float
    q: float
    exponent: float
    simplegrad_log10: float
    simplegrad_vacuous: bool
    other_unit: OtherUnit
    train: Recipe
    theorem6: Theorem6
    by_n: tuple[SizeRow, ...]


@dataclass(frozen=True)
class Bounds:
    """The bounds page's numbers; ``stability`` is ``None`` where only Proposition 7's
    fidelity bounds apply."""

    C: float
    m: int
    norms: tuple[float, ...]
    x_range: float
    heuristic: bool
    reasons: tuple[str, ...]
    measured: str  # "debiased" or "plain"
    trivial_log10: float
    rows: tuple[SigmaRow, ...]
    stability: Stability | None = None

    def to_json(self) -> dict[str, Any]:
        """``bounds.json``'s content."""
        s = self.stability
        out: dict[str, Any] = {"version": VERSION}
        out.update({name: _plain(getattr(self, name)) for name in _FIELDS})
        out["by_n"] = [] if s is None else _plain(s.by_n)
        if s is not None:
            out.update({name: _plain(getattr(s, name)) for name in _STABILITY_FIELDS})
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bounds:
        """The record :meth:`to_json` wrote (a TypeError or KeyError where it is none)."""
        stability = None
        if "T" in data:  # written only with stability bounds
            stability = Stability(
                **{
                    name: _RECORDS[name](**data[name]) if name in _RECORDS else data[name]
                    for name in _STABILITY_FIELDS
                },
                by_n=tuple(SizeRow(**row) for row in data["by_n"]),
            )
        return cls(
            **{name: data[name] for name in _FIELDS if name not in ("norms", "reasons", "rows")},
            norms=tuple(data["norms"]),
            reasons=tuple(data["reasons"]),
            rows=tuple(SigmaRow(**row) for row in data["rows"]),
            stability=stability,
        )


_FIELDS = tuple(f.name for f in dataclasses.fields(Bounds) if f.name != "stability")
_STABILITY_FIELDS = tuple(f.name for f in dataclasses.fields(Stability) if f.name != "by_n")
_RECORDS = {"other_unit": OtherUnit, "train": Recipe, "theorem6": Theorem6}  # of Stability


def _plain(value: Any) -> Any:
    """A record as JSON holds it: dataclasses as dicts, tuples as lists."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def read_bounds(path: str | Path) -> Bounds | None:
    """``bounds.json`` as :meth:`Bounds.to_json` wrote it; ``None`` for a file of an older
    version (not shown: the stage rewrites it once it is deleted); a damaged file is one
    :class:`~smoothstab.experiments.io.files.DamagedFile` line."""
    data = read_json(path, "bounds.json")
    if isinstance(data, dict) and data.get("version") != VERSION:
        return None
    try:
        return Bounds.from_json(data)
    except (TypeError, KeyError) as e:
        why = f"{type(e).__name__}: {first_line(e)}"
        raise DamagedFile(path, f"not a bounds.json of this version ({why})") from None

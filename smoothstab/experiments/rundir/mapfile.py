"""The map file: one model's maps of one method at one noise level, for the run's test images.

The attribute stage writes one per model, method and r (``maps/model{k}/{method}/r{r:.6f}.pt`` in
the run directory, :mod:`~smoothstab.experiments.rundir.layout`), atomically
(:mod:`~smoothstab.experiments.io.files`); the evaluate stage reads them. A file holds a plain dict
of the record's fields (:meth:`MapFile.record`), not the class, so loading one needs no class path.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

from smoothstab.experiments.io.files import DamagedFile, load_torch, save_torch
from smoothstab.stats import SmoothStats


@dataclass(frozen=True)
class MapFile:
    """One model's maps of one method at one noise level, for the run's test images.

    Attributes:
        mean: the (smoothed) maps ``[N, ...]``.
        r, sigma: the noise level and its absolute std (0 for the unsmoothed maps).
        n_units, halves, unit_var, units, converged, groups: those of the maps'
            :class:`~smoothstab.stats.SmoothStats`, kept as they are (``None`` at r = 0); the
            halves, unit variances and groups (:data:`DEBIAS_FIELDS`) only when debiased
            distances are asked for.
        rel_se: ``[N]`` each map's relative Monte-Carlo standard error (0 at r = 0).
        evals: ``[N]`` model evaluations each map took.
    Files from before ``rel_se``/``evals`` existed load with them ``None``; files that kept the
    variance of the mean (``mean_var``) load with it turned into ``unit_var``.
    """

    mean: torch.Tensor
    r: float
    sigma: float
    n_units: int | None = None
    halves: torch.Tensor | None = None
    unit_var: torch.Tensor | None = None
    rel_se: torch.Tensor | None = None
    evals: torch.Tensor | None = None
    units: torch.Tensor | None = None
    converged: torch.Tensor | None = None
    groups: torch.Tensor | None = None

    @classmethod
    def from_stats(
        cls, stats: SmoothStats, r: float, sigma: float, *, keep: bool, per_sample: int = 1
    ) -> MapFile:
        """The file of a smoothed method's stats; unsmoothed (r = 0) maps keep only the mean,
        their cost (``per_sample`` evaluations) and a zero error. ``per_sample``: model
        evaluations per draw (IG's quadrature points when nested)."""
        n = len(stats.mean)
        if r == 0:
            return cls(
                stats.mean.cpu(), r, 0.0, rel_se=torch.zeros(n), evals=torch.full((n,), per_sample)
            )
        kept = {
            name: value.cpu() if isinstance(value, torch.Tensor) else value
            for name in _STATS_FIELDS
            if keep or name not in DEBIAS_FIELDS
            if (value := getattr(stats, name)) is not None
        }
        evals = (stats.draws_per_image * per_sample).cpu()
        return cls(r=r, sigma=sigma, rel_se=stats.rel_se.cpu(), evals=evals, **kept)

    def estimate(self) -> SmoothStats | torch.Tensor:
        """What distances take: SmoothStats when halves were kept, else the plain maps."""
        if self.halves is None:
            return self.mean
        kept = {name: getattr(self, name) for name in _STATS_FIELDS}
        if self.units is not None:
            kept["units"] = self.units.round().long()
        return SmoothStats(mean_sq=None, **kept)

    def record(self) -> dict:
        """What :meth:`save` writes: every field that is set, by name."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}

    def save(self, path: Path) -> Path:
        return save_torch(path, self.record())

    @classmethod
    def load(cls, path: Path) -> MapFile:
        saved = load_torch(path, "a map file")
        try:
            if "mean_var" in saved:  # written before unit_var was kept as the stats have it
                saved["unit_var"] = _unit_var(saved.pop("mean_var"), saved)
            return cls(**saved)
        except (TypeError, KeyError):
            raise DamagedFile(path, "not a map file of this version") from None

    @classmethod
    def join(cls, blocks: list[MapFile]) -> MapFile:
        """Blocks of consecutive test images, as one file."""
        head = blocks[0]
        joined = {}
        for f in fields(cls):
            value = getattr(head, f.name)
            if isinstance(value, torch.Tensor):
                dim = 1 if f.name in _GROUPED else 0
                value = torch.cat([getattr(b, f.name) for b in blocks], dim=dim)
            joined[f.name] = value
        if head.n_units is not None:
            joined["n_units"] = max(b.n_units for b in blocks)
        return cls(**joined)


DEBIAS_FIELDS = ("halves", "unit_var", "groups")
"""What a map file keeps of the stats only when the run debiases distances."""
_STATS_FIELDS = tuple(f.name for f in fields(SmoothStats) if f.name in MapFile.__dataclass_fields__)
_GROUPED = ("halves", "groups")  # [halves or groups, N, ...]: the images are the second dim


def _unit_var(mean_var: torch.Tensor, saved: dict) -> torch.Tensor:
    """An old file's ``mean_var`` (``unit_var / n``) as ``unit_var``, ``n`` each image's units."""
    units = saved.get("units")
    n = saved["n_units"] if units is None else _per_unit_view(units.round().long(), mean_var)
    return mean_var * n


def _per_unit_view(units: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return units.to(like.dtype).view((-1,) + (1,) * (like.ndim - 1))

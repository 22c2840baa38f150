"""The map file: one model's maps of one method at one noise level, for a range of the run's test
images, kept when the run asks for them (``[maps] keep``).

The attribute stage computes maps block by block and measures them while they are in memory
(:mod:`~smoothstab.experiments.analysis.per_image`); it keeps them on disk only with ``keep =
"means"`` (the mean maps) or ``keep = "all"`` (with the Monte-Carlo halves, variances and groups:
what measuring them again needs). Then each block is written as it finishes
(``maps/model{k}/{method}/r{r:.6f}.block{b}.pt``) and the blocks are joined into the final file
(``maps/model{k}/{method}/r{r:.6f}.pt``; :mod:`~smoothstab.experiments.rundir.layout`), atomically
(:mod:`~smoothstab.experiments.io.files`). In memory the same record is what the stage measures
(:meth:`MapFile.from_stats` keeps the stats on their device; :meth:`MapFile.estimate` is what
distances take), so a kept file and the rows made from it say the same thing.

A file holds a plain dict of the record's fields (:meth:`MapFile.record`), not the class, so loading
one needs no class path; the dict says what it is (method, model, r, sigma, image range, block,
seeds) and is sealed with a hash of its content (:mod:`~smoothstab.experiments.rundir.seal`), so a
block of another place or a flipped bit is refused before a block is joined or a file is used.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from smoothstab.experiments.io.files import DamagedFile, load_torch, save_torch
from smoothstab.experiments.rundir.seal import check_fields, check_seal, sealed
from smoothstab.stats import SmoothStats
from smoothstab.views import abs_sum

VIEWS = ("map", "abs")  # the maps as computed, or the 2-D sum over channels of |map|
PRECISIONS = ("float32", "float16")


@dataclass(frozen=True)
class MapFile:
    """One model's maps of one method at one noise level, for the test images ``images``.

    Attributes:
        mean: the (smoothed) maps ``[N, ...]``.
        r, sigma: the noise level and its absolute std (0 for the unsmoothed maps).
        n_units, halves, unit_var, units, converged, groups: those of the maps'
            :class:`~smoothstab.stats.SmoothStats`, kept as they are (``None`` at r = 0); the
            halves, unit variances and groups (:data:`DEBIAS_FIELDS`) only when debiased
            distances are asked for.
        rel_se: ``[N]`` each map's relative Monte-Carlo standard error (0 at r = 0).
        evals: ``[N]`` model evaluations each map took.
        method, model: what the maps are of.
        images: ``(first, stop)``: the test images ``first .. stop - 1`` it holds.
        block: the image block it is (``None``: blocks joined).
        seeds: the noise seed of each image block it holds.
        view: ``map`` (as computed) or ``abs`` (the 2-D ``sum_c |map_c|`` view the figures
            draw); ``precision`` the float type of ``mean`` on disk.
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
    method: str | None = None
    model: int | None = None
    images: tuple[int, int] | None = None
    block: int | None = None
    seeds: tuple[int, ...] | None = None
    view: str = "map"
    precision: str | None = None

    @classmethod
    def from_stats(
        cls, stats: SmoothStats, r: float, sigma: float, *, keep: bool, per_sample: int = 1
    ) -> MapFile:
        """The record of a smoothed method's stats, on their device; unsmoothed (r = 0) maps keep
        only the mean, their cost (``per_sample`` evaluations) and a zero error. ``keep``: also
        the halves, variances and groups (the run debiases). ``per_sample``: model evaluations
        per draw (IG's quadrature points when nested)."""
        n, device = len(stats.mean), stats.mean.device
        if r == 0:
            evals = torch.full((n,), per_sample, device=device)
            return cls(stats.mean, r, 0.0, rel_se=torch.zeros(n, device=device), evals=evals)
        kept = {
            name: value
            for name in _STATS_FIELDS
            if keep or name not in DEBIAS_FIELDS
            if (value := getattr(stats, name)) is not None
        }
        evals = stats.draws_per_image * per_sample
        return cls(r=r, sigma=sigma, rel_se=stats.rel_se, evals=evals, **kept)

    def estimate(self) -> SmoothStats | torch.Tensor:
        """What distances take: SmoothStats when halves were kept, else the plain maps."""
        if self.halves is None:
            return self.mean
        kept = {name: getattr(self, name) for name in _STATS_FIELDS}
        if self.units is not None:
            kept["units"] = self.units.round().long()
        return SmoothStats(mean_sq=None, **kept)

    def identity(self) -> dict[str, Any]:
        """What the file is: the fields a reader checks before using it."""
        return {name: _plain(getattr(self, name)) for name in IDENTITY}

    def means_only(self, precision: str = "float32", view: str = "map") -> MapFile:
        """The mean maps alone (with their cost and error), in ``precision`` and ``view``."""
        stats = {name: None for name in _STATS_FIELDS if name != "mean"}
        mean = stored(self.mean, precision, view)
        return replace(self, **stats, mean=mean, view=view, precision=precision)

    def record(self) -> dict:
        """What :meth:`save` writes: every field that is set, by name, on the CPU, sealed."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = value.cpu() if isinstance(value, torch.Tensor) else _plain(value)
        return sealed(out)

    def save(self, path: Path) -> Path:
        return save_torch(path, self.record())

    @classmethod
    def load(cls, path: Path, expected: dict[str, Any] | None = None) -> MapFile:
        """The file at ``path``, its seal checked, and each field of ``expected`` (see
        :meth:`identity`) as it records it; else one
        :class:`~smoothstab.experiments.io.files.DamagedFile` line."""
        saved = dict(check_seal(path, load_torch(path, "a map file"), "a map file"))
        check_fields(path, saved, expected or {})
        saved.pop("sha256")
        for name in ("images", "seeds"):
            if isinstance(saved.get(name), list):
                saved[name] = tuple(saved[name])
        try:
            return cls(**saved)
        except TypeError:
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
        if head.images is not None:
            joined["images"] = (head.images[0], blocks[-1].images[1])
            joined["seeds"] = tuple(s for b in blocks for s in b.seeds or ())
        return cls(**{**joined, "block": None})


DEBIAS_FIELDS = ("halves", "unit_var", "groups")
"""What a map file keeps of the stats only when the run debiases distances."""
IDENTITY = ("method", "model", "r", "sigma", "images", "block", "seeds", "view", "precision")
"""The fields that say what a map file is."""
_STATS_FIELDS = tuple(f.name for f in fields(SmoothStats) if f.name in MapFile.__dataclass_fields__)
_GROUPED = ("halves", "groups")  # [halves or groups, N, ...]: the images are the second dim


def stored(maps: torch.Tensor, precision: str, view: str) -> torch.Tensor:
    """Maps ``[B, C, H, W]`` as a file keeps them: in ``view`` (``abs``: ``[B, 1, H, W]``, the
    sum over channels of ``|map|``, what the figures draw) and ``precision``, contiguous."""
    if view == "abs":  # abs_sum's view, for a block without figure images too (no image)
        maps = abs_sum(maps)[:, None] if len(maps) else maps[:, :1]
    return maps.to(getattr(torch, precision)).contiguous()


def _plain(value: Any) -> Any:
    """Tuples as lists: what a file stores and a reader compares."""
    return list(value) if isinstance(value, tuple) else value

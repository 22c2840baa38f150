"""The block file: what the attribute stage keeps of one image block of one method.

The stage computes an image block's maps, every model at every noise level, measures them while
they are in memory (:mod:`~smoothstab.experiments.analysis.per_image`) and keeps this file
(``blocks/{method}/block{b:05d}.pt``, :mod:`~smoothstab.experiments.rundir.layout`): the block's
rows, one value per image for each row group (a measure of a model pair or model at one r), and the
mean maps of the block's *figure images* (the few test images the figures draw,
:func:`~smoothstab.experiments.models.recipe.figure_images`), every model at every r. The evaluate
stage joins the rows of every block into the metrics table; the figures read the maps. A finished
block is the unit a killed run resumes from.

Like a map file, it is a plain dict that says what it is (method, block, image range, noise levels
and their sigmas, models, every model's seed at every level, the run's config digest, how the maps
are stored) and is sealed with a hash of its content (:mod:`~smoothstab.experiments.rundir.seal`):
a block of another place or run, or a flipped bit, is refused before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from smoothstab.experiments.io.files import DamagedFile, load_torch, save_torch
from smoothstab.experiments.rundir.seal import check_fields, check_seal, sealed

KIND = "block"
IDENTITY = ("method", "block", "images", "rs", "sigmas", "models", "seeds", "run", "view",
            "precision")  # fmt: skip
"""The fields that say what a block file is."""
ROW_FIELDS = ("metric", "r", "pair", "model")  # one entry per row group


@dataclass(frozen=True)
class BlockFile:
    """One image block of one method, as the attribute stage measured it.

    Attributes:
        method, block: what it is of; ``images``: ``(first, stop)``, the test images ``first ..
            stop - 1``.
        rs, sigmas: the noise levels and their absolute stds; ``models``: how many models.
        seeds: ``seeds[k][i]``, model ``k``'s noise seed at ``rs[i]``.
        run: the digest of the run's config
            (:func:`~smoothstab.experiments.models.recipe.run_digest`).
        metric, r, pair, model: per row group, its metric, noise level, model pair (``"i-j"``) or
            model (``"k"``), the other ``""``.
        values, stderr: ``[G, B]`` float64, each row group's value per image and its Monte-Carlo
            standard error (NaN where the group has none: ``has_stderr``).
        figure_images: the figure images in this block (indices among the run's test images);
            ``figure_maps`` ``[models, levels, len(figure_images), C, H, W]`` their mean maps,
            in ``view`` and ``precision`` (:func:`~smoothstab.experiments.rundir.mapfile.stored`).
        extreme_images: the block's images whose unsmoothed maps disagree most and least across
            the models and are least and most reliable (indices among the run's test images);
            ``extreme_maps`` ``[levels, len(extreme_images), 2, H, W]`` at every r, the
            ``abs_sum`` view of the mean of the models' unit maps and the disagreement map
            (:func:`smoothstab.disagreement.disagreement_map`), float16, averaged down to at most
            64 pixels a side.
    """

    method: str
    block: int
    images: tuple[int, int]
    rs: tuple[float, ...]
    sigmas: tuple[float, ...]
    models: int
    seeds: tuple[tuple[int, ...], ...]
    run: str
    metric: tuple[str, ...]
    r: tuple[float, ...]
    pair: tuple[str, ...]
    model: tuple[str, ...]
    has_stderr: tuple[bool, ...]
    values: torch.Tensor
    stderr: torch.Tensor
    figure_images: tuple[int, ...]
    figure_maps: torch.Tensor
    view: str
    precision: str
    extreme_images: tuple[int, ...]
    extreme_maps: torch.Tensor

    def extreme(self, r: float, image: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean unit map's view and the disagreement map ``[H, W]`` of one of the block's
        :attr:`extreme_images` at ``r``."""
        both = self.extreme_maps[self.rs.index(r), self.extreme_images.index(image)]
        return both[0], both[1]

    def identity(self) -> dict[str, Any]:
        return {name: _plain(getattr(self, name)) for name in IDENTITY}

    def groups(self) -> list[tuple]:
        """Each row group's ``(metric, r, pair, model, has_stderr)``."""
        return list(zip(self.metric, self.r, self.pair, self.model, self.has_stderr, strict=True))

    def figure_map(self, model: int, r: float, image: int) -> torch.Tensor:
        """Model ``model``'s map of test image ``image`` at ``r``: ``[C, H, W]``."""
        return self.figure_maps[model, self.rs.index(r), self.figure_images.index(image)]

    def record(self) -> dict:
        out = {"kind": KIND}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.cpu() if isinstance(value, torch.Tensor) else _plain(value)
        return sealed(out)

    def save(self, path: Path) -> Path:
        return save_torch(path, self.record())

    @classmethod
    def load(cls, path: Path, expected: dict[str, Any] | None = None) -> BlockFile:
        """The file at ``path``, its seal checked, and each field of ``expected`` (see
        :meth:`identity`) as it records it; else one
        :class:`~smoothstab.experiments.io.files.DamagedFile` line."""
        saved = dict(check_seal(path, load_torch(path, "a block file"), "a block file"))
        if saved.pop("kind", None) != KIND:
            raise DamagedFile(path, "not a block file")
        check_fields(path, saved, expected or {})
        saved.pop("sha256")
        try:
            out = {f.name: _tuple(saved.pop(f.name)) for f in fields(cls)}
        except KeyError as e:
            raise DamagedFile(path, f"not a block file of this version (no {e})") from None
        g, b = len(out["metric"]), out["images"][1] - out["images"][0]
        shapes = (out["values"].shape, out["stderr"].shape)
        if (
            any(len(out[name]) != g for name in (*ROW_FIELDS, "has_stderr"))
            or shapes != ((g, b),) * 2
        ):
            raise DamagedFile(path, "not a block file of this version (its rows do not line up)")
        return cls(**out)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuple(v) for v in value)
    return value

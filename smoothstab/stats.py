"""What a Monte-Carlo smoothing returns: :class:`SmoothStats`, per image, and the relative error.

The record every caller reads (distances, standard errors, map files, tolerances) lives here, apart
from the engine that fills it (:mod:`smoothstab.montecarlo`), so that code reading results does
not import the sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smoothstab import reprs
from smoothstab.checks import check_choice
from smoothstab.renames import warn_renamed

REDUCTIONS = ("mean", "mean_sq", "var")


@dataclass(frozen=True)
class SmoothStats:
    """Monte-Carlo summary of a smoothed map, per image (all ``[B, ...]`` unless said).

    Two counts: a *draw* is one draw of the noise; a *unit* is what is independent, one draw,
    or an antithetic pair of draws. Standard errors count units (``n_units``, ``units``,
    :attr:`units_per_image`); the cost counts draws (``draws_per_unit``,
    :attr:`draws_per_image`).

    Attributes:
        mean: the smoothed map, the mean over all samples.
        mean_sq: the mean of squared per-sample maps (``None`` if not kept).
        halves: ``[2, B, ...]``, the means of the two independent halves (``None`` if one unit).
        unit_var: unbiased per-element variance of the independent unit means (``None`` if one).
        n_units: number of independent units (samples, or antithetic pairs); with a tolerance,
            the most any image used.
        units: ``[B]`` units each image used, when they differ between images (a tolerance);
            ``None`` when every image used ``n_units``.
        converged: ``[B]`` bool, whether each image met the tolerance (``None`` without one).
        draws_per_unit: draws per unit (2 for antithetic pairs, else 1).
        groups: ``[G, B, ...]`` means of ``G`` interleaved groups of units (unit ``j`` in group
            ``j % G``), kept when asked for more than the two halves (``None`` otherwise): with
            ``G - 1`` degrees of freedom they give standard errors of any function of the maps
            that account for the correlation between elements.
    """

    mean: torch.Tensor
    mean_sq: torch.Tensor | None
    halves: torch.Tensor | None
    unit_var: torch.Tensor | None
    n_units: int
    units: torch.Tensor | None = None
    converged: torch.Tensor | None = None
    draws_per_unit: int = 1
    groups: torch.Tensor | None = None

    @property
    def var(self) -> torch.Tensor:
        """Per-element variance over samples (population form, as Captum's ``vargrad``)."""
        return (self.mean_sq - self.mean**2).clamp(min=0)

    @property
    def units_per_image(self) -> torch.Tensor:
        """``[B]`` independent units each image used (long, on the maps' device)."""
        if self.units is not None:
            return self.units
        return torch.full((self.mean.shape[0],), self.n_units, device=self.mean.device)

    @property
    def draws_per_image(self) -> torch.Tensor:
        """``[B]`` draws of the noise each image used: units times ``draws_per_unit``."""
        return self.units_per_image * self.draws_per_unit

    @property
    def samples(self) -> torch.Tensor:
        """The old name of :attr:`draws_per_image`, until version 1.0."""
        _renamed("samples", "draws_per_image")
        return self.draws_per_image

    @property
    def per_unit(self) -> int:
        """The old name of :attr:`draws_per_unit`, until version 1.0."""
        _renamed("per_unit", "draws_per_unit")
        return self.draws_per_unit

    @property
    def mean_var(self) -> torch.Tensor | None:
        """Per-element variance of ``mean`` as an estimator: ``unit_var / n_units``, with each
        image's own unit count when they differ."""
        if self.unit_var is None:
            return None
        if self.units is None:
            return self.unit_var / self.n_units
        return self.unit_var / per_image(self.units, self.unit_var)

    @property
    def se(self) -> torch.Tensor | None:
        """Per-element Monte-Carlo standard error of ``mean``, ``sqrt(mean_var)`` (``[B, ...]``;
        ``None`` with one unit)."""
        v = self.mean_var
        return None if v is None else v.sqrt()

    @property
    def rel_se(self) -> torch.Tensor | None:
        """``[B]`` relative standard error of each image's map: the root-mean-square
        Monte-Carlo error ``||se||_2`` relative to the size of the exact map ``||E mean||_2``.

        ``||mean||^2`` overstates ``||E mean||^2`` by ``||se||^2`` on average, so the size is
        estimated as ``sqrt(max(||mean||^2 - ||se||^2, 0))``: the ratio then reads the true
        relative error ``t`` (``||se|| / ||mean||`` read ``t / sqrt(1 + t^2)``, under 1 however
        noisy the map). 0 where the map has no Monte-Carlo error, ``inf`` where the estimated
        size is 0 but the error is not (a map indistinguishable from 0 at these draws)."""
        v = self.mean_var
        if v is None:
            return None
        err_sq = v.flatten(1).sum(dim=1)
        size_sq = self.mean.flatten(1).norm(dim=1) ** 2 - err_sq
        return relative_error(err_sq, size_sq.clamp(min=0))

    @classmethod
    def exact(cls, value: torch.Tensor, n_units: int = 2) -> SmoothStats:
        """The summary of a map with no Monte-Carlo error (sigma = 0): both halves equal it."""
        return cls(
            value, value * value, torch.stack([value, value]), torch.zeros_like(value), n_units
        )

    def reduce(self, how: str) -> torch.Tensor:
        check_choice(how, "reduce", REDUCTIONS)
        return self.mean if how == "mean" else self.mean_sq if how == "mean_sq" else self.var

    def _draws(self) -> str:
        draws = self.draws_per_image
        low, high = int(draws.min()), int(draws.max())
        count = f"{low}" if low == high else f"{low} to {high}"
        unit = "" if self.draws_per_unit == 1 else " in antithetic pairs"
        kept = f", {len(self.groups)} groups kept" if self.groups is not None else ""
        met = ""
        if self.converged is not None:
            met = f", {int(self.converged.sum())} of {len(self.converged)} met the tolerance"
        return f"{count} draws per image{unit}{kept}{met}"

    def __repr__(self) -> str:
        """One line: the images and map shape, the draws, and per image the map's norm and
        relative standard error (means and ranges over images), not the tensors."""
        rel = self.rel_se
        err = "" if rel is None else f"; relative standard error {reprs.over_images(rel)}"
        norm = self.mean.detach().flatten(1).double().norm(dim=1)
        return (
            f"SmoothStats({self.mean.shape[0]} images, maps {reprs.shape(self.mean[0])} "
            f"{str(self.mean.dtype).removeprefix('torch.')}; {self._draws()}; map norm "
            f"{reprs.over_images(norm)}{err})"
        )

    def _repr_html_(self) -> str:
        """A table per image (map norm, relative standard error, draws) for notebooks."""
        norm = self.mean.detach().flatten(1).double().norm(dim=1)
        rows = reprs.image_rows([norm, self.rel_se, self.draws_per_image])
        title = (
            f"SmoothStats: {self.mean.shape[0]} maps {reprs.shape(self.mean[0])} "
            f"({str(self.mean.dtype).removeprefix('torch.')})"
        )
        header = ["image", "map norm", "relative standard error", "draws"]
        return reprs.table(title, header, rows, self._draws())


def _renamed(old: str, new: str) -> None:
    warn_renamed(f"SmoothStats.{old}", f"SmoothStats.{new}", stacklevel=3)


def relative_error(err_sq: torch.Tensor, norm_sq: torch.Tensor) -> torch.Tensor:
    """``sqrt(err_sq / norm_sq)`` per image: 0 where ``err_sq`` is 0, ``inf`` where only the
    norm is 0."""
    rel = (err_sq / norm_sq.where(norm_sq > 0, 1)).sqrt()
    return torch.where(norm_sq > 0, rel, torch.where(err_sq > 0, torch.inf, 0.0))


def per_image(counts: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[B]`` counts as ``[B, 1, ...]`` in ``like``'s dtype and device, to divide maps by."""
    return counts.to(device=like.device, dtype=like.dtype).view((-1,) + (1,) * (like.ndim - 1))

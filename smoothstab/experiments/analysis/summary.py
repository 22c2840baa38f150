"""``metrics.csv`` summarised: per (method, metric, r, n) the mean over images of each model pair
or model, then their mean and band, and the Monte-Carlo standard error of that mean. The file
itself is :mod:`smoothstab.experiments.rundir.metrics_table`."""

from __future__ import annotations

import math
from collections import defaultdict

from smoothstab.experiments.analysis.aggregate import Band, band
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.renames import warn_renamed

Key = tuple[str, str, float, int | None]  # (method, metric, r, training-set size n)


def _band(values: list[float], kind: str) -> Band:
    """:func:`~smoothstab.experiments.analysis.aggregate.band` of the units' means; where one is not
    finite (a map whose relative standard error is infinite: indistinguishable from 0 at its draws)
    the mean is that value and there is no band."""
    if all(math.isfinite(v) for v in values):
        return band(values, kind)
    mean = math.fsum(values) / len(values)
    return Band(mean, mean, mean)


def mean_of_correlated_se(se: list[float]) -> float:
    """The Monte-Carlo standard error of a mean over pairs (or models) with standard errors
    ``se``, bounded for any correlation between them: ``mean(se)`` (the standard deviation of a
    sum is at most the sum of the standard deviations). Pairs share models, and models share
    noise under common random numbers, so their errors are correlated, and the figure for
    independent ones, ``sqrt(sum se^2) / K``, understates it (0.83x the true error for the
    three pairs of three models in a test, where this bound read 1.42x). The bound overstates
    it by at most ``sqrt(K)`` and is exact for one pair or model."""
    return math.fsum(se) / len(se)


class Summary:
    """``metrics.csv`` summarised: per (method, metric, r, n) the mean over images for each pair or
    model, then their mean and band (:func:`~smoothstab.experiments.analysis.aggregate.band`), and
    the Monte-Carlo standard error of that mean where the rows carry one: over the images of a pair
    or model combined as independent (each image has its own draws), over pairs or models by the
    upper bound of :func:`mean_of_correlated_se`.

    ``n`` is the models' training-set size (``None`` for given checkpoints). Lookups without
    ``n`` use :attr:`default_n`, the largest size: the models trained on the most data.
    ``sigmas`` maps each r to the absolute sigma its maps were made with, as the rows record it
    (:meth:`sigma`).
    """

    def __init__(
        self,
        bands: dict[Key, Band],
        by_pair_or_model: dict[Key, dict[str, float]] | None = None,
        stderr: dict[Key, float] | None = None,
        sigmas: dict[float, float] | None = None,
    ) -> None:
        self.bands, self.stderr = bands, stderr or {}
        self.by_pair_or_model = by_pair_or_model or {}
        self.sigmas = sigmas or {}
        sizes = {key[3] for key in bands}
        self.sizes: list[int | None] = sorted(n for n in sizes if n is not None) or [None]
        self.default_n = self.sizes[-1]

    @classmethod
    def from_rows(cls, rows: list[dict], kind: str = "t95") -> Summary:
        values, ses, sigmas = defaultdict(list), defaultdict(list), {}
        for row in rows:
            if "sigma" in row:  # rows made by hand may lack it; metrics.csv has it
                sigmas[row["r"]] = row["sigma"]
            n = row.get("n", "")
            key = (row["method"], row["metric"], row["r"], int(n) if n != "" else None)
            who = row["pair"] or row["model"]
            values[key + (who,)].append(row["value"])
            if row.get("stderr", "") != "":
                ses[key + (who,)].append(float(row["stderr"]))
        means: dict[Key, dict[str, float]] = defaultdict(dict)
        mean_se: dict[Key, list[float]] = defaultdict(list)
        for (*key, who), vals in values.items():
            means[tuple(key)][who] = math.fsum(vals) / len(vals)
            if (*key, who) in ses:  # s.e. of a mean over images: sqrt(sum se_i^2) / N
                se = ses[(*key, who)]
                mean_se[tuple(key)].append(math.sqrt(math.fsum(v * v for v in se)) / len(se))
        bands = {key: _band(list(u.values()), kind) for key, u in means.items()}
        stderr = {key: mean_of_correlated_se(se) for key, se in mean_se.items()}
        return cls(bands, dict(means), stderr, sigmas)

    def _key(self, method: str, metric: Metric | str, r: float, n: int | None) -> Key:
        return (method, str(metric), r, self.default_n if n is None else n)

    def get(self, method: str, metric: Metric | str, r: float, n: int | None = None) -> Band | None:
        return self.bands.get(self._key(method, metric, r, n))

    def per_pair_or_model(
        self, method: str, metric: Metric | str, r: float, n: int | None = None
    ) -> dict[str, float]:
        """The mean over images of each pair (``"i-j"``) or model (``"k"``)."""
        return self.by_pair_or_model.get(self._key(method, metric, r, n), {})

    def per_unit(
        self, method: str, metric: Metric | str, r: float, n: int | None = None
    ) -> dict[str, float]:
        """The old name of :meth:`per_pair_or_model`, until version 1.0."""
        _renamed("per_unit", "per_pair_or_model")
        return self.per_pair_or_model(method, metric, r, n)

    @property
    def units(self) -> dict[Key, dict[str, float]]:
        """The old name of :attr:`by_pair_or_model`, until version 1.0."""
        _renamed("units", "by_pair_or_model")
        return self.by_pair_or_model

    def sigma(self, r: float) -> float:
        """The absolute noise std the maps at ``r`` were made with, as recorded (the ``sigma``
        column of ``metrics.csv``, which the attribute stage's map files gave it): what a page
        shows beside r, rather than r times the data range again."""
        if r not in self.sigmas:
            raise ValueError(f"r = {r:g}: no metrics row records its sigma")
        return self.sigmas[r]

    def mc_stderr(
        self, method: str, metric: Metric | str, r: float, n: int | None = None
    ) -> float | None:
        return self.stderr.get(self._key(method, metric, r, n))

    def curve(
        self, method: str, metric: Metric | str, n: int | None = None
    ) -> list[tuple[float, Band]]:
        """``[(r, band)]`` of one method, metric and training-set size, by increasing r."""
        want = (method, str(metric), self.default_n if n is None else n)
        return sorted((k[2], b) for k, b in self.bands.items() if (k[0], k[1], k[3]) == want)


def _renamed(old: str, new: str) -> None:
    warn_renamed(f"Summary.{old}", f"Summary.{new}", stacklevel=3)

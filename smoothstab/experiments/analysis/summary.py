"""``metrics.csv`` summarised: per (method, metric, r, n) the per-image values of every model
pair or model (:class:`Cells`), their mean with its 95% interval over models, images and
Monte-Carlo draws (:mod:`smoothstab.inference`), the paper's band over pair means, and the
Monte-Carlo standard error of the mean. The file itself is
:mod:`smoothstab.experiments.rundir.metrics_table`."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from smoothstab import inference
from smoothstab.experiments.analysis.aggregate import Band, band
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.renames import warn_renamed

Key = tuple[str, str, float, int | None]  # (method, metric, r, training-set size n)

LEVEL = 0.95


@dataclass(frozen=True)
class Cells:
    """One (method, metric, r, n)'s per-image values: ``values[u, i]`` of unit ``units[u]``
    (model pairs ``"i-j"``, or models ``"k"``) on image ``images[i]``. Pairs come in the
    lexicographic order of their models (:func:`smoothstab.inference.pair_index` once the
    models are numbered 0..k-1); ``complete``: every pair of the ``k`` models is there, the
    crossed design the intervals over retraining need. ``rectangular``: every unit has every
    image, each once."""

    units: tuple[str, ...]
    images: tuple[int, ...]
    values: np.ndarray
    pairs: bool
    k: int
    complete: bool
    rectangular: bool

    @property
    def m(self) -> int:
        return len(self.images)

    def unit_means(self) -> dict[str, float]:
        return {u: float(v) for u, v in zip(self.units, self.values.mean(1), strict=True)}


def _cells(per_unit: dict[str, dict[int, list[float]]]) -> Cells:
    pairs = any("-" in u for u in per_unit)
    if pairs:
        ends = {u: tuple(int(x) for x in u.split("-")) for u in per_unit}
        models = sorted({x for pair in ends.values() for x in pair})
        local = {x: i for i, x in enumerate(models)}
        units = sorted(per_unit, key=lambda u: (local[ends[u][0]], local[ends[u][1]]))
        k = len(models)
        complete = len(units) == inference.n_pairs(k) and all(
            ends[u][0] != ends[u][1] for u in units
        )
    else:
        units = sorted(per_unit, key=lambda u: (len(u), u))
        k, complete = len(units), True
    images = sorted({i for per_image in per_unit.values() for i in per_image})
    rectangular = all(
        set(per_unit[u]) == set(images) and all(len(v) == 1 for v in per_unit[u].values())
        for u in units
    )
    if rectangular:
        values = np.array([[per_unit[u][i][0] for i in images] for u in units], dtype=np.float64)
    else:  # units that saw other images: each unit's mean, no per-image structure
        means = []
        for u in units:
            found = [v for per_image in per_unit[u].values() for v in per_image]
            means.append([math.fsum(found) / len(found)])
        values, images = np.array(means, dtype=np.float64), [0]
    return Cells(tuple(units), tuple(images), values, pairs, k, complete, rectangular)


def interval_of(cells: Cells) -> inference.MeanEstimate | None:
    """The mean of ``cells`` with its interval (:func:`smoothstab.inference.pair_mean` or
    :func:`~smoothstab.inference.model_mean`): over retraining, images and draws from
    :data:`~smoothstab.inference.MIN_MODELS` models on, else over images and draws for these
    models; pairs that are not every pair of their models: over images, for these pairs.
    ``None`` where there is no interval (one image, values not on common images, or a value
    that is not finite)."""
    v = cells.values
    if not cells.rectangular or cells.m < 2 or not np.all(np.isfinite(v)):
        return None
    if cells.pairs and cells.complete:
        return inference.pair_mean(v)
    if cells.pairs:  # hand-picked pairs: no crossed design, each pair a fixed unit
        return inference.model_mean(v, scope="these models")
    return inference.model_mean(v)


class Summary:
    """``metrics.csv`` summarised, per (method, metric, r, n) (:data:`Key`).

    :meth:`get` gives the mean over pairs (or models) and images with its 95% interval
    (:func:`interval_of`: over retraining, the test images and their Monte-Carlo draws from
    four models on; over images and draws for these models below that), :meth:`estimate` the
    full :class:`~smoothstab.inference.MeanEstimate`, :meth:`cells` the per-image values,
    :meth:`paper_band` the paper's band over the pair means (Student-t with K - 1 degrees of
    freedom, or +-1 sd: a replication of its figures, not an interval over retraining, since
    pairs share models), :meth:`mc_stderr` the Monte-Carlo standard error of the mean (over the
    images of a pair or model combined as independent, each image having its own draws; over
    pairs or models by the upper bound of :func:`mean_of_correlated_se`).

    ``n`` is the models' training-set size (``None`` for given checkpoints). Lookups without
    ``n`` use :attr:`default_n`, the largest size: the models trained on the most data.
    ``sigmas`` maps each r to the absolute sigma its maps were made with (:meth:`sigma`).
    Intervals are computed when first asked for.
    """

    def __init__(
        self,
        cells: dict[Key, Cells],
        stderr: dict[Key, float] | None = None,
        sigmas: dict[float, float] | None = None,
    ) -> None:
        self._cells, self.stderr = cells, stderr or {}
        self.sigmas = sigmas or {}
        self._estimates: dict[Key, inference.MeanEstimate | None] = {}
        self._bands: dict[Key, Band] = {}
        self._means: dict[Key, dict[str, float]] | None = None
        sizes = {key[3] for key in cells}
        self.sizes: list[int | None] = sorted(n for n in sizes if n is not None) or [None]
        self.default_n = self.sizes[-1]

    @classmethod
    def from_rows(cls, rows: list[dict]) -> Summary:
        values: dict[Key, dict[str, dict[int, list[float]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(list))
        )
        ses: dict[tuple, list[float]] = defaultdict(list)
        sigmas = {}
        for row in rows:
            if "sigma" in row:  # rows made by hand may lack it; metrics.csv has it
                sigmas[row["r"]] = row["sigma"]
            n = row.get("n", "")
            key = (row["method"], row["metric"], row["r"], int(n) if n != "" else None)
            who = row["pair"] or row["model"]
            values[key][who][int(row.get("image", 0) or 0)].append(row["value"])
            if row.get("stderr", "") != "":
                ses[key + (who,)].append(float(row["stderr"]))
        cells = {key: _cells(per_unit) for key, per_unit in values.items()}
        mean_se: dict[Key, list[float]] = defaultdict(list)
        for (*key, _), se in ses.items():  # s.e. of a mean over images: sqrt(sum se_i^2) / N
            mean_se[tuple(key)].append(math.sqrt(math.fsum(v * v for v in se)) / len(se))
        stderr = {key: mean_of_correlated_se(se) for key, se in mean_se.items()}
        return cls(cells, stderr, sigmas)

    def _key(self, method: str, metric: Metric | str, r: float, n: int | None) -> Key:
        return (method, str(metric), r, self.default_n if n is None else n)

    def keys(self) -> list[Key]:
        return list(self._cells)

    def cells(
        self, method: str, metric: Metric | str, r: float, n: int | None = None
    ) -> Cells | None:
        """The per-image values of every pair or model (``None``: not measured)."""
        return self._cells.get(self._key(method, metric, r, n))

    def estimate(
        self, method: str, metric: Metric | str, r: float, n: int | None = None
    ) -> inference.MeanEstimate | None:
        """The mean with its interval (:func:`interval_of`; ``None``: not measured, or no
        interval)."""
        key = self._key(method, metric, r, n)
        if key not in self._estimates:
            cells = self._cells.get(key)
            self._estimates[key] = None if cells is None else interval_of(cells)
        return self._estimates[key]

    def get(self, method: str, metric: Metric | str, r: float, n: int | None = None) -> Band | None:
        """The mean over pairs (or models) and images and its 95% interval (a band of width 0
        where there is none), ``None`` where not measured."""
        key = self._key(method, metric, r, n)
        if key not in self._bands:
            cells = self._cells.get(key)
            if cells is None:
                return None
            est = self.estimate(method, metric, r, n)
            if est is None:
                mean = float(np.mean(cells.values))
                self._bands[key] = Band(mean, mean, mean)
            else:
                self._bands[key] = Band(est.estimate, *est.interval(LEVEL))
        return self._bands[key]

    def paper_band(
        self, method: str, metric: Metric | str, r: float, n: int | None = None, kind: str = "t95"
    ) -> Band | None:
        """The paper's band (``t95``: Student-t over the pair or model means, ``K - 1``
        degrees of freedom; ``sd``: +-1 sd) around the mean of the pair or model means."""
        cells = self.cells(method, metric, r, n)
        if cells is None:
            return None
        means = list(cells.unit_means().values())
        if not all(math.isfinite(v) for v in means):
            mean = math.fsum(means) / len(means)
            return Band(mean, mean, mean)
        return band(means, kind)

    def per_pair_or_model(
        self, method: str, metric: Metric | str, r: float, n: int | None = None
    ) -> dict[str, float]:
        """The mean over images of each pair (``"i-j"``) or model (``"k"``)."""
        cells = self.cells(method, metric, r, n)
        return {} if cells is None else cells.unit_means()

    def per_unit(
        self, method: str, metric: Metric | str, r: float, n: int | None = None
    ) -> dict[str, float]:
        """The old name of :meth:`per_pair_or_model`, until version 1.0."""
        _renamed("per_unit", "per_pair_or_model")
        return self.per_pair_or_model(method, metric, r, n)

    @property
    def by_pair_or_model(self) -> dict[Key, dict[str, float]]:
        """Every key's :meth:`per_pair_or_model`."""
        if self._means is None:
            self._means = {key: cells.unit_means() for key, cells in self._cells.items()}
        return self._means

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

    def levels(self, method: str, metric: Metric | str, n: int | None = None) -> list[float]:
        """The r measured for one method, metric and training-set size, increasing."""
        want = (method, str(metric), self.default_n if n is None else n)
        return sorted(k[2] for k in self._cells if (k[0], k[1], k[3]) == want)

    def curve(
        self, method: str, metric: Metric | str, n: int | None = None
    ) -> list[tuple[float, Band]]:
        """``[(r, mean and interval)]`` of one method, metric and training-set size, by
        increasing r."""
        return [(r, self.get(method, metric, r, n)) for r in self.levels(method, metric, n)]

    def paper_curve(
        self, method: str, metric: Metric | str, n: int | None = None, kind: str = "t95"
    ) -> list[tuple[float, Band]]:
        """:meth:`curve` with the paper's band of ``kind`` (:meth:`paper_band`)."""
        rs = self.levels(method, metric, n)
        return [(r, self.paper_band(method, metric, r, n, kind)) for r in rs]

    def sweep(
        self, method: str, metric: Metric | str, n: int | None = None
    ) -> tuple[list[float], np.ndarray] | None:
        """``(rs, values[R, units, images])``: the per-image values at every r of one method,
        metric and size, where every r has the same units and images (else ``None``)."""
        rs = self.levels(method, metric, n)
        found = [self.cells(method, metric, r, n) for r in rs]
        if not found or not all(c.rectangular for c in found):
            return None
        if any((c.units, c.images) != (found[0].units, found[0].images) for c in found):
            return None
        return rs, np.stack([c.values for c in found])


def mean_of_correlated_se(se: list[float]) -> float:
    """The Monte-Carlo standard error of a mean over pairs (or models) with standard errors
    ``se``, bounded for any correlation between them: ``mean(se)`` (the standard deviation of a
    sum is at most the sum of the standard deviations). Pairs share models, and models share
    noise under common random numbers, so their errors are correlated, and the figure for
    independent ones, ``sqrt(sum se^2) / K``, understates it (0.83x the true error for the
    three pairs of three models in a test, where this bound read 1.42x). The bound overstates
    it by at most ``sqrt(K)`` and is exact for one pair or model."""
    return math.fsum(se) / len(se)


def _renamed(old: str, new: str) -> None:
    warn_renamed(f"Summary.{old}", f"Summary.{new}", stacklevel=3)

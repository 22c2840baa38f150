"""The run directory: where each stage's files live, and the typed records inside them.

Every stage reads and writes through this module, so the layout is written down once::

    config.toml                              the resolved config (prepare)
    splits.json, model_{p}.pt, train_metrics.json            (train)
    test_images.pt, maps/model{k}/{method}/r{r:.6f}.pt       (attribute; :class:`MapFile`)
    metrics.csv, table1.csv, recommendation.json             (evaluate; :class:`Metric`)
    sanity.csv                                  (sanity, when [sanity] enabled; :mod:`.sanity`)
    figures/*.png                                            (figures)
    bounds.json, bounds.md, figures/bounds.png               (bounds)
    report.md, report.html                                   (report)

Every file is written atomically (:mod:`.io`). ``metrics.csv`` is tidy: one row per (method,
r, metric, model pair or model, image) with the columns :data:`COLUMNS` (metric names:
:class:`~.measures.Metric`); :class:`Summary` is its
mean over images per pair/model, then a band over pairs/models.

Long (about 460 lines) because every file's name and typed record lives here, so that the
layout is written down once.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from smoothstab.experiments.aggregate import Band, band
from smoothstab.experiments.io import (
    DamagedFile,
    FileMemo,
    atomic_write,
    load_torch,
    recompute,
    save_torch,
    write_json,
)
from smoothstab.experiments.io import read_json as _read_json
from smoothstab.experiments.measures import Metric as Metric  # the stages import it from here
from smoothstab.renames import warn_renamed
from smoothstab.stats import SmoothStats

if TYPE_CHECKING:
    from smoothstab.experiments.experiment import AttributionConfig

COLUMNS = (
    "setting", "n", "method", "r", "sigma", "metric", "pair", "model", "image", "value", "stderr"
)  # fmt: skip
OPTIONAL_COLUMNS = ("n", "stderr")  # files from before they existed lack them
NUMBERS = ("r", "sigma", "value")  # read as floats


def noise_grid(attr: AttributionConfig) -> list[float]:
    """Every r a run needs: both sweeps, 0 and the Table-1 level, rounded to 6 decimals, sorted."""
    rs = {0.0, float(attr.table_r), *map(float, attr.stability_r), *map(float, attr.fidelity_r)}
    return sorted(round(r, 6) for r in rs)


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
            raise DamagedFile(
                f"{path}: not a map file of this version; {recompute(path)}"
            ) from None

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


Key = tuple[str, str, float, int | None]  # (method, metric, r, training-set size n)


def _band(values: list[float], kind: str) -> Band:
    """:func:`~.aggregate.band` of the units' means; where one is not finite (a map whose
    relative standard error is infinite: indistinguishable from 0 at its draws) the mean is
    that value and there is no band."""
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
    """``metrics.csv`` summarised: per (method, metric, r, n) the mean over images for each pair
    or model, then their mean and band (:func:`~.aggregate.band`), and the Monte-Carlo
    standard error of that mean where the rows carry one: over the images of a pair or model
    combined as independent (each image has its own draws), over pairs or models by the upper
    bound of :func:`mean_of_correlated_se`.

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


def csv_text(rows: list[dict], columns: Sequence[str] = COLUMNS) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")  # DictWriter's output, without its per-row
    writer.writerow(columns)  # check for extra keys: rows are made here, with these columns
    writer.writerows([row.get(c, "") for c in columns] for row in rows)
    return buf.getvalue()


def read_csv(
    path: str | Path,
    columns: Sequence[str] = COLUMNS,
    optional: Sequence[str] = OPTIONAL_COLUMNS,
    numbers: Sequence[str] = NUMBERS,
    blank: Sequence[str] = (),
) -> list[dict]:
    """``metrics.csv`` rows (or another file's, with its ``columns``, of which ``optional`` may
    be missing) with the ``numbers`` columns as floats (those also in ``blank`` ``None`` where
    empty); a damaged file (cut short, another header, no row, a missing or extra cell, a value
    that is no number) is one :class:`~.io.DamagedFile` line."""
    rows: list[dict] = []
    line = 1
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
        if text and not text.endswith("\n"):  # csv_text ends every row with one
            line = text.count("\n") + 1
            raise ValueError("the last row is cut short")
        reader = csv.DictReader(io.StringIO(text))
        header = set(reader.fieldnames or ())
        if header - set(columns) or set(columns) - set(optional) - header:
            raise ValueError(f"its header is not {','.join(columns)}")
        for row in reader:
            line = reader.line_num
            if None in row or None in row.values():
                raise ValueError(f"expected {len(header)} cells")
            for key in numbers:
                if key in row:  # absent: an optional column the file lacks
                    row[key] = None if key in blank and row[key] == "" else float(row[key])
            rows.append(row)
        if not rows:
            raise ValueError("no rows")
    except (ValueError, KeyError, csv.Error) as e:
        raise DamagedFile(f"{path}: damaged near line {line} ({e}); {recompute(path)}") from None
    return rows


class RunDir:
    """The paths of one run directory, and reading and writing its records."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def val_split(self) -> Path:
        return self.root / "val_split.json"

    @property
    def train_metrics(self) -> Path:
        return self.root / "train_metrics.json"

    @property
    def test_images(self) -> Path:
        return self.root / "test_images.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def sanity_csv(self) -> Path:
        return self.root / "sanity.csv"

    @property
    def table1(self) -> Path:
        return self.root / "table1.csv"

    @property
    def recommendation(self) -> Path:
        return self.root / "recommendation.json"

    @property
    def bounds_json(self) -> Path:
        return self.root / "bounds.json"

    @property
    def bounds_md(self) -> Path:
        return self.root / "bounds.md"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    def model(self, part: int) -> Path:
        """The checkpoint of the model trained on part ``part``."""
        return self.root / f"model_{part}.pt"

    def permuted_model(self, part: int, seed: int) -> Path:
        """The checkpoint of model ``part``'s twin trained on permuted labels (``seed``:
        :func:`.labels.permuted_labels`); the train stage's, as every ``model_*.pt``."""
        return self.root / f"model_labels-permuted-{seed}_{part}.pt"

    def figure(self, name: str) -> Path:
        return self.figures / f"{name}.png"

    def map(self, model: int, method: str, r: float, block: int | None = None) -> Path:
        # Six decimals, as noise_grid rounds: every level of a grid gets its own file.
        suffix = "" if block is None else f".block{block}"
        return self.root / "maps" / f"model{model}" / method / f"r{r:.6f}{suffix}.pt"

    def load_map(self, model: int, method: str, r: float) -> MapFile:
        return MapFile.load(self.map(model, method, r))

    def join_map(self, model: int, method: str, r: float, n_blocks: int) -> None:
        """Join a map's block files into its final file, then drop them. A single block is the
        whole map: read once (a damaged one is refused) and renamed, not written again (the
        same bytes: ``torch.save`` of equal content is byte-identical)."""
        parts = [self.map(model, method, r, b) for b in range(n_blocks)]
        if n_blocks == 1:
            MapFile.load(parts[0])
            os.replace(parts[0], self.map(model, method, r))
            return
        MapFile.join([MapFile.load(p) for p in parts]).save(self.map(model, method, r))
        for part in parts:
            part.unlink(missing_ok=True)

    def save_test_images(self, x: torch.Tensor, y: torch.Tensor, indices: list[int]) -> None:
        save_torch(self.test_images, {"x": x, "y": y, "indices": indices})

    def load_test_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The run's test images ``[N, C, H, W]`` and their labels ``[N]``."""
        saved = load_torch(self.test_images, "the run's test images")
        if not isinstance(saved, dict) or not {"x", "y"} <= saved.keys():
            raise DamagedFile(
                f"{self.test_images}: not the run's test images; {recompute(self.test_images)}"
            )
        return saved["x"], saved["y"]

    def write_text(self, path: Path, text: str) -> Path:
        return atomic_write(path, lambda tmp: tmp.write_text(text))

    def write_json(self, path: Path, obj: Any) -> Path:
        return write_json(path, obj)

    def read_json(self, path: Path) -> Any:
        return _read_json(path)

    def rows(self) -> list[dict]:
        return [dict(row) for row in _read_rows(self.metrics)]

    def summary(self, kind: str = "t95") -> Summary:
        """``metrics.csv`` summarised with bands of ``kind``; read once per version of the file
        in this process (the figures, bounds and report stages of one run share it)."""
        return _summary(self.metrics, kind)

    def advice(self) -> dict:
        return self.read_json(self.recommendation)


# metrics.csv parsed once per version of the file (io.FileMemo): 0.5-1 s for a quickstart run
_read_rows = FileMemo(read_csv)
_summary = FileMemo(lambda path, kind: Summary.from_rows(_read_rows(path), kind))

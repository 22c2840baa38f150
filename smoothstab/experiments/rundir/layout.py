"""The run directory: where each stage's files live, and reading and writing them.

Every stage reads and writes through this module, so the layout is written down once::

    config.toml                              the resolved config (prepare)
    splits.json, model_{p}.pt, train_metrics.json            (train)
    test_images.pt, blocks/{method}/block{b:05d}.pt          (attribute; rundir/blockfile.py)
    maps/model{k}/{method}/r{r:.6f}.pt     (attribute, with [maps] keep; rundir/mapfile.py)
    metrics.parquet, table1.csv, recommendation.json         (evaluate; rundir/metrics_table.py)
    sanity.csv                           (sanity, when [sanity] enabled; rundir/sanity_rows.py)
    figures/*.png                                            (figures)
    bounds.json, bounds.md, figures/bounds.png               (bounds)
    report.md, report.html                                   (report)

Every file is written atomically (:mod:`~smoothstab.experiments.io.files`). A block file's record
is :class:`~smoothstab.experiments.rundir.blockfile.BlockFile`, a map file's
:class:`~smoothstab.experiments.rundir.mapfile.MapFile` (both say what they are and carry their own
hash); the metrics table's rows and their :class:`~smoothstab.experiments.analysis.summary.Summary`
are :mod:`~smoothstab.experiments.rundir.metrics_table`'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smoothstab.experiments.analysis.advice import Advice
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.io.files import (
    DamagedFile,
    atomic_write,
    load_torch,
    save_torch,
    write_json,
)
from smoothstab.experiments.io.files import read_json as _read_json
from smoothstab.experiments.rundir.advice_record import read_advice
from smoothstab.experiments.rundir.mapfile import MapFile
from smoothstab.experiments.rundir.metrics_table import (
    cached_rows,
    cached_summary,
    iter_rows,
    read_columns,
)


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
        return self.root / "metrics.parquet"

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
        :func:`~smoothstab.experiments.models.labels.permuted_labels`); the train stage's, as every
        ``model_*.pt``."""
        return self.root / f"model_labels-permuted-{seed}_{part}.pt"

    def figure(self, name: str) -> Path:
        return self.figures / f"{name}.png"

    def map(self, model: int, method: str, r: float, block: int | None = None) -> Path:
        """A kept map file (``[maps] keep``), or one of its image blocks."""
        # Six decimals, as AttributionConfig.noise_grid rounds: each level gets its own file.
        suffix = "" if block is None else f".block{block}"
        return self.root / "maps" / f"model{model}" / method / f"r{r:.6f}{suffix}.pt"

    def block(self, method: str, block: int) -> Path:
        """The block file of ``method``'s image block ``block``: its rows and figure maps."""
        return self.root / "blocks" / method / f"block{block:05d}.pt"

    def load_map(self, model: int, method: str, r: float, expected: dict | None = None) -> MapFile:
        return MapFile.load(self.map(model, method, r), expected)

    def join_map(self, model: int, method: str, r: float, expected: list[dict]) -> None:
        """Join a map's block files into its final file, then drop them; ``expected``: what
        each block must be (:meth:`MapFile.identity`, one per block in order), checked before
        anything is joined. A damaged block is one
        :class:`~smoothstab.experiments.io.files.DamagedFile` line, and nothing is written."""
        parts = [self.map(model, method, r, want["block"]) for want in expected]
        MapFile.join([MapFile.load(p, want) for p, want in zip(parts, expected, strict=True)]).save(
            self.map(model, method, r)
        )
        for part in parts:
            part.unlink(missing_ok=True)

    def save_test_images(self, x: torch.Tensor, y: torch.Tensor, indices: list[int]) -> None:
        save_torch(self.test_images, {"x": x, "y": y, "indices": indices})

    def load_test_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The run's test images ``[N, C, H, W]`` and their labels ``[N]``."""
        saved = load_torch(self.test_images, "the run's test images")
        if not isinstance(saved, dict) or not {"x", "y"} <= saved.keys():
            raise DamagedFile(self.test_images, "not the run's test images")
        return saved["x"], saved["y"]

    def write_text(self, path: Path, text: str) -> Path:
        return atomic_write(path, lambda tmp: tmp.write_text(text))

    def write_json(self, path: Path, obj: Any) -> Path:
        return write_json(path, obj)

    def read_json(self, path: Path) -> Any:
        return _read_json(path)

    def rows(self) -> list[dict]:
        """The metrics table, a dict per row (:func:`~.metrics_table.read_rows`; about a
        kilobyte a row: for millions of rows, :meth:`iter_rows` or :meth:`columns`)."""
        return [dict(row) for row in cached_rows(self.metrics)]

    def iter_rows(self, metrics: Sequence[str] | None = None) -> Iterator[dict]:
        """The metrics table, a dict per row, one at a time (:func:`~.metrics_table.iter_rows`;
        ``metrics``: only these metrics' rows)."""
        return iter_rows(self.metrics, metrics)

    def columns(self) -> dict[str, np.ndarray]:
        """The metrics table column by column (:func:`~.metrics_table.read_columns`)."""
        return read_columns(self.metrics)

    def summary(self) -> Summary:
        """The metrics table summarised (means with their intervals); read once per version of
        the file in this process (the figures, bounds and report stages of one run share it)."""
        return cached_summary(self.metrics)

    def advice(self) -> Advice:
        """``recommendation.json``'s record (:mod:`.advice_record`)."""
        return read_advice(self.recommendation)

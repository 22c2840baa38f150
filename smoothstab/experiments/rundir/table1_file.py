"""``table1.csv``: the paper's Table 1 as the evaluate stage computed it
(:func:`~smoothstab.experiments.analysis.sweep.table1`), written once and read by the report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smoothstab.experiments.analysis.aggregate import Band
from smoothstab.experiments.analysis.sweep import TABLE1, TABLE1_BANDS, TABLE1_COLUMNS
from smoothstab.experiments.rundir.metrics_table import csv_text, read_csv

if TYPE_CHECKING:
    from pathlib import Path


def table1_csv(rows: list[dict]) -> str:
    """``table1.csv`` of :func:`table1`'s rows: each cell's mean as the float it is (it reads
    back exactly) and, where the cell is a band (the mean over pairs), its ``_lo`` and ``_hi``
    in the last columns; a missing cell is empty."""
    flat = []
    for row in rows:
        out = {"method": row["method"], "pair": row["pair"]}
        out["interval_over"] = row.get("interval_over", "")
        for col in TABLE1:
            value = row[col]
            out[col] = getattr(value, "mean", value)
            if isinstance(value, Band):
                out[f"{col}_lo"], out[f"{col}_hi"] = value.lo, value.hi
        flat.append(out)
    return csv_text(flat, TABLE1_COLUMNS)


def read_table1(path: str | Path) -> list[dict]:
    """:func:`table1`'s rows from ``table1.csv`` as :func:`table1_csv` wrote them (a damaged file is
    one :class:`~smoothstab.experiments.io.files.DamagedFile` line). A file written before the bands
    were kept gives each mean over pairs as a float, shown without its band; one written before
    ``interval_over`` has it empty."""
    numbers = (*TABLE1, *TABLE1_BANDS)
    optional = (*TABLE1_BANDS, "interval_over")
    found = read_csv(path, TABLE1_COLUMNS, optional, numbers=numbers, blank=numbers)
    rows = []
    for row in found:
        cells = {}
        for col in TABLE1:
            lo, hi = row.get(f"{col}_lo"), row.get(f"{col}_hi")
            banded = row[col] is not None and lo is not None and hi is not None
            cells[col] = Band(row[col], lo, hi) if banded else row[col]
        over = row.get("interval_over", "")
        rows.append({"method": row["method"], "pair": row["pair"], **cells, "interval_over": over})
    return rows

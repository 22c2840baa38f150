"""The metrics table: ``metrics.csv``, its columns, and its summary.

``metrics.csv`` (written by the evaluate stage into the run directory,
:mod:`~smoothstab.experiments.rundir.layout`) is tidy: one row per (method, r, metric, model pair or
model, image) with the columns :data:`COLUMNS` (metric names:
:class:`~smoothstab.experiments.analysis.measures.Metric`); :class:`Summary` holds its per-image
values per pair/model and their mean with its interval. :func:`csv_text` writes such rows and
:func:`read_csv` reads them back (or another file's, with its columns); :data:`cached_rows` and
:data:`cached_summary` parse a file once per version of it
(:class:`~smoothstab.experiments.io.files.FileMemo`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.io.files import DamagedFile, FileMemo, check_regular

COLUMNS = (
    "setting", "n", "method", "r", "sigma", "metric", "pair", "model", "image", "value", "stderr"
)  # fmt: skip
OPTIONAL_COLUMNS = ("n", "stderr")  # files from before they existed lack them
NUMBERS = ("r", "sigma", "value")  # read as floats
INTEGERS = ("n",)  # kept as text, read as ints where used: a digit string or empty


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
    that is no number) is one :class:`~smoothstab.experiments.io.files.DamagedFile` line."""
    rows: list[dict] = []
    line = 1
    check_regular(path)  # a FIFO would block the read
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
            for key in INTEGERS:
                value = row.get(key)
                if value and not value.isdecimal():  # read as int by the summaries
                    raise ValueError(f"its {key} cell is {value[:20]!r}, expected an integer")
            rows.append(row)
        if not rows:
            raise ValueError("no rows")
    except (ValueError, KeyError, csv.Error) as e:
        raise DamagedFile(path, f"damaged near line {line} ({e})") from None
    return rows


# metrics.csv parsed once per version of the file (io.FileMemo): 0.5-1 s for a quickstart run
cached_rows = FileMemo(read_csv)
"""``cached_rows(path)``: :func:`read_csv` of ``path``, parsed once per version of the file."""
cached_summary = FileMemo(lambda path: Summary.from_rows(cached_rows(path)))
"""``cached_summary(path)``: :meth:`Summary.from_rows` of :data:`cached_rows`, once per version of
the file."""

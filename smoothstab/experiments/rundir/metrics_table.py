"""The metrics table: ``metrics.parquet``, its columns, and its summary; and the CSV files of a run.

``metrics.parquet`` (written by the evaluate stage into the run directory,
:mod:`~smoothstab.experiments.rundir.layout`) is tidy: one row per (method, r, metric, model pair or
model, image) with the columns :data:`COLUMNS` (metric names:
:class:`~smoothstab.experiments.analysis.measures.Metric`); pandas and polars load it in one line
(``pandas.read_parquet(path)``, ``polars.read_parquet(path)``). Parquet rather than CSV because the
rows grow as methods x levels x (pairs + models) x metrics x images: tens of millions for the
ImageNet preset at 1,000 images, where a CSV takes 79.4 bytes a row and pandas 7.4 s to load its
8,976,000 rows, and this file 11.7 bytes and 0.7 s (``benchmarks/bench_table_format.py``). Text
columns are dictionary-encoded, values float64; ``n``, ``pair``, ``model`` and ``stderr`` are null
where a row has none.

:class:`RowsBuilder` assembles the table from blocks of rows and :func:`write_table` writes it;
:func:`read_columns` reads it column by column (numpy arrays), :func:`iter_rows` and
:func:`read_rows` as one dict per row with the cells as the earlier CSV file had them (text,
``""`` where empty; ``r``, ``sigma``, ``value`` floats), which :class:`Summary` and the report
read; :data:`cached_rows` and
:data:`cached_summary` parse a file once per version of it
(:class:`~smoothstab.experiments.io.files.FileMemo`). :func:`csv_text` and :func:`read_csv`
write and read the run's CSV files (``table1.csv``, ``sanity.csv``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.io.files import (
    DamagedFile,
    FileMemo,
    atomic_write,
    check_regular,
    first_line,
)

COLUMNS = (
    "setting", "n", "method", "r", "sigma", "metric", "pair", "model", "image", "value", "stderr"
)  # fmt: skip
OPTIONAL_COLUMNS = ("n", "stderr")  # CSV files from before they existed lack them
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
    """The rows of a run's CSV file with its ``columns`` (of which ``optional`` may be missing;
    by default the metrics table's, as ``metrics.csv`` had them) with the ``numbers`` columns as
    floats (those also in ``blank`` ``None`` where empty); a damaged file (cut short, another
    header, no row, a missing or extra cell, a value that is no number) is one
    :class:`~smoothstab.experiments.io.files.DamagedFile` line."""
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


TEXT = ("setting", "method", "metric", "pair", "model")  # dictionary-encoded text columns


class RowsBuilder:
    """The metrics table, assembled from blocks of rows: :meth:`add` one method's row groups (a
    value per image each), then :meth:`table` is every row, group by group, images in order."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []
        self.categories: dict[str, dict[str, int]] = {name: {} for name in TEXT}

    def _codes(self, column: str, values: Sequence[str]) -> np.ndarray:
        """Codes of ``values`` (``""``: null, code -1) in ``column``'s categories."""
        known = self.categories[column]
        return np.array([-1 if v == "" else known.setdefault(v, len(known)) for v in values],
                        dtype=np.int32)  # fmt: skip

    def add(
        self,
        *,
        setting: str,
        method: str,
        groups: Sequence[tuple],
        sizes: Sequence[int | None],
        sigmas: dict[float, float],
        values: np.ndarray,
        stderr: np.ndarray,
    ) -> None:
        """``groups``: each row group's ``(metric, r, pair, model, has_stderr)`` (pair ``"i-j"``
        or model ``"k"``, the other ``""``; both ``""``: of the models compared all together,
        those of the largest training-set size); ``values``, ``stderr``: ``[G, N]``, a value per
        group and image; ``sizes``: each model's training-set size; ``sigmas``: each r's."""
        g, n = values.shape
        metric, r, pair, model, has_se = (list(col) for col in zip(*groups, strict=True))
        largest = max((s for s in sizes if s is not None), default=None)
        size = [sizes[int((p or m).split("-")[0])] if (p or m) else largest
                for p, m in zip(pair, model, strict=True)]  # fmt: skip
        each = lambda a: np.repeat(np.asarray(a), n)  # noqa: E731 - a group's value, per image
        part = {
            "setting": each(self._codes("setting", [setting] * g)),
            "n": each([-1 if s is None else s for s in size]).astype(np.int64),
            "method": each(self._codes("method", [method] * g)),
            "r": each(np.array(r, dtype=np.float64)),
            "sigma": each(np.array([sigmas[v] for v in r], dtype=np.float64)),
            "metric": each(self._codes("metric", metric)),
            "pair": each(self._codes("pair", pair)),
            "model": each(self._codes("model", model)),
            "image": np.tile(np.arange(n, dtype=np.int64), g),
            "value": np.asarray(values, dtype=np.float64).reshape(-1),
            "stderr": np.asarray(stderr, dtype=np.float64).reshape(-1),
            "has_stderr": each(np.array(has_se, dtype=bool)),
        }
        self.parts.append(part)

    def table(self):
        """The rows as a ``pyarrow.Table`` with the columns :data:`COLUMNS`."""
        import pyarrow as pa

        cols = {key: np.concatenate([p[key] for p in self.parts]) for key in self.parts[0]}
        out = {}
        for name in COLUMNS:
            if name in TEXT:
                codes = cols[name]
                cats = pa.array(list(self.categories[name]), pa.string())
                out[name] = pa.DictionaryArray.from_arrays(
                    pa.array(codes, pa.int32(), mask=codes < 0), cats
                )
            elif name == "n":
                out[name] = pa.array(cols[name], pa.int64(), mask=cols[name] < 0)
            elif name == "stderr":
                out[name] = pa.array(cols[name], pa.float64(), mask=~cols["has_stderr"])
            else:
                out[name] = pa.array(cols[name])
        return pa.table(out)


def rows_table(rows: Sequence[dict]):
    """Rows as :func:`read_rows` gives them (or made by hand, as ``metrics.csv`` had them) as a
    ``pyarrow.Table`` of the metrics table: the inverse of :func:`read_rows`."""
    import pyarrow as pa

    def cells(name: str) -> list:
        return [row.get(name, "") for row in rows]

    def number(v, kind):
        return None if v in ("", None) else kind(v)

    out = {}
    for name in COLUMNS:
        if name in TEXT:
            text = [v or None for v in map(str, cells(name))]
            out[name] = pa.array(text, pa.string()).dictionary_encode()
        elif name in ("n", "image"):
            out[name] = pa.array([number(v, int) for v in cells(name)], pa.int64())
        else:
            out[name] = pa.array([number(v, float) for v in cells(name)], pa.float64())
    return pa.table(out)


def parquet_bytes(table) -> bytes:
    """``table`` (a ``pyarrow.Table``) as the bytes of a Parquet file (zstd)."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def write_table(path: str | Path, table) -> Path:
    """``table`` as Parquet (:func:`parquet_bytes`), atomically."""
    data = parquet_bytes(table)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _read_table(path: str | Path):
    import pyarrow.parquet as pq

    check_regular(path)  # a FIFO would block the read
    try:
        with open(path, "rb") as f:  # one read: a file that changes under it is not mixed
            data = f.read()
        table = pq.read_table(io.BytesIO(data))
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - cut short, not Parquet, corrupt: one line
        raise DamagedFile(path, f"cannot be read as the metrics table ({first_line(e)})") from None
    names = set(table.column_names)
    if names != set(COLUMNS) - ({"n", "stderr"} - names):
        raise DamagedFile(path, f"not the metrics table (its columns are not {','.join(COLUMNS)})")
    if table.num_rows == 0:
        raise DamagedFile(path, "not the metrics table (no rows)")
    return table


def pa_types():
    import pyarrow.types

    return pyarrow.types


def read_columns(path: str | Path) -> dict[str, np.ndarray]:
    """The metrics table column by column: numbers as numpy arrays (``n`` and ``stderr`` as
    floats, NaN where null), text as numpy arrays of ``str`` (``""`` where null). A column of
    another type is one :class:`~smoothstab.experiments.io.files.DamagedFile` line."""
    table = _read_table(path)
    out = {}
    for name in table.column_names:
        try:
            out[name] = _column(table.column(name), name)
        except Exception as e:  # noqa: BLE001 - pyarrow's ArrowInvalid, NotImplemented, ...
            why = f"not the metrics table (its column {name}: {first_line(e, 80)})"
            raise DamagedFile(path, why) from None
    return out


def _column(column, name: str) -> np.ndarray:
    if name in TEXT:
        column = column.combine_chunks()
        if hasattr(column, "dictionary"):
            cats = np.array([*column.dictionary.cast("string").to_pylist(), ""], dtype=object)
            return cats[column.indices.fill_null(-1).to_numpy(zero_copy_only=False)]
        return np.array(column.cast("string").fill_null("").to_pylist(), dtype=object)
    if name in ("image", "n") and not (
        pa_types().is_integer(column.type) or pa_types().is_null(column.type)
    ):
        raise ValueError(f"expected integers, got {column.type}")
    if name == "image":
        return column.cast("int64").to_numpy()
    column = column.cast("float64")
    if name in ("n", "stderr"):
        return column.fill_null(float("nan")).to_numpy()
    if column.null_count:
        raise ValueError("empty cells")
    return column.to_numpy()


def iter_rows(path: str | Path, metrics: Sequence[str] | None = None) -> Iterator[dict]:
    """The metrics table as one dict per row, made as they are asked for (the columns are read
    at once): the cells as ``metrics.csv`` had them: ``r``, ``sigma`` and ``value`` floats, the
    rest text (``n``, ``image``, ``stderr`` too), ``""`` where empty. ``metrics``: only the rows
    of these metrics, in the table's order (chosen on the columns, before any row is made)."""
    cols = read_columns(path)
    if metrics is not None:
        keep = np.isin(cols["metric"], [str(m) for m in metrics])
        cols = {name: column[keep] for name, column in cols.items()}
    cells = {name: cols[name].tolist() for name in (*TEXT, *NUMBERS)}
    if "n" in cols:
        cells["n"] = ["" if v != v else str(int(v)) for v in cols["n"].tolist()]
    if "stderr" in cols:
        cells["stderr"] = ["" if v != v else repr(v) for v in cols["stderr"].tolist()]
    cells["image"] = [str(i) for i in cols["image"].tolist()]
    names = [c for c in COLUMNS if c in cells]
    for row in zip(*(cells[c] for c in names), strict=True):
        yield dict(zip(names, row, strict=True))


def read_rows(path: str | Path) -> list[dict]:
    """:func:`iter_rows` as a list (about a microsecond and a kilobyte a row: for tens of
    millions of rows, read the columns, :func:`read_columns`)."""
    return list(iter_rows(path))


# The metrics table parsed once per version of the file (io.FileMemo)
cached_rows = FileMemo(read_rows)
"""``cached_rows(path)``: :func:`read_rows` of ``path``, parsed once per version of the file."""
cached_summary = FileMemo(lambda path: Summary.from_rows(iter_rows(path)))
"""``cached_summary(path)``: :meth:`Summary.from_rows` of the table's rows (one at a time: no list
of every row is kept), once per version of the file."""

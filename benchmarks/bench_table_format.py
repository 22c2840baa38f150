"""The metrics table's format: bytes per row and load time, Parquet against CSV.

    python benchmarks/bench_table_format.py [--images 1000] [--json FILE]

The ImageNet preset's rows (8 models: 12 pairs x 7 pair metrics + 8 models x 6 model metrics, at
17 noise levels, 4 methods) for ``--images`` test images: 8,976,000 rows at 1,000 images, with
random normal values and standard errors (real values compress somewhat better: plan's estimate is
made the same way). Written by the evaluate stage's own writer (:class:`RowsBuilder`,
``write_table``: Parquet, zstd, text columns dictionary-encoded), and the same table as a CSV
(pandas ``to_csv``) and a gzipped CSV; then loaded with ``pandas.read_parquet`` and
``pandas.read_csv`` (the one-line loads a user would type), and with this package's
``read_columns`` (numpy columns) and ``read_rows`` (a dict per row, on the first 1,000,000 rows:
the dict API costs microseconds and about a kilobyte a row); each load the fastest of 3 (the file
then in the page cache). Needs pandas.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def table(images: int):
    from smoothstab.experiments.config.load import load_config
    from smoothstab.experiments.plan.counts import level_groups
    from smoothstab.experiments.rundir.metrics_table import RowsBuilder

    cfg = load_config("paper/imagenet_resnet50", [f"attribution.n_images={images}"])
    rs = cfg.attribution.noise_grid()
    rng = np.random.default_rng(0)
    builder = RowsBuilder()
    for method in cfg.attribution.methods:
        level = level_groups(cfg, method)
        heads = [
            (str(g.metric), r, "" if g.pair is None else f"{g.pair[0]}-{g.pair[1]}",
             "" if g.model is None else str(g.model), g.stderr is not None)
            for r in rs
            for g in level
        ]  # fmt: skip
        shape = (len(heads), images)
        builder.add(setting="DT", method=method, groups=heads, sizes=[50000] * 4 + [150000] * 4,
                    sigmas={r: 2.64 * r for r in rs}, values=rng.standard_normal(shape),
                    stderr=np.abs(rng.standard_normal(shape)))  # fmt: skip
    return builder.table()


def timed(fn, repeats: int = 1):
    """``fn()`` and the fastest of ``repeats`` timed calls (loads: 3, the file then cached)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    import pandas as pd

    from smoothstab.experiments.rundir.metrics_table import read_columns, read_rows, write_table

    t, build_s = timed(lambda: table(args.images))
    rows = t.num_rows
    out = {"rows": rows, "build_s": build_s}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _, out["parquet_write_s"] = timed(lambda: write_table(tmp / "m.parquet", t))
        frame = t.to_pandas()
        _, out["csv_write_s"] = timed(lambda: frame.to_csv(tmp / "m.csv", index=False))
        _, out["csv_gz_write_s"] = timed(lambda: frame.to_csv(tmp / "m.csv.gz", index=False))
        for name in ("m.parquet", "m.csv", "m.csv.gz"):
            out[f"{name}_bytes_per_row"] = (tmp / name).stat().st_size / rows
        import pyarrow.parquet as pq

        _, out["pyarrow_read_table_s"] = timed(lambda: pq.read_table(tmp / "m.parquet"), 3)
        _, out["pandas_read_parquet_s"] = timed(lambda: pd.read_parquet(tmp / "m.parquet"), 3)
        _, out["pandas_read_csv_s"] = timed(lambda: pd.read_csv(tmp / "m.csv"), 3)
        _, out["pandas_read_csv_gz_s"] = timed(lambda: pd.read_csv(tmp / "m.csv.gz"), 3)
        _, out["read_columns_s"] = timed(lambda: read_columns(tmp / "m.parquet"), 3)
        first = min(rows, 1_000_000)
        write_table(tmp / "first.parquet", t.slice(0, first))
        _, seconds = timed(lambda: read_rows(tmp / "first.parquet"))
        out["read_rows_us_per_row"] = seconds / first * 1e6
    print(f"### the metrics table's format ({rows:,} rows)\n")
    print("| format | bytes per row | write s | pandas load s |")
    print("|---|---|---|---|")
    for name, label, read in (
        ("m.parquet", "Parquet (zstd; ours)", "pandas_read_parquet_s"),
        ("m.csv", "CSV", "pandas_read_csv_s"),
        ("m.csv.gz", "CSV, gzip", "pandas_read_csv_gz_s"),
    ):
        write = {"m.parquet": "parquet_write_s", "m.csv": "csv_write_s"}.get(name, "csv_gz_write_s")
        print(f"| {label} | {out[f'{name}_bytes_per_row']:.1f} | {out[write]:.1f} | "
              f"{out[read]:.1f} |")  # fmt: skip
    dicts = out["read_rows_us_per_row"]
    print(f"\npyarrow.parquet.read_table: {out['pyarrow_read_table_s']:.1f} s; "
          f"read_columns (numpy columns): {out['read_columns_s']:.1f} s; read_rows (a dict a "
          f"row): {dicts:.2f} us a row; built in {out['build_s']:.1f} s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

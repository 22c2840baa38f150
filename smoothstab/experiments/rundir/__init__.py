"""Where a run's files live and what each holds: the directory's layout, one typed record
per file (block files, kept maps, metrics.parquet, table1.csv, bounds.json, sanity.csv), and the
manifest that hashes what each stage wrote.
"""

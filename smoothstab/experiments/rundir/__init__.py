"""Where a run's files live and what each holds: the directory's layout, one typed record
per file (maps, metrics.csv, table1.csv, bounds.json, sanity.csv), and the manifest that
hashes what each stage wrote.
"""

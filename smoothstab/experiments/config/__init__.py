"""What a run is: the config tables, reading TOML and ``--set``, every key's meaning, the
checks of names and paths, the settings (which models a run compares) and the dataset
catalogue. No I/O but reading the config file.
"""

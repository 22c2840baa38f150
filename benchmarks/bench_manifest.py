"""A planted manifest of many entries: what reading and checking it costs one command.

Makes a run directory by hand (a config.toml, two untrained checkpoints recorded by the train
stage) whose manifest lists ``--entries`` map files under the attribute stage (none of them
exists, as in a planted manifest), then times in one process what a command does with its
manifest: the config check (``made_with``), then ``check`` before each stage from ``attribute``
to ``report``. Every ``check`` reads the manifest, checks each entry's path, and looks for each
listed file. Run it against any checkout (``PYTHONPATH=CHECKOUT``) to compare::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_manifest.py --entries 200000

Prints the seconds of the first read and of the whole sequence.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from smoothstab.experiments.rundir import manifest

STAGES = ["train", "attribute", "evaluate", "sanity", "figures", "bounds", "report"]


def planted_run(root: Path, entries: int) -> None:
    (root / "config.toml").write_text('name = "bench"\n')
    for p in range(2):
        torch.save({"state_dict": {}, "config": {}}, root / f"model_{p}.pt")
    manifest.record(root, "train")
    data = json.loads((root / manifest.MANIFEST).read_text())
    data["stages"]["attribute"] = {
        f"maps/model{i % 64}/grad/r{i / 1e6:.6f}.pt": {"size": 1, "sha256": "0" * 64}
        for i in range(entries)
    }
    (root / manifest.MANIFEST).write_text(json.dumps(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        planted_run(root, args.entries)
        time.sleep(1.1)  # past the memo's settling time, as in a run whose manifest is older
        start = time.perf_counter()
        manifest.made_with(root)
        first = time.perf_counter() - start
        for stage in STAGES[1:]:
            manifest.check(root, stage, STAGES)
        total = time.perf_counter() - start
    print(f"entries {args.entries}: first read {first:.2f} s, made_with + 6 checks {total:.2f} s")


if __name__ == "__main__":
    main()

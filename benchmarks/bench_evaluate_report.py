"""The evaluate and report stages' wall time on one evaluated run, for two source trees.

    python benchmarks/bench_evaluate_report.py RUN_DIR OLD_TREE NEW_TREE [--repeats 3]

``RUN_DIR``: a run whose stages up to figures have run (its ``metrics.csv`` is kept, so
evaluate computes Table 1 and the advice from it, as a rerun of the stage does; the report
reads them). Each tree is a checkout of smoothstab (``git archive REF | tar -x -C DIR``); each
repeat times, tree after tree, ``python -m smoothstab evaluate RUN`` and ``report RUN`` in a
fresh process (imports included) on a hard-linked copy of ``RUN_DIR``, whose config is cut to
the keys the old tree knows (``evaluation.target_halfwidth`` dropped, ``evaluation.band`` set
to ``t95``: neither changes ``metrics.csv``). Prints the median of each.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def old_config(text: str) -> str:
    text = re.sub(r"(?m)^target_halfwidth = .*\n", "", text)
    return re.sub(r'(?m)^band = "interval"$', 'band = "t95"', text)


def copy_run(run: Path, dest: Path, old: bool) -> Path:
    subprocess.run(["cp", "-al", str(run), str(dest)], check=True)
    for name in ("table1.csv", "recommendation.json", "report.md", "report.html"):
        (dest / name).unlink(missing_ok=True)
    for name in ("config.toml", "manifest.json"):  # hard links: replace, never edit in place
        text = (dest / name).read_text()
        (dest / name).unlink()
        if old and name == "config.toml":
            text = old_config(text)
        elif old:
            data = json.loads(text)
            data["config"] = old_config(data["config"])
            text = json.dumps(data, indent=2) + "\n"
        (dest / name).write_text(text)
    return dest


def timed(tree: Path, stage: str, run: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "2"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "smoothstab", stage, str(run), "--quiet"], env=env,
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    found: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for name, tree in (("old", args.old), ("new", args.new)):
                run = copy_run(args.run, Path(tmp) / f"{name}{i}", old=name == "old")
                for stage in ("evaluate", "report"):
                    found[name].setdefault(stage, []).append(timed(tree, stage, run))
                shutil.rmtree(run)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    for name, stages in found.items():
        med = {s: statistics.median(v) for s, v in stages.items()}
        runs = ", ".join(f"{s} " + "/".join(f"{x:.1f}" for x in v) for s, v in stages.items())
        print(f"{name}: evaluate {med['evaluate']:.1f} s, report {med['report']:.1f} s, "
              f"both {sum(med.values()):.1f} s (each run: {runs})")  # fmt: skip


if __name__ == "__main__":
    main()

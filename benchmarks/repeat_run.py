"""Does a run repeat? The tiny test config run twice on one device, compared file by file.

    python benchmarks/repeat_run.py [--device cuda] [--work DIR]

Runs ``smoothstab run`` (train, attribute, evaluate) twice into two directories with the tiny
settings of the test suite (``tests/helpers.py``) on ``--device`` for training and attribution,
then prints, for each trained model, whether its weights are bitwise equal between the runs (and
the largest relative difference of a tensor otherwise), and for the metrics table the number of
values that differ and the largest difference relative to the value. On a CPU both runs are
byte-identical (``tests/experiments/test_reliability.py`` checks it); this script is for the
devices the suite cannot reach. Results, with the command, are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from helpers import TINY_SETTINGS  # noqa: E402
from smoothstab.experiments.rundir.metrics_table import read_rows  # noqa: E402


def run(out: Path, device: str) -> None:
    sets = [*TINY_SETTINGS, f"train.device={device}", f"attribution.device={device}"]
    cmd = [sys.executable, "-m", "smoothstab", "run", "--out", str(out), "--stages", "train"]
    cmd += ["attribute", "evaluate", "--set", "quiet=true"]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True)


def weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(
        path, map_location="cpu", weights_only=False
    )  # our own checkpoint, just written
    state = state.get("state_dict", state)
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def compare_models(a: Path, b: Path) -> None:
    for pa in sorted(a.glob("model_*.pt")):
        wa, wb = weights(pa), weights(b / pa.name)
        equal = all(torch.equal(wa[k], wb[k]) for k in wa)
        worst = max(
            float((wa[k].float() - wb[k].float()).norm() / wa[k].float().norm().clamp_min(1e-30))
            for k in wa
        )
        print(f"{pa.name}: bitwise equal {equal}; largest relative L2 difference {worst:.3g}")


def compare_metrics(a: Path, b: Path) -> None:
    ra, rb = read_rows(a / "metrics.parquet"), read_rows(b / "metrics.parquet")
    assert len(ra) == len(rb), (len(ra), len(rb))
    differ, worst = 0, 0.0
    for x, y in zip(ra, rb, strict=True):
        for key in ("value", "stderr"):
            if key not in x or x[key] in ("", None):
                continue
            u, v = float(x[key]), float(y[key])
            if u != v:
                differ += 1
                worst = max(worst, abs(u - v) / max(abs(u), 1e-12))
    print(
        f"metrics.parquet: {len(ra)} rows; {differ} values differ; "
        f"largest relative difference {worst:.3g}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", type=Path, default=None)
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="repeat_run_"))
    a, b = work / "a", work / "b"
    run(a, args.device)
    run(b, args.device)
    print(f"device {args.device}, torch {torch.__version__}, tiny test config, two runs:")
    compare_models(a, b)
    compare_metrics(a, b)


if __name__ == "__main__":
    main()

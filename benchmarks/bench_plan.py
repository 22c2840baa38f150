"""Does ``smoothstab plan``'s time estimate hold? The estimate against a real run of the config.

    python benchmarks/bench_plan.py [--budget SECONDS] [--work DIR]

The config is the tiny test config (``tests/conftest.py``) made big enough that compute, not
start-up, dominates: 8 epochs, 8 images, 16 noise draws, 8 IG points. The script asks plan for
its estimate of the stages train, attribute and evaluate (``make_plan``, as ``smoothstab plan``
does, each measurement about ``--budget`` seconds), then times ``smoothstab run`` of those
stages in a fresh process, and prints both per stage where plan has them, in all, and their
ratio. A timed comparison fails on a machine busy with other work, so it is a benchmark, not a
test. Results, with the command, are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from conftest import TINY_SETTINGS  # noqa: E402
from smoothstab.experiments.experiment import load_config  # noqa: E402
from smoothstab.experiments.plan import make_plan  # noqa: E402

MEASURED = [
    *TINY_SETTINGS,
    "train.epochs=8",
    "attribution.n_samples=16",
    "attribution.n_images=8",
    "attribution.image_batch=8",
    "attribution.ig_steps=8",
]
STAGES = ("train", "attribute", "evaluate")


def real_seconds(out: Path) -> float:
    """Wall time of ``smoothstab run`` of :data:`STAGES` of the measured config into ``out``."""
    cmd = [sys.executable, "-m", "smoothstab", "run", "quickstart", "--out", str(out), "--quiet"]
    cmd += ["--stages", *STAGES, *(a for s in MEASURED for a in ("--set", s))]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=1.0, help="seconds per timed measurement")
    p.add_argument("--work", type=Path, help="where to run (default: a temporary directory)")
    a = p.parse_args()
    t = make_plan(load_config("quickstart", MEASURED), budget=a.budget).timing
    estimate = t.train_s + t.eval_s + t.attribute_s + t.evaluate_s
    with tempfile.TemporaryDirectory(dir=a.work) as work:
        real = real_seconds(Path(work) / "run")
    print(f"the tiny config scaled up, on {t.device} with {torch.get_num_threads()} threads")
    print(
        f"plan's estimate: train {t.train_s + t.eval_s:.1f} s, attribute {t.attribute_s:.1f} s, "
        f"evaluate {t.evaluate_s:.1f} s; {estimate:.1f} s in all (measured in "
        f"{t.measured_s:.1f} s)"
    )
    print(f"real run of {', '.join(STAGES)}: {real:.1f} s (start-up included)")
    print(f"estimate / real: {estimate / real:.2f}")


if __name__ == "__main__":
    main()

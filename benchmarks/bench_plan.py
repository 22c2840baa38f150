"""``smoothstab plan``'s time estimate against a real run's wall time, stage by stage.

    OMP_NUM_THREADS=1 python benchmarks/bench_plan.py [--budget SECONDS] [--work DIR] [--quickstart]

For each config, :func:`~smoothstab.experiments.plan.make.make_plan` times a few steps here (each
measurement about ``--budget`` seconds, as ``smoothstab plan``) and extrapolates; then the stages
it estimates (train, attribute, evaluate) run one after the other into a fresh run directory
(``stages.run_all``, one stage a call, in this process: no interpreter start-up), each timed by
its wall clock. Printed per stage: plan's estimate, the real seconds and real / estimate. Plan's
train estimate is training plus test evaluation; the real train stage also generates and loads
the data, which plan leaves out. Configs:

- *tiny*: the test suite's tiny quickstart (``tests/helpers.py`` ``TINY_SETTINGS``), a few
  seconds in all, so a stage's fixed costs (data generation, files) weigh;
- *measured*: the tiny run with 16 noise draws, 8 images, 8 IG points and 8 epochs (15-20 s),
  big enough that compute dominates: the config the suite used to time;
- with ``--quickstart``, the quickstart preset's attribute stage alone (its models trained for
  one epoch first, untimed: neither the stage's work nor plan's estimate of it depends on the
  weights).

A timed comparison fails on a machine busy with other work, which is why this is a benchmark and
not a test. Results, with the command and the load, are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from helpers import TINY_SETTINGS  # noqa: E402
from smoothstab.experiments.config.load import load_config  # noqa: E402
from smoothstab.experiments.pipeline import run_all  # noqa: E402
from smoothstab.experiments.plan.make import make_plan  # noqa: E402

MEASURED = [
    *TINY_SETTINGS,
    "train.epochs=8",
    "attribution.n_samples=16",
    "attribution.n_images=8",
    "attribution.image_batch=8",
    "attribution.ig_steps=8",
]
STAGES = ("train", "attribute", "evaluate")


def estimates(cfg, budget: float) -> dict[str, float]:
    t = make_plan(cfg, budget=budget).timing
    return {"train": t.train_s + t.eval_s, "attribute": t.attribute_s, "evaluate": t.evaluate_s}


def wall_times(cfg, out: Path, stages: tuple[str, ...]) -> dict[str, float]:
    out.mkdir(parents=True, exist_ok=True)
    real = {}
    for stage in stages:
        start = time.perf_counter()
        run_all(cfg, out, (stage,))
        real[stage] = time.perf_counter() - start
    return real


def show(name: str, estimate: dict[str, float], real: dict[str, float]) -> None:
    print(f"\n{name}\n| stage | plan (s) | real (s) | real / plan |\n| --- | ---: | ---: | ---: |")
    for stage in real:
        ratio = real[stage] / estimate[stage] if estimate[stage] > 0 else float("inf")
        print(f"| {stage} | {estimate[stage]:.1f} | {real[stage]:.1f} | {ratio:.2f} |")
    if len(real) > 1:
        e, r = sum(estimate[s] for s in real), sum(real.values())
        print(f"| total | {e:.1f} | {r:.1f} | {r / e:.2f} |")


def bench(name: str, settings: list[str], work: Path, budget: float) -> None:
    cfg = load_config("quickstart", [*settings, "quiet=true"])
    show(name, estimates(cfg, budget), wall_times(cfg, work / name, STAGES))


def bench_quickstart_attribute(work: Path, budget: float) -> None:
    cfg = load_config("quickstart", ["quiet=true", "train.epochs=1"])  # as the preset's attribute
    (work / "quickstart").mkdir(parents=True)
    run_all(cfg, work / "quickstart", ("train",))
    real = wall_times(cfg, work / "quickstart", ("attribute",))
    show("quickstart, attribute stage", estimates(cfg, budget), real)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=1.0, help="seconds per timed measurement")
    p.add_argument("--work", type=Path, default=None, help="run directories (default: a temp dir)")
    p.add_argument(
        "--quickstart", action="store_true", help="also the quickstart's attribute stage"
    )
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        bench("tiny", TINY_SETTINGS, work, args.budget)
        bench("measured", MEASURED, work, args.budget)
        if args.quickstart:
            bench_quickstart_attribute(work, args.budget)
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

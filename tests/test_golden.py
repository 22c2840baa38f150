"""Golden digests: the quickstart at a tiny size must keep every number of its ``metrics.csv``.

Two tiny runs of the embedded quickstart (the second reuses the first's trained models with the
other estimators: antithetic pairs, the joint smoothed-IG sampler, independent noise per model)
are hashed row by row. A refactor that changes any number, even in the last bit, fails here and
names the (method, metric) groups that moved. When a change of numbers is intended, rerun with
``pytest tests/test_golden.py --accept-golden`` (or ``SMOOTHSTAB_ACCEPT_GOLDEN=1``) and say in the
commit why the numbers changed.

The runs go through ``python -m smoothstab`` in a subprocess, so the test does not depend on
how the package is laid out inside.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import TINY_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "quickstart_tiny.json"
TINY = TINY_SETTINGS
VARIANTS = {
    "default": [],
    "antithetic_joint_independent": [
        "attribution.antithetic=true",
        "attribution.ig_estimator=joint",
        "attribution.common_random_numbers=false",
    ],
}
TRAINED = ("splits.json", "model_0.pt", "model_1.pt", "train_metrics.json")

pytestmark = pytest.mark.slow


def smoothstab(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CI": "true"}
    cmd = [sys.executable, "-m", "smoothstab", *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]


def digest(path: Path) -> dict:
    """The sha256 of the CSV text, the row count, and per (method, metric) the exact sum of
    values (repr of the float) so that a failure says where the numbers moved."""
    text = path.read_text()
    sums: dict[str, list[float]] = defaultdict(list)
    for row in csv.DictReader(text.splitlines()):
        sums[f"{row['method']}/{row['metric']}"].append(float(row["value"]))
    return {
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "rows": text.count("\n") - 1,
        "sums": {k: repr(sum(v)) for k, v in sorted(sums.items())},
    }


@pytest.fixture(scope="module")
def digests(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("golden")
    out = {}
    first = None
    for name, extra in VARIANTS.items():
        run_dir = base / name
        sets = [a for s in TINY + extra for a in ("--set", s)]
        stages = ["--stages", "train", "attribute", "evaluate"]
        if first is not None:  # the same trained models, other estimators
            run_dir.mkdir()
            for f in TRAINED:
                shutil.copy2(first / f, run_dir / f)
            stages = ["--stages", "attribute", "evaluate"]
        smoothstab("run", "--out", str(run_dir), "--quiet", *stages, *sets)
        first = first or run_dir
        out[name] = digest(run_dir / "metrics.csv")
    return out


def test_quickstart_numbers_are_unchanged(digests, request):
    accept = request.config.getoption("--accept-golden") or os.environ.get(
        "SMOOTHSTAB_ACCEPT_GOLDEN"
    )
    if accept or not GOLDEN.is_file():
        GOLDEN.write_text(json.dumps({"overrides": TINY, "variants": digests}, indent=1) + "\n")
        if not accept:
            pytest.fail(f"no golden digest yet: wrote {GOLDEN}; commit it and rerun")
        return
    stored = json.loads(GOLDEN.read_text())["variants"]
    for name, now in digests.items():
        was = stored[name]
        moved = [
            k
            for k in was["sums"].keys() | now["sums"].keys()
            if was["sums"].get(k) != now["sums"].get(k)
        ]
        assert now == was, (
            f"{name}: metrics.csv changed ({was['rows']} -> {now['rows']} rows); groups whose "
            f"values moved: {sorted(moved) or 'none (formatting or order)'}. If intended, rerun "
            "with --accept-golden and explain the change in the commit."
        )

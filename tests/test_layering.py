"""The core stays apart from the experiment layer: no plotting, no argparse, no file I/O."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "smoothstab"


def test_importing_the_core_pulls_in_neither_matplotlib_nor_the_experiment_layer():
    # (argparse is not checked here: torch itself imports it)
    code = (
        "import sys, smoothstab, smoothstab.bounds, smoothstab.metrics; "
        "bad = [m for m in sys.modules if m.startswith(('matplotlib', 'smoothstab.experiments',"
        " 'smoothstab.cli'))]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_core_modules_do_no_file_io():
    for path in CORE.glob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        text = path.read_text()
        banned = (
            "open(",
            "torch.save",
            "torch.load",
            "import argparse",
            "matplotlib",
            "import experiments",
            "smoothstab.experiments import",
        )
        for needle in banned:
            assert needle not in text, f"{path.name} uses {needle}"

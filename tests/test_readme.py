"""The README's library example runs as written, and its claims about files hold."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_library_example_runs(capsys):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.count("tensor(") >= 5  # fidelity, 3 distance estimates, SSIM, IoU


def test_every_preset_named_in_the_readme_exists():
    from smoothstab.experiments.experiment import preset_names

    named = set(re.findall(r"smoothstab run (paper/\w+)", README))
    assert named and named <= set(preset_names()), named - set(preset_names())

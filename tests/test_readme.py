"""The README's library example runs as written, and the presets it and the docs name exist."""

from __future__ import annotations

import re

from helpers import ROOT

README = (ROOT / "README.md").read_text()


def test_library_example_runs(capsys):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.count("tensor(") >= 5  # fidelity, 3 distance estimates, SSIM, IoU


def test_every_preset_named_in_the_docs_exists():
    """The README and the documentation (docs/*.md) run only presets the package ships."""
    from smoothstab.experiments.config.load import preset_names

    text = README + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
    named = set(re.findall(r"smoothstab (?:run|plan|config) ((?:paper/)?\w+)(?![\w./])", text))
    named -= {"CONFIG", "PRESET"}  # the placeholders of usage lines
    assert {"paper/imagenet_resnet50", "paper/table1_da", "hub_resnet50_ft"} <= named
    assert named <= set(preset_names()), named - set(preset_names())

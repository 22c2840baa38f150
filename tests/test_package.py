"""The package as a user gets it: the wheel built from this tree, installed into a fresh venv,
works with the source tree out of the import path.

The new venv sees this test environment's packages (torch, ...) through a ``.pth`` file, so the
wheel installs with ``--no-deps`` in seconds and torch exists once. A venv made by a venv's
python with ``--system-site-packages`` would see the base interpreter's packages instead, hence
the ``.pth``: its plain path lines add the directories without running their ``.pth`` files, so
an editable install of smoothstab in the test environment stays out too.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from helpers import ROOT, TINY_SETTINGS

LEFT_OUT = shutil.ignore_patterns(
    ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def sh(*args: str | Path, cwd: Path, timeout: float = 600) -> str:
    """stdout of ``args``, run in ``cwd`` without PYTHONPATH; its stderr in a failure."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def build(tmp: Path) -> tuple[Path, Path]:
    """The sdist and the wheel built from a copy of this tree (this tree stays untouched), with
    this environment's setuptools (no isolation, so no network)."""
    shutil.copytree(ROOT, tmp / "src", ignore=LEFT_OUT)
    sh(sys.executable, *"-m build --no-isolation --outdir dist src".split(), cwd=tmp)
    (sdist,) = (tmp / "dist").glob("smoothstab-*.tar.gz")
    (wheel,) = (tmp / "dist").glob("smoothstab-*.whl")
    return sdist, wheel


def fresh_venv(path: Path) -> tuple[Path, Path]:
    """A venv at ``path`` that sees this environment's site-packages; its python and its own
    site-packages."""
    sh(sys.executable, "-m", "venv", "--without-pip", path, cwd=path.parent)
    python = path / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(sh(python, "-c", code, cwd=path.parent).strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_test_environment.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return python, site


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("build") is None, reason="needs the build package")
def test_the_wheel_works_installed(tmp_path):
    sdist, wheel = build(tmp_path)
    assert importlib.util.find_spec("twine") is not None, "the test extra installs twine"
    # PyPI's checks of the metadata
    assert "PASSED" in sh(sys.executable, "-m", "twine", "check", sdist, wheel, cwd=tmp_path)
    configs = ROOT / "smoothstab" / "configs"
    presets = {
        f"smoothstab/configs/{p.relative_to(configs).as_posix()}" for p in configs.rglob("*.toml")
    }
    assert len(presets) >= 6 and presets <= set(zipfile.ZipFile(wheel).namelist())
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[-1] for n in tar.getnames()}
    assert {"LICENSE", "CITATION.cff", "CHANGELOG.md", "tests/conftest.py"} <= names

    python, site = fresh_venv(tmp_path / "venv")
    pip = [sys.executable, "-m", "pip", "--python", python]  # this pip, into the new venv
    sh(*pip, *"install --no-deps --no-index -q".split(), wheel, cwd=tmp_path)
    assert not list(site.glob("torch*")), "torch installed a second time"
    work = tmp_path / "work"  # cwd: neither the source tree nor the dist folder
    work.mkdir()

    code = "import smoothstab as s, torch; print(s.__file__, torch.__file__, s.__version__)"
    smoothstab_file, torch_file, version = sh(python, "-c", code, cwd=work).split()
    assert Path(smoothstab_file).is_relative_to(site), smoothstab_file  # the wheel's
    assert not Path(torch_file).is_relative_to(site), torch_file  # the test environment's
    assert f"-{version}-" in wheel.name

    smoothstab = python.parent / "smoothstab"
    assert sh(smoothstab, "--version", cwd=work).strip() == f"smoothstab {version}"
    assert "quickstart" in sh(smoothstab, "plan", "quickstart", "--no-timing", cwd=work)
    # the keys' meanings are read from the installed package's source
    assert "#   Noise draws per smoothed map" in sh(smoothstab, "config", cwd=work)
    sets = [a for s in TINY_SETTINGS for a in ("--set", s)]
    stages = ["--stages", "train", "attribute", "evaluate"]
    sh(smoothstab, "run", "--out", "run", "--quiet", *stages, *sets, cwd=work)
    assert (work / "run" / "metrics.parquet").stat().st_size > 0

    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    check = "\nimport smoothstab\nprint('imported from', smoothstab.__file__)\n"
    (work / "snippet.py").write_text(snippet + check)
    out = sh(python, "snippet.py", cwd=work)
    assert out.count("tensor(") >= 5
    assert f"imported from {smoothstab_file}" in out

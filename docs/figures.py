"""The documentation's pictures and printed outputs, made by one command:

    python docs/figures.py [--run RUN_DIR] [--only NAME ...]

Each example of the gallery, ``docs/gallery/NAME.py``, runs as a script with
``docs/gallery/out/`` as its working directory (one thread, so the numbers are those of any
machine's single-thread kernels): what it prints goes to ``out/NAME.txt`` and the pictures it
saves stay there; the pages include both. The examples that read a run directory (``NEEDS_RUN``)
run only with ``--run``, on that directory; the figures its report drew (``RUN_DIR/figures``)
the pages show (``figures/run/NAME.png`` links) are copied into ``docs/figures/run/``, the
grids under one name per method (``grid_METHOD.png``), with ``run.txt`` naming the run, the
command, the commit and the machine (the pages include it), and the notebook ``docs/notebook.ipynb``
is executed on that directory and saved with its outputs (nbclient, the ``docs`` extra).

The committed pictures were made from the run each page names; a run on another CPU draws the
same pictures with numbers that differ within the tolerances the pages state.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GALLERY = DOCS / "gallery"
OUT = GALLERY / "out"
RUN_FIGURES = DOCS / "figures" / "run"
# examples whose first argument is a run directory
NEEDS_RUN = {"load_run", "choose_sigma", "paper_figure2", "compare_checkpoints"}
NOTEBOOK = DOCS / "notebook.ipynb"


def examples() -> list[str]:
    return sorted(p.stem for p in GALLERY.glob("*.py"))


def run_example(name: str, out: Path, run: Path | None) -> float:
    """Runs ``docs/gallery/NAME.py`` in ``out``; its standard output goes to ``out/NAME.txt``.
    Returns the seconds it took; a failing example stops the command with its error."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    args = [sys.executable, str(GALLERY / f"{name}.py")] + ([str(run)] if run else [])
    start = time.perf_counter()
    done = subprocess.run(args, cwd=out, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"docs/figures.py: docs/gallery/{name}.py failed:\n{done.stderr[-3000:]}")
    (out / f"{name}.txt").write_text(done.stdout)
    return time.perf_counter() - start


def execute_notebook(path: Path, run: Path, timeout: int = 600):
    """The notebook at ``path`` executed top to bottom in a fresh kernel (working directory
    ``docs/``, ``SMOOTHSTAB_RUN=run``, one thread); returns it with its outputs, unsaved. A cell
    that raises stops it with nbclient's CellExecutionError."""
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    keys = ("SMOOTHSTAB_RUN", "OMP_NUM_THREADS", "MPLBACKEND", "PYTHONPATH", "PYTHONWARNINGS")
    saved = {k: os.environ.get(k) for k in keys}
    path_ = os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]]))
    os.environ.update(SMOOTHSTAB_RUN=str(run.resolve()), OMP_NUM_THREADS="1", PYTHONPATH=path_)
    # timm imports tqdm.auto, which warns in a kernel without ipywidgets: not the notebook's
    os.environ["PYTHONWARNINGS"] = "ignore:IProgress not found"
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend draws the figures
    try:
        client = nbclient.NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": DOCS}}
        )
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook


def shown_run_figures() -> set[str]:
    """The names of the run's figures the pages show (Markdown links to
    ``figures/run/NAME.png``)."""
    pages = [*DOCS.rglob("*.md"), NOTEBOOK]
    link = re.compile(r"\]\((?:\.\./)*figures/run/([\w.-]+\.png)\)")  # ](figures/run/X.png)
    return {name for page in pages for name in link.findall(page.read_text())}


def copy_run_figures(run: Path, dest: Path, names: set[str] | None = None) -> list[Path]:
    """The run's report figures into ``dest`` (only ``names``, when given: those the pages
    show), each PNG re-encoded at the smallest size; ``grid_METHOD_I-J.png`` becomes
    ``grid_METHOD.png`` (the first pair's), so a page's link does not name a pair."""
    from PIL import Image

    figures = run / "figures"
    if not figures.is_dir():
        sys.exit(f"docs/figures.py: --run {run}: no figures/ folder; run its stages first")
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(figures.glob("*.png")):
        name = path.name
        if name.startswith("grid_"):
            name = "grid_" + name.removeprefix("grid_").rsplit("_", 1)[0] + ".png"
            if (dest / name) in copied:
                continue
        if names is not None and name not in names:
            continue
        try:
            with Image.open(path) as image:
                image.save(dest / name, optimize=True)
        except OSError:  # not a PNG Pillow reads: copied as it is
            shutil.copyfile(path, dest / name)
        copied.append(dest / name)
    return copied


def run_record(run: Path, command: str) -> str:
    """Which run the pictures of ``docs/figures/run/`` come from, for the pages that show them:
    the command, the run's name, models and images, the repository's commit, the machine and
    when the run was evaluated."""
    import platform

    import torch

    from smoothstab.experiments.rundir.metrics_table import read_rows

    rows = read_rows(run / "metrics.parquet")
    models = {r["model"] for r in rows if r["model"] != ""} | {
        m for r in rows if r["pair"] for m in str(r["pair"]).split("-")
    }
    images = {r["image"] for r in rows}
    name = next((line.split("=", 1)[1].strip().strip('"') for line in
                 (run / "config.toml").read_text().splitlines() if line.startswith("name")),
                run.name)  # fmt: skip
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    when = time.strftime("%Y-%m-%d", time.gmtime((run / "metrics.parquet").stat().st_mtime))
    return (
        f"made by:  {command}\n"
        f"run:      {name} ({len(models)} models, {len(images)} test images), evaluated {when}\n"
        f"code:     smoothstab at commit {commit or 'unknown'}, torch {torch.__version__}\n"
        f"machine:  {platform.machine()}, {os.cpu_count()} CPU threads, {platform.system()}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docs/figures.py", description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="a finished run directory (runs/quickstart)")
    parser.add_argument("--only", nargs="+", choices=examples(), help="these examples only")
    parser.add_argument("--out", type=Path, default=OUT, help=argparse.SUPPRESS)
    parser.add_argument("--run-figures", type=Path, default=RUN_FIGURES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run is not None and not (args.run / "metrics.parquet").is_file():
        parser.error(f"--run: {args.run} is not a finished run directory (no metrics.parquet)")
    for name in args.only or examples():
        if name in NEEDS_RUN and args.run is None:
            print(f"{name}: skipped (it reads a run directory: give --run)")
            continue
        # the examples run in their output folder: the run's path must not be relative
        run = args.run.resolve() if name in NEEDS_RUN else None
        seconds = run_example(name, args.out, run)
        print(f"{name}: {seconds:.0f} s -> {args.out / name}.txt")
    if args.run is not None:
        copied = copy_run_figures(args.run, args.run_figures, shown_run_figures())
        command = f"python docs/figures.py --run {args.run}"
        (args.run_figures / "run.txt").write_text(run_record(args.run, command))
        print(f"{len(copied)} figures of {args.run} -> {args.run_figures} (run.txt names the run)")
        import nbformat

        start = time.perf_counter()
        nbformat.write(execute_notebook(NOTEBOOK, args.run.resolve()), NOTEBOOK)
        print(f"notebook: {time.perf_counter() - start:.0f} s -> {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The documentation's own tools: the Griffe extension that turns the docstrings' Sphinx roles
into links (``docs/griffe_roles.py``), the command that makes the pictures and example outputs
(``docs/figures.py``), and what it runs: every gallery script and the notebook (slow tier), so
none of them can rot.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import ROOT, subprocess_env

DOCS = ROOT / "docs"
GALLERY = DOCS / "gallery"


def load(name: str):
    """A module of docs/ (not a package) by its file name."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


roles = load("griffe_roles")
figures = load("figures")


# --- grouped parameters -------------------------------------------------------------------------


def test_grouped_entries_are_split_in_parameter_sections_only():
    text = textwrap.dedent(
        """\
        Summary, with a comma: not a parameter.

        Args:
            x: the input.
            steps, rule (int): quadrature, see
                the rule's points.
            a, b: two maps.

        Returns:
            lo, hi: a returned pair is left as written.
        Attributes:
            low, high: the range.
        """
    )
    assert roles.split_grouped(text) == textwrap.dedent(
        """\
        Summary, with a comma: not a parameter.

        Args:
            x: the input.
            steps (int): quadrature, see
                the rule's points.
            rule (int): quadrature, see
                the rule's points.
            a: two maps.
            b: two maps.

        Returns:
            lo, hi: a returned pair is left as written.
        Attributes:
            low: the range.
            high: the range.
        """
    )


# --- roles -----------------------------------------------------------------------------------


PACKAGE = {
    "__init__.py": '"""Uses :func:`helper` and :class:`.Thing`."""\nfrom .core import Thing\n',
    "core.py": '''\
        """The core: :class:`Thing`, :func:`~rolepkg.util.helper`, :mod:`ast` and
        ``:func:`literal```, one wrapped :class:`~rolepkg.core.
        Thing`."""

        from .util import helper


        class Thing:
            """Uses :meth:`run`, :attr:`size`, :func:`helper` and :meth:`.Thing.run`."""

            size: int = 1

            def run(self):
                """See :class:`Thing`, :func:`missing_name` and :exc:`ValueError`."""
        ''',
    "util.py": '"""Helpers."""\n\n\ndef helper():\n    """Helps :class:`rolepkg.Thing`."""\n',
}


@pytest.fixture(scope="module")
def rolepkg(tmp_path_factory):
    import griffe

    root = tmp_path_factory.mktemp("roles")
    for name, text in PACKAGE.items():
        path = root / "rolepkg" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(text))
    extensions = griffe.load_extensions(f"{DOCS / 'griffe_roles.py'}:SphinxRoles")
    logger = logging.getLogger()  # the extension's logger ("griffe_roles") propagates here
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    try:
        package = griffe.load("rolepkg", search_paths=[str(root)], extensions=extensions)
    finally:
        logger.removeHandler(handler)
    return package, records


def ref(identifier: str, title: str) -> str:
    return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'


def test_roles_resolve_as_sphinx_resolves_them(rolepkg):
    package, _ = rolepkg
    core = package["core"].docstring.value
    assert ref("rolepkg.core.Thing", "Thing") in core  # the module's own name
    assert ref("rolepkg.util.helper", "helper") in core  # ~ keeps the last component
    assert ref("rolepkg.core.Thing", "Thing") in core.split("wrapped")[1]  # wrapped over lines
    assert "`ast`" in core and '<autoref identifier="ast"' not in core  # outside: plain code
    assert "``:func:`literal```" in core  # a role inside a literal is shown as is
    thing = package["core.Thing"].docstring.value
    assert ref("rolepkg.core.Thing.run", "run") in thing  # the class first
    assert ref("rolepkg.core.Thing.size", "size") in thing
    assert ref("rolepkg.util.helper", "helper") in thing  # an import of the module
    assert ref("rolepkg.core.Thing.run", "Thing.run") in thing  # a leading dot, dropped
    init = package.docstring.value  # through the package's import, to the canonical path
    assert ref("rolepkg.util.helper", "helper") in init  # the one object of that name
    assert ref("rolepkg.core.Thing", "Thing") in init
    assert ref("rolepkg.core.Thing", "rolepkg.Thing") in package["util.helper"].docstring.value


def test_a_role_that_names_nothing_is_a_warning(rolepkg):
    package, records = rolepkg
    run = package["core.Thing.run"].docstring.value
    assert "`missing_name`" in run and "`ValueError`" in run  # plain code either way
    (warning,) = [r for r in records if "missing_name" in r]
    assert "rolepkg.core.Thing.run" in warning and "names no object" in warning, records
    assert not [r for r in records if "ValueError" in r]  # a builtin is not ours to link


# --- what the pages reference ------------------------------------------------------------------


def test_every_picture_and_included_file_of_the_pages_exists():
    """Each image a page shows and each file it includes is in the repository (the strict
    build checks the images too, in the slow tier)."""
    missing = []
    for page in DOCS.rglob("*.md"):
        text = page.read_text()
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text):
            if not (page.parent / target).is_file():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
        for target in re.findall(r'^--8<-- "([^":]+)', text, re.M):
            if not (ROOT / target).is_file():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
    assert missing == []


def test_every_gallery_script_has_its_page_and_outputs():
    for script in GALLERY.glob("*.py"):
        page = (GALLERY / f"{script.stem}.md").read_text()
        assert f'--8<-- "docs/gallery/{script.name}"' in page, script.name
        assert f'--8<-- "docs/gallery/out/{script.stem}.txt"' in page, script.name
        assert (GALLERY / "out" / f"{script.stem}.txt").read_text().strip(), script.name
        assert f"]({script.stem}.md)" in (GALLERY / "index.md").read_text(), script.name


# --- the command -------------------------------------------------------------------------------


def test_the_figures_command_refuses_a_folder_that_is_not_a_run(tmp_path):
    done = subprocess.run(
        [sys.executable, str(DOCS / "figures.py"), "--run", str(tmp_path)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert done.returncode == 2, done.stderr
    assert f"--run: {tmp_path} is not a finished run directory (no metrics.parquet)" in done.stderr


def test_a_runs_figures_are_copied_with_one_grid_per_method(tmp_path):
    run = tmp_path / "run" / "figures"
    run.mkdir(parents=True)
    for name in ("stability.png", "grid_grad_0-1.png", "grid_grad_2-3.png", "grid_ig_0-1.png"):
        (run / name).write_bytes(name.encode())
    copied = figures.copy_run_figures(tmp_path / "run", tmp_path / "dest")
    assert sorted(p.name for p in copied) == ["grid_grad.png", "grid_ig.png", "stability.png"]
    assert (tmp_path / "dest" / "grid_grad.png").read_bytes() == b"grid_grad_0-1.png"


def test_only_the_figures_the_pages_show_are_copied(tmp_path):
    """The pages' ``figures/run/NAME.png`` links name what is copied (the quickstart's answer,
    stability and grid, choose-sigma's trade-off and strip); nothing else of the run is."""
    shown = figures.shown_run_figures()
    assert {"answer.png", "stability.png", "grid_grad.png", "tradeoff.png"} <= shown
    run = tmp_path / "run" / "figures"
    run.mkdir(parents=True)
    for name in ("answer.png", "fidelity.png", "grid_grad_0-1.png", "grid_ig_0-1.png"):
        (run / name).write_bytes(name.encode())  # not PNGs: copied as they are
    copied = figures.copy_run_figures(tmp_path / "run", tmp_path / "dest", shown)
    assert sorted(p.name for p in copied) == ["answer.png", "grid_grad.png"]
    assert all((DOCS / "figures" / "run" / name).is_file() for name in shown)


def test_the_run_record_names_the_run(tmp_path):
    """run.txt: the command, the run's name with its models and images, the commit."""
    from helpers import crossed_rows
    from smoothstab.experiments.rundir.metrics_table import rows_table, write_table

    (tmp_path / "config.toml").write_text('name = "quickstart"\n')
    write_table(tmp_path / "metrics.parquet", rows_table(crossed_rows(4, 3, {0.0: 0, 0.1: 0})))
    text = figures.run_record(tmp_path, "python docs/figures.py --run runs/quickstart")
    lines = text.splitlines()
    assert lines[0] == "made by:  python docs/figures.py --run runs/quickstart"
    assert lines[1].startswith("run:      quickstart (4 models, 3 test images), evaluated 20")
    assert lines[2].startswith("code:     smoothstab at commit ")


# --- the examples run (slow) -----------------------------------------------------------------


def pictures_of(page: Path) -> list[str]:
    """The names of the gallery outputs ``page`` shows (``out/NAME.png``)."""
    return re.findall(r"\]\((?:gallery/)?out/([\w.-]+\.png)\)", page.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in GALLERY.glob("*.py")))
def test_gallery_scripts_run_and_draw_what_their_page_shows(name, tiny_run, tmp_path):
    if name == "smooth_timm":
        pytest.importorskip("timm")
    run = tiny_run if name in figures.NEEDS_RUN else None
    figures.run_example(name, tmp_path, run)
    assert (tmp_path / f"{name}.txt").read_text().strip()
    shown = pictures_of(GALLERY / f"{name}.md")
    assert shown, f"the page of {name} shows no picture"
    assert [p for p in shown if not (tmp_path / p).is_file()] == []


@pytest.mark.slow
def test_the_pages_show_pictures_the_gallery_draws():
    """Getting started and Smooth any model's map show gallery outputs (which the test above
    sees drawn)."""
    drawn = {p for page in GALLERY.glob("*.md") for p in pictures_of(page)}
    for page in ("index.md", "smooth_any_model.md"):
        shown = pictures_of(DOCS / page)
        assert shown and set(shown) <= drawn, (page, shown)


@pytest.mark.slow
def test_the_notebook_runs_on_a_run(tiny_run):
    """docs/notebook.ipynb, executed top to bottom on the tiny run: no cell raises, and it draws
    its two pictures (the map grid and the curves)."""
    pytest.importorskip("timm")
    pytest.importorskip("nbclient")
    notebook = figures.execute_notebook(figures.NOTEBOOK, tiny_run)
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert [o for o in outputs if o.output_type == "error"] == []
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) >= 3  # SmoothStats, the summary and the recommendation

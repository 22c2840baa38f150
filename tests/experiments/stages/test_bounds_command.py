"""The bounds stage on the tiny run, through the command line."""

from __future__ import annotations

import itertools
import json
import math
import shutil

import pytest

from helpers import GRID, rises, run
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.rundir.metrics_table import read_rows


@pytest.mark.slow
def test_bounds_subcommand(tiny_run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(tiny_run, d)
    for path in (d / "bounds.json", d / "bounds.md", d / "figures" / "bounds.png"):
        path.unlink()
    assert run("bounds", d, "--quiet") == 0
    res = json.loads((d / "bounds.json").read_text())
    assert res == json.loads((tiny_run / "bounds.json").read_text())
    assert (d / "bounds.md").is_file() and (d / "figures" / "bounds.png").is_file()
    # Finished work is skipped: a second call leaves the files as they are.
    stamps = {p: p.stat().st_mtime_ns for p in (d / "bounds.json", d / "bounds.md")}
    assert run("bounds", d, "--quiet") == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    x_range = dataset_info("shapes").x_range
    assert [row["r"] for row in res["rows"]] == GRID[1:]
    summary = Summary.from_rows(read_rows(d / "metrics.parquet"))
    for row in res["rows"]:
        assert row["sigma"] == pytest.approx(row["r"] * x_range, rel=1e-12)
        # Measured values are the run's (debiased, as the run asks for).
        assert row["stability_grad"] == summary.get("grad", "stability_debiased", row["r"]).mean
        assert row["fidelity_ig"] == summary.get("ig", "fidelity_debiased", row["r"]).mean
        assert row["stability_bound_log10"] is not None
    # Prop. 7 bounds are linear in sigma: log10(bound) - log10(sigma) is one constant.
    for key in ("fidelity_bound_grad_log10", "fidelity_bound_ig_log10"):
        offsets = [row[key] - math.log10(row["sigma"]) for row in res["rows"]]
        assert max(offsets) - min(offsets) < 1e-9, key
        assert rises([row[key] for row in res["rows"]]), key
    # The Simple-Grad bound (Theorem 5) caps the Smooth-Grad bound (Theorem 6), which cannot
    # grow with sigma.
    stab = [row["stability_bound_log10"] for row in res["rows"]]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(stab))
    assert max(stab) <= res["simplegrad_log10"] + 1e-9
    # T in single-example steps (2 epochs x 400), every bound flagged against 2 Gamma_{k,0},
    # and Theorem 5 with the measured Simple-Grad stability (r = 0) per training-set size.
    assert (res["step_unit"], res["n"], res["T"]) == ("examples", 400, 2 * 400)
    for row in res["rows"]:
        vacuous = row["stability_bound_log10"] > res["trivial_log10"]
        assert row["stability_bound_vacuous"] == vacuous
    (by_n,) = res["by_n"]
    assert (by_n["n"], by_n["simplegrad_log10"]) == (400, res["simplegrad_log10"])
    assert by_n["stability_grad"] == summary.get("grad", "stability", 0.0, n=400).mean
    # The report's bounds section holds the bounds table, per sigma.
    assert run("report", d, "--quiet") == 0
    md = (d / "report.md").read_text()
    section = md[md.index("## Theory: bounds beside the measured errors") :]
    assert "Prop. 7 bound" in section and "figures/bounds.png" in section
    assert all(f"| {r:g} | {r * x_range:.4g} |" in section for r in GRID[1:])
    # ... and in HTML as a table, one row per sigma, not Markdown pipes in a paragraph.
    page = (d / "report.html").read_text()
    section = page[page.index("<h2>Theory: bounds") :]
    assert "<th>Theorem 6 bound on eps_stab" in section and "| r | sigma |" not in page
    assert all(f"<tr><td>{r:g}</td><td>{r * x_range:.4g}</td>" in section for r in GRID[1:])

"""``smoothstab plan --pilot RUN_DIR --target-halfwidth X``: from a pilot's own variance
components, the models and images each method's change needs and the cost of the run that
decides every method, asked of the plan's counts. A pilot made by hand (no training)."""

from __future__ import annotations

import re

from helpers import config, crossed_rows, fake_run
from smoothstab.experiments.cli import main
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.plan.counts import attribution_costs, training_costs
from smoothstab.experiments.plan.pilot import pilot_plan, unit_costs
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.metrics_table import rows_table, write_table


def pilot(tmp, k: int = 6, m: int = 24, model_sd: float = 0.05):
    """A run directory with a pilot's metrics table: k models of the tiny config's method, a
    -10% change of the unit-map distance from r = 0 to 0.1."""
    d = fake_run(tmp)
    rows = crossed_rows(k, m, {0.0: 0.0, 0.1: -0.1}, model_sd=model_sd, noise=0.05)
    write_table(RunDir(d).metrics, rows_table(rows))
    return d


def test_unit_costs_are_the_counts_of_a_run(tmp_path):
    """A run with k models and m images costs k a + k m b model evaluations, exactly as the
    plan's counts say for that config."""
    cfg = load_config(config(tmp_path))
    a, b = unit_costs(cfg)
    for parts, images in ((2, 2), (5, 7)):
        other = load_config(config(tmp_path), [f"train.parts={parts}",
                                               f"attribution.n_images={images}"])  # fmt: skip
        total = sum(c.models * c.passes for c in training_costs(other))
        total += sum(c.total for c in attribution_costs(other))
        assert total == parts * a + parts * images * b


def test_the_plan_meets_the_target_and_prices_it(tmp_path):
    d = pilot(tmp_path)
    cfg = load_config(config(tmp_path))
    pp = pilot_plan(cfg, d, 0.05)
    (one,) = pp.methods
    assert one.design.method == "grad" and one.design.components.k == 6
    assert one.halfwidth <= 0.05 and one.k >= 4
    a, b = unit_costs(cfg)
    assert one.cost == a * one.k + b * one.k * one.m
    assert (pp.config.train.parts, pp.config.attribution.n_images) == (one.k, one.m)
    # a tighter target needs at least as many models and images
    tight = pilot_plan(cfg, d, 0.02).methods[0]
    assert tight.k is None or tight.k * tight.m >= one.k * one.m


def test_the_plan_command_prints_both_plans(tmp_path, capsys):
    d = pilot(tmp_path)
    assert main(["plan", config(tmp_path), "--no-timing", "--pilot", str(d),
                 "--target-halfwidth", "0.05"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.startswith(f"sample size from the pilot {d} (6 models, 24 images)")
    assert re.search(r"a run that decides every method: \d+ models per size and \d+ images", out)
    assert "a plan from one small pilot is a rough guide" in out
    assert "\nplan for bad: " in out  # then the ordinary plan of that run

"""Agreement or shrinkage in the pipeline: the metrics table's rows from map statistics, the
split of the raw stability change into map norm and unit-map distance with its verdict (an
interval over retraining from four models; fewer: per-pair values and no verdict; one pair:
these two models, images and draws only), and the config switch. Synthetic inputs: no model is
trained."""

from __future__ import annotations

import pytest
import torch

from helpers import crossed_rows, rand
from smoothstab import metrics as M
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.per_image import model_groups, pair_groups
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.analysis.verdicts import split
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.pages.answer import (
    answer_table,
    pct,
    scope_lines,
    shrinkage_lines,
    split_sentence,
    verdict,
)
from smoothstab.montecarlo import monte_carlo

X = rand(3, 3, 12, 12, seed=1)


def stats(fn, seed):
    return monte_carlo(lambda xs, *_: fn(xs), X, sigma=0.5, n_samples=8, seed=seed)


# --- the metrics table's rows ----------------------------------------------------------------


def by_metric(groups):
    out = {}
    for group in groups:
        assert str(group.metric) not in out
        out[str(group.metric)] = group
    return out


def test_pair_rows_carry_the_unit_distance_and_ranks():
    a, b = stats(lambda x: x, 1), stats(lambda x: x + 0.5 * x**2, 1)  # common random numbers
    rows = by_metric(pair_groups(a, b, debiased=True, topk=10, pair=(0, 1)))
    assert {"unit_distance", "unit_distance_debiased", "rank_agreement"} <= set(rows)
    assert "rank_agreement_debiased" not in rows
    assert all(g.pair == (0, 1) and g.model is None for g in rows.values())
    values = lambda m: rows[m].values  # noqa: E731
    torch.testing.assert_close(values("unit_distance"), M.unit_distance(a.mean, b.mean))
    torch.testing.assert_close(values("rank_agreement"), M.rank_agreement(a.mean, b.mean))
    est = M.debiased_unit_distance(a, b)
    torch.testing.assert_close(values("unit_distance_debiased"), est.value)
    assert torch.equal(rows["unit_distance_debiased"].stderr, est.stderr)
    assert rows["unit_distance"].stderr is None
    # the cosine of the rows: 1 - u^2 / 2
    torch.testing.assert_close(1 - values("unit_distance") ** 2 / 2, M.cosine(a.mean, b.mean))
    plain = by_metric(pair_groups(a.mean, b.mean, debiased=False, topk=10))
    assert not any(m.endswith("_debiased") for m in plain)
    assert torch.equal(plain["unit_distance"].values, rows["unit_distance"].values)


def test_model_rows_carry_the_norm_at_every_r():
    smoothed, unsmoothed = stats(lambda x: x**2, 2), X**2
    rows = by_metric(model_groups(smoothed, unsmoothed, debiased=True, model=0))
    assert {"fidelity", "map_norm", "map_norm_debiased"} <= set(rows)
    norm = rows["map_norm"].values
    torch.testing.assert_close(norm, M.map_norm(smoothed.mean))
    debiased = rows["map_norm_debiased"].values
    assert (debiased < norm).all()  # the noise inflates the plain norm
    assert (rows["map_norm_debiased"].stderr > 0).all()
    exact = by_metric(model_groups(unsmoothed, unsmoothed, debiased=True))
    norm_u = M.map_norm(unsmoothed).tolist()
    assert exact["map_norm"].values.tolist() == norm_u
    assert exact["map_norm_debiased"].values.tolist() == pytest.approx(norm_u, rel=1e-12)


# --- the split and its verdict ---------------------------------------------------------------


def summary_of(k: int, change: float, m: int = 16, **kw) -> Summary:
    return Summary.from_rows(crossed_rows(k, m, {0.0: 0.0, 0.2: change / 2, 0.4: change}, **kw))


def test_percentages_keep_the_sign_of_small_changes():
    assert [pct(x) for x in (-0.003, 0.0, 0.05, -0.099, -0.1, 0.256)] == [
        "-0.3%",
        "+0.0%",
        "+5.0%",
        "-9.9%",
        "-10%",
        "+26%",
    ]


def test_six_models_that_agree_more():
    """Six models, the unit-map distance 10% lower at r = 0.4 for every pair: the interval over
    retraining lies below 0; the raw distance falls 28% (the maps also shrink 20%)."""
    s = split(summary_of(6, -0.1), "grad", None, debiased=False)
    assert (s.r1, s.k, s.m) == (0.4, 6, 16) and s.l2 == pytest.approx(-0.28, abs=0.01)
    assert s.norm == pytest.approx(-0.2) and s.unit.mean == pytest.approx(-0.1, abs=0.01)
    assert s.decided and s.change.scope == "retraining" and s.unit.hi < 0
    assert s.sign == -1 and verdict(s) == "the maps agree more" and not s.shrinkage_only
    assert split_sentence(s, 1) == (
        f"Simple-Grad: raw L2 {pct(s.l2)} from r = 0 to 0.4: map norm -20%, unit-map distance "
        f"{pct(s.unit.mean)} [{pct(s.unit.lo)}, {pct(s.unit.hi)}] (over retraining (6 models), "
        "16 images, draws); the maps agree more."
    )


def test_six_models_whose_maps_only_shrink():
    s = split(summary_of(6, 0.0, model_sd=0.05), "grad", None, debiased=False)
    assert s.unit.lo < 0 < s.unit.hi and s.sign == 0
    assert verdict(s) == "cannot tell: the interval holds 0" and s.shrinkage_only
    (line,) = shrinkage_lines([s])
    assert line.startswith("From r = 0 to 0.4 the raw L2 distance falls while agreement does not")
    worse = split(summary_of(6, 0.2), "grad", None, debiased=False)
    assert verdict(worse) == "the maps agree less" and worse.shrinkage_only


def test_three_models_give_the_pairs_and_no_verdict():
    """Three models: the same 10% fall, but no interval over retraining: each pair's change,
    no verdict, not even 'shrinkage only'."""
    s = split(summary_of(3, -0.1), "grad", None, debiased=False)
    assert s.k == 3 and not s.decided and s.sign is None and not s.shrinkage_only
    assert s.change.scope == "these models"
    assert verdict(s) == "3 models: too few for an interval over retraining"
    assert set(s.per_pair) == {"0-1", "0-2", "1-2"}
    (row,) = answer_table([s], None, "unit_distance").rows
    assert row[5].startswith("per pair: 0-1 ") and row[6] == "-"
    assert row[7] == "3 models: too few for an interval over retraining"
    assert "agree more" not in " ".join(row)
    (line,) = scope_lines([s])
    assert line.startswith("3 models per training-set size: too few for an interval over")


def test_one_pair_speaks_of_these_two_models():
    s = split(summary_of(2, -0.1), "grad", None, debiased=False)
    assert s.k == 2 and s.change.scope == "these models" and s.unit.hi < 0
    assert verdict(s) == "these two models only: no verdict about retrained models"
    (row,) = answer_table([s], None, "unit_distance").rows
    assert row[6] == "16 images and draws; these two models"
    (line,) = scope_lines([s])
    assert "about these two models, over the 16 test images and their Monte-Carlo draws" in line
    assert "agree more" not in split_sentence(s, 1)


def test_the_answer_names_the_measure_and_the_interval():
    s = split(summary_of(6, -0.1), "grad", None, debiased=True)
    table = answer_table([s], None, "l2")
    (row,) = table.rows
    assert row[6] == "retraining (6 models), 16 images, draws"
    assert table.header[-1] == "recommended r (by raw L2 distance)"  # one measure per report
    line, more = scope_lines([s])
    assert line.startswith("Intervals are 95%, over retraining (the 6 models per training-set")
    assert more.startswith("Pairs share models, so they are not independent")


def test_stability_measure_config():
    assert load_config(None).evaluation.stability_measure == "unit_distance"
    assert (
        load_config(None, ["evaluation.stability_measure=l2"]).evaluation.stability_measure == "l2"
    )
    for paper in ("paper/cifar10_resnet34", "paper/imagenet_resnet50", "paper/table1_dr"):
        assert load_config(paper).evaluation.stability_measure == "l2"
    with pytest.raises(ValueError, match="stability_measure"):
        load_config(None, ["evaluation.stability_measure=cosine"])
    assert Metric.measure("l2", True) == Metric.STABILITY_DEBIASED
    assert Metric.measure("unit_distance", False) == Metric.UNIT_DISTANCE

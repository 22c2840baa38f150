"""Agreement or shrinkage in the pipeline: the metrics table's rows from map statistics, the
split of the raw stability change into map norm and unit-map distance with its verdict, the
advice's stability measure, and the config switch. Synthetic inputs: no model is trained."""

from __future__ import annotations

import pytest
import torch

from smoothstab import metrics as M
from smoothstab.experiments.analysis import advice as sigma_advice
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.per_image import model_groups, pair_groups
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.analysis.verdicts import split
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.pages.answer import answer_table, pct, shrinkage_lines, split_sentence
from smoothstab.montecarlo import monte_carlo

F64 = torch.float64


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


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


def summary_of(unit_at_end: list[float], fidelity_end: float = 1.0, n=None) -> Summary:
    """Three pairs (or as many as values given) whose raw distance falls 20% from r = 0 to 0.4
    and whose maps shrink 20%; the unit-map distance goes from 1 to ``unit_at_end``."""
    rows = []
    pairs = [f"{i}-{i + 1}" for i in range(len(unit_at_end))]
    for r, l2, norm, fid in ((0.0, 10.0, 5.0, 0.0), (0.2, 9.0, 4.5, 0.5), (0.4, 8.0, 4.0, 1.0)):
        for k, pair in enumerate(pairs):
            u = 1.0 if r == 0 else (1.0 + unit_at_end[k]) / 2 if r == 0.2 else unit_at_end[k]
            for metric, value in (("stability", l2), ("unit_distance", u)):
                rows.append(dict(method="grad", metric=metric, r=r, n="", pair=pair, model="",
                                 value=value, stderr=""))  # fmt: skip
        for model in ("0", "1"):
            for metric, value in (("map_norm", norm), ("fidelity", fid * fidelity_end)):
                rows.append(dict(method="grad", metric=metric, r=r, n="", pair="", model=model,
                                 value=value, stderr=""))  # fmt: skip
    return Summary.from_rows(rows)


def test_percentages_keep_the_sign_of_small_changes():
    assert [pct(x) for x in (-0.003, 0.0, 0.05, -0.099, -0.1, 0.256)] == [
        "-0.3%",
        "+0.0%",
        "+5.0%",
        "-9.9%",
        "-10%",
        "+26%",
    ]


def test_a_split_that_agrees_more():
    s = split(summary_of([0.9, 0.92, 0.88]), "grad", None, debiased=False)
    assert (s.r1, s.l2, s.norm) == (0.4, pytest.approx(-0.2), pytest.approx(-0.2))
    assert s.unit.mean == pytest.approx(-0.1) and s.unit.hi < 0
    assert s.verdict == "the maps agree more" and not s.shrinkage_only
    assert split_sentence(s, 1) == (
        f"Simple-Grad: raw L2 -20% from r = 0 to 0.4: map norm -20%, unit-map distance -10% "
        f"[{pct(s.unit.lo)}, {pct(s.unit.hi)}] (interval over 3 model pairs); "
        "the maps agree more."
    )


def test_a_split_that_is_shrinkage_only():
    s = split(summary_of([1.03, 0.97, 1.02]), "grad", None, debiased=False)
    assert s.unit.lo < 0 < s.unit.hi
    assert s.verdict == "no more or less than the interval can tell" and s.shrinkage_only
    (line,) = shrinkage_lines([s])
    assert line.startswith("From r = 0 to 0.4 the raw L2 distance falls while agreement does not")
    assert "Simple-Grad: raw L2 -20%, unit-map distance +0.7% [" in line
    worse = split(summary_of([1.2, 1.25, 1.3]), "grad", None, debiased=False)
    assert worse.verdict == "the maps agree less" and worse.shrinkage_only


def test_one_pair_uses_the_monte_carlo_interval():
    s = split(summary_of([0.9]), "grad", None, debiased=False)
    assert s.unit.lo == s.unit.hi == pytest.approx(-0.1) and "no interval" in s.how
    assert s.verdict == "no interval to tell" and s.shrinkage_only  # not "agree more"
    rows = []  # the same with debiased rows, the unit distance's Monte-Carlo s.e. 0.2 at r = 0.4
    for r, u, se in ((0.0, 1.0, 0.0), (0.4, 0.9, 0.2)):
        base = dict(method="grad", r=r, n="", pair="0-1", model="", stderr="")
        rows.append({**base, "metric": "unit_distance_debiased", "value": u, "stderr": se})
        rows.append({**base, "metric": "stability_debiased", "value": 10 * u})
        rows.append({**base, "metric": "map_norm_debiased", "value": 5.0, "pair": "", "model": "0"})
    s = split(Summary.from_rows(rows), "grad", None, debiased=True)
    assert s.unit.hi - s.unit.mean == pytest.approx(1.96 * 0.2 / 1.0)
    assert "Monte-Carlo interval only" in s.how and s.norm == 0.0
    assert s.verdict == "no more or less than the interval can tell"


def test_the_advice_optimises_the_chosen_measure_and_the_answer_names_it():
    """Raw L2 falls all the way to r = 0.4 while the unit-map distance is lowest at 0.2: the
    raw measure recommends 0.4, the scale-free one 0.2, and the answer table says which."""
    summary = summary_of([1.1, 1.1, 1.1], fidelity_end=0.1)
    summary.bands[("grad", "unit_distance", 0.2, None)] = summary.get(
        "grad", "unit_distance", 0.2
    )._replace(mean=0.5)
    raw = sigma_advice.recommend(summary, ["grad"], debiased=False, budget=1.0, measure="l2")
    free = sigma_advice.recommend(
        summary, ["grad"], debiased=False, budget=1.0, measure="unit_distance"
    )
    assert raw["grad"]["budget_r"] == 0.4 and free["grad"]["budget_r"] == 0.2
    assert free["grad"]["stability_measure"] == "unit_distance"
    kw = dict(debiased=False, kind="t95", budget=1.0)
    (row,) = answer_table(summary, ["grad"], measure="unit_distance", **kw).rows
    assert row[-3:] == ["the maps agree less", "0.2 (within budget)", "unit-map distance"]
    (row,) = answer_table(summary, ["grad"], measure="l2", **kw).rows
    assert row[-2:] == ["0.4 (within budget)", "raw L2 distance"]


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

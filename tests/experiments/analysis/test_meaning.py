"""What a similarity means, in the streamed evaluation and its analysis: the per-block floors,
disagreement totals and predictions (synthetic maps: no model is trained), and the floors,
chance-corrected scores, same-prediction split and reliability score read from designed rows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from helpers import rand
from smoothstab import inference, metrics
from smoothstab.disagreement import chance_floor, disagreement_map
from smoothstab.experiments.analysis import meaning
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.per_image import (
    LevelMaps,
    disagreement_measures,
    floor_measures,
    measure,
    prediction_measures,
)
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.config.tables import AttributionConfig
from smoothstab.experiments.models.recipe import floor_partner
from smoothstab.montecarlo import monte_carlo

F64 = torch.float64


X = rand(5, 3, 12, 12, seed=1)


def level(r: float, k: int = 3, partner=None, debiased: bool = True, predicted=None, labels=None):
    if r == 0:
        maps = [rand(5, 3, 12, 12, seed=10 + j) for j in range(k)]
    else:
        fns = [lambda xs, *_, j=j: xs.square() * (1 + j) + j * xs for j in range(k)]
        maps = [monte_carlo(fn, X, sigma=0.5, n_samples=8, seed=0, groups=4) for fn in fns]
        maps = maps if debiased else [m.mean for m in maps]
    ref = [rand(5, 3, 12, 12, seed=10 + j) for j in range(k)]
    pairs = list(itertools.combinations(range(k), 2))
    zeros = [torch.zeros(5, dtype=F64)] * k
    return LevelMaps("grad", r, r, maps, ref, zeros, zeros, pairs, debiased, 20,
                     partner, tuple(range(k)), predicted, labels)  # fmt: skip


def test_floor_rows_are_the_metrics_on_partner_images():
    partner = torch.tensor([3, 0, 4, 1, 2])
    lv = level(0.2, partner=partner)
    rows = {(g.metric, g.pair): g.values for g in floor_measures(lv)}
    a, b = lv.mean(0), lv.mean(2)
    want = {
        Metric.STABILITY_FLOOR: chance_floor(metrics.l2_distance, a, b, partner),
        Metric.SSIM_FLOOR: chance_floor(metrics.ssim_maps, a, b, partner),
        Metric.RANK_AGREEMENT_FLOOR: metrics.rank_agreement(a, b[partner]),
        Metric.UNIT_DISTANCE_FLOOR: metrics.unit_distance(a, b[partner]),
        Metric.TOPK_IOU_FLOOR: metrics.topk_iou(a, b[partner], k=20),
    }
    for metric, value in want.items():
        torch.testing.assert_close(rows[metric, (0, 2)], value, rtol=1e-12, atol=1e-12)


def test_a_block_of_one_image_has_no_floor():
    cfg = AttributionConfig()
    assert floor_partner(cfg, 7, 1).tolist() == [-1]
    assert torch.equal(floor_partner(cfg, 3, 5), floor_partner(cfg, 3, 5))
    assert not torch.equal(floor_partner(cfg, 3, 16), floor_partner(cfg, 4, 16))
    partner = torch.tensor([-1, -1, -1, -1, -1])
    rows = list(floor_measures(level(0.2, partner=partner)))
    assert rows and all(bool(g.values.isnan().all()) for g in rows)
    assert list(floor_measures(level(0.2, partner=None))) == []


def test_disagreement_rows_plain_and_debiased():
    lv = level(0.2)
    rows = {g.metric: g.values for g in disagreement_measures(lv)}
    plain = disagreement_map([lv.mean(k) for k in range(3)]).total
    torch.testing.assert_close(rows[Metric.DISAGREEMENT], plain)
    torch.testing.assert_close(rows[Metric.DISAGREEMENT_DEBIASED], lv.disagreement.total)
    assert float((rows[Metric.DISAGREEMENT_DEBIASED] - plain).abs().max()) > 0  # noise removed
    exact = {g.metric: g.values for g in disagreement_measures(level(0.0))}
    torch.testing.assert_close(exact[Metric.DISAGREEMENT_DEBIASED], exact[Metric.DISAGREEMENT])
    off = [g.metric for g in disagreement_measures(level(0.2, debiased=False))]
    assert off == [Metric.DISAGREEMENT]  # no groups kept: the plain total only


def test_prediction_rows_once_at_r0_with_missing_labels():
    pred = [torch.tensor([1, 2, 3, 4, 5]), torch.tensor([1, 0, 3, 0, 5]), torch.tensor([0] * 5)]
    labels = torch.tensor([1, 2, 3, -1, 0])
    rows = list(prediction_measures(level(0.0, predicted=pred, labels=labels)))
    assert [g.metric for g in rows] == [Metric.PREDICTED, Metric.CORRECT] * 3
    hit = rows[1].values
    assert hit[:3].tolist() == [1.0, 1.0, 1.0] and bool(hit[3].isnan()) and hit[4] == 0
    assert list(prediction_measures(level(0.2, predicted=pred, labels=labels))) == []
    whole = measure(level(0.0, partner=torch.tensor([1, 0, 3, 4, 2]), predicted=pred,
                          labels=labels))  # fmt: skip
    assert {g.metric for g in whole} >= {Metric.SSIM_FLOOR, Metric.DISAGREEMENT, Metric.PREDICTED}


def designed(k=4, m=12, floor_gap=0.3, seed=0):
    """Rows of a crossed design: rank agreement ``0.2 + gap`` at r = 0.2 against a floor of 0.2
    (plus noise), unit-map distance falling from 1.0 to 0.8; models 0 and 1 predict the same
    class on every image, the others on half."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in (0.0, 0.2):
        base = {"setting": "DT", "n": "", "method": "grad", "r": r, "sigma": r, "stderr": ""}
        for a, b in itertools.combinations(range(k), 2):
            for i in range(m):
                e = rng.normal(0, 0.01, 4)
                cell = dict(base, pair=f"{a}-{b}", model="", image=str(i))
                for metric, v in [
                    ("rank_agreement", 0.2 + floor_gap * (r > 0) + e[0]),
                    ("rank_agreement_floor", 0.2 + e[1]),
                    ("unit_distance", 1.0 - r + e[2]),
                    ("unit_distance_floor", 1.3 + e[3]),
                    ("stability", 2.0 - r + e[2]),
                ]:
                    rows.append(dict(cell, metric=metric, value=float(v)))
        if r == 0:
            for a in range(k):
                for i in range(m):
                    pred = 1 if a < 2 or i % 2 else 2 + a
                    cell = dict(base, pair="", model=str(a), image=str(i))
                    rows.append(dict(cell, metric="predicted", value=float(pred)))
                    rows.append(dict(cell, metric="correct", value=float(pred == 1)))
    return Summary.from_rows(rows)


def test_floor_and_chance_corrected_scores_from_rows():
    s = designed()
    f = meaning.floor_of(s, "grad", Metric.RANK_AGREEMENT, 0.2)
    assert f.point[1] == pytest.approx(0.2, abs=0.01)
    assert f.point[2] == pytest.approx(0.3 / 0.8, abs=0.02)  # (0.5 - 0.2) / (1 - 0.2)
    lo, hi = f.corrected.interval()
    assert lo < f.corrected.estimate < hi and f.corrected.scope == "retraining"
    at0 = meaning.floor_of(s, "grad", Metric.RANK_AGREEMENT, 0.0)
    assert at0.corrected.interval()[0] < 0 < at0.corrected.interval()[1]  # at the floor
    u = meaning.floor_of(s, "grad", Metric.UNIT_DISTANCE, 0.2)
    assert u.ideal == 0 and u.point[2] == pytest.approx(1 - 0.8 / 1.3, abs=0.02)
    assert len(f.per_pair) == 6 and f.m == 12


def test_prediction_split_shares_and_verdict():
    s = designed()
    split = meaning.prediction_split(s, "grad", 0.2, debiased=False)
    same = split.group("same prediction")
    # pair 0-1 on all 12 images, the other 5 pairs on the 6 odd images: (12 + 30) / 72
    assert same.share == pytest.approx(42 / 72) and same.cells == 42
    assert split.group("both correct").share == pytest.approx(42 / 72)
    assert same.change.estimate == pytest.approx(-0.2, abs=0.01)
    assert split.holds_within() == "holds"
    assert same.values["rank_agreement"].estimate == pytest.approx(0.5, abs=0.01)


def test_reliability_and_its_change():
    s = designed()
    rel = meaning.reliability(s, "grad", 0.2)
    assert rel.score.over_retraining and np.all(rel.score.lo < rel.score.mean)
    ch = meaning.reliability_change(s, "grad", 0.0, 0.2)
    assert ch.mean_change == pytest.approx(0.3, abs=0.01) and ch.rises == 1.0
    assert ch.change.interval()[0] > 0


def test_per_image_pair_mean_is_the_model_jackknife():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(10, 3))  # 5 models
    got = inference.per_image_pair_mean(v)
    a, b = inference.pair_index(5)
    for i in range(3):
        loo = np.array([v[(a != x) & (b != x), i].mean() for x in range(5)])
        se = np.sqrt(4 / 5 * ((loo - loo.mean()) ** 2).sum())
        from scipy.stats import t

        assert got.hi[i] - got.mean[i] == pytest.approx(t.ppf(0.975, 4) * se)
    few = inference.per_image_pair_mean(rng.normal(size=(3, 4)))
    assert not few.over_retraining and np.isnan(few.lo).all()

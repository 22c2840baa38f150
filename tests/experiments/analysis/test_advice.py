"""The sigma advice: the knee and the fidelity budget on curves with known answers, and the
advice with its intervals on designed runs (falls and flattens: the one-standard-error rule;
flat: no smoothing; three models: no verdict; a budget that binds), its plans, and
``recommendation.json``'s record read back."""

from __future__ import annotations

import json
import random

import pytest

from helpers import crossed_rows
from smoothstab.experiments.analysis import advice as sigma_advice
from smoothstab.experiments.analysis.advice import Advice, advise, method_advice
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.io.files import DamagedFile
from smoothstab.experiments.rundir.advice_record import read_advice, write_advice

# An L-shaped trade-off: stability error drops steeply up to r = 0.1, then barely moves while
# fidelity error keeps growing. (r, stability, fidelity).
L_CURVE = [(0.0, 10.0, 0.0), (0.1, 2.0, 0.5), (0.2, 1.5, 3.0), (0.3, 1.2, 6.0), (0.4, 1.0, 10.0)]
FALLS_THEN_FLAT = {0.0: 0.0, 0.1: -0.2, 0.2: -0.3, 0.3: -0.3, 0.4: -0.3}


def test_knee_of_an_l_shaped_curve():
    assert sigma_advice.knee(L_CURVE) == 0.1
    # Kneedle scales both errors to [0, 1] first: units do not move the knee.
    scaled = [(r, 1000 * s, f / 1000) for r, s, f in L_CURVE]
    assert sigma_advice.knee(scaled) == 0.1
    # A curve that bends late: the knee moves with it.
    late = [(0.0, 10.0, 0.0), (0.1, 9.5, 0.1), (0.2, 9.0, 0.2), (0.3, 1.0, 0.5), (0.4, 0.9, 10.0)]
    assert sigma_advice.knee(late) == 0.3
    assert sigma_advice.knee(L_CURVE[:2]) is None  # two points have no knee


def test_most_stable_r_within_a_fidelity_budget():
    # norm 10: budget 0.2 allows fidelity <= 2, i.e. r <= 0.1; the most stable of those is 0.1.
    assert sigma_advice.within_budget(L_CURVE, norm=10.0, budget=0.2) == 0.1
    assert sigma_advice.within_budget(L_CURVE, norm=10.0, budget=0.6) == 0.3
    assert sigma_advice.within_budget(L_CURVE, norm=10.0, budget=1.0) == 0.4
    assert sigma_advice.within_budget(L_CURVE, norm=10.0, budget=0.0) == 0.0
    assert sigma_advice.within_budget(L_CURVE, norm=float("nan"), budget=0.2) is None
    assert sigma_advice.within_budget([(0.1, 1.0, 5.0)], norm=1.0, budget=0.2) is None
    # Equally stable: the smaller r, which costs less fidelity.
    flat = [(0.0, 2.0, 0.0), (0.1, 1.0, 0.1), (0.2, 1.0, 0.2)]
    assert sigma_advice.within_budget(flat, norm=1.0, budget=1.0) == 0.1


def plateau(rows: list[dict], start: float, shift: dict[float, float]) -> list[dict]:
    """``rows`` with the pair values at each r of ``shift`` replaced by those at ``start`` plus
    centred noise (sd 0.01) plus ``shift[r]``: a plateau whose means differ by exactly that."""
    rng = random.Random(5)
    base = {(row["metric"], row["pair"], row["image"]): row["value"]
            for row in rows if row["r"] == start and row["pair"]}  # fmt: skip
    for r, d in shift.items():
        mine = [row for row in rows if row["r"] == r and row["pair"]]
        noise = {key: rng.gauss(0, 0.01) for key in base}
        centre = {m: sum(v for key, v in noise.items() if key[0] == m) for m, *_ in noise}
        count = {m: sum(1 for key in noise if key[0] == m) for m, *_ in noise}
        for row in mine:
            key = (row["metric"], row["pair"], row["image"])
            row["value"] = base[key] + noise[key] - centre[key[0]] / count[key[0]] + d
    return rows


def advice_of(change: dict[float, float], k: int = 6, **kw):
    fidelity = kw.pop("fidelity", None)
    budget = kw.pop("budget", 10.0)
    rows = crossed_rows(k, 24, change, fidelity=fidelity, **kw)
    if change == FALLS_THEN_FLAT:  # 0.3 as 0.2; 0.4 below both by 1e-4, within one s.e.
        rows = plateau(rows, 0.2, {0.3: 0.0, 0.4: -1e-4})
    summary = Summary.from_rows(rows)
    return method_advice(
        summary, "grad", None, debiased=True, budget=budget, measure="unit_distance"
    )


def test_a_curve_that_falls_then_flattens_recommends_where_it_flattens():
    """-20% at r = 0.1, -30% from 0.2 on (0.4 the best by 1e-4, within a standard error): 0.2 is
    the smallest r that cannot be told from the best (the one-SE rule); every r > 0 is
    measurably better than r = 0."""
    a = advice_of(FALLS_THEN_FLAT)
    assert (a.status, a.recommended_r, a.best_r, a.k, a.m) == ("smooth", 0.2, 0.4, 6, 24)
    assert a.best_at_sweep_edge
    assert [lv.better for lv in a.levels] == [False, True, True, True, True]
    assert [lv.near_best for lv in a.levels][2:] == [True, True, True]
    assert not a.levels[1].near_best and a.levels[0].change is None
    c = a.level(0.2).change
    assert c.scope == "retraining" and c.hi < 0 and c.k == 6
    assert a.knee_r == 0.2 and a.knee_range[0] <= 0.2 <= a.knee_range[1]  # Kneedle: 0.2
    (plan,) = a.plans  # decided: only the configured target
    assert plan.target == 0.02 and plan.r1 == 0.4 and plan.pilot_k == 6 and plan.pilot_m == 24


def test_a_flat_curve_recommends_no_smoothing():
    a = advice_of({0.0: 0.0, 0.1: 0.0, 0.2: 0.0, 0.3: 0.0, 0.4: 0.0})
    assert (a.status, a.recommended_r, a.knee_r) == ("no smoothing", None, None) or (
        a.status == "no smoothing" and a.recommended_r == 0.0 and a.knee_r is None
    )
    assert not any(lv.better for lv in a.levels)


def test_three_models_get_no_recommendation():
    a = advice_of(FALLS_THEN_FLAT, k=3)
    assert (a.status, a.recommended_r, a.knee_r) == ("too few models", None, None)
    assert a.level(0.2).change.scope == "these models"


def test_a_fidelity_budget_that_binds():
    """Fidelity error r * 10 against a norm of 5 and a budget of 0.5: r <= 0.25 allowed."""
    a = advice_of(FALLS_THEN_FLAT, fidelity={r: 10 * r for r in FALLS_THEN_FLAT}, budget=0.5)
    assert [lv.within_budget for lv in a.levels] == [True, True, True, False, False]
    assert a.best_r == 0.2 and a.best_at_budget_edge and not a.best_at_sweep_edge
    assert a.recommended_r == 0.2


def test_advice_of_every_size_and_its_record_reads_back(tmp_path):
    rows = plateau(crossed_rows(6, 12, FALLS_THEN_FLAT, n=100), 0.2, {0.3: 0.0, 0.4: -1e-4})
    rows += crossed_rows(6, 12, {r: 0.0 for r in FALLS_THEN_FLAT}, n=200, first=6, seed=1)
    summary = Summary.from_rows(rows)
    advice = advise(summary, ["grad"], debiased=True, budget=10.0, measure="unit_distance",
                    training_passes=10)  # fmt: skip
    assert [(a.n, a.status) for a in advice.methods] == [(100, "smooth"), (200, "no smoothing")]
    assert advice.of("grad").n == 200 and advice.of("grad", 100).recommended_r == 0.2
    assert advice.of("grad", 100).plans[0].cost_per_model == 1000  # 10 passes x 100 images
    path = write_advice(tmp_path / "recommendation.json", advice)
    assert read_advice(path) == advice
    json.loads(path.read_text())  # plain JSON
    old = {"grad": {"knee_r": 0.1, "budget_r": 0.2, "curve": []}}  # version 1, no intervals
    path.write_text(json.dumps(old))
    with pytest.raises(DamagedFile, match="not a recommendation.json of version 2") as e:
        read_advice(path)
    assert "\n" not in str(e.value) and "rerun the evaluate stage" in str(e.value)
    assert Advice.from_json(advice.to_json()) == advice

"""The report reads what the run recorded, without computing it again: each r's sigma from
``metrics.csv``'s ``sigma`` column, on synthetic rows (no training)."""

from __future__ import annotations

import pytest

from smoothstab.experiments import report
from smoothstab.experiments.rundir import Summary

X_RANGE = 2.0
RECORDED = {0.0: 0.0, 0.1: 0.3, 0.4: 0.9}  # not r x X_RANGE: the maps' own sigmas


def rows(sigmas: dict[float, float] = RECORDED) -> list[dict]:
    """Stability and fidelity rows of one pair (two models) per r, at the given sigmas."""
    out = []
    base = {"setting": "DT", "n": "", "method": "grad", "image": 0, "stderr": ""}
    for r, sigma in sigmas.items():
        at = {**base, "r": r, "sigma": sigma}
        out.append({**at, "metric": "stability", "pair": "0-1", "model": "", "value": 1 - r})
        for k in (0, 1):
            out.append({**at, "metric": "fidelity", "pair": "", "model": str(k), "value": r})
    return out


def test_the_sweep_table_shows_the_recorded_sigma():
    table = report.sweep_block(Summary.from_rows(rows()), "grad", debiased=False)
    assert [row[:2] for row in table.rows] == [["0", "0"], ["0.1", "0.3"], ["0.4", "0.9"]]


def test_the_advice_shows_the_recorded_sigma():
    advice = {
        "grad": {"curve": [{"r": r} for r in RECORDED], "knee_r": 0.1, "budget_r": 0.4,
                 "fidelity_budget": 0.5},
    }  # fmt: skip
    items = report.advice_items(advice, Summary.from_rows(rows()))
    assert "knee of the trade-off at r = 0.1 (sigma = 0.3)" in items[1]
    assert "r = 0.4 (sigma = 0.9)" in items[1]


def test_a_level_without_rows_has_no_sigma():
    summary = Summary.from_rows(rows())
    assert summary.sigma(0.4) == 0.9
    with pytest.raises(ValueError, match=r"r = 0\.2: no metrics row records its sigma"):
        summary.sigma(0.2)

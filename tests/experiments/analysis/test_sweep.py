"""What a sweep shows, with intervals over models: the peak of a similarity and the r the data
cannot tell from it, the difference between two training-set sizes (independent models on the
same images), and what Table 1's intervals are over."""

from __future__ import annotations

import pytest

from helpers import crossed_rows
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.analysis.sweep import MEAN, best_level, size_change, table1
from smoothstab.experiments.pages.findings import peak_sentence, size_verdict


def as_ssim(rows: list[dict]) -> list[dict]:
    """The unit-map distance rows of ``crossed_rows`` as SSIM (a similarity: higher is more
    alike)."""
    return [{**row, "metric": "ssim"} for row in rows if row["metric"] == "unit_distance"]


def test_the_peak_and_the_levels_it_cannot_be_told_from():
    """A similarity 1, 1.2, 1.5, 1.49, 1.2 times a base: the peak at r = 0.2, r = 0.3 within the
    noise of it, r = 0.1 and 0.4 measurably below; measurably above r = 0."""
    change = {0.0: 0.0, 0.1: 0.2, 0.2: 0.5, 0.3: 0.499, 0.4: 0.2}
    summary = Summary.from_rows(as_ssim(crossed_rows(6, 24, change, noise=0.01)))
    peak = best_level(summary, "grad", Metric.SSIM)
    assert (peak.r, peak.at_edge, peak.near, peak.scope) == (0.2, False, (0.2, 0.3), "retraining")
    assert peak.gain.sign() == 1 and peak.gain.estimate == pytest.approx(0.5, rel=0.1)
    text = peak_sentence("SSIM", peak)
    assert text.startswith("SSIM is highest at r = 0.2 (r = 0.2 to 0.3 cannot be told from it)")
    assert ", measurably above r = 0 by +0.4" in text  # +0.5 times a base level near 1
    rising = Summary.from_rows(as_ssim(crossed_rows(6, 24, {0.0: 0.0, 0.1: 0.1, 0.2: 0.2})))
    edge = best_level(rising, "grad", Metric.SSIM)
    assert edge.at_edge and "edge of the sweep" in peak_sentence("SSIM", edge)


def test_two_sizes_are_compared_as_independent_models_on_the_same_images():
    rows = crossed_rows(6, 16, {0.0: 0.0}, n=100)
    rows += crossed_rows(6, 16, {0.0: -0.3}, n=200, first=6, seed=1)  # 30% lower at n = 200
    summary = Summary.from_rows(rows)
    change = size_change(summary, "grad", Metric.UNIT_DISTANCE, 0.0)
    assert change.scope == "retraining" and change.k == 6 and change.sign() == -1
    bands = [summary.get("grad", Metric.UNIT_DISTANCE, 0.0, n) for n in (100, 200)]
    assert size_verdict(change, [b.mean for b in bands]).startswith("falls with n (measurably: -")
    few = Summary.from_rows(crossed_rows(3, 16, {0.0: 0.0}, n=100)
                            + crossed_rows(3, 16, {0.0: -0.3}, n=200, first=3, seed=1))  # fmt: skip
    change = size_change(few, "grad", Metric.UNIT_DISTANCE, 0.0)
    assert change.scope == "these models"
    assert "images only, these models" in size_verdict(change, [1.0, 0.7])
    assert (
        size_change(Summary.from_rows(rows[: len(rows) // 2]), "grad", "unit_distance", 0) is None
    )


def test_table1_says_what_its_intervals_are_over():
    six = Summary.from_rows(crossed_rows(6, 8, {0.0: 0.0, 0.2: -0.1}))
    (row,) = table1(six, ["grad"], 0.2, {})
    assert row["pair"] == MEAN and row["interval_over"] == "retraining"
    assert row["unit_distance"].lo < row["unit_distance"].mean < row["unit_distance"].hi
    three = Summary.from_rows(crossed_rows(3, 8, {0.0: 0.0, 0.2: -0.1}))
    assert table1(three, ["grad"], 0.2, {})[0]["interval_over"] == "these models"

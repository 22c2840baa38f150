"""``smoothstab.load_run(DIR)``: a run directory's numbers as pandas DataFrames, read through the
report's own readers, on a run directory written by hand (no stage runs)."""

from __future__ import annotations

import math

import pytest

import smoothstab as ss
from smoothstab.experiments.analysis.advice import advise
from smoothstab.experiments.analysis.aggregate import Band, band
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.config.parse import to_toml
from smoothstab.experiments.rundir.advice_record import read_advice as advice_of
from smoothstab.experiments.rundir.advice_record import write_advice
from smoothstab.experiments.rundir.metrics_table import read_rows, rows_table, write_table
from smoothstab.experiments.rundir.table1_file import table1_csv

pd = pytest.importorskip("pandas")

VALUES = {  # pair -> value per image, at r = 0 and r = 0.1
    "0-1": ([1.0, 2.0, 3.0], [0.5, 1.0, 1.5]),
    "0-2": ([2.0, 2.0, 2.0], [1.0, 1.0, 1.0]),
    "1-2": ([3.0, 4.0, 5.0], [1.5, 2.0, 2.5]),
}


def fake_run(root):
    root.mkdir()
    (root / "config.toml").write_text(to_toml(load_config(None)))
    rows = [
        {
            "setting": "DT",
            "n": 800,
            "method": "grad",
            "r": r,
            "sigma": 0.3 * r,
            "metric": "stability",
            "pair": pair,
            "model": "",
            "image": i,
            "value": v,
            "stderr": 0.01,
        }
        for pair, (at0, at1) in VALUES.items()
        for r, values in ((0.0, at0), (0.1, at1))
        for i, v in enumerate(values)
    ]
    # each model's fidelity error (0 unsmoothed) and map norm, which the advice weighs
    per_model = {"fidelity": (0.0, 0.2), "map_norm": (2.0, 1.5)}
    rows += [
        {**rows[0], "r": r, "sigma": 0.3 * r, "metric": metric, "pair": "", "model": str(k),
         "image": i, "value": at[j], "stderr": 0.0 if r == 0 else 0.01}
        for metric, at in per_model.items()
        for j, r in enumerate((0.0, 0.1))
        for k in range(3)
        for i in range(3)
    ]  # fmt: skip
    write_table(root / "metrics.parquet", rows_table(rows))
    cells = {
        "ssim": Band(0.5, 0.4, 0.6),
        "smoothed_ssim": 0.7,
        "topk_miou": 0.3,
        "smoothed_topk_miou": 0.35,
        "unit_distance": 1.2,
        "smoothed_unit_distance": 1.1,
    }
    (root / "table1.csv").write_text(table1_csv([{"method": "grad", "pair": "all", **cells}]))
    summary = Summary.from_rows(read_rows(root / "metrics.parquet"))
    advice = advise(summary, ["grad"], debiased=False, budget=0.2, measure="l2")
    write_advice(root / "recommendation.json", advice)
    return root


def test_load_run_gives_the_report_numbers_as_dataframes(tmp_path):
    run = ss.load_run(fake_run(tmp_path / "run"))
    assert len(run.metrics) == 54 and set(run.metrics["pair"]) == {*VALUES, ""}
    assert run.metrics["n"].dtype.kind in "if" and run.metrics["value"].sum() == pytest.approx(
        36 + 9 * (0.2 + 2.0 + 1.5)
    )
    summary = run.summary()
    assert set(summary["metric"]) == {"stability", "fidelity", "map_norm"}
    summary = summary[summary["metric"] == "stability"]
    assert list(summary["r"]) == [0.0, 0.1] and set(summary["units"]) == {3}
    assert set(summary["images"]) == {3}
    s = Summary.from_rows(read_rows(tmp_path / "run" / "metrics.parquet"))
    for r, at in ((0.0, 0), (0.1, 1)):
        means = [sum(v[at]) / 3 for v in VALUES.values()]
        row = summary[summary["r"] == r].iloc[0]
        want = s.get("grad", "stability", r)  # the report's interval: 3 models, these models
        assert (row["mean"], row["lo"], row["hi"]) == pytest.approx((want.mean, want.lo, want.hi))
        assert row["mean"] == pytest.approx(sum(means) / 3)
        assert row["interval_over"] == s.estimate("grad", "stability", r).scope
        paper = band(means, "t95")  # the paper's band beside it
        assert (row["paper_lo"], row["paper_hi"]) == pytest.approx((paper.lo, paper.hi))
        assert row["sigma"] == pytest.approx(0.3 * r) and row["n"] == 800
        # each pair's s.e. over its 3 images, then their mean (an upper bound)
        assert row["mc_stderr"] == pytest.approx(math.sqrt(3 * 0.01**2) / 3)
    pairs = run.per_pair_or_model()
    assert len(pairs) == 18  # 3 pairs and 3 models (two metrics), at 2 levels
    pairs = pairs[pairs["metric"] == "stability"].reset_index()
    assert len(pairs) == 6 and pairs.loc[0, "mean"] == pytest.approx(2.0)
    t1 = run.table1
    assert t1.loc[0, "ssim"] == 0.5 and (t1.loc[0, "ssim_lo"], t1.loc[0, "ssim_hi"]) == (0.4, 0.6)
    assert t1.loc[0, "smoothed_ssim"] == 0.7 and "smoothed_ssim_lo" not in t1
    rec = run.recommendation.set_index("method").loc["grad"]
    (found,) = advice_of(tmp_path / "run" / "recommendation.json").methods
    assert rec["status"] == found.status and rec["k"] == 3 and rec["m"] == 3
    assert run.curves["r"].tolist() == [0.0, 0.1]
    assert run.curves["stability"].tolist() == pytest.approx([2.0 + 2 / 3, 4 / 3])
    assert run.sanity is None and run.config.name == "quickstart"
    assert repr(run).startswith(f"RunFrames({tmp_path / 'run'}: 54 metric rows, methods grad")


def test_load_run_of_a_folder_that_is_no_run_is_one_line(tmp_path):
    with pytest.raises(ValueError) as e:
        ss.load_run(tmp_path)
    assert str(e.value) == (
        f"load_run: {tmp_path} is not a finished run directory (config.toml is missing); run "
        "its stages up to evaluate first"
    )

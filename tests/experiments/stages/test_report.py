"""The report reads what the run recorded, without computing it again: each r's sigma from
the metrics table's ``sigma`` column and Table 1 from ``table1.csv`` (checked on read as the
metrics table is), on synthetic rows and a run directory made by hand (no training)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import crossed_rows, fake_run
from smoothstab.experiments.analysis.advice import advise
from smoothstab.experiments.analysis.aggregate import Band
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.analysis.sweep import MEAN, table1
from smoothstab.experiments.cli import main
from smoothstab.experiments.io.files import DamagedFile
from smoothstab.experiments.rundir.advice_record import write_advice
from smoothstab.experiments.rundir.metrics_table import rows_table, write_table
from smoothstab.experiments.rundir.table1_file import read_table1, table1_csv
from smoothstab.experiments.stages import report

RECORDED = {0.0: 0.0, 0.1: 0.3, 0.4: 0.9}  # the maps' own sigmas: no r x range of any data


def rows(sigmas: dict[float, float] = RECORDED, pairs: tuple[str, ...] = ("0-1",)) -> list[dict]:
    """Two images' rows of one method per r at the given sigmas: what the report reads of
    pairs (``pairs``) and models (0 and 1)."""
    pair_metrics = {
        "stability": 1.0,
        "stability_debiased": 0.9,
        "ssim": 0.5,
        "topk_iou": 0.3,
        "unit_distance": 0.7,
        "unit_distance_debiased": 0.6,
        "rank_agreement": 0.4,
    }
    model_metrics = {"fidelity": 0.0, "fidelity_debiased": 0.0, "map_norm": 2.0,
                     "map_norm_debiased": 2.0}  # fmt: skip
    out = []
    for r, sigma in sigmas.items():
        base = {"setting": "DT", "n": 50, "method": "grad", "r": r, "sigma": sigma, "stderr": ""}
        for i in (0, 1):
            for p, pair in enumerate(pairs):
                for metric, v in pair_metrics.items():
                    value = v + (r if metric == "ssim" else -r) + i / 10 + p / 100
                    out.append({**base, "metric": metric, "pair": pair, "model": "",
                                "image": i, "value": value})  # fmt: skip
            for k in (0, 1):
                for metric, v in model_metrics.items():
                    out.append({**base, "metric": metric, "pair": "", "model": str(k),
                                "image": i, "value": v + r + k / 10})  # fmt: skip
    return out


# ---------------------------------------------------------------------------- sigma


def test_the_sweep_table_shows_the_recorded_sigma():
    table = report.sweep_block(Summary.from_rows(rows()), "grad", debiased=False)
    assert [row[:2] for row in table.rows] == [["0", "0"], ["0.1", "0.3"], ["0.4", "0.9"]]


def test_the_advice_shows_the_recorded_sigma():
    """The recommended r with the sigma its maps were made with (0.3 at r = 0.1, as recorded,
    not r times a data range), from the advice's record."""
    found = crossed_rows(6, 8, {0.0: 0.0, 0.1: -0.3, 0.4: -0.3})
    for row in found:
        row["sigma"] = RECORDED[row["r"]]
    summary = Summary.from_rows(found)
    advice = advise(summary, ["grad"], debiased=True, budget=10.0, measure="unit_distance")
    items = report.advice_items(advice, summary)
    assert items[1].startswith("Simple-Grad: r = 0.1 (sigma = 0.3), stability change from")


def test_a_level_without_rows_has_no_sigma():
    summary = Summary.from_rows(rows())
    assert summary.sigma(0.4) == 0.9
    with pytest.raises(ValueError, match=r"r = 0\.2: no metrics row records its sigma"):
        summary.sigma(0.2)


# ---------------------------------------------------------------------------- table1.csv


def test_table1_csv_reads_back_what_was_written(tmp_path):
    """Per-pair floats, the mean over pairs with its band and a missing cell (no SSIM) come
    back as they were, to the last bit."""
    summary = Summary.from_rows([r for r in rows(pairs=("0-1", "0-2", "1-2")) if r["r"] < 0.4])
    labels = {"0-1": "A vs B", "0-2": "A vs C", "1-2": "B vs C"}
    want = table1(summary, ["grad"], 0.1, labels)
    want[0]["ssim"] = None
    mean = want[-1]["topk_miou"]
    assert isinstance(mean, Band) and mean.lo < mean.mean < mean.hi
    assert [row["pair"] for row in want] == [*labels.values(), MEAN]
    (tmp_path / "table1.csv").write_text(table1_csv(want))
    assert read_table1(tmp_path / "table1.csv") == want


def test_an_older_table1_csv_still_reads(tmp_path):
    """A file of the first release (no bands, six digits) gives each mean as a float."""
    head = "method,pair,ssim,smoothed_ssim,topk_miou,smoothed_topk_miou,unit_distance,"
    head += "smoothed_unit_distance\n"
    (tmp_path / "table1.csv").write_text(head + "grad,mean over pairs,0.55,,0.35,0.5,0.65,0.5\n")
    (row,) = read_table1(tmp_path / "table1.csv")
    assert row["ssim"] == 0.55 and row["smoothed_ssim"] is None and row["pair"] == MEAN


@pytest.mark.parametrize(
    "text, why",
    [
        ("method,pair,ssim\ngrad,x,1\n", "line 1 (its header is not"),
        ("{head}grad,x,1,2,3,4,5,6\ngrad,x,1,", "line 3 (the last row is cut short)"),
        ("{head}grad,x,1,2,3,four,5,6\n", "line 2 (could not convert string to float"),
        ("{head}", "line 1 (no rows)"),
    ],
)
def test_a_damaged_table1_csv_is_one_line(tmp_path, text, why):
    head = "method,pair,ssim,smoothed_ssim,topk_miou,smoothed_topk_miou,unit_distance,"
    head += "smoothed_unit_distance\n"
    (tmp_path / "table1.csv").write_text(text.format(head=head))
    with pytest.raises(DamagedFile, match=re.escape(f"table1.csv: damaged near {why}")) as e:
        read_table1(tmp_path / "table1.csv")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------- the report stage

FIGURES = ("tradeoff", "stability", "fidelity", "ssim_topk", "grid_grad_0-1", "sigma_grad")


def evaluated_run(tmp: Path) -> Path:
    """A run as the evaluate and figures stages leave it, by hand: ``rows()`` as the metrics table
    at the config's noise levels (0, 0.1 and Table 1's 0.15), recorded at sigma 3 r (the
    digits' range is 2.66), the advice, Table 1 and placeholder figures."""
    d = fake_run(tmp)
    found = rows({0.0: 0.0, 0.1: 0.3, 0.15: 0.45})
    write_table(d / "metrics.parquet", rows_table(found))
    summary = Summary.from_rows(found)
    advice = advise(summary, ["grad"], debiased=True, budget=0.5, measure="unit_distance")
    write_advice(d / "recommendation.json", advice)
    (d / "table1.csv").write_text(table1_csv(table1(summary, ["grad"], 0.15, {"0-1": "0-1"})))
    for name in FIGURES:
        (d / "figures").mkdir(exist_ok=True)
        (d / "figures" / f"{name}.png").write_bytes(b"a figure")
    return d


def test_the_report_shows_table1_csv_and_the_recorded_sigma(tmp_path):
    """Table 1 edited in its file (other than the metrics would give) is what the report
    shows; the sweep table gives sigma 0.3 at r = 0.1, as recorded."""
    d = evaluated_run(tmp_path)
    edited = read_table1(d / "table1.csv")
    edited[0]["smoothed_ssim"] = Band(0.1234, 0.1, 0.2)
    (d / "table1.csv").write_text(table1_csv(edited))
    assert main(["report", str(d), "--quiet"]) == 0
    md = (d / "report.md").read_text()
    # one pair: its Table 1 row is the pair's, with intervals over the images only
    assert "| Simple-Grad | 0-1 | 0.55 [-0.08531, 1.185] | 0.1234 [0.1, 0.2] | 0.35 [" in md
    assert "over the test images and their Monte-Carlo draws for these 2 models only" in md
    assert "| 0.1 | 0.3 |" in md and "| 0.15 | 0.45 |" in md


def test_one_pair_is_these_two_models_on_the_first_screen(tmp_path):
    """Two models: the report's first screen says its intervals are about these two models,
    over images and draws only, and gives no verdict about retrained models."""
    d = evaluated_run(tmp_path)
    assert main(["report", str(d), "--quiet"]) == 0
    md = (d / "report.md").read_text()
    first = md[: md.index("**Contents**")]  # the first screen
    assert "One pair of models: every interval below is about these two models" in first
    assert "these two models only: no verdict about retrained models" in first
    assert "| the maps agree" not in first and "recommended r" in first  # no verdict cell


def test_the_report_refuses_a_damaged_table1_csv_in_one_line(tmp_path, capsys):
    d = evaluated_run(tmp_path)
    text = (d / "table1.csv").read_text()
    (d / "table1.csv").write_text(text[: len(text) - 5])
    assert main(["report", str(d), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        len(lines) == 1
        and "table1.csv: damaged near line 2 (the last row is cut short)" in (lines[0])
    )
    assert "--stages evaluate" in lines[0] and not (d / "report.md").exists()

"""What a similarity means in a run: the report's sections and figures, the numbers ``load_run``
exports, and the block files' extreme images (the tiny run: two models, four images in blocks of
two); the sections' layout from designed numbers (no run)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import smoothstab as ss
from helpers import GRID, N_MODELS
from smoothstab.experiments.analysis import meaning
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.pages import meaning_page
from smoothstab.experiments.pages.blocks import Heading, Table
from smoothstab.experiments.rundir.layout import RunDir

N_IMAGES = 4


@pytest.mark.slow
def test_the_report_shows_floors_split_disagreement_and_reliability(tiny_run):
    text = (tiny_run / "report.md").read_text()
    for heading in ("Is this agreement high? Chance floors", "Stability given the prediction",
                    "Where the retrained models disagree", "Which images to trust"):  # fmt: skip
        assert f"## {heading}" in text, heading
    first = text.index("| method | n | r from 0 to")
    assert "same prediction |" in text[first : text.index("\n", first)]  # the verdict table
    assert text.index("| method | n | r from 0 to") < text.index("## Is this agreement high?")
    assert "2 models: the intervals are over these models' test images and draws" in text
    for m in ss.METHODS:
        for kind in ("disagreement", "reliability"):
            assert (tiny_run / "figures" / f"{kind}_{m}.png").stat().st_size > 5000
            assert f"](figures/{kind}_{m}.png)" in text


@pytest.mark.slow
def test_load_run_exports_what_the_report_shows(tiny_run, tiny_rows):
    run = ss.load_run(tiny_run)
    floors = run.floors
    assert len(floors) == len(ss.METHODS) * len(GRID) * 5  # 32x32 maps: SSIM has a floor
    by = {}
    for row in tiny_rows:
        by.setdefault((row["method"], row["r"], row["metric"]), []).append(row["value"])
    for row in floors.itertuples():
        obs = np.mean(by[row.method, row.r, row.metric])
        floor = np.mean(by[row.method, row.r, f"{row.metric}_floor"])
        assert row.observed == pytest.approx(obs) and row.floor == pytest.approx(floor)
        ideal = 0.0 if row.metric in ("stability", "unit_distance") else 1.0
        assert row.corrected == pytest.approx((obs - floor) / (ideal - floor))
        assert row.interval_over == "these models"  # two models: over their images and draws
    rel = run.reliability
    assert len(rel) == len(ss.METHODS) * len(GRID) * N_IMAGES and rel["lo"].isna().all()
    grad0 = rel[(rel.method == "grad") & (rel.r == 0.0)].sort_values("image")
    assert grad0["score"].tolist() == pytest.approx(by["grad", 0.0, "rank_agreement"])
    split = run.prediction_split
    shares = split[split.measure == "rank_agreement"].groupby(["method", "r"])
    for _, g in shares:
        pair = g[g.group.isin(["same prediction", "different prediction"])]
        assert pair["share"].sum() == pytest.approx(1.0)


@pytest.mark.slow
def test_block_files_keep_the_extreme_images_the_figures_draw(tiny_run, tiny_rows):
    """Each block of two keeps its images whose unsmoothed maps disagree most and least (every
    image here, blocks of two); the test set's most and least disagreeing images are among the
    blocks' extremes, with a mean map and a disagreement map at every r."""
    for method in ss.METHODS:
        totals = {}
        for row in tiny_rows:
            if (row["method"], row["r"], row["metric"]) == (method, 0.0, "disagreement_debiased"):
                totals[int(row["image"])] = row["value"]
        kept = []
        for b in range(2):
            f = torch.load(tiny_run / "blocks" / method / f"block{b:05d}.pt", weights_only=True)
            assert set(f["extreme_images"]) <= {2 * b, 2 * b + 1}
            assert f["extreme_maps"].shape[:3] == (len(GRID), len(f["extreme_images"]), 2)
            assert f["extreme_maps"].dtype == torch.float16
            kept += f["extreme_images"]
        assert max(totals, key=totals.get) in kept and min(totals, key=totals.get) in kept
        assert all(math.isfinite(v) for v in totals.values())
    assert N_MODELS == 2


def designed() -> Summary:
    rng = np.random.default_rng(0)
    rows = []
    for r in (0.0, 0.2):
        base = {"setting": "DT", "n": "", "method": "gradcam", "r": r, "sigma": r, "stderr": ""}
        for a, b in ((0, 1), (0, 2), (1, 2)):
            for i in range(6):
                cell = dict(base, pair=f"{a}-{b}", model="", image=str(i))
                values = [("ssim", 0.8), ("ssim_floor", 0.7), ("rank_agreement", 0.6),
                          ("rank_agreement_floor", 0.2), ("unit_distance", 0.5)]  # fmt: skip
                for metric, v in values:
                    rows.append(dict(cell, metric=metric, value=v + rng.normal(0, 0.01)))
        if r == 0:
            for a in range(3):
                for i in range(6):
                    cell = dict(base, pair="", model=str(a), image=str(i))
                    rows.append(dict(cell, metric="predicted", value=float(i % 2 or a)))
    return Summary.from_rows(rows)


def test_floor_section_with_three_models_shows_each_pairs_score():
    """An SSIM of 0.8 over a floor of 0.7 is a corrected score of 0.33; with three models the
    intervals are over these models' images and each pair's score is given."""
    s = designed()
    blocks = meaning_page.floor_section(s, ["gradcam"], {"gradcam": [0.0, 0.2]}, 3)
    assert isinstance(blocks[0], Heading) and "Chance floors" in blocks[0].text
    table = next(b for b in blocks if isinstance(b, Table))
    ssim = next(row for row in table.rows if row[2] == "SSIM" and row[1] == "0")
    assert ssim[5].startswith("0.3")  # (0.8 - 0.7) / (1 - 0.7)
    assert ssim[6] == "6 images and draws; these 3 models"
    assert ssim[7].count("+0.3") == 3  # the three pairs
    assert meaning.floor_of(s, "gradcam", "ssim", 0.0).point[2] == pytest.approx(1 / 3, abs=0.05)


def test_split_section_and_levels_phrase():
    s = designed()
    split = meaning.prediction_split(s, "gradcam", 0.2, debiased=False)
    # odd images: every model predicts 1; even images: model a predicts a, all differ
    assert split.group("same prediction").share == pytest.approx(0.5)
    blocks = meaning_page.split_section([split])
    table = next(b for b in blocks if isinstance(b, Table))
    assert [row[2] for row in table.rows] == ["same prediction", "different prediction"]
    assert table.rows[0][3] == "50% (9)"
    assert meaning_page.levels_phrase([0.0, 0.2], True) == "r = 0 and 0.2 (the recommended r)"
    assert "Table-1 r" in meaning_page.levels_phrase([0.0, 0.2], False)


@pytest.mark.slow
def test_same_class_floors_pair_only_images_of_one_label(tiny_run, tmp_path):
    """``evaluation.floor_pairs = "same_class"``: 8 test images in blocks of 4, each paired only
    with an image of its block and label; an image alone in its class in its block has no floor
    (NaN), and the other numbers do not change."""
    from helpers import attribute_again

    eight = ("attribution.n_images=8", "attribution.image_batch=4")
    rows = attribute_again(tiny_run, tmp_path / "run", *eight, "evaluation.floor_pairs=same_class")
    y = RunDir(tmp_path / "run").load_test_images()[1].tolist()
    floors = [r for r in rows if (r["method"], r["r"], r["metric"]) == ("grad", 0.0, "ssim_floor")]
    assert len(floors) == 8
    for row in floors:
        i = int(row["image"])
        block = range(4 * (i // 4), 4 * (i // 4) + 4)
        alone = sum(y[j] == y[i] for j in block) == 1
        assert math.isnan(row["value"]) == alone, (i, y)
    same = attribute_again(tiny_run, tmp_path / "any", *eight)
    key = lambda r: (r["method"], r["r"], r["metric"], r["pair"], r["model"], r["image"])  # noqa: E731
    other = {key(r): r["value"] for r in same if not r["metric"].endswith("_floor")}
    assert {key(r): r["value"] for r in rows if not r["metric"].endswith("_floor")} == other


def test_the_split_says_what_its_intervals_are_over():
    """Three models: over these models' images and draws, not over retraining."""
    split = meaning.prediction_split(designed(), "gradcam", 0.2, debiased=False)
    intro = meaning_page.split_section([split])[1].text
    assert "over the 6 test images and their draws of these 3 models, not over retraining" in intro

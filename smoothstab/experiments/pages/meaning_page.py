"""The report's sections on what a similarity means, in words: each between-model measure beside
its chance floor with the chance-corrected score, the same-prediction split, where the retrained
models disagree (figure), which images' maps to trust (figure and a sentence on how the score moves
with r). The numbers are :mod:`~smoothstab.experiments.analysis.meaning`'s; these functions only
lay them out, as ordinary blocks appended after the report's other sections."""

from __future__ import annotations

import math
from pathlib import Path

from smoothstab import inference
from smoothstab.experiments.analysis.meaning import (
    Floor,
    PredictionSplit,
    ReliabilityChange,
    floors,
)
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.pages.blocks import Block, Figure, Heading, Paragraph, Table
from smoothstab.experiments.pages.names import NAMES, over_phrase

METRIC_NAMES = {
    "ssim": "SSIM",
    "topk_iou": "top-k IoU",
    "rank_agreement": "rank agreement",
    "unit_distance": "unit-map distance",
    "unit_distance_debiased": "unit-map distance (debiased)",
    "stability": "raw L2 distance",
    "stability_debiased": "raw L2 distance (debiased)",
}

FLOOR_INTRO = (
    "A similarity between two models' maps means little on its own: SSIM of blob-like maps is "
    "high between any two images. Each measure's chance floor is the same metric between one "
    "model's map of an image and the other model's map of another test image of the same block "
    "(a fixed, seeded pairing): maps that share the dataset, the method and the models, not the "
    "image. The chance-corrected score (observed - floor) / (ideal - floor) is 1 for identical "
    "maps and 0 for maps no more alike than another image's; the ideal is 1 for the "
    "similarities and 0 for the distances. Plain values (the floors are of the mean maps)."
)


def consensus_of(summary: Summary, method: str) -> list[str]:
    """The models of the pairs compared at r = 0 (the largest training-set size's)."""
    cells = summary.cells(method, "rank_agreement", 0.0)
    return [] if cells is None else sorted({x for u in cells.units for x in u.split("-")})


def est_text(est: inference.MeanEstimate | None, point: float, digits: int = 3) -> str:
    """``0.391 [0.35, 0.43]``, or the point value where there is no interval."""
    if est is None:
        return "-" if math.isnan(point) else f"{point:.{digits}g}"
    lo, hi = est.interval()
    return f"{est.estimate:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def floor_rows(found: list[Floor], few: bool) -> list[list[str]]:
    rows = []
    for f in found:
        over = "-" if f.corrected is None else over_phrase(f.corrected.scope, f.k, f.m)
        row = [NAMES[f.method], f"{f.r:g}", METRIC_NAMES.get(str(f.metric), str(f.metric))]
        row += [est_text(f.observed, f.point[0]), est_text(f.floor, f.point[1])]
        row += [est_text(f.corrected, f.point[2]), over]
        if few:
            row.append(", ".join(f"{u} {c:+.2f}" for u, (_, _, c) in f.per_pair.items()))
        rows.append(row)
    return rows


def floor_section(
    summary: Summary, methods: list[str], levels: dict[str, list[float]], k: int
) -> list[Block]:
    """The floors table: per method, at r = 0 and the recommended (or Table-1) r, each measure,
    its floor and the chance-corrected score with their intervals (with fewer than four models,
    each pair's corrected score beside them)."""
    few = k < inference.MIN_MODELS
    rows = []
    for m in methods:
        for r in levels[m]:
            rows += floor_rows(floors(summary, m, r), few)
    if not rows:
        return []
    header = ["method", "r", "measure", "observed", "chance floor", "chance-corrected"]
    header += ["interval over"] + (["per pair (corrected)"] if few else [])
    out: list[Block] = [Heading(2, "Is this agreement high? Chance floors"), Paragraph(FLOOR_INTRO)]
    if few:
        out.append(
            Paragraph(
                f"{k} models: the intervals are over these models' test images and draws, not "
                "over retraining; each pair's corrected score is shown."
            )
        )
    return out + [Table(header, rows)]


def value_text(v) -> str:
    """A group's mean: with its interval, or the bare value (one image)."""
    if v is None:
        return "-"
    return est_text(v, v.estimate) if hasattr(v, "interval") else f"{v:.3g}"


def split_rows(split: PredictionSplit) -> list[list[str]]:
    rows = []
    for g in split.groups:
        unit = g.values.get("unit_distance_debiased", g.values.get("unit_distance"))
        rows.append(
            [NAMES[split.method], f"{split.r:g}", g.name, f"{100 * g.share:.0f}% ({g.cells})"]
            + [value_text(unit), value_text(g.values.get("ssim"))]
            + [value_text(g.values.get("rank_agreement")), value_text(g.change)]
        )
    return rows


def split_section(found: list[PredictionSplit]) -> list[Block]:
    """The same-prediction split: per method at the recommended (or largest) r, each group's
    share of the pair x image cells, the unit-map distance, SSIM and rank agreement in it, the
    change of the unit-map distance from r = 0 within it, and whether smoothing's effect holds
    within the same-prediction group."""
    if not found:
        return []
    rows = [row for split in found for row in split_rows(split)]
    header = ["method", "r", "group", "share of pairs x images", "unit-map distance", "SSIM"]
    header += ["rank agreement", "unit-map distance change from r = 0"]
    lines = []
    for s in found:
        holds = s.holds_within("same prediction")
        lines.append(
            f"{NAMES[s.method]}: the change of the unit-map distance from r = 0 to {s.r:g} "
            + {
                "holds": "holds within the pairs that predict the same class (both intervals "
                "on the same side of 0).",
                "reverses": "reverses within the pairs that predict the same class.",
                "cannot tell": "cannot be told within the pairs that predict the same class "
                "(an interval covers 0).",
                "no cells": "has no same-prediction cells to test.",
            }[holds]
        )
    k, m = found[0].k, found[0].m
    over = (
        f"over retraining ({k} models), the {m} test images and their draws"
        if k >= inference.MIN_MODELS
        else f"over the {m} test images and their draws of these {k} models, not over retraining"
    )
    intro = (
        "Two models that predict different classes for an image are explaining different "
        "things. Every model pair and test image, split by whether both models predict the same "
        "class (and, where every image has a label, whether both are right); each group's mean "
        f"is over its pairs x images, its 95% interval {over} (the delta method; pairs share "
        "models)."
    )
    return [Heading(2, "Stability given the prediction"), Paragraph(intro), Table(header, rows)] + [
        Paragraph(line) for line in lines
    ]


def levels_phrase(levels: list[float], recommended: bool) -> str:
    """``r = 0 and 0.144 (the recommended r)``, or ``(the Table-1 r: none is recommended)``."""
    if len(levels) < 2:
        return "r = 0"
    why = "the recommended r" if recommended else "the Table-1 r: no r is recommended"
    return f"r = 0 and {levels[-1]:g} ({why})"


def disagreement_section(
    figures: list[tuple[str, Path]],
    curves: dict[str, list[tuple[float, float]]],
    debiased: bool,
    levels_text=lambda m: "r = 0 and the recommended r",
) -> list[Block]:
    """Where the retrained models disagree: each method's mean total disagreement by r and its
    figure (the input, the mean unit map and the disagreement map at r = 0 and the recommended
    r, for the test images whose unsmoothed maps disagree most and least)."""
    if not curves:
        return []
    kind = (
        "debiased with the Monte-Carlo groups"
        if debiased
        else "plain (Monte-Carlo noise adds to it)"
    )
    intro = (
        "Per test image, the disagreement map is the per-pixel variance across the models of "
        "their maps scaled to unit norm; its total is the mean over model pairs of "
        "unit-map distance^2 / 2: 0 when every model's map points the same way, 1 for unrelated "
        f"(orthogonal) maps. Totals {kind}, means over the test images:"
    )
    rows = [[NAMES[m], ", ".join(f"r = {r:g}: {v:.3f}" for r, v in c)] for m, c in curves.items()]
    out: list[Block] = [Heading(2, "Where the retrained models disagree"), Paragraph(intro)]
    out.append(Table(["method", "mean total disagreement"], rows))
    for m, path in figures:
        out.append(
            Figure(
                path,
                f"{NAMES[m]}: the test images whose unsmoothed maps disagree most and least across "
                f"the models: input, mean unit map and disagreement map, at {levels_text(m)}.",
            )
        )
    return out


def reliability_sentence(method: str, ch: ReliabilityChange) -> str:
    """How the reliability score moves with r, in one sentence."""
    change = "" if ch.change is None else (
        f" (mean change {est_text(ch.change, ch.change.estimate)}, over "
        f"{over_phrase(ch.change.scope, ch.change.k, ch.change.m)})"
    )  # fmt: skip
    rho = "" if math.isnan(ch.rank_rho) else (
        f"; Spearman's rho between the images' scores at the two levels is {ch.rank_rho:.2f} "
        "(near 1: the same images stay the least reliable)"
    )  # fmt: skip
    return (
        f"{NAMES[method]}: from r = {ch.r0:g} to {ch.r1:g} the reliability score rises on "
        f"{100 * ch.rises:.0f}% of the {ch.m} test images{change}{rho}."
    )


def reliability_section(
    figures: list[tuple[str, Path]],
    changes: dict[str, ReliabilityChange],
    k: int,
    levels_text=lambda m: "r = 0 and the recommended r",
) -> list[Block]:
    """Which images to trust: the reliability score, how it moves with r, and the figures."""
    if not changes:
        return []
    over = (
        "with its interval over retraining (leave-one-model-out jackknife)"
        if k >= inference.MIN_MODELS
        else f"(with {k} models, no interval over retraining: each pair's value is in the run's "
        "numbers, load_run(...).reliability)"
    )
    intro = (
        "An image's reliability score is the mean over model pairs of the rank agreement of "
        f"their maps of it {over}: near 1, every retrained model ranks its pixels alike; near 0, "
        "its map depends on which model drew it."
    )
    out: list[Block] = [Heading(2, "Which images to trust"), Paragraph(intro)]
    out += [Paragraph(reliability_sentence(m, ch)) for m, ch in changes.items()]
    for m, path in figures:
        out.append(
            Figure(
                path,
                f"{NAMES[m]}: each test image's reliability score at {levels_text(m)}, and the "
                "mean unit maps of the least and most reliable images (chosen at r = 0).",
            )
        )
    return out

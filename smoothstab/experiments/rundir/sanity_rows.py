"""``sanity.csv``, the sanity stage's file (:mod:`~smoothstab.experiments.stages.sanity_stage`): its
columns, its reader and the summaries that the figures and the report read from it.

Rows go to ``sanity.csv``, not the metrics table: that file is the evaluate stage's (rewritten
whenever evaluate reruns, and recorded under it in the manifest), and these rows have a unit of
their own, the randomised copy. Columns :data:`COLUMNS`; metrics ``sanity_ssim`` and ``sanity_rank``
(:class:`~smoothstab.experiments.analysis.measures.Metric`); ``step`` numbers the copies in
:func:`~smoothstab.randomize.randomize`'s order and ``randomized`` names each (cascading: the lowest
layer re-initialised, so the last step is the fully random model). ``stderr`` is empty: the engine
gives a map's Monte-Carlo error, not that of a similarity between two maps.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING

from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.metrics_table import read_csv

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import ExperimentConfig

PARAMS = (Metric.SANITY_SSIM, Metric.SANITY_RANK)  # against the randomised copies
LABELS = (Metric.SANITY_LABEL_SSIM, Metric.SANITY_LABEL_RANK)  # against the permuted-label twin
COLUMNS = (
    "setting", "n", "model", "method", "r", "sigma", "metric", "step", "randomized", "image",
    "value", "stderr",
)  # fmt: skip


def read_rows(run: RunDir) -> list[dict]:
    return read_csv(run.sanity_csv, COLUMNS)


def config_rows(cfg: ExperimentConfig, run: RunDir) -> list[dict]:
    """``sanity.csv``'s rows of the checks ``cfg`` asks for (the label check's only with
    ``sanity.labels``: a file from a run that had it on keeps them)."""
    labels = {str(m) for m in LABELS}
    return [r for r in read_rows(run) if cfg.sanity.labels or r["metric"] not in labels]


def has_label_rows(rows: list[dict]) -> bool:
    """Whether ``rows`` hold the label check's."""
    return any(r["metric"] == str(LABELS[0]) for r in rows)


def per_image_similarity(
    rows: list[dict], mode: str
) -> dict[tuple[str, str, float], dict[int, float]]:
    """``{(method, metric, r): {image: similarity to the randomised model}}``: to the fully random
    copy (the last step) in a cascade; independently, per image the mean over the copies (no copy
    is fully random there). Each image's similarity carries its maps' Monte-Carlo noise; the
    pass rule (:func:`~smoothstab.experiments.analysis.advice.sanity_levels`) pairs it with the
    retrained models' similarity on the same image."""
    last: dict[str, int] = defaultdict(int)  # per metric: the label check has one step
    for row in rows:
        last[row["metric"]] = max(last[row["metric"]], int(row["step"]))
    values: dict[tuple[str, str, float], dict[int, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for row in rows:
        if mode == "independent" or int(row["step"]) == last[row["metric"]]:
            key = (row["method"], row["metric"], row["r"])
            values[key][int(row["image"])].append(row["value"])
    return {
        key: {i: math.fsum(v) / len(v) for i, v in sorted(per_image.items())}
        for key, per_image in values.items()
    }


def per_step(rows: list[dict], method: str, metric: str, r: float) -> list[tuple[str, float]]:
    """``[(randomised copy, mean similarity over images)]`` in step order."""
    values: dict[tuple[int, str], list[float]] = defaultdict(list)
    for row in rows:
        if (row["method"], row["metric"], row["r"]) == (method, metric, r):
            values[(int(row["step"]), row["randomized"])].append(row["value"])
    return [(name, math.fsum(v) / len(v)) for (_, name), v in sorted(values.items())]

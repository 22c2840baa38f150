"""A run directory's numbers as pandas DataFrames: ``smoothstab.load_run(DIR)``.

Every table is read from the files the stages wrote, through the readers the report uses
(the metrics table, ``metrics.parquet``, and its
:class:`~smoothstab.experiments.analysis.summary.Summary`,
``table1.csv``, ``recommendation.json``, ``sanity.csv``), so a DataFrame holds the numbers the
report shows. pandas is needed here only, imported on first use (``pip install pandas``; the
``frames`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.table1_file import read_table1

if TYPE_CHECKING:
    import pandas as pd

    from smoothstab.experiments.config.tables import ExperimentConfig


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ValueError(
            "load_run: needs pandas; install it: pip install 'smoothstab[frames]'"
        ) from None
    return pandas


class RunFrames:
    """The numbers of one run directory (:func:`load_run`), each a DataFrame read when first
    asked for:

    * :attr:`metrics`: ``metrics.parquet``, one row per method, r, metric, model pair or model and
      image (``value``, and its Monte-Carlo ``stderr`` where the metric has one);
    * :meth:`summary`: per method, metric, r and training-set size, the mean over pairs (or
      models) and images with its interval over models, images and draws, the paper's band
      beside it and the Monte-Carlo standard error: the report's curves and sweep, one row
      each;
    * :meth:`per_pair_or_model`: the means over images of each pair or model behind them;
    * :attr:`table1`: ``table1.csv``, the paper's Table 1 (with ``_lo``/``_hi`` bands);
    * :attr:`recommendation`: the advice per method and size (the recommended r, or none),
      and :attr:`curves` the stability, its change from r = 0 and the fidelity it rests on;
    * :attr:`sanity`: ``sanity.csv`` (the sanity stage's rows; ``None`` when it did not run);
    * what a similarity means (:mod:`~smoothstab.experiments.analysis.meaning`): :attr:`floors`,
      each between-model measure beside its chance floor with the chance-corrected score;
      :attr:`prediction_split`, the same-prediction split; :attr:`reliability`, the per-image
      reliability score.
    """

    def __init__(self, root: str | Path) -> None:
        self.run = RunDir(root)
        for path in (self.run.config, self.run.metrics):
            if not path.is_file():
                raise ValueError(
                    f"load_run: {self.run.root} is not a finished run directory ({path.name} "
                    "is missing); run its stages up to evaluate first"
                )
        self._cache: dict[str, Any] = {}

    def _memo(self, key: str, make: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def config(self) -> ExperimentConfig:
        """The run's resolved config (``config.toml``)."""
        from smoothstab.experiments.config.load import load_config

        return self._memo("config", lambda: load_config(self.run.config))

    @property
    def metrics(self) -> pd.DataFrame:
        def make() -> pd.DataFrame:
            frame = _pandas().DataFrame(self.run.columns())  # columns: no dict per row
            for col in ("n", "stderr", "image"):
                if col in frame:
                    frame[col] = _pandas().to_numeric(frame[col], errors="coerce")
            return frame

        return self._memo("metrics", make)

    def summary(self) -> pd.DataFrame:
        """One row per (method, metric, r, n): the ``mean`` over pairs (or models) and images
        and its 95% interval ``lo``..``hi`` -- over retraining, the test images and their
        Monte-Carlo draws from four models on, over the images and draws of these models below
        that (``interval_over`` says which; ``df`` its degrees of freedom) -- beside the paper's
        band (``paper_lo``..``paper_hi``: Student-t over the pair or model means, a replication of
        its figures, not an interval over retraining), ``mc_stderr``, ``units`` (pairs or
        models), ``images`` and the absolute ``sigma`` of r: the report's curves and tables."""

        def make() -> pd.DataFrame:
            s = self.run.summary()
            rows = []
            for method, metric, r, n in sorted(s.keys(), key=_order):
                b, est = s.get(method, metric, r, n), s.estimate(method, metric, r, n)
                paper = s.paper_band(method, metric, r, n)
                cells = s.cells(method, metric, r, n)
                rows.append(
                    {
                        "method": method,
                        "metric": metric,
                        "r": r,
                        "sigma": s.sigmas.get(r),
                        "n": n,
                        "mean": b.mean,
                        "lo": b.lo,
                        "hi": b.hi,
                        "interval_over": None if est is None else est.scope,
                        "df": None if est is None else est.df,
                        "paper_lo": paper.lo,
                        "paper_hi": paper.hi,
                        "mc_stderr": s.mc_stderr(method, metric, r, n),
                        "units": len(cells.unit_means()),
                        "images": cells.m,
                    }
                )
            return _pandas().DataFrame(rows)

        return self._memo("summary", make)

    def per_pair_or_model(self) -> pd.DataFrame:
        """One row per (method, metric, r, n, pair or model): its mean over images."""

        def make() -> pd.DataFrame:
            s = self.run.summary()
            rows = [
                {"method": m, "metric": k, "r": r, "n": n, "pair_or_model": who, "mean": v}
                for (m, k, r, n), found in sorted(s.by_pair_or_model.items(), key=_order_item)
                for who, v in found.items()
            ]
            return _pandas().DataFrame(rows)

        return self._memo("units", make)

    @property
    def table1(self) -> pd.DataFrame:
        def make() -> pd.DataFrame:
            rows = [
                {k: getattr(v, "mean", v) for k, v in row.items()}
                | {f"{k}_lo": v.lo for k, v in row.items() if hasattr(v, "lo")}
                | {f"{k}_hi": v.hi for k, v in row.items() if hasattr(v, "hi")}
                for row in read_table1(self.run.table1)
            ]
            return _pandas().DataFrame(rows)

        return self._memo("table1", make)

    @property
    def recommendation(self) -> pd.DataFrame:
        """One row per method and training-set size: the advice (``recommendation.json``):
        its ``status``, the ``recommended_r`` (``None``: no smoothing recommended), the most
        stable ``best_r`` within the fidelity budget and whether it sits at the sweep's or the
        budget's edge, the ``knee_r`` with its range over leave-one-model-out curves, and the
        models ``k`` and images ``m`` it rests on."""

        def make() -> pd.DataFrame:
            rows = []
            for a in self.run.advice().methods:
                knee = a.knee_range or (None, None)
                rows.append(
                    {
                        "method": a.method,
                        "n": a.n,
                        "status": a.status,
                        "recommended_r": a.recommended_r,
                        "best_r": a.best_r,
                        "best_at_sweep_edge": a.best_at_sweep_edge,
                        "best_at_budget_edge": a.best_at_budget_edge,
                        "knee_r": a.knee_r,
                        "knee_lo": knee[0],
                        "knee_hi": knee[1],
                        "fidelity_budget": a.fidelity_budget,
                        "measure": a.measure,
                        "k": a.k,
                        "m": a.m,
                    }
                )
            return _pandas().DataFrame(rows)

        return self._memo("recommendation", make)

    @property
    def curves(self) -> pd.DataFrame:
        """One row per (method, n, r): the stability the advice used with its interval, the
        paired change from r = 0 with its interval, the fidelity error, and the advice's
        flags (within the budget, measurably better than r = 0, not distinguishable from the
        best)."""

        def make() -> pd.DataFrame:
            rows = []
            for a in self.run.advice().methods:
                for lv in a.levels:
                    stab, change = lv.stability, lv.change
                    rows.append(
                        {
                            "method": a.method,
                            "n": a.n,
                            "r": lv.r,
                            "stability": None if stab is None else stab.estimate,
                            "stability_lo": None if stab is None else stab.lo,
                            "stability_hi": None if stab is None else stab.hi,
                            "change": None if change is None else change.estimate,
                            "change_lo": None if change is None else change.lo,
                            "change_hi": None if change is None else change.hi,
                            "fidelity": lv.fidelity,
                            "within_budget": lv.within_budget,
                            "better": lv.better,
                            "near_best": lv.near_best,
                        }
                    )
            return _pandas().DataFrame(rows)

        return self._memo("curves", make)

    def _meaning(self):
        from smoothstab.experiments.analysis import meaning

        return meaning, self.run.summary(), self.config.attribution.methods

    def _levels(self, s, method: str) -> list[float]:
        from smoothstab.experiments.analysis.measures import Metric

        return s.levels(method, Metric.RANK_AGREEMENT)

    @property
    def floors(self) -> pd.DataFrame:
        """One row per (method, metric, r): the mean ``observed`` value (plain) over pairs and
        images, its chance ``floor`` (the same metric between one model's map of an image and
        the other's map of another image of its block) and the ``corrected`` score
        ``(observed - floor) / (ideal - floor)``, each with its 95% interval (``_lo``, ``_hi``;
        over retraining from four models, over these models' images and draws below:
        ``interval_over``), the ``ideal`` value and the ``images`` used."""

        def make() -> pd.DataFrame:
            meaning, s, methods = self._meaning()
            rows = []
            for method in methods:
                for r in self._levels(s, method):
                    for f in meaning.floors(s, method, r):
                        row = {"method": method, "metric": str(f.metric), "r": r,
                               "ideal": f.ideal, "images": f.m, "models": f.k}  # fmt: skip
                        for name, est, point in zip(("observed", "floor", "corrected"),
                                                    (f.observed, f.floor, f.corrected),
                                                    f.point, strict=True):  # fmt: skip
                            row[name] = point
                            lo, hi = est.interval() if est is not None else (None, None)
                            row[f"{name}_lo"], row[f"{name}_hi"] = lo, hi
                        row["interval_over"] = None if f.corrected is None else f.corrected.scope
                        rows.append(row)
            return _pandas().DataFrame(rows)

        return self._memo("floors", make)

    @property
    def prediction_split(self) -> pd.DataFrame:
        """One row per (method, r, group, measure): the pair x image cells split by whether both
        models predict the same class (``same prediction``, ``different prediction``) and, where
        every image has a label, whether both are correct: the group's ``share`` of the cells,
        the measure's ``mean`` over them with its interval, and ``change``, the change of the
        unit-map distance from r = 0 within the group, with its interval."""

        def make() -> pd.DataFrame:
            meaning, s, methods = self._meaning()
            e = self.config.evaluation
            rows = []
            for method in methods:
                for r in self._levels(s, method):
                    split = meaning.prediction_split(s, method, r, e.debiased, e.stability_measure)
                    for g in [] if split is None else split.groups:
                        ch = g.change
                        for measure, est in g.values.items():
                            b = est.interval() if hasattr(est, "interval") else (None, None)
                            rows.append({
                                "method": method, "r": r, "group": g.name, "share": g.share,
                                "cells": g.cells, "measure": measure,
                                "mean": getattr(est, "estimate", est), "lo": b[0], "hi": b[1],
                                "change": None if ch is None else ch.estimate,
                                "change_lo": None if ch is None else ch.interval()[0],
                                "change_hi": None if ch is None else ch.interval()[1],
                            })  # fmt: skip
            return _pandas().DataFrame(rows)

        return self._memo("prediction_split", make)

    @property
    def reliability(self) -> pd.DataFrame:
        """One row per (method, r, test image): its reliability ``score``, the mean over model
        pairs of the rank agreement of their maps, with its 95% interval over retraining
        (``lo``, ``hi``; empty below four models)."""

        def make() -> pd.DataFrame:
            meaning, s, methods = self._meaning()
            rows = []
            for method in methods:
                for r in self._levels(s, method):
                    rel = meaning.reliability(s, method, r)
                    if rel is None:
                        continue
                    for i, image in enumerate(rel.images):
                        rows.append({
                            "method": method, "r": r, "image": image,
                            "score": float(rel.score.mean[i]), "lo": float(rel.score.lo[i]),
                            "hi": float(rel.score.hi[i]),
                        })  # fmt: skip
            return _pandas().DataFrame(rows)

        return self._memo("reliability", make)

    @property
    def sanity(self) -> pd.DataFrame | None:
        if not self.run.sanity_csv.is_file():
            return None
        from smoothstab.experiments.rundir.sanity_rows import read_rows

        return self._memo("sanity", lambda: _pandas().DataFrame(read_rows(self.run)))

    def __repr__(self) -> str:
        m = self.metrics
        methods = ", ".join(dict.fromkeys(m["method"]))
        rs = sorted(set(m["r"]))
        return (
            f"RunFrames({self.run.root}: {len(m)} metric rows, methods {methods}, r = "
            f"{rs[0]:g} to {rs[-1]:g}; .metrics, .summary(), .per_pair_or_model(), .table1, "
            ".recommendation, .curves, .sanity, .floors, .prediction_split, .reliability)"
        )


def _order(key: tuple) -> tuple:
    method, metric, r, n = key
    return (method, metric, -1 if n is None else n, r)


def _order_item(item: tuple) -> tuple:
    return _order(item[0])


def load_run(path: str | Path) -> RunFrames:
    """The numbers of the run directory ``path`` as pandas DataFrames (:class:`RunFrames`):
    ``run.metrics``, ``run.summary()``, ``run.table1``, ``run.recommendation``, ...; one
    ``ValueError`` line when ``path`` is not a run directory with ``metrics.parquet``."""
    return RunFrames(path)

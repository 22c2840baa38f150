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

from smoothstab.experiments.io.files import DamagedFile
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
      models) of their means over images, its band and its Monte-Carlo standard error: the
      report's curves and sweep, one row each;
    * :meth:`per_pair_or_model`: the means over images of each pair or model behind them;
    * :attr:`table1`: ``table1.csv``, the paper's Table 1 (with ``_lo``/``_hi`` bands);
    * :attr:`recommendation`: the advised r per method, and :attr:`curves` the stability and
      fidelity curves it was chosen from;
    * :attr:`sanity`: ``sanity.csv`` (the sanity stage's rows; ``None`` when it did not run).
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

    def summary(self, band: str = "t95") -> pd.DataFrame:
        """One row per (method, metric, r, n): ``mean`` over pairs or models, the band
        ``lo``..``hi`` of kind ``band`` (``t95``: the 95% Student-t interval of the mean;
        ``sd``: one standard deviation), ``mc_stderr``, ``units`` (pairs or models) and the
        absolute ``sigma`` of r."""

        def make() -> pd.DataFrame:
            s = self.run.summary(band)
            rows = []
            for (method, metric, r, n), b in sorted(s.bands.items(), key=_order):
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
                        "mc_stderr": s.stderr.get((method, metric, r, n)),
                        "units": len(s.by_pair_or_model.get((method, metric, r, n), {})),
                    }
                )
            return _pandas().DataFrame(rows)

        return self._memo(f"summary-{band}", make)

    def per_pair_or_model(self) -> pd.DataFrame:
        """One row per (method, metric, r, n, pair or model): its mean over images."""

        def make() -> pd.DataFrame:
            s = self.run.summary()
            rows = [
                {"method": m, "metric": k, "r": r, "n": n, "pair_or_model": who, "mean": v}
                for (m, k, r, n), found in sorted(s.by_pair_or_model.items(), key=_order)
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
        """One row per method: the advice's numbers (``knee_r``, ``budget_r``, ...)."""

        def make() -> pd.DataFrame:
            advice = self._advice()
            rows = [
                {"method": m, **{k: v for k, v in a.items() if not isinstance(v, list | dict)}}
                for m, a in advice.items()
                if isinstance(a, dict)
            ]
            return _pandas().DataFrame(rows)

        return self._memo("recommendation", make)

    @property
    def curves(self) -> pd.DataFrame:
        """One row per (method, r): the stability and fidelity values the advice used."""

        def make() -> pd.DataFrame:
            rows = [
                {"method": m, **point}
                for m, a in self._advice().items()
                if isinstance(a, dict)
                for point in a.get("curve", [])
            ]
            return _pandas().DataFrame(rows)

        return self._memo("curves", make)

    def _advice(self) -> dict:
        advice = self.run.advice()
        if not isinstance(advice, dict):
            raise DamagedFile(self.run.recommendation, "expected a JSON object of methods")
        return advice

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
            ".recommendation, .curves, .sanity)"
        )


def _order(item: tuple) -> tuple:
    (method, metric, r, n), _ = item
    return (method, metric, -1 if n is None else n, r)


def load_run(path: str | Path) -> RunFrames:
    """The numbers of the run directory ``path`` as pandas DataFrames (:class:`RunFrames`):
    ``run.metrics``, ``run.summary()``, ``run.table1``, ``run.recommendation``, ...; one
    ``ValueError`` line when ``path`` is not a run directory with ``metrics.parquet``."""
    return RunFrames(path)

"""The evaluate stage: maps in the run directory -> ``metrics.csv``, Table 1 and the sigma advice.

``metrics.csv`` is tidy: one row per (method, r, metric, model pair or model, image) with the
columns :data:`COLUMNS`. Metric names: ``stability`` (Eq. 12, plain, as the paper computes it),
``stability_debiased`` (split-half, see :mod:`smoothstab.debias`), ``fidelity`` (Eq. 13, the
smoothed map against the same model's unsmoothed map) and ``fidelity_debiased``, ``ssim`` and
``topk_iou`` (between the two models of a pair, on the Table-1 views; no ``ssim`` for maps
smaller than its 11x11 window, such as digits), and ``map_norm`` (the unsmoothed map's L2 norm,
the scale for a relative fidelity budget).
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path

import torch

from smoothstab import metrics
from smoothstab.experiments.aggregate import band, model_pairs
from smoothstab.debias import debiased_distance
from smoothstab.experiments.attribute import map_path, noise_grid
from smoothstab.experiments.io import atomic_write, write_json
from smoothstab.montecarlo import SmoothStats

COLUMNS = ("setting", "method", "r", "sigma", "metric", "pair", "model", "image", "value", "stderr")


def as_stats(saved: dict) -> SmoothStats | torch.Tensor:
    """A saved map file as SmoothStats (smoothed, with halves) or a plain tensor."""
    if saved.get("halves") is None:
        return saved["mean"]
    mean_var = saved["mean_var"]
    unit_var = mean_var * saved["n_units"]
    return SmoothStats(saved["mean"], None, saved["halves"], unit_var, saved["n_units"])


def _mean(x: SmoothStats | torch.Tensor) -> torch.Tensor:
    return x.mean if isinstance(x, SmoothStats) else x


def _rows(base: dict, metric: str, values: torch.Tensor, stderr: torch.Tensor | None = None):
    for i, v in enumerate(values.tolist()):
        se = "" if stderr is None else float(stderr[i])
        yield {**base, "metric": metric, "image": i, "value": float(v), "stderr": se}


def pair_rows(base: dict, a, b, *, debiased: bool, topk: int):
    """Stability, SSIM and top-k IoU rows for one model pair at one r."""
    est = debiased_distance(a, b)
    yield from _rows(base, "stability", est.plain, est.stderr)
    if debiased:
        yield from _rows(base, "stability_debiased", est.value, est.stderr)
    ma, mb = _mean(a), _mean(b)
    # scikit-image's SSIM needs the 11x11 Gaussian window inside the map: none for 8x8 digits.
    if min(ma.shape[-2:]) >= metrics.SSIM_WIN:
        yield from _rows(base, "ssim", metrics.ssim_maps(ma, mb))
    yield from _rows(base, "topk_iou", metrics.topk_iou(ma, mb, k=topk))


def model_rows(base: dict, smoothed, unsmoothed: torch.Tensor, *, debiased: bool, r: float):
    """Fidelity rows for one model at one r (and its unsmoothed map norm at r = 0)."""
    if r == 0:
        yield from _rows(base, "map_norm", unsmoothed.flatten(1).norm(dim=1))
    est = debiased_distance(smoothed, unsmoothed)
    yield from _rows(base, "fidelity", est.plain, est.stderr)
    if debiased:
        yield from _rows(base, "fidelity_debiased", est.value, est.stderr)


def csv_text(rows: list[dict], columns=COLUMNS) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_csv(path: str | Path) -> list[dict]:
    """``metrics.csv`` rows with ``r``, ``sigma``, ``value`` as floats."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("r", "sigma", "value"):
            row[key] = float(row[key])
    return rows


def summarise(rows: list[dict], kind: str = "t95") -> dict:
    """``{(method, metric, r): Band}``: mean over images per pair/model, then the band."""
    per_unit = defaultdict(list)
    for row in rows:
        unit = row["pair"] or row["model"]
        per_unit[(row["method"], row["metric"], row["r"], unit)].append(row["value"])
    groups = defaultdict(list)
    for (method, metric, r, _unit), values in per_unit.items():
        groups[(method, metric, r)].append(math.fsum(values) / len(values))
    return {key: band(values, kind) for key, values in groups.items()}


def table1(summary: dict, methods, r_smooth: float) -> list[dict]:
    """Table 1 of the paper: SSIM / smoothed SSIM / top-k mIoU / smoothed top-k mIoU."""
    out = []
    for method in methods:
        out.append(
            {
                "method": method,
                "ssim": summary.get((method, "ssim", 0.0)),
                "smoothed_ssim": summary.get((method, "ssim", r_smooth)),
                "topk_miou": summary.get((method, "topk_iou", 0.0)),
                "smoothed_topk_miou": summary.get((method, "topk_iou", r_smooth)),
            }
        )
    return out


def tradeoff(summary: dict, method: str, debiased: bool) -> list[tuple[float, float, float]]:
    """``[(r, stability, fidelity)]`` over the r values where both were measured."""
    suffix = "_debiased" if debiased else ""
    curve = lambda metric: {  # noqa: E731
        r: b.mean for (m, k, r), b in summary.items() if m == method and k == metric + suffix
    }
    stab, fid = curve("stability"), curve("fidelity")
    return [(r, stab[r], fid[r]) for r in sorted(set(stab) & set(fid))]


def knee(points: list[tuple[float, float, float]]) -> float | None:
    """The r of the knee of the trade-off curve (fidelity against stability).

    Both errors are scaled to [0, 1] over the curve; the knee is the point farthest from the
    chord between the curve's ends (Kneedle, Satopaa et al. 2011), i.e. where extra smoothing
    stops buying stability cheaply.
    """
    if len(points) < 3:
        return None
    s = [p[1] for p in points]
    f = [p[2] for p in points]
    scale = lambda v: [(x - min(v)) / ((max(v) - min(v)) or 1) for x in v]  # noqa: E731
    s, f = scale(s), scale(f)
    (s0, f0), (s1, f1) = (s[0], f[0]), (s[-1], f[-1])
    norm = math.hypot(s1 - s0, f1 - f0) or 1
    dist = [
        abs((f1 - f0) * si - (s1 - s0) * fi + s1 * f0 - f1 * s0) / norm
        for si, fi in zip(s, f, strict=True)
    ]
    return points[max(range(len(points)), key=dist.__getitem__)][0]


def within_budget(points, norm: float, budget: float) -> float | None:
    """The most stable r whose relative fidelity error (fidelity / ||unsmoothed map||) <= budget."""
    ok = [p for p in points if p[2] <= budget * norm]
    return min(ok, key=lambda p: (p[1], p[0]))[0] if ok else None


def recommend(summary: dict, methods, *, debiased: bool, budget: float) -> dict:
    """Per method: the knee r, the most stable r within the fidelity budget, and the curve."""
    out = {}
    for method in methods:
        points = tradeoff(summary, method, debiased)
        norm_band = summary.get((method, "map_norm", 0.0))
        norm = norm_band.mean if norm_band else float("nan")
        out[method] = {
            "knee_r": knee(points),
            "budget_r": within_budget(points, norm, budget),
            "fidelity_budget": budget,
            "map_norm": norm,
            "curve": [{"r": r, "stability": s, "fidelity": f} for r, s, f in points],
        }
    return out


def _load(run_dir: Path, n_models: int, method: str, r: float) -> tuple[list, float]:
    """Every model's maps of ``method`` at ``r``, and the absolute sigma they were made with."""
    saved = [
        torch.load(map_path(run_dir, k, method, r), weights_only=True) for k in range(n_models)
    ]
    return [as_stats(s) for s in saved], saved[0]["sigma"]


def metric_rows(cfg, run_dir: Path, n_models: int) -> list[dict]:
    """Every per-image metric of the run (stability and similarity per pair, fidelity per model)."""
    e = cfg.evaluation
    rows = []
    for method in cfg.attribution.methods:
        reference, _ = _load(run_dir, n_models, method, 0.0)
        for r in noise_grid(cfg.attribution):
            maps, sigma = (reference, 0.0) if r == 0 else _load(run_dir, n_models, method, r)
            base = {"setting": cfg.models.setting, "method": method, "r": r, "sigma": sigma}
            for i, j in model_pairs(n_models):
                pair = {**base, "pair": f"{i}-{j}", "model": ""}
                rows += pair_rows(pair, maps[i], maps[j], debiased=e.debiased, topk=e.topk)
            for k in range(n_models):
                one = {**base, "pair": "", "model": str(k)}
                rows += model_rows(one, maps[k], reference[k], debiased=e.debiased, r=r)
    return rows


def evaluate_run(cfg, run_dir: Path, n_models: int) -> Path:
    """Write ``metrics.csv``, ``table1.csv`` and ``recommendation.json`` (skipped if present)."""
    run_dir = Path(run_dir)
    out = run_dir / "metrics.csv"
    if not out.is_file():
        text = csv_text(metric_rows(cfg, run_dir, n_models))
        atomic_write(out, lambda tmp: tmp.write_text(text))
    summary = summarise(read_csv(out), cfg.evaluation.band)
    rows = table1(summary, cfg.attribution.methods, round(float(cfg.attribution.table_r), 6))
    flat = [
        {
            "method": row["method"],
            **{k: "" if v is None else f"{v.mean:.6g}" for k, v in row.items() if k != "method"},
        }
        for row in rows
    ]
    text = csv_text(flat, columns=list(flat[0]))
    atomic_write(run_dir / "table1.csv", lambda tmp: tmp.write_text(text))
    advice = recommend(
        summary,
        cfg.attribution.methods,
        debiased=cfg.evaluation.debiased,
        budget=cfg.evaluation.fidelity_budget,
    )
    write_json(run_dir / "recommendation.json", advice)
    return out

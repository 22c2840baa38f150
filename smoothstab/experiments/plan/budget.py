"""A long run said before it starts: when a plan's estimate on this machine is over
:data:`THRESHOLD_S`, one line gives the estimate and the keys that cut it most, each with the
share of the time it saves, costed by the plan's own counts and timings (the keys' other
values are the run's). ``smoothstab plan`` ends with the line, and ``run`` and ``compare`` print
it before they start."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from smoothstab.experiments.plan.make import Plan
from smoothstab.experiments.plan.text import human_seconds
from smoothstab.experiments.plan.timing import attribution_seconds

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import ExperimentConfig

THRESHOLD_S = 600.0  # 10 minutes
CPU_DRAWS, CPU_LEVELS, CPU_IMAGES = 16, 4, 8  # what the cuts suggest: a CPU-sized run
SHOWN = 0.05  # cuts saving less than this share of the time are not named


def fewer_levels(cfg: ExperimentConfig, n: int = CPU_LEVELS) -> tuple[float, ...]:
    """About ``n`` of the run's noise levels spread over its grid: the smallest, the Table-1
    level, the largest, and those nearest to evenly spaced values between."""
    grid = cfg.attribution.noise_grid()
    keep = {grid[0], grid[-1], round(float(cfg.attribution.table_r), 6)}
    for j in range(1, n):
        if len(keep) >= n:
            break
        target = grid[0] + (grid[-1] - grid[0]) * j / n
        keep.add(min(grid, key=lambda r: abs(r - target)))
    return tuple(sorted(keep))


def cuts(cfg: ExperimentConfig, plan: Plan) -> list[tuple[str, float]]:
    """``(key = value, share of the total time it saves)``, the largest saving first."""
    t, a = plan.timing, cfg.attribution
    total = t.total_s
    if total <= 0:
        return []

    def saved(**changes: object) -> float:
        cheaper = replace(cfg, attribution=replace(a, **changes))
        return (t.attribute_s - attribution_seconds(cheaper, t.model_row_s)) / total

    found = []
    if a.tolerance is None and a.n_samples > CPU_DRAWS:
        n = CPU_DRAWS + CPU_DRAWS % 2 if a.antithetic else CPU_DRAWS
        found.append((f"attribution.n_samples={n}", saved(n_samples=n)))
    if "ig" in a.methods and a.ig_sampler == "nested":
        found.append(('attribution.ig_sampler="joint"', saved(ig_sampler="joint")))
    levels = fewer_levels(cfg)
    if len(levels) < len(a.noise_grid()):
        text = ", ".join(f"{r:g}" for r in levels)
        found.append(
            (
                f"'attribution.stability_r=[{text}]' and fidelity_r alike",
                saved(stability_r=levels, fidelity_r=levels),
            )
        )
    if a.n_images > CPU_IMAGES:
        found.append((f"attribution.n_images={CPU_IMAGES}", saved(n_images=CPU_IMAGES)))
    train = t.train_s + t.eval_s
    if train > 0 and plan.training:
        epochs = cfg.train.epochs
        if epochs > 1:
            found.append(
                (f"train.epochs={epochs // 2}", train * (1 - (epochs // 2) / epochs) / total)
            )
    return sorted((c for c in found if c[1] >= SHOWN), key=lambda c: -c[1])


def over_threshold(cfg: ExperimentConfig, plan: Plan, threshold: float | None = None) -> str | None:
    """The line for a plan estimated over ``threshold`` seconds here (default
    :data:`THRESHOLD_S`; ``None``: under it, or no timing)."""
    threshold = THRESHOLD_S if threshold is None else threshold
    if plan.timing is None or plan.timing.total_s <= threshold:
        return None
    found = cuts(cfg, plan)
    what = ", ".join(f"--set {k} (-{share:.0%})" for k, share in found)
    return (
        f"plan: about {human_seconds(plan.timing.total_s)} on this machine, over "
        f"{human_seconds(threshold)}; "
        + (f"each of these cuts it alone: {what}" if what else "no one key cuts it much")
    )

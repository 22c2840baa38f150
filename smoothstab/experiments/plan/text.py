"""A plan as text, one section per stage, and a pilot's sample-size plan: what ``smoothstab plan``
prints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.plan.counts import SanityCost, prediction_passes, training_config
from smoothstab.experiments.plan.make import Plan
from smoothstab.experiments.plan.pilot import PilotPlan

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import ExperimentConfig


def _n(x: float) -> str:
    return f"{x:,.0f}" if x < 1e12 else f"{x:.3g}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 2 * 3600:
        return f"{s / 60:.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _table(header: list[str], rows: list[list[str]]) -> Iterator[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    yield "  " + "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))
    for r in rows:
        yield "  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))


def format_plan(plan: Plan, cfg: ExperimentConfig) -> str:
    """The plan as text, one section per stage."""
    a = cfg.attribution
    setting = Setting.of(cfg)
    lines = [f"plan for {plan.name}: {plan.n_models} models ({setting.name})", ""]
    if plan.training:
        t = training_config(cfg)[0]
        what = setting.training_name()
        lines.append(
            f"{what} ({t.model}, {t.epochs} epochs, batch {t.batch_size}, amp {t.amp}"
            + (f", {t.noise_draws} weight-noise draws per step" if t.noise_std > 0 else "")
            + "), per run:"
        )
        rows = [
            [_n(c.size), str(c.models), _n(c.steps_per_epoch), _n(c.steps), _n(c.images_seen)]
            for c in plan.training
        ]
        header = ["train size", "models", "steps/epoch", "steps", "images seen"]
        lines += _table(header, rows)
        total = sum(c.models * c.images_seen for c in plan.training)
        lines += [f"  all models: {_n(total)} images seen", ""]
    else:
        lines += ["training: none (given checkpoints)", ""]
    other = "joint" if a.ig_sampler == "nested" else "nested"
    tolerance = getattr(a, "tolerance", None)
    samples = (
        f"tolerance {tolerance:g}: {a.min_samples} to {a.max_samples} samples, counted at "
        f"{a.max_samples}, an upper bound"
        if tolerance is not None
        else f"{a.n_samples} samples"
    )
    lines.append(
        f"attribution ({a.n_images} images, {samples}, IG {a.ig_steps} steps "
        f"{a.ig_sampler}): model evaluations (forward+backward of one row)"
    )
    rows, by_method = [], {}
    for c in plan.attribution:
        by_method.setdefault(c.method, [0, 0])
        by_method[c.method][0] += c.total
        by_method[c.method][1] += c.other_total if c.other_total is not None else c.total
        rows.append(
            [
                c.method,
                f"{c.r:g}",
                _n(c.per_image),
                _n(c.total),
                "" if c.other_per_image is None else _n(c.other_per_image),
            ]
        )
    header = ["method", "r", "per image/model", "all", f"per image, {other} IG"]
    lines += _table(header, rows)
    total = sum(v[0] for v in by_method.values())
    alt = sum(v[1] for v in by_method.values())
    lines.append(
        f"  all: {_n(total)} evaluations; with {other} IG: {_n(alt)} (at the same draws per "
        "map, not at the same Monte-Carlo error)"
    )
    lines.append(
        f"  predictions (the same-prediction split): {_n(prediction_passes(cfg))} forward passes "
        "without gradients, one per model and image"
    )
    if plan.storage is not None:
        lines += ["", *_storage_lines(plan, cfg), "", *_memory_lines(plan, cfg)]
    lines += _sanity_lines(plan.sanity)
    t = plan.timing
    if t is not None:
        lines += [
            "",
            f"time on this machine ({t.device}; {torch.get_num_threads()} threads"
            + (f"; {t.note}" if t.note else "")
            + "), an extrapolation from a few timed steps and chunks on random inputs:",
        ]
        if plan.training:
            lines.append(
                f"  train     {human_seconds(t.train_s + t.eval_s):>10}  "
                f"({t.step_s * 1000:.1f} ms a step; data loading not included)"
            )
        per = ", ".join(f"{m} {s * 1000:.2f} ms" for m, s in t.per_row_s.items())
        lines += [
            f"  attribute {human_seconds(t.attribute_s):>10}  (a row: {per})",
            f"  measure   {human_seconds(t.evaluate_s):>10}  (in the attribute stage, while the "
            "maps are in memory)",
            *([f"  sanity    {human_seconds(t.sanity_s):>10}"] if plan.sanity else []),
            f"  total     {human_seconds(t.total_s):>10}  (figures, bounds, report not included; "
            f"measured in {t.measured_s:.1f} s)",
        ]
    return "\n".join(lines)


def _storage_lines(plan: Plan, cfg: ExperimentConfig) -> list[str]:
    s, m = plan.storage, cfg.maps
    others = "; ".join(
        f'"{keep}": ' + ("none" if not files else f"{files} files, {human_bytes(nbytes)}")
        for keep, (files, nbytes) in s.alternatives.items()
    )
    kept = "none" if not s.map_files else f"{s.map_files} files, {human_bytes(s.map_bytes)}"
    form = f"{m.precision}" + (", their 2-D |map| view" if m.view == "abs" else "")
    return [
        f"storage, {human_bytes(s.total)}:",
        f"  block files      {s.block_files} files, {human_bytes(s.block_bytes)}: the rows, and "
        f"the mean maps of {s.figure_images} figure images, every model at every r "
        f"({human_bytes(s.figure_bytes)}, {form})",
        f'  kept maps        {kept} (maps.keep = "{m.keep}"; {others})',
        f"  metrics.parquet  {_n(s.table_rows)} rows, at most about {human_bytes(s.table_bytes)}",
        f"  test_images.pt   {human_bytes(s.test_images_bytes)}",
    ]


def _memory_lines(plan: Plan, cfg: ExperimentConfig) -> list[str]:
    """What one device holds; where the config's device is here, against its memory."""
    mem, a = plan.memory, cfg.attribution
    models = "unknown (not built here)" if mem.models is None else human_bytes(mem.models)
    levels = "every r (pack)" if a.pack else "one r"
    lines = [
        f"device memory (each rank holds every model): models {models}; an image block's maps "
        f"of every model at {levels} {human_bytes(mem.maps)}; sums while drawing "
        f"{human_bytes(mem.sums)}, then the disagreement map's work {human_bytes(mem.measures)}; "
        f"plus a model call's activations ({a.batch_size} rows)"
    ]
    have = _device_bytes(a.device)
    if have is not None and mem.total is not None and mem.total > have:
        lines.append(
            f"  does not fit in {a.device}'s {human_bytes(have)}: lower attribution.image_batch "
            "(the maps scale with it)"
            + (" or set attribution.pack = false (one r at a time)" if a.pack else "")
            + "; the models alone need "
            + human_bytes(mem.models)
        )
    return lines


def _device_bytes(device: str) -> int | None:
    """The memory of ``device`` when it is a CUDA device here (``None`` otherwise)."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(torch.device(device).index or 0).total_memory


def _sanity_lines(check: SanityCost | None) -> list[str]:
    if check is None:
        return []
    per = ", ".join(f"{m} {_n(n)}" for m, n in check.per_model.items())
    if check.copies is None:
        return ["", f"sanity (model {check.model}): copies unknown; per model: {per}"]
    lines = [
        "",
        f"sanity (model {check.model} and {check.copies} randomised copies): "
        f"{_n(check.total)} model evaluations (per model: {per})",
    ]
    t = check.label_training
    if t is not None:
        lines.append(
            f"  label check: model {check.model} and its permuted-label twin (maps of 2 models "
            f"included above); training the twin: {_n(t.steps)} steps, {_n(t.images_seen)} "
            "images seen"
        )
    return lines


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%" if abs(x) < 0.0995 else f"{100 * x:+.0f}%"


def format_pilot(pp: PilotPlan) -> str:
    """A pilot plan as text: per method the pilot's change with its interval and the cheapest
    design meeting the target, then the run that decides every method."""
    first = pp.methods[0].design
    size = "" if first.n is None else f" at n = {first.n}"
    lines = [
        f"sample size from the pilot {pp.pilot} ({first.components.k} models{size}, "
        f"{first.components.m} images): each method's relative change of the unit-map distance "
        f"from r = 0 to {first.r1:g}, for a 95% interval of +-{100 * pp.target:.1f}% (of its "
        "value at r = 0)",
        f"  cost: a model's training {_n(pp.cost_per_model)} and one image's attribution with one "
        f"model {_n(pp.cost_per_image)} model evaluations (this config's counts)",
    ]
    rows = []
    for p in pp.methods:
        c = p.design.change
        lo, hi = c.interval()
        found = p.k is not None
        rows.append(
            [
                p.design.method,
                f"{_pct(c.estimate)} [{_pct(lo)}, {_pct(hi)}]",
                f"+-{100 * c.halfwidth():.1f}%",
                str(p.k) if found else ">40",
                str(p.m) if found else "-",
                f"+-{100 * p.halfwidth:.1f}%" if found else "-",
                _n(p.cost) if found else "-",
            ]
        )
    header = ["method", "pilot's change", "its +-", "models", "images", "predicted +-"]
    lines += _table([*header, "evaluations"], rows)
    if pp.config is None:
        lines.append(
            "  no run with up to 40 models per size and 1024 images reaches the target for every "
            "method: the spread between retrained models dominates; aim for a wider interval"
        )
    else:
        k, m = pp.config.train.parts, pp.config.attribution.n_images
        lines.append(
            f"  a run that decides every method: {k} models per size and {m} images "
            f"(--set train.parts={k} --set attribution.n_images={m}); its plan follows"
        )
        if pp.short:
            lines.append(f"  but the data set is too small for it: {pp.short}")
    lines.append(
        "  note: the predictions use the pilot's own variance components, whose model part has "
        "k - 1 degrees of freedom: a plan from one small pilot is a rough guide (in simulation "
        "the models planned from single six-model pilots ranged 7-28 for one target)"
    )
    return "\n".join(lines)

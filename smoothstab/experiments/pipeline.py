"""The stages of an experiment over one run directory, each skipping finished work.

``prepare`` saves the resolved config (and refuses a run directory made with another one); ``train``
trains the DT models, records the DR/DA checkpoints or makes the FT replicas
(:mod:`~smoothstab.experiments.models.proxies`); ``attribute``, ``evaluate``, ``sanity`` (when
``[sanity]`` is enabled), ``figures``, ``bounds`` and ``report`` follow. :func:`run_all` runs them
in order.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from smoothstab.experiments.config.guards import check_device, check_no_links
from smoothstab.experiments.config.parse import ConfigError, dataclass_from_dict, free_keys, to_toml
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.config.tables import ExperimentConfig
from smoothstab.experiments.io.files import locked
from smoothstab.experiments.io.progress import say
from smoothstab.experiments.models.distributed import barrier, init_distributed
from smoothstab.experiments.models.external import model_code
from smoothstab.experiments.models.source import RunModels
from smoothstab.experiments.rundir import manifest
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.stages import attribute, evaluate, report
from smoothstab.experiments.stages import bounds_stage as theory
from smoothstab.experiments.stages import sanity_stage as sanity


def _flat(table: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def prepare(cfg: ExperimentConfig, run: RunDir) -> None:
    """Write ``config.toml`` and record it in the manifest. A run directory made with a
    different config is refused, and so is a ``config.toml`` edited since the run recorded it
    (fields that change no result may differ)."""
    text = to_toml(cfg)
    made = manifest.made_with(run.root)
    if run.config.is_file():
        try:
            saved = _table(run.config.read_text(encoding="utf-8"))
        except ValueError as e:  # TOMLDecodeError, UnicodeDecodeError
            raise ConfigError(f"{run.config}: damaged ({e}); use another --out") from None
        key = _first_difference(_table(made), saved) if made is not None else None
        if key is not None:
            raise ConfigError(
                f"{run.config}: {key} is {saved.get(key)!r}, the run's files were made with "
                f"{_table(made).get(key)!r}; set it back, or "
                + manifest.NEW_RUN.format(root=run.root)
            )
        new = _table(text)
        key = _first_difference(saved, new)
        if key is not None:
            raise ConfigError(
                f"{run.root} was made with {key}={saved.get(key)!r}, this config has "
                f"{new.get(key)!r}; use another --out"
            )
    run.write_text(run.config, text)
    manifest.record_config(run.root, text if made is None else made)


def _table(text: str) -> dict:
    """A config's TOML text as flat ``{dotted key: value}``, keys added since it was written
    as their defaults."""
    table = tomllib.loads(text)
    try:
        table = tomllib.loads(to_toml(dataclass_from_dict(ExperimentConfig, table)))
    except ConfigError:
        pass  # a key we no longer know: compared as written, so it shows in the diff
    return _flat(table)


def _first_difference(old: dict, new: dict) -> str | None:
    """The first key, in sorted order, whose value differs and changes results."""
    free = free_keys(ExperimentConfig)
    diff = sorted(k for k in old.keys() | new.keys() if k not in free and old.get(k) != new.get(k))
    return diff[0] if diff else None


def train(cfg: ExperimentConfig, run: RunDir) -> None:
    RunModels(cfg, run).train()


def attribute_stage(cfg: ExperimentConfig, run: RunDir) -> None:
    info = init_distributed(cfg.attribution.device)
    attribute.run_attribution(cfg, run, RunModels(cfg, run).models(), info)


def evaluate_stage(cfg: ExperimentConfig, run: RunDir) -> None:
    evaluate.evaluate_run(cfg, run, RunModels(cfg, run).model_sizes())


def sanity_stage(cfg: ExperimentConfig, run: RunDir) -> None:
    if not cfg.sanity.enabled:
        return  # off: nothing written, nothing to record
    k, source, twin = sanity.sanity_model(cfg), RunModels(cfg, run), None
    if cfg.sanity.labels:  # the train stage trained it (setting DT)
        path = run.permuted_model(k, cfg.sanity.label_seed)
        if not path.is_file():
            raise ConfigError(
                f"sanity.labels: {path.name} is missing (the permuted-label twin of model {k}); "
                "run the train stage with sanity.labels = true first (--stages train sanity)"
            )
        twin = source.load(path, cfg.train.model)
    sanity.sanity_run(cfg, run, source.models()[k], source.model_sizes()[k], twin)


def figures_stage(cfg: ExperimentConfig, run: RunDir) -> None:
    from smoothstab.experiments.stages import figures  # matplotlib only when drawing

    figures.make_figures(cfg, run, run.summary(cfg.evaluation.band), run.advice())


def bounds_stage(cfg: ExperimentConfig, run: RunDir) -> None:
    setting = Setting.of(cfg)
    if setting.no_bounds:
        say(f"bounds: skipped, setting {setting.name} {setting.no_bounds}")
        return
    # Power iteration over every layer is slow for big networks (23 s for one CIFAR ResNet-18
    # on 2 CPU cores): done once, like the other stages' work; delete bounds.json to redo it.
    if all(p.is_file() for p in (run.bounds_json, run.bounds_md, run.figure("bounds"))):
        return
    from smoothstab.experiments.stages import figures  # matplotlib only when drawing

    models = RunModels(cfg, run).models()
    res = theory.bounds_run(cfg, run, models, run.summary(cfg.evaluation.band))
    figures.bounds_figure(res, run.figure("bounds"))


def report_stage(cfg: ExperimentConfig, run: RunDir) -> None:
    report.make_report(cfg, run, run.summary(cfg.evaluation.band), run.advice())


STAGES = {
    "train": train,
    "attribute": attribute_stage,
    "evaluate": evaluate_stage,
    "sanity": sanity_stage,
    "figures": figures_stage,
    "bounds": bounds_stage,
    "report": report_stage,
}


def run_all(cfg: ExperimentConfig, run_dir: Path, stages: Sequence[str] = tuple(STAGES)) -> None:
    """The stages in order, holding the run directory's lock
    (:func:`~smoothstab.experiments.io.files.locked`). Under ``torchrun`` every rank trains and
    attributes its share; rank 0 alone takes the lock, writes the config, evaluates, draws and
    reports."""
    run = RunDir(check_no_links(run_dir))
    check_device(cfg.train.device, "train.device", allow_auto=True)
    check_device(cfg.attribution.device, "attribution.device")
    info = init_distributed(cfg.attribution.device)
    code = model_code(cfg.models.code_dir, cfg.models.trust_remote_code)  # python:, hf: names
    with locked(run.root) if info.is_main else nullcontext(), code:
        if "sanity" in stages:  # a layer name the model lacks: now, not after attribution
            sanity.check_layers(cfg)
        _run_stages(cfg, run, stages, info)
    if info.is_main:
        done = f"{cfg.name}: done"
        say(f"{done} -> {run.report_html}" if "report" in stages else done)


def _run_stages(cfg: ExperimentConfig, run: RunDir, stages: Sequence[str], info) -> None:
    if info.is_main:
        prepare(cfg, run)
        manifest.clean(run.root)  # what killed writers left: temporaries, joined blocks
    barrier(info)
    for name in stages:
        if info.is_main:  # damaged files: this stage's are recomputed, earlier ones refused
            manifest.check(run.root, name, list(STAGES))
        barrier(info)
        if name in ("train", "attribute") or info.is_main:
            STAGES[name](cfg, run)
        barrier(info)
        if info.is_main:
            manifest.record(run.root, name)

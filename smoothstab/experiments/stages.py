"""The stages of an experiment over one run directory, each skipping finished work.

``prepare`` saves the resolved config (and refuses a run directory made with another one);
``train`` trains the DT models or records the DR/DA checkpoints; ``attribute``, ``evaluate``,
``figures`` and ``report`` follow. :func:`run_all` runs them in order.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from smoothstab.experiments import attribute, evaluate, figures, report, theory
from smoothstab.experiments.config import ConfigError
from smoothstab.experiments.data import dataset_info, derive_seed, load_dataset
from smoothstab.experiments.distributed import barrier, init_distributed
from smoothstab.experiments.experiment import ExperimentConfig, to_toml
from smoothstab.experiments.io import atomic_write, write_json
from smoothstab.experiments.models import build_model
from smoothstab.experiments.progress import say
from smoothstab.experiments.train import load_trained, train_run

# Keys that do not change any result: a run may resume with other values.
FREE_KEYS = {
    "quiet",
    "train.quiet",
    "train.device",
    "train.num_workers",
    "train.eval_batch_size",
    "train.checkpoint_every",
    "train.root",
    "attribution.device",
    "attribution.batch_size",
}


def _flat(table: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def prepare(cfg: ExperimentConfig, run_dir: Path) -> None:
    """Write ``config.toml``; a run directory made with a different config is refused."""
    path = Path(run_dir) / "config.toml"
    text = to_toml(cfg)
    if path.is_file():
        old, new = _flat(tomllib.loads(path.read_text())), _flat(tomllib.loads(text))
        diff = sorted(
            k for k in old.keys() | new.keys() if k not in FREE_KEYS and old.get(k) != new.get(k)
        )
        if diff:
            raise ConfigError(
                f"{run_dir} was made with {diff[0]}={old.get(diff[0])!r}, this config has "
                f"{new.get(diff[0])!r}; use another --out"
            )
    atomic_write(path, lambda tmp: tmp.write_text(text))


def train(cfg: ExperimentConfig, run_dir: Path) -> None:
    if cfg.models.setting == "DT":
        train_run(replace(cfg.train, quiet=cfg.quiet or cfg.train.quiet), run_dir)
    elif not (Path(run_dir) / "train_metrics.json").is_file():
        specs = [{"name": s.name, "weights": s.weights, "label": s.label} for s in cfg.models.specs]
        write_json(
            Path(run_dir) / "train_metrics.json", {"setting": cfg.models.setting, "models": specs}
        )


def models(cfg: ExperimentConfig, run_dir: Path) -> list[nn.Module]:
    """The run's models: trained checkpoints (DT) or the given specs (DR/DA), in eval mode."""
    if cfg.models.setting == "DT":
        return [load_trained(Path(run_dir) / f"model_{p}.pt") for p in range(cfg.train.parts)]
    info = dataset_info(cfg.train.dataset)
    n_classes = cfg.train.num_classes or info.num_classes
    if n_classes is None:
        n_classes = len(load_dataset(cfg.train.dataset, root=cfg.train.root, train=False).classes)
    out = []
    for k, s in enumerate(cfg.models.specs):
        # A spec without weights is a random init: seed it (train.seed, k), so that every stage
        # and every rank sees the same model, and leave the global generator as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.train.seed, k))
            model = build_model(
                s.name, num_classes=n_classes, in_channels=info.in_channels, weights=s.weights
            )
        out.append(model.eval())
    return out


def n_models(cfg: ExperimentConfig) -> int:
    return cfg.train.parts if cfg.models.setting == "DT" else len(cfg.models.specs)


def attribute_stage(cfg: ExperimentConfig, run_dir: Path) -> None:
    info = init_distributed(cfg.attribution.device)
    attribute.run_attribution(cfg, run_dir, models(cfg, run_dir), info)


def evaluate_stage(cfg: ExperimentConfig, run_dir: Path) -> None:
    evaluate.evaluate_run(cfg, run_dir, n_models(cfg))


def _summary_and_advice(cfg, run_dir: Path):
    summary = evaluate.summarise(
        evaluate.read_csv(Path(run_dir) / "metrics.csv"), cfg.evaluation.band
    )
    advice = json.loads((Path(run_dir) / "recommendation.json").read_text())
    return summary, advice


def figures_stage(cfg: ExperimentConfig, run_dir: Path) -> None:
    figures.make_figures(cfg, run_dir, *_summary_and_advice(cfg, run_dir))


def bounds_stage(cfg: ExperimentConfig, run_dir: Path) -> None:
    if cfg.models.setting == "DA":
        say("bounds: skipped, setting DA compares different architectures (one is needed)")
        return
    # Power iteration over every layer is slow for big networks (23 s for one CIFAR ResNet-18
    # on 2 CPU cores): done once, like the other stages' work; delete bounds.json to redo it.
    done = [Path(run_dir) / name for name in ("bounds.json", "bounds.md", "figures/bounds.png")]
    if all(p.is_file() for p in done):
        return
    theory.bounds_run(cfg, run_dir, models(cfg, run_dir), _summary_and_advice(cfg, run_dir)[0])


def report_stage(cfg: ExperimentConfig, run_dir: Path) -> None:
    report.make_report(cfg, run_dir, *_summary_and_advice(cfg, run_dir))


STAGES = {
    "train": train,
    "attribute": attribute_stage,
    "evaluate": evaluate_stage,
    "figures": figures_stage,
    "bounds": bounds_stage,
    "report": report_stage,
}


def run_all(cfg: ExperimentConfig, run_dir: Path, stages=tuple(STAGES)) -> None:
    """The stages in order. Under ``torchrun`` every rank trains and attributes its share;
    rank 0 alone writes the config, evaluates, draws and reports."""
    run_dir = Path(run_dir)
    info = init_distributed(cfg.attribution.device)
    if info.is_main:
        prepare(cfg, run_dir)
    barrier(info)
    for name in stages:
        if name in ("train", "attribute") or info.is_main:
            STAGES[name](cfg, run_dir)
        barrier(info)
    if not info.is_main:
        return
    say(
        f"{cfg.name}: done -> {run_dir / 'report.html'}"
        if "report" in stages
        else f"{cfg.name}: done"
    )

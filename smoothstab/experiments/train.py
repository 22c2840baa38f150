"""Training on disjoint splits: SGD (paper Eq. 2) and noisy SGD (Eq. 3), checkpointed, resumable.

:func:`train_run` splits the training set into ``parts`` disjoint parts, trains one model per
part with :func:`train_model`, and writes to the run directory::

    splits.json         a list of index lists, one per part
    model_{p}.pt        weights + resolved config + metrics (+ resume state until complete)
    train_metrics.json  the resolved config and each model's test accuracy

The loop itself, and how it makes runs reproducible and resumable, is in :mod:`.trainer`.
A model's metrics: test loss and accuracy, the last epoch's running train loss and accuracy
(rank 0's share under torchrun), its seed, sizes, device and time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smoothstab.experiments import distributed as D
from smoothstab.experiments.data import (
    DATASETS,
    dataset_info,
    disjoint_splits,
    load_dataset,
    load_splits,
    save_splits,
)
from smoothstab.experiments.io import write_json
from smoothstab.experiments.models import build_model
from smoothstab.experiments.progress import say
from smoothstab.experiments.trainer import Trainer, deterministic_mode, device_name

SCHEDULES = ("step", "cosine")
AT_LEAST_ONE = (
    "num_classes", "part_size", "epochs", "batch_size", "step_size", "noise_draws", "parts",
    "eval_batch_size",
)  # fmt: skip
# Settings that do not change the trained weights: a run may resume with other values.
NOT_RESULT_KEYS = ("root", "device", "num_workers", "eval_batch_size", "checkpoint_every", "quiet")


@dataclass(frozen=True)
class TrainConfig:
    """One training run: ``parts`` models, each on its own disjoint part of the training set.

    The defaults are the ``quickstart`` preset (digits, two small CNNs). ``noise_std`` is the
    weight-noise std s_w of noisy SGD (0: plain SGD), with ``noise_draws`` draws per step.
    ``schedule`` steps once per epoch: ``step`` (x ``gamma`` every ``step_size`` epochs) or
    ``cosine`` (to 0 over ``epochs``). ``checkpoint_every``: also checkpoint every this many
    steps (0: at epoch ends only). ``num_classes``/``part_size`` ``None``: from the data.
    """

    dataset: str = "digits"
    root: str | None = None
    data_seed: int = 0
    model: str = "small_cnn"
    num_classes: int | None = None
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    step_size: int = 30
    gamma: float = 0.1
    noise_std: float = 0.0
    noise_draws: int = 1
    parts: int = 2
    part_size: int | None = None
    split_seed: int = 10007
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"
    num_workers: int = 0
    eval_batch_size: int = 500
    checkpoint_every: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:
        for name, choices in (("dataset", DATASETS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"{name}: expected one of {', '.join(choices)}, got {getattr(self, name)!r}"
                )
        checks = [(n, 1, "an integer") for n in AT_LEAST_ONE]
        checks += [(n, 0, "an integer") for n in ("num_workers", "checkpoint_every")]
        checks += [(n, 0, "a number") for n in ("lr", "momentum", "weight_decay", "gamma")]
        checks += [("noise_std", 0, "a number")]
        for name, low, kind in checks:
            value = getattr(self, name)
            if value is not None and not value >= low:  # `not >=` also catches NaN
                raise ValueError(f"{name}: expected {kind} >= {low}, got {value}")


PRESETS: dict[str, TrainConfig] = {
    # Acceptance: two small CNNs on disjoint halves of digits, >= 90% test accuracy each.
    "quickstart": TrainConfig(),
    # Our choice (the paper's Appendix C is unavailable): the standard CIFAR ResNet recipe --
    # SGD lr 0.1, momentum 0.9, wd 5e-4, batch 128, 200 epochs cosine; 4 parts of 12,500.
    "cifar10_resnet34": TrainConfig(
        dataset="cifar10",
        model="resnet34_cifar",
        epochs=200,
        batch_size=128,
        lr=0.1,
        weight_decay=5e-4,
        schedule="cosine",
        parts=4,
        deterministic=False,
        num_workers=4,
    ),
    # The paper's recipe (protocol.md 1.1): lr 0.1, momentum 0.9, wd 1e-4, batch 128, 80 epochs,
    # x0.1 every 30. 4 parts of 150k; the paper's 500k parts fit only twice: parts=2.
    "imagenet_resnet50": TrainConfig(
        dataset="imagenet",
        model="resnet50",
        epochs=80,
        batch_size=128,
        lr=0.1,
        weight_decay=1e-4,
        schedule="step",
        step_size=30,
        gamma=0.1,
        parts=4,
        part_size=150_000,
        deterministic=False,
        num_workers=8,
        checkpoint_every=1000,
    ),
}


def resolve_config(config: TrainConfig, train_set) -> TrainConfig:
    """``config`` with ``num_classes`` and ``part_size`` filled in from the training set."""
    num_classes = config.num_classes or dataset_info(config.dataset).num_classes
    num_classes = num_classes or len(train_set.classes)
    part_size = config.part_size or len(train_set) // config.parts
    return replace(config, num_classes=num_classes, part_size=part_size)


def train_run(config: TrainConfig, out_dir: str | Path, *, on_step=None) -> dict[str, Any]:
    """Train ``config.parts`` models on disjoint parts; write splits, checkpoints and metrics.

    Models whose checkpoint is complete are skipped, a partial one is resumed. ``on_step`` is
    called with a dict (part, epoch, step, global_step, loss) after every optimizer step.
    Returns what ``train_metrics.json`` holds.
    """
    out = Path(out_dir)
    info = D.init_distributed(device_name(config.device))
    train_set, test_set = _load(config, train=True), _load(config, train=False)
    cfg = resolve_config(config, train_set)
    splits = disjoint_splits(len(train_set), cfg.parts, cfg.part_size, cfg.split_seed)
    if info.is_main:
        _save_or_check_splits(out / "splits.json", splits)
    D.barrier(info)
    models = [
        train_model(cfg, part, out, p, train_set=train_set, test_set=test_set, on_step=on_step)
        for p, part in enumerate(splits)
    ]
    metrics = {"config": asdict(cfg), "models": models}
    if info.is_main:
        write_json(out / "train_metrics.json", metrics)
        say(f"trained {len(models)} models -> {out / 'train_metrics.json'}")
    D.barrier(info)
    return metrics


def _save_or_check_splits(path: Path, splits: list[list[int]]) -> None:
    if path.exists() and load_splits(path) != splits:
        raise ValueError(f"{path} holds other splits than this config's; use a new --out")
    if not path.exists():
        save_splits(path, splits)


def train_model(
    config: TrainConfig,
    part_indices: list[int],
    out_dir: str | Path,
    part_id: int,
    *,
    train_set=None,
    test_set=None,
    on_step=None,
) -> dict[str, Any]:
    """Train one model on ``part_indices`` of the training set; checkpoint to
    ``out_dir/model_{part_id}.pt``; return its metrics (test accuracy, loss, seed, ...)."""
    if train_set is None:
        train_set = _load(config, train=True)
    if test_set is None:
        test_set = _load(config, train=False)
    cfg = resolve_config(config, train_set)
    path = Path(out_dir) / f"model_{part_id}.pt"
    saved = _load_checkpoint(path, cfg)
    if saved is not None and saved["complete"]:
        return saved["metrics"]
    info = D.init_distributed(device_name(cfg.device))
    with deterministic_mode(cfg.deterministic):
        run = Trainer(cfg, part_indices, part_id, info, path, train_set, on_step)
        if saved is not None:
            run.restore(saved)
        return run.fit(test_set)


def _load(config: TrainConfig, *, train: bool):
    return load_dataset(config.dataset, root=config.root, train=train, seed=config.data_seed)


def _load_checkpoint(path: Path, cfg: TrainConfig) -> dict | None:
    if not path.exists():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    ours, theirs = asdict(cfg), saved["config"]
    diff = [k for k in ours if k not in NOT_RESULT_KEYS and ours[k] != theirs.get(k)]
    if diff:
        k = diff[0]
        raise ValueError(
            f"{path} was trained with {k}={theirs.get(k)!r}, this config has {ours[k]!r}; "
            "use a new --out"
        )
    return saved


def load_trained(path: str | Path, device: str = "cpu") -> nn.Module:
    """The model saved in a ``model_{p}.pt`` checkpoint, in eval mode on ``device``."""
    saved = torch.load(path, map_location=device, weights_only=True)
    cfg = saved["config"]
    model = build_model(
        cfg["model"],
        num_classes=cfg["num_classes"],
        in_channels=dataset_info(cfg["dataset"]).in_channels,
    )
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()

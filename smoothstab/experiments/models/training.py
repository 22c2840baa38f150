"""Training on disjoint splits: SGD (paper Eq. 2) and noisy SGD (Eq. 3), checkpointed, resumable.

:func:`train_run` splits the training set into ``parts`` disjoint parts, trains one model per
part with :func:`train_model`, and writes to the run directory::

    splits.json         a list of index lists, one per part
    model_{p}.pt        weights + resolved config + metrics (+ resume state until complete)
    train_metrics.json  the resolved config and each model's test accuracy
    val_split.json      keep = "best" only: the validation indices (a list) that chose the epoch

The loop itself, and how it makes runs reproducible and resumable, is in
:mod:`~smoothstab.experiments.models.trainer`; the config is
:class:`~smoothstab.experiments.config.tables.TrainConfig`. A model's metrics: test loss and
accuracy, the last epoch's running train loss and accuracy (rank 0's share under torchrun), its
seed, sizes, device and time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.utils.data import Subset, TensorDataset

from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.parse import free_keys
from smoothstab.experiments.config.tables import TrainConfig
from smoothstab.experiments.io.files import DamagedFile, load_torch, write_json
from smoothstab.experiments.io.progress import say
from smoothstab.experiments.models import distributed as D
from smoothstab.experiments.models.architectures import build_model
from smoothstab.experiments.models.data import (
    check_disjoint,
    derive_seed,
    load_dataset,
    load_splits,
    save_splits,
    size_splits,
    validation_split,
)
from smoothstab.experiments.models.external import EXTERNAL
from smoothstab.experiments.models.trainer import Trainer, deterministic_mode, device_name
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.train_record import TrainRecord, write_train_record

if TYPE_CHECKING:
    from torch.utils.data import Dataset


def resolve_config(config: TrainConfig, train_set: Dataset) -> TrainConfig:
    """``config`` with ``num_classes`` and ``part_size`` filled in from the training set."""
    data_classes = dataset_info(config).num_classes or len(train_set.classes)
    if config.num_classes is not None and config.num_classes < data_classes:
        raise ValueError(  # else cross_entropy fails mid-epoch: "Target 6 is out of bounds"
            f"train.num_classes: expected at least the {data_classes} classes of the "
            f"{config.dataset} data, got {config.num_classes}"
        )
    num_classes = config.num_classes or data_classes
    val_size = config.val_size if config.keep == "best" else 0  # room left for validation
    if val_size >= len(train_set):
        raise ValueError(
            f"train.val_size: expected fewer than the {len(train_set)} training images, "
            f"got {val_size}"
        )
    part_size = config.part_size or even_part_size(config, len(train_set))
    return replace(config, num_classes=num_classes, part_size=part_size)


def even_part_size(config: TrainConfig, n_train: int) -> int:
    """Images per part with ``part_size`` unset: the ``n_train`` training images, less the
    validation images of ``keep = "best"``, split evenly over the parts."""
    val_size = config.val_size if config.keep == "best" else 0
    return (n_train - val_size) // config.parts


def train_run(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``config.parts`` models per training-set size on their parts (disjoint within a size,
    nested across sizes: :func:`~smoothstab.experiments.models.data.size_splits`); write splits,
    checkpoints, metrics.

    Models whose checkpoint is complete are skipped, a partial one is resumed. ``on_step`` is
    called with a dict (part, epoch, step, global_step, loss) after every optimizer step.
    Returns what ``train_metrics.json`` holds.
    """
    run = RunDir(out_dir)
    info = D.init_distributed(device_name(config.device))
    if config.amp == "fp16" and device_name(config.device) == "cpu" and info.is_main:
        say(
            "train.amp: warning: 'fp16' on the CPU is slower than float32 on most CPUs (few "
            "compute in float16) and rounds more; 'bf16' or 'none' suit a CPU"
        )
    train_set, test_set = _load(config, train=True), _load(config, train=False)
    cfg = resolve_config(config, train_set)
    sizes = cfg.sizes
    splits = size_splits(len(train_set), cfg.parts, sizes, cfg.split_seed)
    val = _validation(cfg, len(train_set), splits)
    if info.is_main:
        _save_or_check_splits(run.splits, splits, cfg.parts)
        _save_or_check_val_split(run.val_split, val)
    D.barrier(info)
    models = [
        train_model(
            replace(cfg, part_size=sizes[m // cfg.parts]),
            part,
            run,
            m,
            train_set=train_set,
            test_set=test_set,
            on_step=on_step,
            val_indices=val,
        )
        for m, part in enumerate(splits)
    ]
    record = TrainRecord(tuple(models), config=cfg.to_dict())
    metrics = record.to_json()
    if info.is_main:
        write_train_record(run.train_metrics, record)
        say(f"trained {len(models)} models -> {run.train_metrics}")
    D.barrier(info)
    return metrics


def train_permuted(config: TrainConfig, out_dir: str | Path, part_id: int, seed: int) -> dict:
    """Model ``part_id``'s twin for the data-randomisation check: the same recipe and images (its
    part of ``splits.json``, written by :func:`train_run`), the training labels permuted across the
    whole training set (:func:`~smoothstab.experiments.models.labels.with_permuted_labels`,
    ``seed``), and a training seed of its own (``derive_seed(train.seed, seed, part_id)``: other
    initial weights and batch order, as another retrained model has, so that the check does not read
    a shared initialisation as sensitivity to nothing); checkpoint ``run.permuted_model(part_id,
    seed)``, skipped when complete, resumed when partial. Returns its metrics (test accuracy on the
    real test labels)."""
    from smoothstab.experiments.models.labels import with_permuted_labels

    run = RunDir(out_dir)
    real = _load(config, train=True)
    cfg = resolve_config(config, real)
    splits = load_splits(run.splits, cfg.parts)
    val = _validation(cfg, len(real), splits)
    return train_model(
        replace(
            cfg,
            part_size=cfg.sizes[part_id // cfg.parts],
            seed=derive_seed(cfg.seed, seed, part_id),
        ),
        splits[part_id],
        run,
        part_id,
        train_set=with_permuted_labels(real, seed),
        test_set=_load(config, train=False),
        val_indices=val,
        checkpoint=run.permuted_model(part_id, seed),
    )


def _save_or_check_splits(path: Path, splits: list[list[int]], k: int) -> None:
    if path.exists() and load_splits(path, k) != splits:
        raise ValueError(f"{path} holds other splits than this config's; use a new --out")
    if not path.exists():
        save_splits(path, splits, k)


def _validation(cfg: TrainConfig, n: int, splits: list[list[int]]) -> list[int] | None:
    """keep = "best": the validation indices, right after every part in the split permutation."""
    if cfg.keep != "best":
        return None
    return validation_split(n, splits, cfg.val_size, cfg.split_seed)


def _save_or_check_val_split(path: Path, val: list[int] | None) -> None:
    if val is None:
        return
    if path.exists() and json.loads(path.read_text()) != val:
        raise ValueError(
            f"{path} holds another validation split than this config's; use a new --out"
        )
    if not path.exists():
        write_json(path, val)


def train_model(
    config: TrainConfig,
    part_indices: list[int],
    out_dir: str | Path | RunDir,
    part_id: int,
    *,
    train_set: Dataset | None = None,
    test_set: Dataset | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    val_indices: list[int] | None = None,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Train one model on ``part_indices`` of the training set; checkpoint to
    ``out_dir/model_{part_id}.pt`` (or ``checkpoint``); return its metrics (test accuracy,
    loss, seed, ...).

    With ``keep = "best"``, ``val_indices`` (default:
    :func:`~smoothstab.experiments.models.data.validation_split` of this config's splits) are the
    training-set images, under the test transforms, that choose the epoch; they must not meet
    ``part_indices``."""
    if train_set is None:
        train_set = _load(config, train=True)
    if test_set is None:
        test_set = _load(config, train=False)
    cfg = resolve_config(config, train_set)
    path = checkpoint or (out_dir if isinstance(out_dir, RunDir) else RunDir(out_dir)).model(
        part_id
    )
    saved = _load_checkpoint(path, cfg)
    if saved is not None and saved["complete"]:
        return saved["metrics"]
    info = D.init_distributed(device_name(cfg.device))
    val_set = _val_set(cfg, train_set, part_indices, val_indices)
    with deterministic_mode(cfg.deterministic, cfg.compile):
        run = Trainer(cfg, part_indices, part_id, info, path, train_set, on_step, val_set)
        if saved is not None:
            run.restore(saved)
        return run.fit(test_set)


def _load(config: TrainConfig, *, train: bool, augment: bool | None = None) -> Dataset:
    return load_dataset(
        config.dataset,
        root=config.root,
        train=train,
        seed=config.data_seed,
        augment=augment,
        info=dataset_info(config),
    )


def _val_set(
    cfg: TrainConfig, train_set: Dataset, part: list[int], val: list[int] | None
) -> Dataset | None:
    """keep = "best": the validation images of the training set, without augmentation."""
    if cfg.keep != "best":
        return None
    if val is None:
        splits = size_splits(len(train_set), cfg.parts, cfg.sizes, cfg.split_seed)
        val = validation_split(len(train_set), splits, cfg.val_size, cfg.split_seed)
    check_disjoint([list(part), list(val)])
    plain = (
        train_set if isinstance(train_set, TensorDataset) else _load(cfg, train=True, augment=False)
    )
    return Subset(plain, val)


def _load_checkpoint(path: Path, cfg: TrainConfig) -> dict | None:
    if not path.exists():
        return None
    saved = read_checkpoint(path)
    ours, theirs, free = asdict(cfg), saved["config"], free_keys(TrainConfig)
    defaults = asdict(TrainConfig())  # a key newer than the checkpoint: it had the default
    diff = [k for k in ours if k not in free and ours[k] != theirs.get(k, defaults[k])]
    if diff:
        k = diff[0]
        raise ValueError(
            f"{path} was trained with {k}={theirs.get(k)!r}, this config has {ours[k]!r}; "
            "use a new --out"
        )
    return saved


def load_trained(
    path: str | Path,
    model: str | None = None,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    device: str = "cpu",
) -> nn.Module:
    """The model saved in a ``model_{p}.pt`` checkpoint, in eval mode on ``device``.

    A checkpoint is data: the model is built from what the caller names -- a run passes what
    its config gives: the architecture ``model``, ``num_classes`` outputs, ``in_channels`` input
    channels -- and the checkpoint gives only the weights. Its own record of the model must say
    the same, else it is refused in one line before anything is built or imported. Left out,
    ``num_classes`` and ``in_channels`` are the checkpoint's; so is ``model``, but only a name
    that runs no code of its own (a shipped or torchvision architecture): a checkpoint naming
    ``python:``, ``hf:`` or ``timm:`` is refused unless the caller names that model."""
    saved = read_checkpoint(path, device)
    stored = saved["config"]
    if model is None and stored["model"].partition(":")[0] in EXTERNAL:
        raise DamagedFile(
            path,
            f"a checkpoint of the model {_shown(stored['model'])}, which would import code: "
            "name the model it should hold (load_trained(path, model=...))",
        )
    model = stored["model"] if model is None else model
    if stored["model"] != model:
        raise DamagedFile(
            path,
            f"a checkpoint of the model {_shown(stored['model'])}, but the run's config.toml "
            f"names {model!r} (a checkpoint never chooses the code that builds its model)",
        )
    if num_classes is not None and stored["num_classes"] != num_classes:
        raise DamagedFile(
            path,
            f"a checkpoint of a model with {_shown(stored['num_classes'])} classes, but the "
            f"run's config gives {num_classes}",
        )
    classes = stored["num_classes"] if num_classes is None else num_classes
    channels = dataset_info(stored).in_channels if in_channels is None else in_channels
    built = build_model(model, num_classes=classes, in_channels=channels)
    try:
        built.load_state_dict(saved["state_dict"])
    except RuntimeError:
        raise DamagedFile(
            path,
            f"its weights do not fit the model ({model}, {classes} classes, {channels} input "
            "channels)",
        ) from None
    return built.to(device).eval()


def _shown(value: object, limit: int = 80) -> str:
    """A value read from a file, quoted and cut for a one-line message (no control
    characters reach the terminal)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_checkpoint(path: str | Path, device: str = "cpu") -> dict:
    """A ``model_{p}.pt`` checkpoint as :meth:`.Trainer.save` writes it; anything else -- cut
    short, corrupt, a bare state dict, a pickle that would run code, a record whose model name
    or class count is of the wrong type -- is one line."""
    saved = load_torch(path, "a checkpoint of smoothstab train", map_location=device)
    config = saved.get("config") if isinstance(saved, dict) else None
    ok = (
        isinstance(saved, dict)
        and isinstance(saved.get("state_dict"), dict)
        and isinstance(config, dict)
        and {"model", "num_classes", "dataset"} <= config.keys()
    )
    if not ok:
        raise DamagedFile(
            path,
            "not a checkpoint written by smoothstab train (a bare state dict belongs in "
            "models.specs weights of a DR/DA run)",
        )
    num = config["num_classes"]
    if not isinstance(config["model"], str) or not isinstance(num, int) or isinstance(num, bool):
        raise DamagedFile(
            path,
            f"not a checkpoint written by smoothstab train (its model is "
            f"{_shown(config['model'])}, its classes {_shown(num)})",
        )
    return saved

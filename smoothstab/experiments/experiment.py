"""One experiment from one config: every config dataclass, and loading a config by file or name.

A config is a TOML file with the tables ``[train]`` (:class:`TrainConfig`: data, models trained
on disjoint splits), ``[models]`` (the setting: DT trains ``train.parts`` models on disjoint
splits; DR and DA compare given checkpoints), ``[attribution]`` and ``[evaluation]``; keys it
leaves out take the defaults below. Named presets are the TOML files shipped in
``smoothstab/configs/`` (``quickstart``, ``paper/imagenet_resnet50``, ...): the file is the
preset. Fields made with :func:`~.config.free` change no result (devices, worker counts, chunk
sizes), so a run directory may be resumed with other values of them. Stages talk through files
in the run directory (:mod:`.rundir`) and skip what exists::

    config.toml -> train (splits.json, model_{p}.pt, train_metrics.json)
    -> attribute (test_images.pt, maps/...) -> evaluate (metrics.csv, table1.csv,
    recommendation.json) -> figures (figures/*.png) -> report (report.md, report.html)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import smoothstab as ss
from smoothstab.checks import check_choice
from smoothstab.experiments.config import (
    ConfigError,
    apply_overrides,
    at_least,
    dataclass_from_dict,
    free,
    load_toml,
)
from smoothstab.experiments.data import DATASETS, dataset_info

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

FIDELITY_R = tuple(round(0.004 * j * j, 6) for j in range(11))  # the paper's quadratic grid
STABILITY_R = tuple(round(0.05 * j, 6) for j in range(9))  # 0, 0.05, ..., 0.40
SCHEDULES = ("step", "cosine")
PRESETS = resources.files("smoothstab") / "configs"


@dataclass(frozen=True)
class TrainConfig:
    """One training run: ``parts`` models, each on its own disjoint part of the training set.

    Defaults: two small CNNs on digits. ``noise_std`` is the
    weight-noise std s_w of noisy SGD (0: plain SGD), with ``noise_draws`` draws per step.
    ``schedule`` steps once per epoch: ``step`` (x ``gamma`` every ``step_size`` epochs) or
    ``cosine`` (to 0 over ``epochs``). ``checkpoint_every``: also checkpoint every this many
    steps (0: at epoch ends only). ``num_classes``/``part_size`` ``None``: from the data.
    """

    dataset: str = "digits"
    root: str | None = free(None)
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
    device: str = free("auto")
    num_workers: int = free(0)
    eval_batch_size: int = free(500)
    checkpoint_every: int = free(0)
    quiet: bool = free(False)

    def __post_init__(self) -> None:
        check_choice(self.dataset, "dataset", DATASETS)
        check_choice(self.schedule, "schedule", SCHEDULES)
        at_least(self, 1, "num_classes", "part_size", "epochs", "batch_size", "step_size")
        at_least(self, 1, "noise_draws", "parts", "eval_batch_size")
        at_least(self, 0, "num_workers", "checkpoint_every", "lr", "momentum", "weight_decay")
        at_least(self, 0, "gamma", "noise_std")


@dataclass(frozen=True)
class ModelSpec:
    """A given checkpoint (DR/DA): architecture name and weights (file or torchvision name;
    ``None``: a random init seeded by ``train.seed`` and the spec's position)."""

    name: str
    weights: str | None = None
    label: str = ""


@dataclass(frozen=True)
class ModelsConfig:
    """DT: models trained on disjoint splits ([train]); DR/DA: the ``specs`` given here."""

    setting: Literal["DT", "DR", "DA"] = "DT"
    specs: tuple[ModelSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.setting == "DT" and self.specs:
            raise ValueError("specs: setting DT trains its models; give specs only for DR/DA")
        if self.setting != "DT" and len(self.specs) < 2:
            raise ValueError(f"specs: setting {self.setting} needs at least 2 models")


@dataclass(frozen=True)
class AttributionConfig:
    """Which maps to compute and how (the paper's values by default)."""

    methods: tuple[str, ...] = ("grad", "ig", "gradcam", "gradcampp")
    stability_r: tuple[float, ...] = STABILITY_R
    fidelity_r: tuple[float, ...] = FIDELITY_R
    table_r: float = 0.15
    n_samples: int = 100
    antithetic: bool = False
    common_random_numbers: bool = True
    ig_steps: int = 20
    ig_rule: str = "paper"
    ig_estimator: Literal["nested", "joint"] = "nested"
    n_images: int = 32
    image_seed: int = 10007
    image_batch: int = 16
    batch_size: int = free(256)
    target: Literal["label", "predicted"] = "label"
    seed: int = 0
    device: str = free("cpu")
    dtype: Literal["float32", "float64"] = "float32"

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError("methods: expected at least one method")
        for m in self.methods:
            check_choice(m, "methods", ss.METHODS)
        check_choice(self.ig_rule, "ig_rule", ss.IG_RULES)
        if not all(r >= 0 for r in (*self.stability_r, *self.fidelity_r, self.table_r)):
            raise ValueError("r: expected noise levels >= 0")  # `not >=` also catches NaN
        # Checked here, not when the attribute stage meets them after hours of training.
        at_least(self, 1, "n_samples", "ig_steps", "n_images", "image_batch", "batch_size")
        if self.antithetic and self.n_samples % 2:
            raise ValueError(
                f"n_samples: expected an even number with antithetic = true, got {self.n_samples}"
            )


@dataclass(frozen=True)
class EvaluationConfig:
    debiased: bool = True
    band: Literal["t95", "sd"] = "t95"
    topk: int = 500
    fidelity_budget: float = 0.2  # relative: fidelity error / ||unsmoothed map||
    grid_images: int = 4

    def __post_init__(self) -> None:
        at_least(self, 1, "topk", "grid_images")
        if not self.fidelity_budget >= 0:
            raise ValueError(f"fidelity_budget: expected a number >= 0, got {self.fidelity_budget}")


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    quiet: bool = free(False)
    train: TrainConfig = field(default_factory=TrainConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


def preset_names() -> list[str]:
    """The configs shipped in the package: ``quickstart``, ``paper/imagenet_resnet50``, ..."""
    root = Path(str(PRESETS))
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.toml"))


def config_path(source: str | Path | None) -> Path:
    """The TOML file of ``source``: a path, or a preset name (``None``: ``quickstart``)."""
    text = "quickstart" if source is None else str(source)
    if text.endswith(".toml") or Path(text).exists():
        return Path(text)
    if text not in preset_names():
        raise ConfigError(
            f"config: expected a TOML file or a preset ({', '.join(preset_names())}), got {text!r}"
        )
    return Path(str(PRESETS)) / f"{text}.toml"


def load_config(source: str | Path | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The config of a TOML file or preset name (``None``: the quickstart), with ``--set``
    overrides applied, checked across tables."""
    cfg = dataclass_from_dict(ExperimentConfig, load_toml(config_path(source)))
    cfg = apply_overrides(cfg, list(overrides))
    # Across tables, so checked once all overrides are in (they come one at a time).
    if cfg.models.setting == "DT" and cfg.train.parts < 2:
        raise ConfigError(
            "train.parts: setting DT compares models trained on disjoint parts, expected at "
            f"least 2, got {cfg.train.parts}"
        )
    a = cfg.attribution
    units = a.n_samples // 2 if a.antithetic else a.n_samples
    if cfg.evaluation.debiased and units < 2:
        raise ConfigError(
            "evaluation.debiased: split-half distances need 2 independent noise units, got "
            f"n_samples={a.n_samples}{' in antithetic pairs' if a.antithetic else ''}; raise "
            "attribution.n_samples or set evaluation.debiased=false"
        )
    size = dataset_info(cfg.train.dataset).image_size
    if cfg.evaluation.topk > size * size:
        raise ConfigError(
            f"evaluation.topk: expected at most the {size * size} pixels of a {size}x{size} "
            f"{cfg.train.dataset} image, got {cfg.evaluation.topk}"
        )
    return cfg


def to_toml(obj: DataclassInstance, prefix: str = "") -> str:
    """A config dataclass as TOML (scalars, lists, nested tables, arrays of tables)."""
    scalars, tables = [], []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            tables.append(f"[{key}]\n" + to_toml(value, key))
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            tables += [f"[[{key}]]\n" + to_toml(v, key) for v in value]
        elif value is not None:
            scalars.append(f"{f.name} = {_toml_value(value)}")
    return (
        "\n".join(scalars)
        + ("\n\n" if scalars and tables else "\n" if scalars else "")
        + "\n".join(tables)
    )


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"config: cannot write {value!r} as TOML")

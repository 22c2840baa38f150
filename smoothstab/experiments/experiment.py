"""One experiment from one config: the config dataclasses and the stages that run it.

A config is a TOML file with the tables ``[train]`` (:class:`~.train.TrainConfig`: data,
models trained on disjoint splits), ``[models]`` (the setting: DT trains ``train.parts`` models
on disjoint splits; DR and DA compare given checkpoints), ``[attribution]`` and
``[evaluation]``. Stages talk through files in the run directory and skip what exists::

    config.toml -> train (splits.json, model_{p}.pt, train_metrics.json)
    -> attribute (test_images.pt, maps/...) -> evaluate (metrics.csv, table1.csv,
    recommendation.json) -> figures (figures/*.png) -> report (report.md, report.html)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from smoothstab.checks import check_choice
from smoothstab.experiments.config import (
    ConfigError,
    apply_overrides,
    dataclass_from_dict,
    load_toml,
)
from smoothstab.experiments.data import dataset_info
from smoothstab.experiments.train import TrainConfig

FIDELITY_R = tuple(round(0.004 * j * j, 6) for j in range(11))  # the paper's quadratic grid
STABILITY_R = tuple(round(0.05 * j, 6) for j in range(9))  # 0, 0.05, ..., 0.40
SECTIONS = ("name", "quiet", "train", "models", "attribution", "evaluation")


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

    def __post_init__(self):
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
    batch_size: int = 256
    target: Literal["label", "predicted"] = "label"
    seed: int = 0
    device: str = "cpu"
    dtype: Literal["float32", "float64"] = "float32"

    def __post_init__(self):
        import smoothstab as ss

        if not self.methods:
            raise ValueError("methods: expected at least one method")
        for m in self.methods:
            check_choice(m, "methods", ss.METHODS)
        check_choice(self.ig_rule, "ig_rule", ss.IG_RULES)
        if not all(r >= 0 for r in (*self.stability_r, *self.fidelity_r, self.table_r)):
            raise ValueError("r: expected noise levels >= 0")  # `not >=` also catches NaN
        # Checked here, not when the attribute stage meets them after hours of training.
        _at_least_one(self, "n_samples", "ig_steps", "n_images", "image_batch", "batch_size")
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

    def __post_init__(self):
        _at_least_one(self, "topk", "grid_images")
        if not self.fidelity_budget >= 0:
            raise ValueError(f"fidelity_budget: expected a number >= 0, got {self.fidelity_budget}")


def _at_least_one(obj, *names: str) -> None:
    for name in names:
        if getattr(obj, name) < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {getattr(obj, name)}")


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    quiet: bool = False
    train: TrainConfig = field(default_factory=TrainConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


# The embedded default: generated 32x32 shapes, three small CNNs on disjoint thirds, all four
# methods, one noise grid for both sweeps. A few minutes on 2 CPU cores.
QUICK_R = FIDELITY_R
QUICKSTART = ExperimentConfig(
    name="quickstart",
    train=TrainConfig(dataset="shapes", model="small_cnn", parts=3, epochs=6, batch_size=32),
    attribution=AttributionConfig(
        stability_r=QUICK_R,
        fidelity_r=QUICK_R,
        n_samples=48,
        ig_steps=10,
        n_images=32,
        image_batch=16,
    ),
    evaluation=EvaluationConfig(topk=100),
)


def load_config(path: str | Path | None, overrides=()) -> ExperimentConfig:
    """The config at ``path`` (``None``: the quickstart) with ``--set`` overrides applied."""
    if path is None:
        cfg = QUICKSTART
    else:
        table = load_toml(path)
        cfg = dataclass_from_dict(ExperimentConfig, table)
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


def to_toml(obj, prefix: str = "") -> str:
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


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"config: cannot write {value!r} as TOML")

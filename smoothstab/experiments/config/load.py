"""A config by file or preset name: the TOML read, ``--set`` overrides applied, and the checks
across tables (the setting's among them) done once every override is in. Named presets are the
TOML files shipped in ``smoothstab/configs/``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from smoothstab.experiments.config.datasets import check_image_count, dataset_info
from smoothstab.experiments.config.parse import (
    ConfigError,
    apply_overrides,
    dataclass_from_dict,
    load_toml,
)
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.config.tables import AttributionConfig, ExperimentConfig

if TYPE_CHECKING:
    pass


PRESETS = resources.files("smoothstab") / "configs"


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
    overrides applied, checked across tables; the file is read once."""
    path = config_path(source)
    return config_from_table(load_toml(path), path, overrides)


def config_from_table(table: dict, path: Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """:func:`load_config` of the parsed tables of the config file at ``path`` (or of tables a
    command built from a preset, as ``compare`` does: ``path`` is the preset's)."""
    cfg = apply_overrides(dataclass_from_dict(ExperimentConfig, table), list(overrides))
    cfg = _with_code_dir(cfg, path)
    cfg = _fit_topk(cfg, given="topk" in table.get("evaluation", {}) or _set(overrides, "topk"))
    # Across tables, so checked once all overrides are in (they come one at a time).
    Setting.of(cfg).check()
    a = cfg.attribution
    for key in ("min_samples", "max_samples"):  # as smooth() refuses them without tol=
        if a.tolerance is None and getattr(a, key) != getattr(AttributionConfig, key):
            raise ConfigError(
                f"attribution.{key}: only with attribution.tolerance, got {getattr(a, key)} "
                "with attribution.n_samples"
            )
    if cfg.evaluation.debiased and a.sampling().first_units < 2:  # every map draws these
        raise ConfigError(
            "evaluation.debiased: split-half distances need 2 independent noise units, got "
            f"n_samples={a.n_samples}{' in antithetic pairs' if a.antithetic else ''}; raise "
            "attribution.n_samples or set evaluation.debiased=false"
        )
    info = dataset_info(cfg.train)
    if info.test_size is not None:  # a folder's is counted by plan and the attribute stage
        try:
            check_image_count(a, info.test_size, f"the {cfg.train.dataset} test set")
        except ValueError as e:
            raise ConfigError(str(e)) from None
    size = info.image_size
    if cfg.evaluation.topk > size * size:
        raise ConfigError(
            f"evaluation.topk: expected at most the {size * size} pixels of a {size}x{size} "
            f"{cfg.train.dataset} image, got {cfg.evaluation.topk}"
        )
    if cfg.sanity.enabled and size < 11:  # ss.sanity's SSIM needs its 11x11 window
        raise ConfigError(
            f"sanity.enabled: the check's SSIM needs images of at least 11x11 pixels, "
            f"{cfg.train.dataset} has {size}x{size}; set sanity.enabled = false"
        )
    if cfg.sanity.labels and not cfg.sanity.enabled:
        raise ConfigError("sanity.labels: the label check is part of the sanity stage; set "
                          "sanity.enabled = true too")  # fmt: skip
    if cfg.train.keep == "best" and cfg.train.val_size < 1:  # across keys: any --set order
        raise ConfigError(
            f"train.val_size: expected an integer >= 1 with train.keep = 'best', got "
            f"{cfg.train.val_size}"
        )
    return cfg


def names_code(cfg: ExperimentConfig) -> bool:
    """The config names a ``python:`` model (``train.model`` or a spec): code it imports."""
    names = [cfg.train.model, *(spec.name for spec in cfg.models.specs)]
    return any(name.startswith("python:") for name in names)


def _with_code_dir(cfg: ExperimentConfig, path: Path) -> ExperimentConfig:
    """``models.code_dir`` made absolute, relative to the config file's folder; unset, that
    folder itself, where the config names a ``python:`` model and is a file of the user's (a
    preset's folder is the package's: no code of the user's is there; a ``code_dir`` given to
    a preset is relative to the working directory)."""
    given = cfg.models.code_dir
    preset = path.resolve().is_relative_to(Path(str(PRESETS)).resolve())
    base = Path.cwd() if preset else path.resolve().parent  # a --set on a preset: the shell's
    if given is None and (preset or not names_code(cfg)):
        return cfg
    code_dir = str(base if given is None else (base / given).resolve())
    return dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, code_dir=code_dir))


def _set(overrides: Sequence[str], key: str) -> bool:
    return any(o.partition("=")[0].strip() == f"evaluation.{key}" for o in overrides)


def _fit_topk(cfg: ExperimentConfig, *, given: bool) -> ExperimentConfig:
    """An unset ``evaluation.topk`` larger than an image: a quarter of its pixels (the default
    500 is meant for CIFAR and ImageNet; digits have 64 pixels)."""
    pixels = dataset_info(cfg.train).image_size ** 2
    if given or cfg.evaluation.topk <= pixels:
        return cfg
    return dataclasses.replace(
        cfg, evaluation=dataclasses.replace(cfg.evaluation, topk=max(1, pixels // 4))
    )

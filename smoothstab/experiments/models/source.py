"""The run's models: a setting's tools (:class:`~smoothstab.experiments.config.setting.ModelSource`)
on one run directory.

A :class:`~smoothstab.experiments.config.setting.Setting` says which models a run compares and how
they are got; this is where they are got: trained (:mod:`~smoothstab.experiments.models.training`),
made by a proxy (:mod:`~smoothstab.experiments.models.proxies`), built from a given spec
(:func:`~smoothstab.experiments.models.architectures.given_model`) or loaded from the run's
checkpoints. The stages ask :class:`RunModels`, which asks the setting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.models.architectures import given_model
from smoothstab.experiments.models.data import num_classes
from smoothstab.experiments.models.proxies import make_replicas
from smoothstab.experiments.models.training import load_trained, train_permuted, train_run
from smoothstab.experiments.rundir.train_record import (
    TrainRecord,
    read_train_record,
    write_train_record,
)

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn

    from smoothstab.experiments.config.tables import ExperimentConfig, ModelSpec, TrainConfig
    from smoothstab.experiments.rundir.layout import RunDir


class RunModels:
    """The models of the run in ``run`` made with ``cfg``: :meth:`train` them (the train
    stage), :meth:`models` (in eval mode) and :meth:`model_sizes` (each model's training-set
    size, ``None`` where it was not trained here)."""

    def __init__(self, cfg: ExperimentConfig, run: RunDir) -> None:
        self.cfg, self.run, self.setting = cfg, run, Setting.of(cfg)

    def train(self) -> None:
        self.setting.train(self)

    def models(self) -> list[nn.Module]:
        return self.setting.models(self)

    def model_sizes(self) -> list[int | None]:
        return self.setting.model_sizes(self)

    # -- the tools a setting uses (ModelSource) ---------------------------------------------

    def record_given(self, setting: str, specs: list[dict]) -> None:
        if not self.run.train_metrics.is_file():
            write_train_record(self.run.train_metrics, TrainRecord(tuple(specs), setting=setting))

    def train_parts(self, train: TrainConfig) -> None:
        train_run(train, self.run.root)

    def train_twin(self, train: TrainConfig, part: int, seed: int) -> None:
        train_permuted(train, self.run.root, part, seed)

    def make_replicas(self) -> None:
        make_replicas(self.cfg, self.run)

    def given(self, k: int, spec: ModelSpec) -> nn.Module:
        return given_model(self.cfg, k, spec, num_classes(self.cfg.train))

    def trained(self, k: int) -> nn.Module:
        return self.load(self.run.model(k), self.setting.model_names()[k])

    def load(self, path: Path, name: str) -> nn.Module:
        """A checkpoint of this run, loaded as the model ``name`` the run's config gives it (with
        the config's classes and channels; the checkpoint's own record must agree)."""
        info = dataset_info(self.cfg.train)
        classes = num_classes(self.cfg.train)
        return load_trained(path, name, num_classes=classes, in_channels=info.in_channels)

    def train_sizes(self) -> list[int]:
        return read_train_record(self.run.train_metrics).model_sizes()

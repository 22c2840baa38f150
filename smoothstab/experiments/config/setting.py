"""The four settings of an experiment (``models.setting``), one class each.

A setting says which models a run compares and how it gets them: DT trains ``train.parts`` models
per training-set size on disjoint parts; DR and DA take the given checkpoints (``models.specs``;
DA's are different architectures); FT makes ``models.replicas`` replicas of one given model with a
cheap proxy for retraining (:mod:`~smoothstab.experiments.models.proxies`). ``Setting.of(cfg)`` is
the run's setting; the stages, ``plan`` and the config's checks ask it how many models there are,
their architectures, which pairs are compared, what is trained, whether the bounds apply and which
Table-1 rows have labels. No other module branches on the setting's name.

A setting describes; it does not train or load. Its actions (:meth:`Setting.train`,
:meth:`Setting.models`, :meth:`Setting.model_sizes`) are done with the tools of a
:class:`ModelSource` that the stages hand in, so the description of a run imports no training
code.

Models are numbered size by size (DT: model ``g * parts + p`` is part ``p`` of the ``g``-th
smallest size); only models of one training-set size are compared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Protocol

from smoothstab.experiments.analysis.aggregate import model_pairs
from smoothstab.experiments.analysis.measures import Metric
from smoothstab.experiments.config.parse import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from smoothstab.experiments.analysis.summary import Summary
    from smoothstab.experiments.config.tables import (
        ExperimentConfig,
        ModelsConfig,
        ModelSpec,
        TrainConfig,
    )


class ModelSource(Protocol):
    """What a setting's actions need from the model layer and the run directory, handed in by
    the stages (:class:`~smoothstab.experiments.models.source.RunModels`)."""

    def record_given(self, setting: str, specs: list[dict]) -> None:
        """Write the run's training record of given checkpoints (each spec's name, weights and
        label), unless it exists."""

    def train_parts(self, train: TrainConfig) -> None:
        """Train (or resume) the models of ``train`` on disjoint parts, per training-set size."""

    def train_twin(self, train: TrainConfig, part: int, seed: int) -> None:
        """Train model ``part``'s twin on labels permuted with ``seed`` (the label check)."""

    def make_replicas(self) -> None:
        """Make setting FT's replicas with the configured proxy."""

    def given(self, k: int, spec: ModelSpec) -> nn.Module:
        """The ``k``-th given model of ``spec``, in eval mode."""

    def trained(self, k: int) -> nn.Module:
        """The run's trained (or made) model ``k``, in eval mode."""

    def train_sizes(self) -> list[int]:
        """Each trained model's training-set size, as the training record says."""


@dataclass(frozen=True)
class Setting:
    """The setting of ``cfg``: the given checkpoints' answers (DR, DA), which the subclasses
    for DT and FT override where theirs differ."""

    cfg: ExperimentConfig
    name: ClassVar[str]
    title: ClassVar[str]  # the report's line
    no_bounds: ClassVar[str] = ""  # why the bounds stage is skipped (empty: it runs)
    sgd_bounds: ClassVar[bool] = False  # Theorems 5-6: trained here by SGD on disjoint parts
    every_pair_drawn: ClassVar[bool] = False  # map grids show every pair, not the first
    trains_twin: ClassVar[bool] = (
        False  # sanity.labels: a model can be retrained on permuted labels
    )
    trains: ClassVar[bool] = False  # reads a training set (DT's models, FT's proxy runs)

    @staticmethod
    def of(cfg: ExperimentConfig) -> Setting:
        return SETTINGS[cfg.models.setting](cfg)

    @classmethod
    def check_specs(cls, m: ModelsConfig) -> None:
        """The ``[models]`` table alone (a ValueError naming the key)."""
        if len(m.specs) < 2:
            raise ValueError(f"specs: setting {cls.name} needs at least 2 models")

    def check(self) -> None:
        """Across tables, once every ``--set`` override is in (a :class:`ConfigError`)."""
        try:
            self.check_specs(self.cfg.models)
        except ValueError as e:
            raise ConfigError(f"models.{e}") from None
        if self.trains and self.cfg.train.dataset == "images":
            raise ConfigError(
                f"train.dataset: 'images' is a folder of test images, and setting {self.name} "
                "trains on a training set; use dataset = 'imagefolder' (ROOT/{train,val}/...), "
                "or compare given models (setting DR or DA)"
            )
        if self.cfg.sanity.labels and not self.trains_twin:
            raise ConfigError(
                f"sanity.labels: setting {self.name} trains no model here (its models are "
                "given or fine-tuned), so none can be retrained on permuted labels; use setting "
                "DT or set sanity.labels = false"
            )
        n = self.n_models
        for pair in self.cfg.evaluation.grid_pairs:
            i, j = (int(k) for k in pair.split("-"))
            if max(i, j) >= n:
                raise ConfigError(
                    f"evaluation.grid_pairs: expected models 0..{n - 1}, got {pair!r}"
                )
            if self.size_index(i) != self.size_index(j):
                raise ConfigError(
                    f"evaluation.grid_pairs: {pair!r} pairs models of different training-set "
                    "sizes, which are not compared; pick two of the same size"
                )

    @property
    def n_models(self) -> int:
        """Models the later stages compare."""
        return len(self.cfg.models.specs)

    def model_specs(self) -> list[ModelSpec]:
        """Each model as a spec: its architecture, given weights and CAM layer (what ``plan``
        builds to validate and time the run's models)."""
        return list(self.cfg.models.specs)

    def model_names(self) -> list[str]:
        """The architecture of each model."""
        return [s.name for s in self.model_specs()]

    @property
    def sizes(self) -> tuple[int | None, ...]:
        """The training-set sizes compared, smallest first (``(None,)``: one, not chosen)."""
        return (None,)

    def size_index(self, k: int) -> int:
        """Which of :attr:`sizes` model ``k`` is trained on."""
        return 0

    def pairs(self) -> list[tuple[int, int]]:
        """The model pairs compared: every pair ``i < j`` of models of one training-set size."""
        k = self.size_index
        return [(i, j) for i, j in model_pairs(self.n_models) if k(i) == k(j)]

    def first_of_largest(self) -> int:
        """The first model of the largest training-set size."""
        return next(k for k in range(self.n_models) if self.size_index(k) == len(self.sizes) - 1)

    def grid_pairs(self, summary: Summary) -> list[tuple[int, int]]:
        """The pairs whose maps are drawn side by side: ``evaluation.grid_pairs``, else every
        pair compared where :attr:`every_pair_drawn`, else the first pair compared at the
        largest training-set size."""
        named = self.cfg.evaluation.grid_pairs
        compared = summary.per_pair_or_model(self.cfg.attribution.methods[0], Metric.STABILITY, 0.0)
        pairs = [tuple(int(k) for k in p.split("-")) for p in (named or compared)]
        return pairs if named or self.every_pair_drawn else pairs[:1]

    def pair_labels(self) -> dict[str, str]:
        """``{"i-j": "A vs B"}`` of the pairs with names of their own (Table 1 has a row for
        each); empty where the models are alike but for their data."""
        return {}

    def training(self, n_train: int | None, classes: int) -> tuple[TrainConfig, int] | None:
        """What the train stage trains and how many runs of it per training-set size
        (``None``: nothing), for a training set of ``n_train`` images (``None``: unknown until
        read) and models of ``classes`` classes."""
        return None

    def training_name(self) -> str:
        """What :meth:`training` trains, in words."""
        return "training"

    def train(self, source: ModelSource) -> None:
        """The train stage: record the given checkpoints."""
        specs = [{"name": s.name, "weights": s.weights, "label": s.label}
                 for s in self.cfg.models.specs]  # fmt: skip
        source.record_given(self.name, specs)

    def models(self, source: ModelSource) -> list[nn.Module]:
        """The run's models, in eval mode."""
        return [source.given(k, s) for k, s in enumerate(self.cfg.models.specs)]

    def model_sizes(self, source: ModelSource) -> list[int | None]:
        """Each model's training-set size (``None``: not trained here)."""
        return [None] * self.n_models


class DisjointParts(Setting):
    name = "DT"
    title = "DT: same architecture trained on disjoint splits of the training set"
    sgd_bounds = True
    trains_twin = True
    trains = True

    @classmethod
    def check_specs(cls, m: ModelsConfig) -> None:
        if m.specs:
            raise ValueError("specs: setting DT trains its models; give specs only for DR/DA/FT")

    def check(self) -> None:
        parts = self.cfg.train.parts
        if parts < 2:
            raise ConfigError(
                "train.parts: setting DT compares models trained on disjoint parts, expected at "
                f"least 2, got {parts}"
            )
        super().check()

    @property
    def n_models(self) -> int:
        return self.cfg.train.parts * len(self.sizes)

    def model_specs(self) -> list[ModelSpec]:
        from smoothstab.experiments.config.tables import ModelSpec

        return [ModelSpec(self.cfg.train.model)] * self.n_models

    @property
    def sizes(self) -> tuple[int | None, ...]:
        return self.cfg.train.sizes

    def size_index(self, k: int) -> int:
        return k // self.cfg.train.parts

    def training(self, n_train: int | None, classes: int) -> tuple[TrainConfig, int] | None:
        return self.cfg.train, self.cfg.train.parts

    def train(self, source: ModelSource) -> None:
        cfg = self.cfg
        train_cfg = replace(cfg.train, quiet=cfg.quiet or cfg.train.quiet)
        source.train_parts(train_cfg)
        if cfg.sanity.enabled and cfg.sanity.labels:  # the label check's twin
            source.train_twin(train_cfg, self.first_of_largest(), cfg.sanity.label_seed)

    def models(self, source: ModelSource) -> list[nn.Module]:
        return [source.trained(k) for k in range(self.n_models)]

    def model_sizes(self, source: ModelSource) -> list[int | None]:
        return list(source.train_sizes())


class GivenModels(Setting):
    name = "DR"
    title = "DR: same architecture, different training recipe or weights"

    def pair_labels(self) -> dict[str, str]:
        specs = self.cfg.models.specs
        name = lambda k: specs[k].label or f"{specs[k].name} (model {k})"  # noqa: E731
        return {f"{i}-{j}": f"{name(i)} vs {name(j)}" for i, j in self.pairs()}


class GivenArchitectures(GivenModels):
    name = "DA"
    title = "DA: different architectures"
    no_bounds = "compares different architectures (one is needed)"
    every_pair_drawn = True  # each pair is a different pair of architectures


class Replicas(Setting):
    name = "FT"
    title = "FT: replicas of one given model made by a cheap proxy for retraining"
    trains = True

    @classmethod
    def check_specs(cls, m: ModelsConfig) -> None:
        pass  # exactly one spec: checked across keys in check()

    def check(self) -> None:
        m = self.cfg.models
        if len(m.specs) != 1:
            raise ConfigError(
                f"models.specs: setting FT starts from exactly one model, got {len(m.specs)}"
            )
        if m.proxy == "noisy_sgd" and m.noise_std == 0:
            raise ConfigError(
                "models.noise_std: proxy noisy_sgd expected a weight noise > 0, got 0"
            )
        super().check()

    @property
    def n_models(self) -> int:
        return self.cfg.models.replicas

    def model_specs(self) -> list[ModelSpec]:
        return [self.cfg.models.specs[0]] * self.n_models

    def training(self, n_train: int | None, classes: int) -> tuple[TrainConfig, int] | None:
        m = self.cfg.models
        if n_train is None:
            if m.part_size is None:
                raise ValueError(
                    f"models.part_size: the size of the {self.cfg.train.dataset} training set "
                    "is known only once it is read; give models.part_size to plan this config"
                )
            n_train = m.part_size * m.replicas
        return self.proxy_train_config(n_train, classes), self.proxy_runs()

    def proxy_runs(self) -> int:
        """Training runs the proxy makes: one per replica, or one SGD run for SWAG."""
        return 1 if self.cfg.models.proxy == "swag" else self.cfg.models.replicas

    def proxy_train_config(self, n_train: int, num_classes: int) -> TrainConfig:
        """The training config of the proxy's runs for a training set of ``n_train`` images:
        ``[train]``'s data and optimizer with the FT model, epochs, lr, schedule (constant for
        SWAG) and weight noise; its ``parts`` are the disjoint parts (one but for
        ``finetune``), see :meth:`proxy_runs` for the runs."""
        cfg = self.cfg
        m, spec = cfg.models, cfg.models.specs[0]
        swag, noisy = m.proxy == "swag", m.proxy == "noisy_sgd"
        t = replace(
            cfg.train,
            model=spec.name,
            num_classes=num_classes,
            epochs=m.epochs,
            lr=m.lr,
            schedule="step" if swag else "cosine",
            step_size=m.epochs + 1,  # SWAG: a constant rate
            noise_std=m.noise_std if noisy else 0.0,
            parts=m.replicas if m.proxy == "finetune" else 1,
            part_size=m.part_size or n_train // m.replicas,
            seed=m.seed,
            keep="last",
            val_size=0,
            quiet=cfg.quiet or cfg.train.quiet,
        )
        if t.parts * t.part_size > n_train:
            raise ValueError(
                f"models.part_size: expected replicas x part_size <= the {n_train} training "
                f"images, got {m.replicas} x {t.part_size}"
            )
        return t

    def training_name(self) -> str:
        return f"proxy {self.cfg.models.proxy} runs"

    def train(self, source: ModelSource) -> None:
        source.make_replicas()

    def models(self, source: ModelSource) -> list[nn.Module]:
        replicas = [source.trained(k) for k in range(self.n_models)]
        layer = self.cfg.models.specs[0].cam_layer
        for model in replicas if layer else ():
            model.cam_layer = layer  # the base model's Grad-CAM layer, as a given model has it
        return replicas


SETTINGS: dict[str, type[Setting]] = {
    s.name: s for s in (DisjointParts, GivenModels, GivenArchitectures, Replicas)
}

"""One experiment from one config: every config dataclass, and loading a config by file or name.

A config is a TOML file with the tables ``[train]`` (:class:`TrainConfig`: data, models trained on
disjoint splits), ``[models]`` (the setting: DT trains ``train.parts`` models on disjoint splits; DR
and DA compare given checkpoints; FT makes cheap replicas of one given model), ``[attribution]``,
``[evaluation]`` and ``[sanity]`` (:class:`SanityConfig`); keys it leaves out take the defaults
below. Named presets are the TOML files shipped in ``smoothstab/configs/`` (``quickstart``,
``paper/imagenet_resnet50``, ...): the file is the preset. Fields made with
:func:`~smoothstab.experiments.config.parse.free` change no result (devices, worker counts, chunk
sizes), so a run directory may be resumed with other values of them. Stages talk through files
in the run directory (:mod:`~smoothstab.experiments.rundir.layout`) and skip what exists::

    config.toml -> train (splits.json, model_{p}.pt, train_metrics.json)
    -> attribute (test_images.pt, blocks/..., maps/... with [maps] keep) -> evaluate
    (metrics.parquet, table1.csv, recommendation.json) -> sanity (sanity.csv, when enabled)
    -> figures (figures/*.png) -> bounds (bounds.json, bounds.md) -> report (report.md, report.html)

Each key's meaning is the docstring under its field; :mod:`~smoothstab.experiments.config.keys`
reads them back for ``smoothstab config`` and the documentation's list of keys. Long (about 670
lines) because every config dataclass, its keys' meanings and its checks live here (those that
depend on the setting in :mod:`~smoothstab.experiments.config.setting`), so that a config is
validated whole before any stage runs.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import smoothstab as ss
from smoothstab.checks import check_choice, check_number
from smoothstab.experiments.config.datasets import (
    DATASETS,
    FOLDER_DATASETS,
    IMAGEFOLDER_KEYS,
    dataset_info,
)
from smoothstab.experiments.config.guards import check_device_name, check_slug
from smoothstab.experiments.config.parse import (
    at_least,
    free,
)
from smoothstab.montecarlo import Sampling
from smoothstab.randomize import MODES as RANDOMIZE_MODES
from smoothstab.renames import warn_renamed

if TYPE_CHECKING:
    pass

FIDELITY_R = tuple(round(0.004 * j * j, 6) for j in range(11))  # the paper's quadratic grid
STABILITY_R = tuple(round(0.05 * j, 6) for j in range(9))  # 0, 0.05, ..., 0.40
SCHEDULES = ("step", "cosine")
AMP_MODES = ("none", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """One training run: ``parts`` models per training-set size, each on its own part.

    Parts of one size are disjoint. Across sizes they are nested: part ``p`` of size ``s`` is the
    first ``s`` images of part ``p`` of the largest size, so models with the same part index share
    data and models with different ones never do. Models are numbered size by size: model ``g *
    parts + p`` is part ``p`` of the ``g``-th smallest size. Defaults: two small CNNs on digits.
    Each key's meaning is the docstring under its field (:mod:`~smoothstab.experiments.config.keys`
    reads them).

    The speed options ``amp``, ``channels_last`` and ``compile``
    (:mod:`~smoothstab.experiments.models.trainer`) each change the floating point of the result a
    little (other kernels, other rounding), so none is free; ``none`` / ``false`` are bitwise the
    plain loop.
    """

    dataset: str = "digits"
    """The data: ``digits`` (scikit-learn's 8x8 digits), ``shapes`` (generated 32x32 shapes),
    ``cifar10`` (the ``cifar-10-batches-py`` pickles, fetched on first use), ``imagenet`` or
    ``imagefolder`` (a local ImageFolder with ``train/`` and ``val/``), or ``images`` (a folder
    of test images only, flat or one subfolder per class, for given models: DR, DA)."""
    root: str | None = free(None)
    """Where the data set is (CIFAR-10: fetched there when missing, default
    ``~/.cache/smoothstab/cifar10``; ImageNet, an ImageFolder, a folder of images)."""
    image_size: int | None = None
    """``dataset = "imagefolder"`` or ``"images"`` only: the crop size of your own images
    (``None``: ImageNet's 224)."""
    mean: tuple[float, ...] | None = None
    """``dataset = "imagefolder"`` or ``"images"`` only: the normalisation's per-channel mean
    (``None``: ImageNet's)."""
    std: tuple[float, ...] | None = None
    """``dataset = "imagefolder"`` or ``"images"`` only: the normalisation's per-channel std,
    each > 0 (``None``: ImageNet's)."""
    channels: int | None = None
    """``dataset = "imagefolder"`` or ``"images"`` only: the input channels; 1 reads the images
    as grey (``None``: RGB)."""
    labels: str | None = free(None)
    """``dataset = "images"`` only: a CSV file of ``file,label`` lines (a file name under
    ``root``, an integer class) giving the images' labels (``None``: the class subfolders'
    indices in sorted order, or no labels: then ``attribution.target = "predicted"``)."""
    data_seed: int = 0
    """Fixes the generated images (shapes) and the train/test split (digits)."""
    model: str = "small_cnn"
    """The architecture: ``small_cnn``, ``resnet18_cifar``, ``resnet34_cifar``, any torchvision
    classification model (``resnet50``, ``swin_t``, ...), ``timm:NAME``, ``hf:LOCAL_DIR`` or
    ``python:package.module:factory``
    (:func:`~smoothstab.experiments.models.architectures.build_model`). A ``python:`` name is
    code, imported and called like a script (looked up as ``models.code_dir`` says); nothing
    is downloaded."""
    num_classes: int | None = None
    """Output classes of the model (``None``: from the data)."""
    epochs: int = 30
    """Epochs each model trains."""
    batch_size: int = 32
    """Training batch size."""
    lr: float = 0.05
    """SGD's learning rate."""
    momentum: float = 0.9
    """SGD's momentum."""
    weight_decay: float = 5e-4
    """SGD's weight decay."""
    schedule: str = "cosine"
    """The learning-rate schedule, stepped once per epoch: ``step`` (x ``gamma`` every
    ``step_size`` epochs) or ``cosine`` (to 0 over ``epochs``)."""
    step_size: int = 30
    """Epochs between two decays of the ``step`` schedule."""
    gamma: float = 0.1
    """The ``step`` schedule's factor."""
    noise_std: float = 0.0
    """The weight-noise std s_w of noisy SGD (Eq. 3; 0: plain SGD)."""
    noise_draws: int = 1
    """Noisy SGD's weight-noise draws per step."""
    parts: int = 2
    """Models per training-set size, each trained on its own part."""
    part_size: int | tuple[int, ...] | None = None
    """Images per part: one size, or a list of sizes (the paper's curves over n); ``None``: the
    training set split evenly (what the validation split leaves)."""
    split_seed: int = 10007
    """Seeds the permutation of the training set that parts and validation split are cut
    from."""
    seed: int = 0
    """Seeds each model's training (mixed with its part index): initialisation, batch order,
    weight noise."""
    deterministic: bool = True
    """Train in PyTorch's deterministic mode."""
    keep: Literal["last", "best"] = "last"
    """Which weights a model keeps: ``last`` (the last epoch's, the paper's) or ``best`` (the
    epoch with the best accuracy on a validation split of ``val_size`` training images)."""
    val_size: int = 0
    """Validation images for ``keep = "best"`` (needed >= 1 then; ignored with ``last``). The
    validation split is the slice of the split permutation right after every part's images, so
    it is disjoint from all of them and from the test set; ``parts x largest part_size +
    val_size`` must fit in the training set (checked when training starts)."""
    amp: Literal["none", "bf16", "fp16"] = "none"
    """Mixed precision: ``none``, ``bf16`` or ``fp16`` (autocast, with a gradient scaler for
    fp16)."""
    channels_last: bool = False
    """Weights and input batches in the channels-last memory format."""
    compile: bool = False
    """``torch.compile`` the training forward pass."""
    drop_last: bool = False
    """Drop an epoch's last, smaller batch (``false`` keeps it, as the paper's training code,
    PyTorch's ImageNet example, did)."""
    device: str = free("auto")
    """The training device, such as ``cpu``, ``cuda`` or ``cuda:0`` (``auto``: a GPU if there
    is one)."""
    num_workers: int = free(0)
    """DataLoader workers. With ``num_workers > 0`` they persist across epochs, and batches go
    through pinned memory on CUDA; that changes nothing but speed."""
    eval_batch_size: int = free(500)
    """Batch size of the test-accuracy evaluation."""
    checkpoint_every: int = free(0)
    """Also checkpoint every this many steps (0: at epoch ends only)."""
    quiet: bool = free(False)
    """No progress bars."""

    def __post_init__(self) -> None:
        check_choice(self.dataset, "dataset", DATASETS)
        check_choice(self.schedule, "schedule", SCHEDULES)
        at_least(self, 1, "num_classes", "epochs", "batch_size", "step_size")
        if isinstance(self.part_size, tuple):
            if not self.part_size or len(set(self.part_size)) != len(self.part_size):
                raise ValueError(
                    f"part_size: expected distinct training-set sizes, got {list(self.part_size)}"
                )
            if not all(s >= 1 for s in self.part_size):
                raise ValueError(f"part_size: expected sizes >= 1, got {list(self.part_size)}")
        else:
            at_least(self, 1, "part_size")
        at_least(self, 1, "noise_draws", "parts", "eval_batch_size")
        at_least(self, 0, "num_workers", "checkpoint_every", "lr", "momentum", "weight_decay")
        at_least(self, 0, "gamma", "noise_std")
        for key in ("lr", "momentum", "weight_decay", "gamma", "noise_std"):  # inf diverges
            check_number(getattr(self, key), key, low=0)
        check_device_name(self.device, "device", allow_auto=True)
        check_choice(self.keep, "keep", ("last", "best"))
        at_least(self, 0, "val_size")
        check_choice(self.amp, "amp", AMP_MODES)
        small = [s for s in self.sizes if s is not None and s < self.batch_size]
        if self.drop_last and small:  # every batch would be dropped: 0 optimizer steps
            raise ValueError(
                f"drop_last: true drops every batch of a part of {min(small)} images with "
                f"batch_size = {self.batch_size}, so nothing would train; set drop_last = false "
                f"or batch_size <= {min(small)}"
            )
        self._check_imagefolder()

    def _check_imagefolder(self) -> None:
        """``image_size``, ``mean``, ``std``, ``channels``: an imagefolder's, consistent."""
        given = [k for k in ("image_size", "mean", "std", "channels") if getattr(self, k)]
        if given and self.dataset not in FOLDER_DATASETS:
            raise ValueError(
                f"{given[0]}: only with dataset = 'imagefolder' or 'images' (the others fix "
                f"it), got dataset = {self.dataset!r}"
            )
        if self.labels is not None and self.dataset != "images":
            raise ValueError(
                f"labels: only with dataset = 'images' (the others carry their labels), got "
                f"dataset = {self.dataset!r}"
            )
        at_least(self, 1, "image_size", "channels")
        info = dataset_info(self)
        for key in ("mean", "std"):
            values = getattr(info, key)
            if len(values) != info.in_channels:
                raise ValueError(
                    f"{key}: expected {info.in_channels} values (one per channel), got "
                    f"{list(values)}"
                )
        if not all(math.isfinite(v) and v > 0 for v in info.std):
            raise ValueError(f"std: expected numbers > 0, got {list(info.std)}")

    def to_dict(self) -> dict:
        """The config as checkpoints and ``train_metrics.json`` record it: every field, but the
        imagefolder keys only when set (so runs without them record what they always did)."""
        return {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if not ((k in IMAGEFOLDER_KEYS or k == "labels") and v is None)
        }

    @property
    def sizes(self) -> tuple[int | None, ...]:
        """The training-set sizes, smallest first (``(None,)``: the data split evenly)."""
        if isinstance(self.part_size, tuple):
            return tuple(sorted(self.part_size))
        return (self.part_size,)


@dataclass(frozen=True)
class ModelSpec:
    """A given checkpoint (DR/DA, or FT's one base model); a checkpoint written by ``smoothstab
    train`` is a weights file too."""

    name: str
    """The architecture, as ``train.model`` names it
    (:func:`~smoothstab.experiments.models.architectures.build_model`)."""
    weights: str | None = None
    """A weights file or a torchvision weight name (``None``: a random init seeded by
    ``train.seed`` and the spec's position)."""
    label: str = ""
    """The model's name in Table 1 (empty: its architecture and index)."""
    cam_layer: str = ""
    """The Grad-CAM layer's dotted name, for an architecture
    :func:`~smoothstab.experiments.models.architectures.cam_layer` does not know (empty: its
    default)."""


SETTINGS = ("DT", "DR", "DA", "FT")  # each a class of config/setting.py
PROXIES = ("finetune", "swag", "noisy_sgd")
FT_LAYERS = ("all", "last_block", "classifier")


@dataclass(frozen=True)
class ModelsConfig:
    """DT: models trained on disjoint splits ([train]); DR/DA: the ``specs`` given here; FT:
    ``replicas`` cheap stand-ins for retraining made from the one model in ``specs``. The FT keys
    are ignored otherwise; :mod:`~smoothstab.experiments.models.proxies` says exactly what each
    proxy does.
    """

    setting: Literal["DT", "DR", "DA", "FT"] = "DT"
    """``DT`` trains ``train.parts`` models per size on disjoint parts; ``DR`` and ``DA``
    compare the given ``specs`` (the paper's Table 1 rows of those names); ``FT`` compares
    replicas of the one model in ``specs``."""
    specs: tuple[ModelSpec, ...] = ()
    """The given models, ``[[models.specs]]`` tables (keys below): at least 2 for DR/DA, exactly
    1 for FT, none for DT."""
    proxy: Literal["finetune", "swag", "noisy_sgd"] = "finetune"
    """FT: ``finetune`` (each replica fine-tuned on its own disjoint part of [train]'s data, its
    own seed), ``swag`` (one short SGD run from the model, replicas drawn from the diagonal
    Gaussian of its weight snapshots, spread scaled by ``swag_scale``) or ``noisy_sgd`` (each
    replica a short noisy-SGD continuation, weight noise std ``noise_std``, on the same data,
    its own seed)."""
    replicas: int = 4
    """FT: how many replicas."""
    epochs: int = 2
    """FT: epochs of each replica's run (batch size, momentum, weight decay and data from
    [train])."""
    lr: float = 0.01
    """FT: learning rate of those runs."""
    layers: Literal["all", "last_block", "classifier"] = "all"
    """FT: the layers trained: ``all``, ``last_block`` (the last block of the Grad-CAM stage and
    the classifier) or ``classifier`` (the last linear layer)."""
    part_size: int | None = None
    """FT: images per run (``None``: the training set split evenly over the replicas)."""
    noise_std: float = 0.01
    """FT, ``noisy_sgd``: the weight noise std (> 0)."""
    swag_snapshots: int = 20
    """FT, ``swag``: weight snapshots of the SGD run."""
    swag_scale: float = 1.0
    """FT, ``swag``: scales the spread of the replicas around the snapshots' mean."""
    seed: int = 0
    """FT: seeds the replicas."""
    code_dir: str | None = free(None)
    """Where the modules of ``python:`` model names are looked up first (for ``train.model`` and
    the specs alike); relative to the config file's folder. Unset: the folder of the config file
    that names them, which ``smoothstab run`` records here, absolute, in the run directory's
    ``config.toml`` (so a later stage command looks in the same place, never in the run
    directory). Then the working directory (one notice line says when a module comes from
    there) and the installed packages (docs/own_model.md). A ``python:`` name is code: it is
    imported and called like a script."""
    trust_remote_code: bool = free(False)
    """Let an ``hf:`` folder run its own Python: a ``config.json`` with an ``auto_map`` is
    refused unless this is ``true`` (passed to transformers as ``trust_remote_code``; trust
    such a folder as a script)."""

    def __post_init__(self) -> None:
        check_choice(self.setting, "setting", SETTINGS)
        check_choice(self.proxy, "proxy", PROXIES)
        check_choice(self.layers, "layers", FT_LAYERS)
        at_least(self, 2, "replicas", "swag_snapshots")
        at_least(self, 1, "epochs", "part_size")
        for key in ("lr", "noise_std", "swag_scale"):
            check_number(getattr(self, key), key, low=0)


@dataclass(frozen=True)
class AttributionConfig:
    """Which maps to compute and how (the paper's values by default). The metrics table records
    each map's relative Monte-Carlo standard error and model evaluations, per image.

    The speed options ``amp``, ``channels_last`` and ``pack``
    (:mod:`~smoothstab.experiments.models.accel`) change the floating point of the maps, so none is
    free.
    """

    methods: tuple[str, ...] = ("grad", "ig", "gradcam", "gradcampp")
    """The methods, by their names in :data:`smoothstab.METHODS`."""
    stability_r: tuple[float, ...] = STABILITY_R
    """Noise levels ``r = sigma / (x_max - x_min)`` of the stability sweep."""
    fidelity_r: tuple[float, ...] = FIDELITY_R
    """Noise levels of the fidelity sweep (the paper's quadratic grid ``r = 0.004 j^2``)."""
    table_r: float = 0.15
    """The noise level of Table 1's smoothed columns and of the map grids."""
    n_samples: int = 100
    """Noise draws per smoothed map (unused with a ``tolerance``)."""
    tolerance: float | None = None
    """Instead of ``n_samples`` draws per map, draw until each image's relative Monte-Carlo
    standard error ``||se|| / ||map||`` is at most this, with at least ``min_samples`` and at
    most ``max_samples`` draws (``smooth(..., tol=)``)."""
    min_samples: int = 16
    """With a ``tolerance`` only: the fewest draws per map."""
    max_samples: int = 1000
    """With a ``tolerance`` only: the most draws per map."""
    groups: int | None = None
    """An even number of interleaved groups of draws whose means each smoothed map keeps (with
    debiased distances), so that the standard errors of the distances in the metrics table
    account for the correlation between a map's elements (``G - 1`` degrees of freedom;
    ``smooth(..., groups=G)``). Unset, :attr:`n_groups` follows
    :func:`smoothstab.montecarlo.default_groups`: 16 from 32 units (draws, or antithetic pairs,
    of ``n_samples``; of ``min_samples`` with a tolerance) on, fewer below; 2 keeps the halves
    only, whose standard errors pool per element and understate the error of correlated
    maps."""
    antithetic: bool = False
    """Draw the noise in antithetic pairs ``(z, -z)`` (``n_samples`` even)."""
    common_random_numbers: bool = True
    """Every model sees the same noise draws (ours); ``false`` draws independently for each
    network, as the paper did."""
    ig_steps: int = 20
    """IG's quadrature points along the path."""
    ig_rule: str = "paper"
    """IG's quadrature rule, one of :data:`smoothstab.IG_RULES`."""
    ig_sampler: Literal["nested", "joint"] = "nested"
    """Smoothed IG's sampler: ``nested`` (the paper's: the whole path for every draw) or
    ``joint`` (the path position drawn with the noise: one model evaluation per draw)."""
    n_images: int = 32
    """Test images explained: the first ``n_images`` of the permutation of ``image_order``."""
    image_seed: int = 10007
    """Seeds the permutation the test images are taken from."""
    image_batch: int = 16
    """Images per block, the unit in which maps are computed and written."""
    batch_size: int = free(256)
    """At most this many input rows per model call."""
    target: Literal["label", "predicted"] = "label"
    """The explained logit: the ground-truth ``label``'s or the ``predicted`` class's."""
    seed: int = 0
    """Seeds the noise draws."""
    device: str = free("cpu")
    """The device maps are computed on, such as ``cpu``, ``cuda`` or ``cuda:0``."""
    dtype: Literal["float32", "float64"] = "float32"
    """The precision of the model and the maps."""
    cam_normalize: Literal["none", "minmax"] = "none"
    """``none`` (raw ReLU'd CAMs) or ``minmax`` (each Grad-CAM/Grad-CAM++ map scaled to [0, 1]
    per image as pytorch-grad-cam does, before smoothing averages them: a smoothed CAM is then
    the mean of normalised CAMs)."""
    image_order: Literal["numpy", "paper"] = "numpy"
    """How the test images are chosen, the first ``n_images`` of a permutation seeded by
    ``image_seed``: ``numpy`` (``np.random.default_rng(seed).permutation``) or ``paper``
    (Python's ``random.Random(seed).shuffle`` of ``list(range(N))``, what the paper's code
    did)."""
    ig_reference_steps: int = 64
    """With ``ig_sampler = "joint"``, the r = 0 IG map (the fidelity reference) uses a
    Gauss-Legendre rule of this many points instead of ``ig_steps``/``ig_rule``, since the joint
    sampler has no quadrature error; 0 keeps the run's quadrature. Ignored with ``nested``."""
    amp: Literal["none", "bf16"] = "none"
    """``bf16`` runs the model calls under bf16 autocast (gradient maps within about 12% of
    float32 ones unsmoothed, 4% smoothed, CAMs 1%; needs ``dtype = "float32"``)."""
    channels_last: bool = False
    """Store the model's weights in the channels-last memory format."""
    pack: bool = False
    """Put the rows of every noise level of a (model, method, image block) into shared model
    calls of at most ``batch_size`` rows (fewer, fuller calls where one level's rows leave a
    chunk part-empty); every level keeps its own draws, so maps equal unpacked ones up to the
    floating point of differently composed batches (not free for that reason). A fixed
    ``n_samples`` only: with a tolerance the levels run one after another."""

    RENAMED: ClassVar[dict[str, str]] = {"ig_estimator": "ig_sampler"}  # old key: new key

    def __getattr__(self, name: str) -> object:
        """A renamed key read by its old name (code written against it): still answers, with
        a warning, until version 1.0."""
        if name in self.RENAMED:
            new = self.RENAMED[name]
            warn_renamed(f"AttributionConfig.{name}", new)
            return getattr(self, new)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError("methods: expected at least one method")
        for m in self.methods:
            check_choice(m, "methods", ss.METHODS)
        twice = [m for i, m in enumerate(self.methods) if m in self.methods[:i]]
        if twice:
            raise ValueError(f"methods: expected each method once, got {twice[0]!r} twice")
        check_choice(self.ig_rule, "ig_rule", ss.IG_RULES)
        for key in ("stability_r", "fidelity_r"):
            rs = getattr(self, key)
            if not all(math.isfinite(r) and r >= 0 for r in rs):
                raise ValueError(f"{key}: expected finite noise levels >= 0, got {list(rs)}")
        check_number(self.table_r, "table_r", low=0)
        check_device_name(self.device, "device")
        # Checked here, not when the attribute stage meets them after hours of training.
        at_least(self, 1, "n_samples", "ig_steps", "n_images", "image_batch", "batch_size")
        self.sampling()  # the engine's rules on every sampling key, checked now
        check_choice(self.cam_normalize, "cam_normalize", ("none", "minmax"))
        check_choice(self.image_order, "image_order", ("numpy", "paper"))
        at_least(self, 0, "ig_reference_steps")
        check_choice(self.amp, "amp", ("none", "bf16"))
        if self.amp != "none" and self.dtype != "float32":
            raise ValueError(
                f"amp: {self.amp!r} autocasts float32 computations; with dtype = {self.dtype!r} "
                "it would do nothing, use dtype = 'float32' or amp = 'none'"
            )

    def noise_grid(self) -> list[float]:
        """Every r a run needs: both sweeps, 0 and the Table-1 level, rounded to 6 decimals
        (each is its own level in the block files and kept maps), sorted."""
        rs = {0.0, float(self.table_r), *map(float, self.stability_r), *map(float, self.fidelity_r)}
        return sorted(round(r, 6) for r in rs)

    def sampling(self) -> Sampling:
        """The engine's :class:`~smoothstab.montecarlo.Sampling` of ``n_samples`` (or
        ``tolerance`` with ``min_samples`` and ``max_samples``), ``antithetic`` and ``groups``:
        the rules on them are the engine's alone, and a broken one names its key."""
        tol = self.tolerance is not None
        try:
            return Sampling.of(
                None if tol else self.n_samples,
                tol=self.tolerance,
                min_samples=self.min_samples if tol else None,
                max_samples=self.max_samples if tol else None,
                antithetic=self.antithetic,
                groups=2 if self.groups is None else self.groups,
            )
        except ValueError as e:  # the engine's words for its arguments, in the config's keys
            why = str(e).replace("antithetic=True", "antithetic = true")
            raise ValueError(
                re.sub(r"^tol:", "tolerance:", why).replace("tol=", "tolerance")
            ) from None

    @property
    def n_groups(self) -> int:
        """The groups of draws each smoothed map keeps: ``groups``, or when unset the engine's
        default for the units of ``n_samples`` (of ``min_samples`` with a tolerance: the first
        round must hold every group)."""
        if self.groups is not None:
            return self.groups
        draws = self.n_samples if self.tolerance is None else self.min_samples
        return ss.default_groups(max(1, draws // (2 if self.antithetic else 1)))


@dataclass(frozen=True)
class EvaluationConfig:
    """How maps are compared and reported."""

    debiased: bool = True
    """Also the split-half debiased distances (ours) beside the plain ones (the paper's)."""
    band: Literal["interval", "t95", "sd"] = free("interval")
    """The figures' bands: ``interval``, the 95% interval over retraining, the test images and
    their Monte-Carlo draws (with fewer than four models per n, over the images for these
    models), as every table and verdict uses; or the paper's bands over the pair (or model)
    means, to replicate its figures: ``t95`` (Student-t with K - 1 degrees of freedom, too
    narrow as an interval since pairs share models) or ``sd`` (one sample standard deviation).
    No verdict depends on it."""
    topk: int = 500
    """k of top-k mIoU (left unset, at most a quarter of an image's pixels)."""
    fidelity_budget: float = 0.2
    """The fidelity error allowed for the recommended r, relative to the unsmoothed map's
    norm."""
    target_halfwidth: float = 0.02
    """The report's sample-size plan: how many models per n and test images would give each
    method's relative change of the unit-map distance (r = 0 to the largest r) a 95% interval
    of this half-width (0.02: +-2% of its value at r = 0)."""
    grid_images: int = 4
    """Images per map grid."""
    grid_pairs: tuple[str, ...] = ()
    """The model pairs (``"i-j"``) whose maps are drawn side by side; empty: every pair of a DA
    run, else the first pair compared."""
    bound_steps: Literal["examples", "minibatches"] = "examples"
    """The unit of the number of training steps T in the bounds (docs/bounds.md)."""
    stability_measure: Literal["unit_distance", "l2"] = "unit_distance"
    """What the advice minimises and the findings' verdicts rest on: ``unit_distance``, the
    scale-free ``||a/||a|| - b/||b|| ||`` (smoothing shrinks maps, so a smaller raw distance can
    mean smaller maps), or ``l2``, the paper's raw distance (Eq. 12). Figures and tables show
    both either way."""
    floor_pairs: Literal["any", "same_class"] = "any"
    """How the chance floors pair the test images (docs/agreement_high.md): ``any``, each image
    with another image of its block (a seeded derangement); ``same_class``, with another image of
    its block and label, so the floor shares the class too (an image alone in its class in its
    block, or without a label, has no floor)."""

    def __post_init__(self) -> None:
        at_least(self, 1, "topk", "grid_images")
        check_choice(self.floor_pairs, "floor_pairs", ("any", "same_class"))
        for pair in self.grid_pairs:
            i, sep, j = pair.partition("-")
            if not (sep and i.isdigit() and j.isdigit() and int(i) != int(j)):
                raise ValueError(f'grid_pairs: expected pairs like "0-1", got {pair!r}')
        if not self.fidelity_budget >= 0:
            raise ValueError(f"fidelity_budget: expected a number >= 0, got {self.fidelity_budget}")
        if not 0 < self.target_halfwidth < 10:
            raise ValueError(
                f"target_halfwidth: expected a number in (0, 10), got {self.target_halfwidth}"
            )


@dataclass(frozen=True)
class MapsConfig:
    """Which maps the attribute stage keeps on disk. It measures every map while it is in
    memory (every per-image number is in the metrics table), so none is needed afterwards; it
    always keeps the mean maps the figures draw: every model's, at every r, of the
    ``evaluation.grid_images`` figure images (the first test image of each class, then the
    next ones), in the block files. ``plan`` says what each choice stores."""

    keep: Literal["none", "means", "all"] = "none"
    """Beyond the figure images: ``none``; ``means``, every test image's mean maps; ``all``,
    every test image's maps with their Monte-Carlo halves, variances and groups (what measuring
    them again needs), one file per model, method and r under ``maps/``."""
    precision: Literal["float32", "float16"] = "float32"
    """The float type of kept mean maps (``float16`` halves their bytes: about three
    significant digits, plenty for a picture); ``keep = "all"`` keeps the run's own."""
    view: Literal["map", "abs"] = "map"
    """Kept mean maps as computed (``map``) or as their 2-D view ``sum_c |map_c|`` (``abs``,
    what the figures draw: a third of the bytes of an RGB map); ``keep = "all"`` keeps
    ``map``."""

    def __post_init__(self) -> None:
        check_choice(self.keep, "keep", ("none", "means", "all"))
        check_choice(self.precision, "precision", ("float32", "float16"))
        check_choice(self.view, "view", ("map", "abs"))
        if self.keep == "all" and (self.precision, self.view) != ("float32", "map"):
            key, value = ("precision", self.precision) if self.precision != "float32" else (
                "view", self.view)  # fmt: skip
            raise ValueError(
                f"{key}: keep = 'all' keeps the maps with their Monte-Carlo statistics as "
                f"computed, for measuring them again; {key} = {value!r} applies to kept mean maps "
                "(keep = 'none' or 'means')"
            )


@dataclass(frozen=True)
class SanityConfig:
    """The model-randomisation check (Adebayo et al. 2018) of the ``sanity`` stage
    (:mod:`~smoothstab.experiments.stages.sanity_stage`, docs/sanity.md): off unless ``enabled``."""

    enabled: bool = free(False)
    """Run the sanity stage (turning it on later redoes no earlier stage)."""
    mode: Literal["cascading", "independent"] = "cascading"
    """``cascading`` (copy k re-initialises the last k layers, from the logits down) or
    ``independent`` (copy k re-initialises layer k alone)."""
    layers: tuple[str, ...] = ()
    """The steps, input side first, as module names of the model (empty: every layer with
    ``reset_parameters()``)."""
    init_seed: int = 0
    """Seeds each layer's re-initialisation (:func:`smoothstab.randomize.randomize`)."""
    labels: bool = free(False)
    """Also the data-randomisation check: the train stage trains a twin of the checked model
    (same recipe and images, its own seed) on labels permuted across images, and the stage compares
    their maps (setting DT only: the others train nothing here)."""
    label_seed: int = 0
    """Seeds the labels' permutation (:func:`~smoothstab.experiments.models.labels.permuted_labels`)
    and, with the run's ``train.seed``, the twin's training; it names the twin's checkpoint,
    ``model_labels-permuted-{label_seed}_{k}.pt``."""

    def __post_init__(self) -> None:
        check_choice(self.mode, "mode", RANDOMIZE_MODES)
        at_least(self, 0, "init_seed")
        at_least(self, 0, "label_seed")
        bad = [name for name in self.layers if not isinstance(name, str)]
        if bad:
            raise ValueError(f"layers: expected module names, got {bad[0]!r}")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers: expected distinct names, got {list(self.layers)}")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: its name and one table per part (the sections of a config file)."""

    name: str = "experiment"
    """A plain name (letters, digits, ``.``, ``_``, ``-``): the run goes to ``runs/<name>``
    without ``--out``."""
    quiet: bool = free(False)
    """No progress bars, only final lines."""
    train: TrainConfig = field(default_factory=TrainConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    maps: MapsConfig = field(default_factory=MapsConfig)
    sanity: SanityConfig = field(default_factory=SanityConfig)

    def __post_init__(self) -> None:
        check_slug(self.name, "name")  # runs/<name> without --out: no "..", no separators

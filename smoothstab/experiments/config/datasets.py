"""The dataset catalogue: what a model and the noise level need to know of each dataset (classes,
channels, image size, normalisation, split sizes), and the input range of normalised inputs,
which defines the noise level ``r = sigma / (x_max - x_min)`` (docs/conventions.md). The loaders
that read the images are in :mod:`smoothstab.experiments.models.data`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

SHAPE_CLASSES = (  # the generated shapes (models/shapes.py draws them)
    "square",
    "disk",
    "triangle",
    "plus",
    "ring",
    "stripes_h",
    "stripes_v",
    "checker",
    "stripes_d",
    "x_cross",
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


CIFAR_MEAN = (0.4914, 0.4822, 0.4465)


CIFAR_STD = (0.2470, 0.2435, 0.2616)


# Statistics of all 1797 digits scaled to [0, 1], rounded: fixed so that the split does not
# change the normalisation.
DIGITS_MEAN = (0.3053,)


DIGITS_STD = (0.3760,)


# Statistics of the generated train set (seed 0), rounded.
SHAPES_MEAN = (0.29, 0.29, 0.29)


SHAPES_STD = (0.23, 0.23, 0.23)


DIGITS_TEST_SIZE = 500


DIGITS_SIZES = (1797 - DIGITS_TEST_SIZE, DIGITS_TEST_SIZE)  # train, test of scikit-learn's 1797


CIFAR_LAYOUT = "cifar-10-batches-py/{data_batch_1..5, test_batch} (python pickle batches)"


IMAGEFOLDER_LAYOUT = "an ImageFolder tree ROOT/{train,val}/<class>/<image>"


IMAGES_LAYOUT = "a folder of images ROOT/<image>, or ROOT/<class>/<image>"


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and the noise level need to know about a dataset."""

    name: str
    num_classes: int | None  # None: read from the folder (imagefolder)
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int | None = None  # images; None: as many as the folder holds
    test_size: int | None = None

    @property
    def x_range(self) -> float:
        """``x_max - x_min`` of normalised inputs (see :func:`input_range`)."""
        lo, hi = input_range(self.mean, self.std)
        return hi - lo


DATASETS = {
    "digits": DatasetInfo("digits", 10, 1, 8, DIGITS_MEAN, DIGITS_STD, *DIGITS_SIZES),
    "shapes": DatasetInfo("shapes", len(SHAPE_CLASSES), 3, 32, SHAPES_MEAN, SHAPES_STD, 5000, 1000),
    "cifar10": DatasetInfo("cifar10", 10, 3, 32, CIFAR_MEAN, CIFAR_STD, 50_000, 10_000),
    "imagenet": DatasetInfo(
        "imagenet", 1000, 3, 224, IMAGENET_MEAN, IMAGENET_STD, 1_281_167, 50_000
    ),  # ILSVRC-2012: train and val
    "imagefolder": DatasetInfo("imagefolder", None, 3, 224, IMAGENET_MEAN, IMAGENET_STD),
    # test images only: a folder of your own (compare); classes from the model or the config
    "images": DatasetInfo("images", None, 3, 224, IMAGENET_MEAN, IMAGENET_STD),
}

FOLDER_DATASETS = ("imagefolder", "images")  # take image_size, mean, std, channels


# [train] keys that describe an imagefolder or images dataset (DatasetInfo field for each)
IMAGEFOLDER_KEYS = {
    "image_size": "image_size",
    "mean": "mean",
    "std": "std",
    "channels": "in_channels",
}


def dataset_info(data: str | Any) -> DatasetInfo:
    """The :class:`DatasetInfo` of a dataset name, or of a ``[train]`` config (a
    :class:`~smoothstab.experiments.config.tables.TrainConfig` or its dict in a checkpoint), whose
    ``image_size``, ``mean``, ``std`` and ``channels`` describe an ``imagefolder`` dataset where
    given."""
    if isinstance(data, str):
        name, given = data, {}
    else:
        get = data.get if isinstance(data, Mapping) else lambda k: getattr(data, k, None)
        name = get("dataset")
        given = {f: get(k) for k, f in IMAGEFOLDER_KEYS.items() if get(k) is not None}
    if name not in DATASETS:
        raise ValueError(f"dataset: expected one of {', '.join(DATASETS)}, got {name!r}")
    given = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in given.items()}
    return replace(DATASETS[name], **given)


def input_range(mean: Sequence[float], std: Sequence[float]) -> tuple[float, float]:
    """``(x_min, x_max)``: the smallest and largest value a ``[0, 1]`` pixel can take after
    ``(x - mean) / std``, over all channels. ImageNet: x_max - x_min = 4.7579."""
    lo = min(-m / s for m, s in zip(mean, std, strict=True))
    hi = max((1 - m) / s for m, s in zip(mean, std, strict=True))
    return lo, hi


def check_image_count(attr: Any, available: int, where: str) -> None:
    """``attribution.n_images`` within the ``available`` test images of ``where``: refused in
    one line naming the key and the size (not capped, so that a run explains the images it
    was asked to)."""
    if attr.n_images > available:
        raise ValueError(
            f"attribution.n_images: {attr.n_images} images asked, {where} has {available}; set "
            f"attribution.n_images = {available} or fewer"
        )

"""Dataset loaders, read from local files (CIFAR-10's archive is fetched into ``root`` on first
use, :mod:`~smoothstab.experiments.models.download`); the catalogue of their sizes and
normalisations is :mod:`smoothstab.experiments.config.datasets`.

=============  ==========================================================================
name           source and preprocessing
=============  ==========================================================================
digits         scikit-learn's 8x8 digits (shipped with it), ``[1, 8, 8]``; pixels / 16
               normalised with DIGITS mean/std; a fixed seeded split: 1297 train, 500 test
shapes         generated 32x32 RGB images (models/shapes.py), 5000 train / 1000 test
cifar10        the ``cifar-10-batches-py`` pickle folder (fetched into ``root``, default
               ``~/.cache/smoothstab/cifar10``, when missing); train RandomCrop(32, pad 4)
               + flip; CIFAR mean/std
imagenet,      an ImageFolder tree ``root/train``, ``root/val``; train RandomResizedCrop(224)
imagefolder    + flip, test Resize(256) + CenterCrop(224); ImageNet mean/std (the paper's);
               imagefolder takes ``[train]`` ``image_size``, ``mean``, ``std``, ``channels``
images         test images only: ``root/<image>`` or ``root/<class>/<image>``, labels from
               ``[train] labels`` (a CSV), the class folders, or none
               (:mod:`~smoothstab.experiments.models.images`); the imagefolder keys
=============  ==========================================================================

Also here: the input range of normalised inputs, which defines the noise level
``r = sigma / (x_max - x_min)`` (``x_max``, ``x_min``: the largest and smallest value a
normalised input can take over all channels; see docs/conventions.md), disjoint training
splits, the seeded test subset, and :class:`EpochSeeded`, which makes random augmentation a
pure function of (seed, epoch, index).

Long (about 440 lines) because it holds every loader (digits, shapes, CIFAR-10's pickles
with a safe unpickler, ImageFolder) with its one-line errors, plus the splits, which must
agree with each other.
"""

from __future__ import annotations

import functools
import json
import pickle
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from smoothstab.experiments.config.datasets import (
    CIFAR_LAYOUT,
    DATASETS,
    DIGITS_TEST_SIZE,
    IMAGEFOLDER_LAYOUT,
    IMAGES_LAYOUT,
    DatasetInfo,
    dataset_info,
)
from smoothstab.experiments.io.files import write_json
from smoothstab.experiments.models import download
from smoothstab.experiments.models.images import (
    IMAGE_EXTENSIONS,
    ImageFiles,
    image_files,
    load_image,
)
from smoothstab.experiments.models.shapes import CLASSES as SHAPE_CLASSES
from smoothstab.experiments.models.shapes import generate_shapes


def num_classes(train: Any, *, read: bool = True) -> int | None:
    """The classes a ``[train]`` config's models output: its ``num_classes``, else the
    dataset's; an imagefolder's are its class folders, counted from ``train.root`` (with
    ``read=False``: ``None``)."""
    info = dataset_info(train)
    n = train.num_classes or info.num_classes
    if n is None and read and train.dataset != "images":  # images: the model's own
        n = len(load_dataset(train.dataset, root=train.root, train=False, info=info).classes)
    return n


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    train: bool,
    seed: int = 0,
    augment: bool | None = None,
    info: DatasetInfo | None = None,
    labels: str | Path | None = None,
) -> Dataset:
    """The train or test set of ``name`` as a Dataset of ``(x [C, H, W] normalised, label)``.

    ``seed`` fixes the generated images (shapes) and the train/test split (digits); folder
    datasets ignore it. Every dataset has a ``classes`` attribute. ``augment`` (default:
    ``train``): the training transforms; ``train=True, augment=False`` gives the training images
    under the test transforms (a validation split). In-memory datasets have no augmentation.
    ``info``: the dataset's description when a config sets it (:func:`dataset_info` of the
    ``[train]`` table: an imagefolder's image size, mean, std and channels). ``labels``: the
    ``images`` dataset's CSV of labels.
    """
    info = info or dataset_info(name)
    augment = train if augment is None else augment
    if name == "digits":
        return _digits(train, seed)
    if name == "shapes":
        count = info.train_size if train else info.test_size
        images, labels = generate_shapes(count, seed, part=0 if train else 1)
        return _tensor_dataset(images, labels, info, SHAPE_CLASSES)
    if name == "cifar10":
        return _cifar10(Path(root or download.cache_home() / "cifar10"), train, info, augment)
    if root is None:
        raise ValueError(f"{name}: expected root= a local folder with {_layout(name)}")
    if name == "images":
        if train:
            raise ValueError(f"images: {root} holds test images only, no training set")
        return ImageFiles(Path(root), info, labels)
    return _imagefolder(Path(root), train, info, augment)


class ArrayDataset(TensorDataset):
    """An in-memory ``TensorDataset`` of normalised images and labels with ``classes``."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, classes: Iterable[str | int]
    ) -> None:
        super().__init__(images, labels)
        self.classes = list(classes)


def _tensor_dataset(
    images: np.ndarray, labels: np.ndarray, info: DatasetInfo, classes: Iterable[str | int]
) -> ArrayDataset:
    x = torch.from_numpy(images)
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    return ArrayDataset((x - mean) / std, torch.from_numpy(labels), classes)


def _digits(train: bool, seed: int) -> ArrayDataset:
    from sklearn.datasets import load_digits  # sklearn is slow to import; only digits needs it

    bunch = load_digits()
    order = np.random.default_rng(seed).permutation(len(bunch.target))
    rows = order[DIGITS_TEST_SIZE:] if train else order[:DIGITS_TEST_SIZE]
    images = (bunch.images[rows] / 16.0).astype(np.float32)[:, None]
    return _tensor_dataset(
        images, bunch.target[rows].astype(np.int64), DATASETS["digits"], range(10)
    )


def _layout(name: str) -> str:
    return {"cifar10": CIFAR_LAYOUT, "images": IMAGES_LAYOUT}.get(name, IMAGEFOLDER_LAYOUT)


def test_set_size(train: Any) -> int | None:
    """How many test images a ``[train]`` config's data set has, from its catalogue or by
    counting the image files of its folder (no image is opened); ``None`` when its folder is
    not here (the run will say)."""
    info = dataset_info(train)
    if info.test_size is not None:
        return info.test_size
    if train.root is None:
        return None
    root = Path(train.root)
    if train.dataset == "images":
        try:
            return len(image_files(root)[0])
        except ValueError:
            return None  # no folder, no image: the loader's line says what was expected
    val = root / "val"
    found = sum(1 for p in val.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    return found or None


class _NumpyOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a CIFAR batch runs no other code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _NumpyOnly(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except FileNotFoundError:
        raise ValueError(f"cifar10: expected {CIFAR_LAYOUT}; missing {path}") from None
    except Exception as e:  # noqa: BLE001 - any unreadable batch is the same user error
        raise ValueError(f"cifar10: expected {CIFAR_LAYOUT}; cannot read {path} ({e})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(
            f"cifar10: expected {CIFAR_LAYOUT}; {path} has data {data.shape} "
            f"and {len(labels)} labels, not [N, 3072] and N"
        )
    return data.reshape(-1, 3, 32, 32), labels


class Cifar10(Dataset):
    """CIFAR-10 from its python-pickle batches, uint8 in memory, transformed per item."""

    def __init__(
        self, folder: Path, train: bool, transform: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        parts = [_cifar_batch(folder / n) for n in names]
        self.data = np.concatenate([p[0] for p in parts])
        self.targets = np.concatenate([p[1] for p in parts])
        self.transform = transform
        self.classes = [str(i) for i in range(10)]
        meta = folder / "batches.meta"
        if meta.is_file():
            try:
                with meta.open("rb") as f:
                    names_ = _NumpyOnly(f, encoding="bytes").load().get(b"label_names", [])
                self.classes = [n.decode() for n in names_] or self.classes
            except Exception as e:  # noqa: BLE001 - code in the pickle, a list, ...: one line
                raise ValueError(
                    f"cifar10: cannot read {meta} ({e}); expected a pickled dict with "
                    "label_names (or no such file)"
                ) from None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.data[i]).float().div_(255)
        return self.transform(x), int(self.targets[i])


def _cifar10(root: Path, train: bool, info: DatasetInfo, augment: bool) -> Cifar10:
    from torchvision import transforms as T

    # root may be the batches folder itself or the folder that holds it (fetched when missing)
    is_batches = any((root / n).exists() for n in ("test_batch", "data_batch_1"))
    folder = root if is_batches else root / "cifar-10-batches-py"
    if not folder.is_dir():
        folder = download.cifar10(root)
    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
    return Cifar10(folder, train, T.Compose([*steps, T.Normalize(info.mean, info.std)]))


def _imagefolder(root: Path, train: bool, info: DatasetInfo, augment: bool) -> Dataset:
    from torchvision import datasets
    from torchvision import transforms as T

    folder = root / ("train" if train else "val")
    size = info.image_size
    if augment:
        steps = [T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
    else:  # ImageNet's 256 -> 224, scaled
        steps = [T.Resize(round(size * 256 / 224)), T.CenterCrop(size)]
    transform = T.Compose([*steps, T.ToTensor(), T.Normalize(info.mean, info.std)])
    mode = "L" if info.in_channels == 1 else "RGB"
    try:
        dataset = datasets.ImageFolder(
            str(folder), transform=transform, loader=functools.partial(load_image, mode=mode)
        )
    except (FileNotFoundError, OSError) as e:
        raise ValueError(
            f"{info.name}: expected {IMAGEFOLDER_LAYOUT}; {folder}: {str(e).splitlines()[0]}"
        ) from None
    if info.num_classes is not None and len(dataset.classes) != info.num_classes:
        raise ValueError(
            f"{info.name}: expected {info.num_classes} class folders in {folder}, "
            f"found {len(dataset.classes)} (dataset=imagefolder takes any number)"
        )
    return dataset


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (splitmix64), e.g. ``(seed, epoch, index)``."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def seed_torch(seed: int, device: torch.device | None = None) -> None:
    """Seed torch's CPU generator and, for a CUDA ``device``, that device's: what
    ``torch.manual_seed`` does where a run draws, without its cost. ``torch.manual_seed`` also
    queues a seeding of every CUDA, XPU and MTIA generator, formatting a stack trace for each
    while none is initialised (about 1.5 ms a call on a CPU machine, once per SGD step), and its
    first call imports ``torch._dynamo`` (about 2 s). The CPU stream is the same either way."""
    torch.default_generator.manual_seed(seed)
    if device is not None and device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


class EpochSeeded(Dataset):
    """``dataset`` with each item drawn under torch seed ``derive_seed(seed, epoch, index)``.

    Random augmentation then depends on neither the worker, the rank nor where a resumed run
    started; call :meth:`set_epoch` before each epoch. The global RNG is left as it was.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            seed_torch(derive_seed(self.seed, self.epoch, i))
            return self.dataset[i]


def disjoint_splits(n: int, k: int, size: int | None = None, seed: int = 10007) -> list[list[int]]:
    """``k`` disjoint parts of ``size`` indices (default ``n // k``) of ``range(n)``: part ``p``
    is slice ``[p * size, (p + 1) * size)`` of one seeded permutation (no wrap-around)."""
    size = n // k if size is None else size
    return size_splits(n, k, [size], seed)


def size_splits(n: int, k: int, sizes: Sequence[int], seed: int = 10007) -> list[list[int]]:
    """``k`` parts for each training-set size, size by size (``k * len(sizes)`` lists).

    With ``S`` the largest size, part ``p`` of size ``s`` is slice ``[p * S, p * S + s)`` of one
    seeded permutation: parts of one size are disjoint, and a part of a smaller size is the
    start of the same-numbered part of a larger one (nested across sizes, never shared between
    part numbers). With one size this is :func:`disjoint_splits`.
    """
    big = max(sizes)
    if k < 1 or min(sizes) < 1 or k * big > n:
        raise ValueError(
            f"splits: expected k >= 1 parts of size >= 1 with k * size <= {n}, got {k} x {big}"
        )
    order = np.random.default_rng(seed).permutation(n)
    groups = [[order[p * big : p * big + s].tolist() for p in range(k)] for s in sizes]
    for parts in groups:
        check_disjoint(parts)
    return [part for parts in groups for part in parts]


def validation_split(
    n: int, parts: Sequence[Sequence[int]], size: int, seed: int = 10007
) -> list[int]:
    """``size`` training-set indices that no part uses, for choosing an epoch (``keep="best"``).

    The parts are slices of one permutation seeded by ``seed`` (:func:`size_splits`); the
    validation split is the next ``size`` positions after the last position any part uses, so
    it is disjoint from every part (of every training-set size) and fixed by the splits alone.
    """
    order = np.random.default_rng(seed).permutation(n)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    used = [i for part in parts for i in part]
    start = int(position[used].max()) + 1 if used else 0
    if size < 1 or start + size > n:
        raise ValueError(
            f"train.val_size: expected 1 <= val_size <= {n - start} (parts x part_size + "
            f"val_size <= the {n} training images, the parts use {start}), got {size}"
        )
    split = order[start : start + size].tolist()
    check_disjoint([sorted(set(used)), split])
    return split


def check_disjoint(parts: list[list[int]]) -> None:
    """Raise ``ValueError`` if any index appears twice across (or within) the parts."""
    seen: set[int] = set()
    for p, part in enumerate(parts):
        clash = seen.intersection(part)
        if clash or len(set(part)) != len(part):
            raise ValueError(f"splits: part {p} repeats indices, e.g. {sorted(clash)[:3]}")
        seen.update(part)


def _check_groups(parts: list[list[int]], k: int) -> None:
    """Each consecutive group of ``k`` parts (one training-set size) is disjoint."""
    if k < 1 or len(parts) % k:
        raise ValueError(f"splits: expected groups of {k} parts, got {len(parts)} parts")
    for g in range(0, len(parts), k):
        check_disjoint(parts[g : g + k])


def save_splits(path: str | Path, parts: list[list[int]], k: int | None = None) -> Path:
    """Write ``parts`` (one index list per model; disjoint in groups of ``k``, default all) as
    JSON, atomically."""
    _check_groups(parts, k or len(parts))
    return write_json(path, parts)


def load_splits(path: str | Path, k: int | None = None) -> list[list[int]]:
    """Read and check a ``splits.json`` written by :func:`save_splits` (groups of ``k``)."""
    try:
        parts = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"splits: expected a JSON list of index lists at {path} ({e})") from None
    if not isinstance(parts, list) or not all(
        isinstance(p, list) and all(isinstance(i, int) for i in p) for p in parts
    ):
        raise ValueError(f"splits: expected a JSON list of index lists at {path}")
    _check_groups(parts, k or len(parts))
    return parts


IMAGE_ORDERS = ("numpy", "paper")


def test_indices(n: int, count: int, seed: int = 10007, order: str = "numpy") -> list[int]:
    """The first ``count`` of a seeded permutation of ``range(n)``: the test images. A smaller
    count gives a prefix of a larger one (the paper's 32 figure images lie in its 512).

    ``order``: ``numpy``, ``np.random.default_rng(seed).permutation(n)``; or ``paper``, what the
    paper's code did, ``random.seed(seed); random.shuffle(indices)`` on ``list(range(n))``
    (Python's Mersenne Twister; ``random.Random(seed)`` is the same generator, so the global
    one is left alone).
    """
    if order not in IMAGE_ORDERS:
        raise ValueError(f"image_order: expected one of {', '.join(IMAGE_ORDERS)}, got {order!r}")
    if not 1 <= count <= n:
        raise ValueError(f"test_indices: expected 1 <= count <= {n}, got {count}")
    if order == "paper":
        idx = list(range(n))
        random.Random(seed).shuffle(idx)
        return idx[:count]
    return np.random.default_rng(seed).permutation(n)[:count].tolist()


test_indices.__test__ = False  # not a pytest test, though its name says so

"""Datasets, noise-level conversion and disjoint splits (smoothstab.experiments.models.data).

Folder loaders are tested on tiny fake folders written here: CIFAR-10 pickle batches and a
2-class ImageFolder of PNGs. Nothing is downloaded.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from smoothstab.experiments.config import datasets
from smoothstab.experiments.models import data
from smoothstab.experiments.models.shapes import CLASSES, generate_shapes


def write_cifar(folder, n: int = 4, names=None) -> None:
    """Fake ``cifar-10-batches-py`` batches with ``n`` images each, as CIFAR's pickles hold."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(names or [*(f"data_batch_{j}" for j in range(1, 6)), "test_batch"]):
        batch = {
            b"batch_label": name.encode(),
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"labels": [(i + j) % 10 for j in range(n)],
        }
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f)


def write_imagefolder(root, classes=("cat", "dog"), per_class: int = 2) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = np.full((10, 12, 3), 40 * c + 10 * i, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")


# --- embedded datasets -------------------------------------------------------------------------


def test_digits_split_is_fixed_and_disjoint():
    train = data.load_dataset("digits", train=True)
    test = data.load_dataset("digits", train=False)
    assert (len(train), len(test)) == (1297, 500)
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and 0 <= int(y) < 10
    assert torch.equal(train.tensors[0], data.load_dataset("digits", train=True).tensors[0])
    # the two parts of one permutation: no training image is a test image
    rows = {tuple(r.flatten().tolist()) for r in train.tensors[0]}
    overlap = sum(tuple(r.flatten().tolist()) in rows for r in test.tensors[0])
    assert overlap < 5  # digits holds a few exact duplicate images; the index sets are disjoint


def test_digits_normalisation_range():
    x = data.load_dataset("digits", train=True).tensors[0]
    lo, hi = datasets.input_range(datasets.DIGITS_MEAN, datasets.DIGITS_STD)
    assert x.min() >= lo - 1e-6 and x.max() <= hi + 1e-6
    assert abs(x.mean().item()) < 0.05


def test_shapes_deterministic_from_seed():
    a, la = generate_shapes(200, seed=3)
    b, lb = generate_shapes(200, seed=3)
    c, _ = generate_shapes(200, seed=4)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    test, _ = generate_shapes(200, seed=3, part=1)
    assert not np.array_equal(a, test)


def test_shapes_dataset_balanced_and_normalised():
    train = data.load_dataset("shapes", train=True)
    test = data.load_dataset("shapes", train=False)
    assert (len(train), len(test)) == (5000, 1000)
    assert train.classes == list(CLASSES)
    x, y = train.tensors
    assert x.shape[1:] == (3, 32, 32)
    assert torch.bincount(y).tolist() == [500] * 10
    assert abs(x.mean().item()) < 0.2 and 0.8 < x.std().item() < 1.2


def test_shapes_classes_are_distinct():
    """Same place, size and colours: every class draws a different set of object pixels."""
    images, labels = generate_shapes(400, seed=0)
    bright = images.mean(axis=1) > 0.5  # the object is bright on a dark background
    masks = [bright[labels == c][0] for c in range(len(CLASSES))]
    assert all(m.sum() >= 10 for m in masks)
    # per class, the average object footprint differs: shapes are not relabelled copies
    fill = [bright[labels == c].mean() for c in range(len(CLASSES))]
    assert len({round(float(f), 3) for f in fill}) == len(CLASSES)


@pytest.mark.slow
def test_small_cnn_learns_shapes(tmp_path):
    """The classes are learnable from pixels: 2000 images, 10 epochs (about 5 s on 2 cores)."""
    from smoothstab.experiments.models.training import TrainConfig, train_run

    config = TrainConfig(
        dataset="shapes", parts=1, part_size=2000, epochs=10, batch_size=64, lr=0.02, quiet=True
    )
    metrics = train_run(config, tmp_path)
    assert metrics["models"][0]["test_accuracy"] >= 0.9


# --- folder datasets ---------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [True, False])
def test_cifar10_from_pickle_folder(tmp_path, nested):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    root = tmp_path if nested else folder
    train = data.load_dataset("cifar10", root=root, train=True)
    test = data.load_dataset("cifar10", root=root, train=False)
    assert (len(train), len(test)) == (20, 4)
    x, y = test[1]
    assert x.shape == (3, 32, 32) and isinstance(y, int)
    with (folder / "test_batch").open("rb") as f:
        raw = pickle.load(f)[b"data"][1].reshape(3, 32, 32) / 255.0
    mean = torch.tensor(datasets.CIFAR_MEAN).view(3, 1, 1)
    std = torch.tensor(datasets.CIFAR_STD).view(3, 1, 1)
    torch.testing.assert_close(x, (torch.from_numpy(raw).float() - mean) / std)


def test_cifar10_missing_batch_names_layout(tmp_path):
    write_cifar(tmp_path, names=["data_batch_1", "data_batch_2", "test_batch"])
    with pytest.raises(ValueError, match="cifar-10-batches-py.*data_batch_3") as info:
        data.load_dataset("cifar10", root=tmp_path, train=True)
    assert "\n" not in str(info.value)


def test_cifar10_missing_folder_and_root(tmp_path, monkeypatch):
    """A missing CIFAR-10 is fetched on first use (tests/test_downloads.py); offline, as the
    suite runs, the line names what to place where; without a root, the cache's folder."""
    with pytest.raises(ValueError, match="downloads are off.*cifar-10-batches-py.*nowhere"):
        data.load_dataset("cifar10", root=tmp_path / "nowhere", train=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=f"in {tmp_path / 'cache' / 'smoothstab' / 'cifar10'}"):
        data.load_dataset("cifar10", train=False)


def test_cifar10_malformed_batch(tmp_path):
    write_cifar(tmp_path)
    with (tmp_path / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, f)
    with pytest.raises(ValueError, match=r"\[N, 3072\]"):
        data.load_dataset("cifar10", root=tmp_path, train=False)
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cannot read"):
        data.load_dataset("cifar10", root=tmp_path, train=False)


def test_cifar10_pickle_runs_no_code(tmp_path):
    write_cifar(tmp_path)
    with (tmp_path / "test_batch").open("wb") as f:
        pickle.dump({b"data": os.getcwd, b"labels": []}, f)  # a global outside numpy
    with pytest.raises(ValueError, match="refusing"):
        data.load_dataset("cifar10", root=tmp_path, train=False)


def test_imagefolder_paper_transforms(tmp_path):
    write_imagefolder(tmp_path)
    train = data.load_dataset("imagefolder", root=tmp_path, train=True)
    val = data.load_dataset("imagefolder", root=tmp_path, train=False)
    assert train.classes == ["cat", "dog"] and len(val) == 4
    assert train[0][0].shape == (3, 224, 224) and val[3][0].shape == (3, 224, 224)
    # a uniform image stays uniform under Resize + CenterCrop: its normalised value is known
    x, y = val[3]
    mean, std = datasets.IMAGENET_MEAN[0], datasets.IMAGENET_STD[0]
    assert y == 1
    torch.testing.assert_close(x[0].mean().item(), (50 / 255 - mean) / std, atol=1e-3, rtol=0)


def test_imagefolder_of_your_own_size_stats_and_channels(tmp_path):
    """[train] image_size, mean, std, channels describe the folder: grey 16x16 crops here."""
    from smoothstab.experiments.config.tables import TrainConfig

    write_imagefolder(tmp_path)
    cfg = TrainConfig(dataset="imagefolder", image_size=16, mean=(0.5,), std=(0.25,), channels=1)
    info = datasets.dataset_info(cfg)
    assert (info.image_size, info.in_channels, info.mean, info.std) == (16, 1, (0.5,), (0.25,))
    assert info.x_range == pytest.approx(4.0)
    assert datasets.dataset_info(cfg.to_dict()) == info  # a checkpoint's config dict
    train = data.load_dataset("imagefolder", root=tmp_path, train=True, info=info)
    val = data.load_dataset("imagefolder", root=tmp_path, train=False, info=info)
    assert train[0][0].shape == (1, 16, 16) and val[3][0].shape == (1, 16, 16)
    grey = 50 / 255  # (50, 50, 50) in L mode
    torch.testing.assert_close(val[3][0].mean().item(), (grey - 0.5) / 0.25, atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dataset": "digits", "image_size": 16}, "image_size: only with dataset = 'imagefolder'"),
        ({"dataset": "imagefolder", "channels": 1}, r"mean: expected 1 values .*0.485"),
        ({"dataset": "imagefolder", "mean": (0.5, 0.5)}, "mean: expected 3 values"),
        ({"dataset": "imagefolder", "std": (1.0, 0.0, 1.0)}, "std: expected numbers > 0"),
        ({"dataset": "imagefolder", "image_size": 0}, "image_size"),
    ],
)
def test_imagefolder_keys_are_checked(kwargs, match):
    from smoothstab.experiments.config.tables import TrainConfig

    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_imagenet_wants_1000_classes(tmp_path):
    write_imagefolder(tmp_path)
    with pytest.raises(ValueError, match="1000 class folders"):
        data.load_dataset("imagenet", root=tmp_path, train=False)


def test_imagefolder_missing_split_names_layout(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"ImageFolder tree ROOT/\{train,val\}") as info:
        data.load_dataset("imagefolder", root=tmp_path, train=False)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="ImageFolder"):  # a class folder without images
        data.load_dataset("imagefolder", root=tmp_path, train=True)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="expected one of digits, shapes"):
        data.load_dataset("mnist", train=True)


def test_epoch_seeded_augmentation(tmp_path):
    write_cifar(tmp_path)
    seeded = data.EpochSeeded(data.load_dataset("cifar10", root=tmp_path, train=True), seed=5)
    torch.manual_seed(0)
    epoch0 = [seeded[i][0] for i in range(8)]
    torch.manual_seed(123)  # the global RNG does not matter ...
    before = torch.get_rng_state()
    assert all(torch.equal(seeded[i][0], epoch0[i]) for i in range(8))
    assert torch.equal(torch.get_rng_state(), before)  # ... and is left as it was
    seeded.set_epoch(1)
    assert any(not torch.equal(seeded[i][0], epoch0[i]) for i in range(8))


# --- noise level, splits, test subset -----------------------------------------------------------


def test_input_range_imagenet():
    lo, hi = datasets.input_range(datasets.IMAGENET_MEAN, datasets.IMAGENET_STD)
    assert hi - lo == pytest.approx(4.757904, abs=1e-5)
    assert datasets.dataset_info("imagenet").x_range == pytest.approx(4.757904, abs=1e-5)
    assert datasets.input_range((0.0,), (1.0,)) == (0.0, 1.0)


def test_disjoint_splits():
    parts = data.disjoint_splits(1000, 4, 250, seed=1)
    assert [len(p) for p in parts] == [250] * 4
    assert len(set().union(*map(set, parts))) == 1000
    assert parts == data.disjoint_splits(1000, 4, 250, seed=1)
    assert parts != data.disjoint_splits(1000, 4, 250, seed=2)
    assert [len(p) for p in data.disjoint_splits(10, 3)] == [3, 3, 3]


def test_disjoint_splits_never_wrap_around():
    # the paper's code let a 4th part of 500k wrap around and overlap; here it is an error
    with pytest.raises(ValueError, match="k \\* size <= 100"):
        data.disjoint_splits(100, 4, 30, seed=0)


def test_splits_saved_and_loaded(tmp_path):
    parts = data.disjoint_splits(50, 2, 20, seed=0)
    path = data.save_splits(tmp_path / "splits.json", parts)
    assert data.load_splits(path) == parts
    path.write_text("[[1, 2], [2, 3]]")
    with pytest.raises(ValueError, match="part 1 repeats"):
        data.load_splits(path)
    path.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="list of index lists"):
        data.load_splits(path)


def test_test_indices_prefix():
    big = data.test_indices(1000, 512, seed=10007)
    assert data.test_indices(1000, 32, seed=10007) == big[:32]
    assert len(set(big)) == 512 and max(big) < 1000
    with pytest.raises(ValueError):
        data.test_indices(10, 11)


def test_derive_seed_mixes():
    seeds = {data.derive_seed(s, e, i) for s in range(3) for e in range(3) for i in range(3)}
    assert len(seeds) == 27 and all(0 <= s < 2**63 for s in seeds)

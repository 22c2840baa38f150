"""Permuted training labels for the data-randomisation check of Adebayo et al. (2018).

A model trained with the same recipe on the same images, but with their labels shuffled across
images, can only memorise: a map that explains what a model learned from its labels should
change when the labels carry no information. The shuffle is one seeded permutation of the
training set's labels, :func:`permuted_labels`, named by :func:`permutation_name`; it moves
labels between images, so every class keeps exactly its count (only which image has which
label changes). :func:`with_permuted_labels` serves a dataset's images with those labels
(in memory still, where the dataset was, so training takes the same path as the real model's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from smoothstab.experiments.models.data import ArrayDataset, derive_seed

# Mixed into the seed so that the labels' permutation is not the splits' (same seed, other use).
PERMUTATION_TAG = 0x1ABE15


def permutation_name(seed: int) -> str:
    """The permutation's name in file names and tables: ``labels-permuted-{seed}``."""
    return f"labels-permuted-{seed}"


def permuted_labels(labels: Sequence[int] | torch.Tensor, seed: int) -> torch.Tensor:
    """``labels[perm]``: image ``i`` gets the label of image ``perm[i]``, ``perm`` a uniform
    random permutation of ``range(n)`` drawn from ``seed`` alone (int64, ``[n]``).

    About ``1 - sum_c p_c^2`` of the images get another class than their own (90% for 10
    balanced classes); class counts are unchanged."""
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.dtype.is_floating_point or len(labels) < 2:
        raise ValueError(
            f"labels: expected at least 2 integer class labels [n], got shape "
            f"{tuple(labels.shape)} of {labels.dtype}"
        )
    gen = torch.Generator().manual_seed(derive_seed(seed, PERMUTATION_TAG))
    return labels.long()[torch.randperm(len(labels), generator=gen)]


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """Every label of ``dataset`` (``[n]``), read without loading its images where it keeps
    them apart (``targets``, a ``TensorDataset``'s second tensor)."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].long()
    if hasattr(dataset, "targets"):
        return torch.as_tensor(list(dataset.targets)).long()
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])


class PermutedLabels(Dataset):
    """``dataset``'s images with the labels of :func:`permuted_labels` (``seed``); ``classes``
    and its length as ``dataset``'s."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed
        self.labels = permuted_labels(dataset_labels(dataset), seed)
        self.classes = getattr(dataset, "classes", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.dataset[i][0], int(self.labels[i])


def with_permuted_labels(dataset: Dataset, seed: int) -> Dataset:
    """``dataset`` with :func:`permuted_labels`: an in-memory dataset stays one (a
    :class:`~smoothstab.experiments.models.data.ArrayDataset` over the same images), any other is
    :class:`PermutedLabels`."""
    if isinstance(dataset, TensorDataset):
        images = dataset.tensors[0]
        labels = permuted_labels(dataset.tensors[1], seed)
        return ArrayDataset(
            images, labels, getattr(dataset, "classes", range(int(labels.max()) + 1))
        )
    return PermutedLabels(dataset, seed)

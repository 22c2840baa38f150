"""The experiment layer: data, models, training, and (later) sweeps, figures and reports.

It imports the core (:mod:`smoothstab`); the core never imports it. Stages talk through files
in a run directory, written atomically, so a killed run resumes where it stopped.
"""

from smoothstab.experiments.data import (
    DatasetInfo,
    dataset_info,
    derive_seed,
    disjoint_splits,
    input_range,
    load_dataset,
    load_splits,
    r_to_sigma,
    save_splits,
    sigma_to_r,
    test_indices,
)
from smoothstab.experiments.models import build_model, cam_layer
from smoothstab.experiments.train import PRESETS, TrainConfig, load_trained, train_model, train_run

__all__ = [
    "PRESETS",
    "DatasetInfo",
    "TrainConfig",
    "build_model",
    "cam_layer",
    "dataset_info",
    "derive_seed",
    "disjoint_splits",
    "input_range",
    "load_dataset",
    "load_splits",
    "load_trained",
    "r_to_sigma",
    "save_splits",
    "sigma_to_r",
    "test_indices",
    "train_model",
    "train_run",
]

"""The config of ``smoothstab compare``: checkpoints, a model and images in, a config out.

``compare`` is ``run`` on a config built from its arguments: the preset ``own_checkpoints``
(given checkpoints on a folder of test images, sized for a CPU) with its models and data replaced
by what the command names, then ``--set`` overrides, then the checks every config gets
(:func:`~smoothstab.experiments.config.load.config_from_table`). What a folder of images holds
(count, size, grey or colour, class folders) is read by the caller and handed in as
:class:`Images`, so that this module reads nothing but the preset.

A checkpoint is one of:

* a weights file or a torchvision weight name (``IMAGENET1K_V2``, ``DEFAULT``), of the
  architecture ``--model`` names (``python:module:factory``, ``resnet50``, ``timm:NAME``);
* ``timm:NAME``: timm's pretrained weights of that name (``resnet18.a1_in1k``);
* ``hf:ORG/NAME`` or ``hf:FOLDER``, ``timm:hf-hub:ORG/NAME``: a model with its own weights.

Models of one architecture are setting DR, of several DA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from smoothstab.experiments.config.load import config_from_table, config_path
from smoothstab.experiments.config.parse import ConfigError, load_toml
from smoothstab.experiments.config.tables import ExperimentConfig

PRESET = "own_checkpoints"


@dataclass(frozen=True)
class Images:
    """A folder of test images as the caller found it."""

    root: str
    count: int
    size: tuple[int, int] | None  # (width, height) shared by all, else None
    grey: bool
    class_folders: bool
    labels: str | None = None  # a CSV of file,label


def spec_of(checkpoint: str, model: str | None, cam_layer: str | None) -> dict:
    """The ``[[models.specs]]`` entry of one checkpoint argument."""
    if checkpoint.startswith(("timm:", "hf:")):
        pretrained = checkpoint.startswith("timm:") and not checkpoint.startswith("timm:hf-hub:")
        spec = {"name": checkpoint, "label": checkpoint.split(":", 1)[1]}
        if pretrained:
            spec["weights"] = "pretrained"
    else:
        if model is None:
            raise ConfigError(
                f"--model: {checkpoint} is a weights file or a torchvision weight name; give "
                "--model, the architecture it fits (python:module:factory, a torchvision name "
                "such as resnet50, or timm:NAME)"
            )
        path = Path(checkpoint)
        label = path.stem if path.suffix else checkpoint
        spec = {"name": model, "weights": checkpoint, "label": label}
    if cam_layer:
        spec["cam_layer"] = cam_layer
    return spec


def compare_table(
    checkpoints: Sequence[str],
    *,
    model: str | None = None,
    images: Images | None = None,
    dataset: str | None = None,
    cam_layer: str | None = None,
    name: str = "compare",
    cuda: bool = False,
) -> dict:
    """The TOML table of a comparison: the preset's, with these models and data."""
    if len(checkpoints) < 2:
        raise ConfigError(
            f"checkpoints: expected two or more to compare, got {len(checkpoints)}; give "
            "each checkpoint (a weights file, a torchvision weight name, timm:NAME or hf:NAME)"
        )
    if (images is None) == (dataset is None):
        raise ConfigError("--images: expected a folder of images, or --dataset NAME (one)")
    specs = [spec_of(c, model, cam_layer) for c in checkpoints]
    labels = [s["label"] for s in specs]
    for spec in specs if len(set(labels)) < len(labels) else ():
        spec["label"] = spec.get("weights", spec["name"])  # the whole argument
    table = load_toml(config_path(PRESET))
    table["name"] = name
    archs = {s["name"] for s in specs}
    table["models"] = {"setting": "DR" if len(archs) == 1 else "DA", "specs": specs}
    attribution = table["attribution"]
    if cuda:
        attribution["device"] = "cuda"
    if dataset is not None:
        table["train"] = {"dataset": dataset}
        attribution["target"] = "label"
        return table
    train = {"dataset": "images", "root": images.root}
    if images.labels is not None:
        train["labels"] = images.labels
    if images.size is not None:  # resized to the shorter side and centre-cropped: all of it
        train["image_size"] = min(images.size)
    if images.grey:
        train["channels"] = 1
    table["train"] = train
    if images.labels is not None or images.class_folders:
        attribution["target"] = "label"
    n = min(attribution["n_images"], images.count)
    attribution["n_images"] = attribution["image_batch"] = n
    return table


def compare_config(table: dict, overrides: Sequence[str]) -> ExperimentConfig:
    """The checked config of a comparison's table, with ``--set`` overrides. Grey images need
    the normalisation the model was trained with (ImageNet's is for colour): their
    ``train.mean`` and ``train.std`` overrides go into the table with the one channel (one at
    a time they would not fit it)."""
    import tomllib

    train = table["train"]
    if train.get("channels") == 1:
        given = {o.partition("=")[0].strip(): o.partition("=")[2] for o in overrides}
        if "train.channels" not in given:
            if not {"train.mean", "train.std"} <= set(given):
                raise ConfigError(
                    f"train.mean: the images in {train['root']} are grey (one channel); give "
                    "the normalisation your model was trained with, e.g. --set "
                    "train.mean=[0.5] --set train.std=[0.25] (or --set train.channels=3 to "
                    "read them as RGB)"
                )
            for key in ("mean", "std"):
                try:
                    train[key] = tomllib.loads(f"v = {given[f'train.{key}']}")["v"]
                except tomllib.TOMLDecodeError:
                    raise ConfigError(
                        f"train.{key}: expected a list of numbers, got {given[f'train.{key}']!r}"
                    ) from None
            overrides = [
                o
                for o in overrides
                if o.partition("=")[0].strip() not in ("train.mean", "train.std")
            ]
    return config_from_table(table, config_path(PRESET), overrides)

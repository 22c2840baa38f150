"""Models the package does not ship, by name: ``timm:NAME``, ``hf:LOCAL_DIR`` and
``python:package.module:factory`` (:func:`~smoothstab.experiments.models.architectures.build_model`
dispatches here by prefix).

Nothing is downloaded: timm models are built without pretrained weights (a weights file is
loaded afterwards like any other), Hugging Face models are read from a local folder only. The
optional libraries are imported on use; a missing one is one line naming the extra to install.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from torch import nn

from smoothstab.experiments.io.files import first_line


def _extra(module: str, extra: str, name: str) -> Any:
    """``import module``, or one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(
            f"model: {name} needs {module}; install the extra: pip install 'smoothstab[{extra}]'"
        ) from None


def _timm(name: str, num_classes: int, in_channels: int) -> nn.Module:
    timm = _extra("timm", "timm", f"timm:{name}")
    try:
        return timm.create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=in_channels
        )
    except RuntimeError as e:
        if "Unknown model" not in str(e):
            raise
        raise ValueError(
            f"model: timm has no model {name!r} (timm.list_models() names them)"
        ) from None


def _hf(folder: str, num_classes: int, in_channels: int) -> nn.Module:
    transformers = _extra("transformers", "hf", f"hf:{folder}")
    if not (Path(folder) / "config.json").is_file():
        raise ValueError(
            f"model: hf:{folder} expected a local Hugging Face model folder with config.json "
            f"(save_pretrained's output), found nothing at {Path(folder) / 'config.json'}"
        )
    auto, bars = transformers.AutoModelForImageClassification, transformers.utils.logging
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()  # a local folder: no download to watch, once per stage
    try:
        model = auto.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"model: cannot load hf:{folder} ({first_line(e)})") from None
    finally:
        if shown:
            bars.enable_progress_bar()
    labels, channels = model.config.num_labels, getattr(model.config, "num_channels", in_channels)
    if (labels, channels) != (num_classes, in_channels):
        raise ValueError(
            f"model: hf:{folder} has {labels} labels and {channels} input channels, the data "
            f"{num_classes} classes and {in_channels} channels"
        )
    return model


def _python(spec: str, num_classes: int, in_channels: int) -> nn.Module:
    module_name, _, attr = spec.rpartition(":")
    where = f"python:{spec}"
    if not module_name or not attr:
        raise ValueError(f"model: expected python:package.module:factory, got {where!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        raise ValueError(f"model: {where}: cannot import {module_name} ({first_line(e)})") from None
    except AttributeError:
        raise ValueError(f"model: {where}: {module_name} has no {attr}") from None
    params = inspect.signature(factory).parameters
    given = {"num_classes": num_classes, "in_channels": in_channels}
    model = factory(**{k: v for k, v in given.items() if k in params})
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: {where} returned {type(model).__name__}, not an nn.Module")
    return model


EXTERNAL = {"timm": _timm, "hf": _hf, "python": _python}

"""Models of the experiments: a small CNN, CIFAR-style ResNets, torchvision by name, and any
other model as ``timm:NAME``, ``hf:LOCAL_DIR_OR_ORG/NAME`` or ``python:package.module:factory``.

Weights files are read with ``torch.load(weights_only=True)`` (no code runs): a path to a state
dict (also the paper's DataParallel checkpoints, whose keys start with ``module.``, and dicts
holding it under ``"state_dict"`` or ``"model"``), a torchvision weight name such as
``IMAGENET1K_V2`` (the file in the torch hub cache, fetched there on first use and checked by
its hash, :mod:`~smoothstab.experiments.models.download`), or ``"pretrained"`` for a ``timm:``
model (timm's pretrained weights of that name, fetched the same way). :func:`cam_layer` names
the Grad-CAM layer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from smoothstab.camlayers import known_layer, last_convolution, model_kind
from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.io.files import (
    check_regular,
    first_line,
    special_kind,
    torch_format_problem,
)
from smoothstab.experiments.models import download
from smoothstab.experiments.models.data import derive_seed, seed_torch
from smoothstab.experiments.models.external import EXTERNAL

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import ExperimentConfig, ModelSpec

OUR_MODELS = ("small_cnn", "resnet18_cifar", "resnet34_cifar")


class SmallCNN(nn.Module):
    """Four 3x3 conv + ReLU blocks (the second with stride 2), global average pool, linear.

    No BatchNorm, downsampling by a strided conv: a plain chain of linear maps and ReLUs, as
    the paper's bounds assume. The receptive field is 13 pixels; ``features.3``, the last conv
    block, is the Grad-CAM layer (half the input's resolution).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        widths = (in_channels, width, 2 * width, 2 * width, 2 * width)
        self.features = nn.Sequential(
            *(
                nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=1), nn.ReLU())
                for cin, cout, stride in zip(widths, widths[1:], (1, 2, 1, 1), strict=False)
            )
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)
        for m in self.modules():  # He init: without BatchNorm, torch's default starts too slowly
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut (He et al. 2016)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: a 3x3 stride-1 stem and no max-pool, then four stages of
    BasicBlocks at widths 64-512 (strides 1, 2, 2, 2), global average pool, linear."""

    def __init__(self, blocks: tuple[int, ...], in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        cin, stages = 64, []
        for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
            layers = []
            for j in range(n):
                layers.append(BasicBlock(cin, width, 2 if i > 0 and j == 0 else 1))
                cin = width
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def build_model(
    name: str,
    *,
    num_classes: int | None,
    in_channels: int = 3,
    weights: str | None = None,
    fetch: bool = True,
) -> nn.Module:
    """A model by name: ``small_cnn``, ``resnet18_cifar``, ``resnet34_cifar``, any torchvision
    classification model (``resnet50``, ``swin_t``, ``convnext_tiny``, ...), or

    * ``timm:NAME``: ``timm.create_model(NAME)`` (the ``timm`` extra), without weights unless
      ``weights = "pretrained"``; ``timm:hf-hub:ORG/NAME``: the hub's model, its weights
      included;
    * ``hf:LOCAL_DIR`` or ``hf:ORG/NAME``: a Hugging Face image classifier saved in a local
      folder or on the hub, read with ``from_pretrained(..., local_files_only=True)`` (the
      ``hf`` extra), weights included;
    * ``python:package.module:factory``: ``factory()`` returning an ``nn.Module``, given
      ``num_classes=`` and ``in_channels=`` when its signature takes them.

    Args:
        num_classes: the outputs; ``None`` leaves them to the model (a factory's default, a
            pretrained model's own), where the data do not say.
        weights: ``None`` (random init; for ``hf:`` the folder's), a local state-dict file, a
            torchvision weight name (``IMAGENET1K_V1``, ``DEFAULT``), or ``"pretrained"`` for
            ``timm:NAME``; names are fetched into their caches on first use.
        fetch: ``False``: weights that are not local yet are not fetched
            (:class:`NotFetched`); what ``plan`` does.
    """
    kind, _, rest = name.partition(":") if ":" in name else ("", "", name)
    if kind == "timm" and weights == "pretrained":
        pretrained = _pretrained(rest, fetch)
        model = EXTERNAL["timm"](rest, num_classes, in_channels, pretrained=pretrained)
        weights = None
    elif kind in EXTERNAL:
        model = EXTERNAL[kind](rest, num_classes, in_channels)
    elif name in OUR_MODELS:
        if num_classes is None:
            raise ValueError(
                f"num_classes: {name} needs a number of classes; give train.num_classes"
            )
        if name == "small_cnn":
            model = SmallCNN(in_channels, num_classes)
        else:
            blocks = (2, 2, 2, 2) if name == "resnet18_cifar" else (3, 4, 6, 3)
            model = CifarResNet(blocks, in_channels, num_classes)
    else:
        model = _torchvision(name, num_classes, in_channels)
    if weights is not None:
        load_weights(model, resolve_weights(name, weights, fetch=fetch))
    return model


class NotFetched(ValueError):
    """Weights named but not in their cache yet, asked for with ``fetch=False``."""


def _pretrained(name: str, fetch: bool) -> Path:
    if not fetch:
        raise NotFetched(f"weights: timm:{name} pretrained (fetched on first use)")
    return download.timm_pretrained(name)


def given_model(
    cfg: ExperimentConfig, k: int, spec: ModelSpec, classes: int | None, *, fetch: bool = True
) -> nn.Module:
    """The model of ``spec``, the ``k``-th given one; without weights a random init seeded by
    ``(train.seed, k)`` (the same on every stage and rank; the global generator is left alone).
    The spec's ``cam_layer``, if any, is set on the model as its Grad-CAM layer. ``fetch``: as
    for :func:`build_model`."""
    info = dataset_info(cfg.train)
    with torch.random.fork_rng(devices=[]):
        seed_torch(derive_seed(cfg.train.seed, k))
        model = build_model(
            spec.name,
            num_classes=classes,
            in_channels=info.in_channels,
            weights=spec.weights,
            fetch=fetch,
        )
    if spec.cam_layer:
        model.cam_layer = spec.cam_layer  # what models.cam_layer reads first
    return model.eval()


def _torchvision(name: str, num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ValueError(
            f"model: expected one of {', '.join(OUR_MODELS)}, a torchvision classification "
            f"model such as resnet50, swin_t, convnext_tiny, or timm:NAME, hf:LOCAL_DIR, "
            f"python:package.module:factory; got {name!r}"
        )
    if in_channels != 3:
        raise ValueError(f"model: torchvision's {name} takes 3 input channels, got {in_channels}")
    classes = {} if num_classes is None else {"num_classes": num_classes}
    return torchvision.models.get_model(name, weights=None, **classes)


def resolve_weights(name: str, weights: str, *, fetch: bool = True) -> Path:
    """The local file for ``weights``: the path itself if it is a file, else the hub-cache file
    of torchvision's weight enum entry (``IMAGENET1K_V2`` or ``ResNet50_Weights.IMAGENET1K_V2``),
    fetched there and checked on first use (``fetch=False``: :class:`NotFetched` instead).
    """
    if Path(weights).is_file():
        check_regular(weights)
        return Path(weights)
    if Path(weights).exists():  # a directory, a FIFO, a socket, a device
        kind = "a directory" if Path(weights).is_dir() else special_kind(os.stat(weights).st_mode)
        raise ValueError(f"weights: expected a state-dict file, {weights} is {kind or 'no file'}")
    suffix = Path(weights).suffix.lower()
    looks_like_path = any(s in weights for s in "/\\") or suffix in (".pt", ".pth", ".tar", ".ckpt")
    if looks_like_path or name in OUR_MODELS or ":" in name:
        raise ValueError(f"weights: expected a state-dict file, found nothing at {weights}")
    import torchvision

    try:
        entry = torchvision.models.get_model_weights(name)[weights.rsplit(".", 1)[-1]]
    except (KeyError, ValueError):
        raise ValueError(
            f"weights: expected a file or a torchvision weight name of {name}, got {weights!r}"
        ) from None
    remote = download.torchvision_weights(name, entry)
    if not fetch and not remote.dest.is_file():
        raise NotFetched(f"{remote.what} (fetched on first use into {remote.dest})")
    return download.fetch(remote)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state dict from ``path`` into ``model`` (strict), without running pickled code."""
    check_regular(path)
    try:
        not_torch = torch_format_problem(path)
        if not_torch is not None:  # text, /etc/passwd: torch.load's own words say nothing
            raise ValueError(not_torch)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt file, code in the pickle, ...: one message
        raise ValueError(f"weights: cannot load {path} as a state dict ({first_line(e)})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise ValueError(
            f"weights: expected a state dict (parameter names -> tensors) in {path}, "
            f"got {type(obj).__name__}"
        )
    # nn.DataParallel checkpoints (the paper's) prefix every key with "module."
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        detail = (lines[1:] or lines or ["?"])[0]
        detail = detail if len(detail) <= 240 else detail[:237] + "..."
        raise ValueError(f"weights: {path} does not fit {type(model).__name__}: {detail}") from None
    return model


def cam_layer(model: nn.Module | str) -> str:
    """The dotted name of the Grad-CAM layer of a model or model name, as the core knows it
    (:func:`smoothstab.camlayers.known_layer`: a string attribute ``cam_layer`` on the model
    wins, how a ``python:`` factory tells the pipeline; else the architecture's entry of
    :data:`~smoothstab.camlayers.CAM_LAYERS`, e.g. ``layer4`` for ResNets). A name is built on
    the meta device (no memory) to ask."""
    if isinstance(model, str):
        try:
            with torch.device("meta"):  # no memory, no init cost: only the class matters
                model = build_model(model, num_classes=10)
        except NotImplementedError:  # a builder that computes on tensors (RegNet)
            model = build_model(model, num_classes=10)
    found = known_layer(model)
    if found is None:
        conv = last_convolution(model)
        hint = f" (its last convolution is {conv!r})" if conv else ""
        raise ValueError(
            f"cam_layer: no Grad-CAM layer known for {model_kind(model)}; name one{hint}: "
            "[[models.specs]] cam_layer = NAME in a config, --cam-layer NAME for compare, a "
            "cam_layer attribute on the model, or grad_cam(..., layer=NAME)"
        )
    return found

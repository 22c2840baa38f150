"""Which layer a CAM reads, when the caller does not say: the one owner of the default Grad-CAM
layers of the architectures smoothstab knows.

:func:`default_layer` answers for a model object: a string attribute ``cam_layer`` on the model
wins (how a model of your own names its layer), else the table :data:`CAM_LAYERS` of
``library.ClassName`` -> dotted names (the first that exists wins; ``-1`` is a module's last
child). The layers are the last convolutional stage (``layer4`` for ResNets) or, for a ViT, the
last block's first norm (the class token reads nothing its block computes after its attention).
Their outputs may be ``[B, C, h, w]``, ``[B, h, w, C]`` or tokens (:mod:`smoothstab.layouts`).
The experiment layer's ``cam_layer`` asks this module, also for a model given by name.
"""

from __future__ import annotations

import difflib

from torch import nn

CAM_LAYERS: dict[str, tuple[str, ...]] = {
    "smoothstab.SmallCNN": ("features.3",),
    "smoothstab.CifarResNet": ("layer4",),
    "torchvision.ResNet": ("layer4",),
    "torchvision.ConvNeXt": ("features.-1",),
    # Swin's stages output NHWC; its own `permute` module turns the normed last stage to NCHW.
    "torchvision.SwinTransformer": ("permute",),
    "torchvision.VisionTransformer": ("encoder.layers.-1.ln_1",),
    "torchvision.MaxVit": ("blocks.-1",),
    "torchvision.DenseNet": ("features",),
    "torchvision.VGG": ("features",),
    "torchvision.AlexNet": ("features",),
    "torchvision.SqueezeNet": ("features",),
    "torchvision.EfficientNet": ("features",),
    "torchvision.MobileNetV2": ("features",),
    "torchvision.MobileNetV3": ("features",),
    "torchvision.MNASNet": ("layers",),
    "torchvision.RegNet": ("trunk_output",),
    "torchvision.ShuffleNetV2": ("conv5",),
    "torchvision.GoogLeNet": ("inception5b",),
    "torchvision.Inception3": ("Mixed_7c",),
    "timm.ResNet": ("layer4",),
    "timm.ConvNeXt": ("stages.-1",),
    "timm.VisionTransformer": ("blocks.-1.norm1",),
    "timm.VisionTransformerDistilled": ("blocks.-1.norm1",),
    "timm.SwinTransformer": ("layers.-1",),
    "transformers.ViTForImageClassification": (
        "vit.layers.-1.layernorm_before",
        "vit.encoder.layer.-1.layernorm_before",
    ),
    "transformers.DeiTForImageClassification": (
        "deit.layers.-1.layernorm_before",
        "deit.encoder.layer.-1.layernorm_before",
    ),
    "transformers.SwinForImageClassification": ("swin.layernorm",),
    "transformers.ConvNextForImageClassification": ("convnext.encoder.stages.-1",),
}
"""The default CAM layer per architecture, ``library.ClassName`` -> candidate dotted names."""


def model_kind(model: nn.Module) -> str:
    """``library.ClassName`` of a model: ``torchvision.ResNet``, ``timm.ResNet``, ..."""
    cls = type(model)
    return f"{cls.__module__.split('.')[0]}.{cls.__name__}"


def known_layer(model: nn.Module) -> str | None:
    """The model's own ``cam_layer`` string attribute, else its architecture's entry of
    :data:`CAM_LAYERS` that exists in it, else ``None``."""
    own = getattr(model, "cam_layer", None)
    if isinstance(own, str) and own:
        return own
    for path in CAM_LAYERS.get(model_kind(model), ()):
        name = resolve_path(model, path)
        if name is not None:
            return name
    return None


def default_layer(model: nn.Module) -> str:
    """The dotted name of ``model``'s default CAM layer (:func:`known_layer`); for an
    architecture this module does not know, one ``ValueError`` line asking for ``layer=`` and
    naming the model's last convolutions, the usual choice."""
    found = known_layer(model)
    if found is not None:
        return found
    conv = last_convolution(model)
    hint = f", e.g. its last convolution {conv!r}" if conv else ""
    raise ValueError(
        f"layer: no default CAM layer known for {model_kind(model)}; pass layer= the dotted "
        f"name of a layer with a spatial map{hint} (or set model.cam_layer = NAME)"
    )


def last_convolution(model: nn.Module) -> str | None:
    """The dotted name of the model's last convolution (in registration order), the usual CAM
    layer of a CNN, or ``None``."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    return convs[-1] if convs else None


def resolve_path(model: nn.Module, path: str) -> str | None:
    """``path`` with each ``-1`` replaced by the name of that module's last child; ``None``
    when a part does not exist."""
    module, parts = model, []
    for part in path.split("."):
        children = dict(module.named_children())
        if part == "-1":
            part = next(reversed(children), None)
        if part is None or part not in children:
            return None
        module = children[part]
        parts.append(part)
    return ".".join(parts)


def closest_names(model: nn.Module, name: str, n: int = 3) -> list[str]:
    """Up to ``n`` submodule names of ``model`` nearest to ``name`` by spelling (difflib's
    ratio), closest first; the last children's names when none is close."""
    names = [m for m, _ in model.named_modules() if m]
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.6)
    return close or [m for m, _ in model.named_children()][-n:]

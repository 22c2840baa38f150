"""Any Captum attribution class as a smoothstab method (Captum is imported by the caller only)."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from smoothstab.checks import check_input, resolve_layer, warn_if_training
from smoothstab.methods import resolve_target
from smoothstab.types import Method, Target


def from_captum(attribution_class: type, **kwargs: Any) -> Method:
    """Wrap a Captum class, e.g. ``from_captum(LayerGradCam, layer="layer4")``, as a method.

    Keyword arguments that the class's constructor takes go to it (a ``layer`` may be a dotted
    name, resolved against the model); the rest go to ``.attribute``. The returned
    ``method(model, x, target)`` can be smoothed and evaluated like the built-in ones.
    """
    if not (
        inspect.isclass(attribution_class)
        and callable(getattr(attribution_class, "attribute", None))
    ):
        raise TypeError(
            "attribution_class: expected a Captum attribution class such as "
            f"captum.attr.Saliency (a class with .attribute), got {attribution_class!r}"
        )
    params = inspect.signature(attribution_class.__init__).parameters
    init_kw = {k: v for k, v in kwargs.items() if k in params and k != "self"}
    attribute_kw = {k: v for k, v in kwargs.items() if k not in init_kw}

    def method(model: nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        check_input(x)
        warn_if_training(model)
        target = resolve_target(model, x, target)
        ctor = {
            k: resolve_layer(model, v) if k == "layer" and isinstance(v, str) else v
            for k, v in init_kw.items()
        }
        with torch.enable_grad():
            out = attribution_class(model, **ctor).attribute(
                x.detach(), target=target, **attribute_kw
            )
        return out.detach()

    method.__name__ = f"captum_{attribution_class.__name__}"
    return method

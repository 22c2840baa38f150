"""Bridges to other libraries, which only the caller imports: any Captum attribution class as a
smoothstab method (:func:`from_captum`), and any smoothstab method as a Quantus
``explain_func`` (:func:`to_quantus`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
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


def to_quantus(method: Method) -> Callable[..., np.ndarray]:
    """A Quantus ``explain_func`` for any method, smoothed or not::

        explain = ss.to_quantus(ss.smooth(ss.grad, sigma=0.1, n_samples=32, seed=0))
        scores = quantus.MaxSensitivity(nr_samples=8)(
            model=model, x_batch=x, y_batch=y, explain_func=explain, device="cpu")

    ``explain(model, inputs, targets, **kwargs) -> np.ndarray``: ``inputs`` ``[B, C, H, W]``
    and ``targets`` ``[B]`` as NumPy arrays go to the model's device (``device=`` where Quantus
    passes it) and dtype; the maps come back as a NumPy array (``[B, C, H, W]`` for gradient
    maps, ``[B, 1, H, W]`` for CAMs). Other keyword arguments Quantus passes are ignored.
    """
    if not callable(method):
        raise ValueError(f"method: expected a callable method(model, x, target), got {method!r}")

    def explain(model: nn.Module, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
        param = next(model.parameters(), None)
        device = kwargs.get("device") or (param.device if param is not None else "cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else None
        x = torch.as_tensor(np.asarray(inputs), device=device, dtype=dtype or torch.float32)
        target = torch.as_tensor(np.asarray(targets), device=device)
        target = target.reshape(-1) if target.ndim > 1 else target  # [B, 1] or [B] or one
        return method(model, x, target).detach().cpu().numpy()

    name = getattr(getattr(method, "func", method), "__name__", type(method).__name__)
    explain.__name__ = f"quantus_{name}"
    return explain

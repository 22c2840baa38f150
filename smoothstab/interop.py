"""Bridges to other libraries, which only the caller imports: any Captum attribution class as a
smoothstab method (:func:`from_captum`), and any smoothstab method as a Quantus
``explain_func`` (:func:`to_quantus`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from smoothstab.checks import check_batch, resolve_layer, warn_if_training
from smoothstab.methods import resolve_target
from smoothstab.types import Method, Target


def from_captum(attribution_class: type, *, upsample: bool | None = None, **kwargs: Any) -> Method:
    """Wrap a Captum class, e.g. ``from_captum(LayerGradCam, layer="layer4")``, as a method.

    Keyword arguments that the class's constructor takes go to it (a ``layer`` may be a dotted
    name, resolved against the model); the rest go to ``.attribute``. The returned
    ``method(model, x, target)`` can be smoothed and evaluated like the built-in ones.

    ``upsample``: bring a spatial attribution ``[B, C, h, w]`` smaller than the input to the
    input's size, bilinearly (``align_corners=False``, as :func:`~smoothstab.grad_cam` does),
    so that a layer method's map lies over its image and beside smoothstab's CAMs. ``None``
    (the default): on for Captum's layer methods (``LayerGradCam``, ``LayerConductance``, ...,
    the subclasses of ``LayerAttribution``), off otherwise. Other shapes (tokens) are returned
    as Captum gives them. The input is handed to Captum already requiring gradients, so Captum
    does not warn that it had to set it.
    """
    if not (
        inspect.isclass(attribution_class)
        and callable(getattr(attribution_class, "attribute", None))
    ):
        raise TypeError(
            "attribution_class: expected a Captum attribution class such as "
            f"captum.attr.Saliency (a class with .attribute), got {attribution_class!r}"
        )
    if upsample is not None and not isinstance(upsample, bool):
        raise TypeError(f"upsample: expected True, False or None, got {upsample!r}")
    is_layer = any(c.__name__ == "LayerAttribution" for c in attribution_class.__mro__)
    upsample = is_layer if upsample is None else upsample
    params = inspect.signature(attribution_class.__init__).parameters
    init_kw = {k: v for k, v in kwargs.items() if k in params and k != "self"}
    attribute_kw = {k: v for k, v in kwargs.items() if k not in init_kw}

    def method(model: nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        check_batch(x)
        warn_if_training(model)
        target = resolve_target(model, x, target)
        ctor = {
            k: resolve_layer(model, v) if k == "layer" and isinstance(v, str) else v
            for k, v in init_kw.items()
        }
        with torch.enable_grad():
            out = attribution_class(model, **ctor).attribute(
                x.detach().requires_grad_(True), target=target, **attribute_kw
            )
        out = out.detach()
        if upsample and out.ndim == 4 and x.ndim == 4 and out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

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

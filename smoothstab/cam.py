"""Class activation maps at a named layer: Grad-CAM and Grad-CAM++.

Both are ``ReLU(sum_k w_k A_k)`` for the activations ``A`` of a layer and differ only in the
channel weights ``w``: a *weighting* ``weighting(A, dscore/dA) -> [B, K, 1, 1]``, one small public
function each (:func:`grad_cam_weights`, :func:`grad_cam_pp_weights`). A new CAM variant is one
such function passed as ``grad_cam(..., weighting=...)``. Maps are ``[B, 1, H, W]``: ReLU'd,
upsampled bilinearly (``align_corners=False``) to the input size, and not min-max normalised
unless asked: ``normalize="minmax"`` (or :func:`minmax_normalize` on a map) scales each map to
[0, 1] as pytorch-grad-cam does by default. Layers whose output is channels-last or tokens
(Swin, ViT) are brought to ``[B, C, h, w]`` by :mod:`smoothstab.layouts`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from smoothstab.camlayers import default_layer
from smoothstab.checks import check_batch, check_choice, resolve_layer, warn_if_training
from smoothstab.layouts import Reshape, layer_tensor, to_channels_first
from smoothstab.methods import logits, resolve_target, select
from smoothstab.renames import module_getattr
from smoothstab.types import Target

Weighting = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NORMALIZATIONS = ("none", "minmax")
MINMAX_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image: (cam - min) / (1e-7 + max(cam - min))


def activations_and_grads(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    layer: nn.Module,
    reshape: Reshape | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's activations ``A`` ``[B, C, h, w]`` and ``d(target logit)/dA``, after
    :func:`~smoothstab.layouts.to_channels_first`; the hook is removed on any exit."""
    seen: list[object] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(layer_tensor(out)))
    try:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)  # keeps A in the graph if weights are frozen
            score = select(logits(model, xg), target).sum()
            if not seen:
                raise ValueError(
                    f"layer: expected {type(layer).__name__} to run in the forward pass"
                )
            act = seen[-1]
            if not isinstance(act, torch.Tensor):
                raise ValueError(f"layer: expected a tensor output, got {type(act).__name__}")
            to_nchw = to_channels_first(act, tuple(x.shape[-2:]), model, reshape, layer)
            (g,) = torch.autograd.grad(score, act, allow_unused=True)
    finally:
        handle.remove()
    g = torch.zeros_like(act) if g is None else g
    act, g = to_nchw(act.detach()), to_nchw(g)
    if act.ndim != 4 or act.shape != g.shape:
        raise ValueError(f"reshape: expected [B, C, h, w], got {tuple(act.shape)}")
    if not g.any():
        warnings.warn(
            f"layer: the gradient of the score at {type(layer).__name__} is all zero, so every "
            "CAM there is zero; choose a layer the score depends on (in a ViT the last block's "
            "attention and second norm only feed patch tokens the class token no longer reads: "
            "take its first norm)",
            stacklevel=3,
        )
    return act, g


def grad_cam_weights(act: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, Eq. 1): spatial mean of the gradients, ``[B, K, 1, 1]``."""
    return g.mean(dim=(2, 3), keepdim=True)


def grad_cam_pp_weights(act: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018, Eq. 19, the closed form for an exponential score).

    ``alpha_ij = g^2 / (2 g^2 + sum_ab A_ab g^3)`` and ``w = sum_ij alpha_ij ReLU(g_ij)``;
    alpha is 0 where the gradient is 0.
    """
    g2 = g * g
    denom = 2 * g2 + act.sum(dim=(2, 3), keepdim=True) * g2 * g
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1), 0)
    return (alpha * g.clamp(min=0)).sum(dim=(2, 3), keepdim=True)


def minmax_normalize(cam: torch.Tensor) -> torch.Tensor:
    """Each map of ``cam`` ``[B, ...]`` scaled to [0, 1] as pytorch-grad-cam's
    ``scale_cam_image`` does: ``(cam - min) / (1e-7 + max(cam - min))``, min and max per map.

    pytorch-grad-cam applies it before and after upsampling; both are affine per map and
    bilinear upsampling keeps affine maps affine, so once after upsampling is the same map up to
    the 1e-7. An all-zero map stays zero.
    """
    flat = cam.flatten(1)
    low = flat.min(dim=1).values.view(-1, *[1] * (cam.ndim - 1))
    shifted = cam - low
    high = shifted.flatten(1).max(dim=1).values.view_as(low)
    return shifted / (MINMAX_EPS + high)


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: nn.Module | str | None = None,
    weighting: Weighting = grad_cam_weights,
    normalize: str = "none",
    reshape: Reshape | None = None,
) -> torch.Tensor:
    """A class activation map at ``layer`` (a module or its dotted name); ``[B, 1, H, W]``.

    ``layer=None``: the model's default (:func:`smoothstab.camlayers.default_layer`: its own
    ``cam_layer`` attribute, else the known layer of torchvision, timm and Hugging Face
    families such as ``layer4`` of a ResNet; any other model is asked for ``layer=``).
    ``weighting(A, g) -> [B, K, 1, 1]`` turns the layer's activations ``A`` and the gradients
    ``g`` of the target logit into channel weights; the default is Grad-CAM's. ``normalize``:
    ``none`` (the raw ReLU'd map) or ``minmax`` (each map to [0, 1] after upsampling,
    :func:`minmax_normalize`, as pytorch-grad-cam returns it). ``reshape``: the layer's
    output to ``[B, C, h, w]`` (default: inferred for channels-first, channels-last and token
    outputs, :mod:`smoothstab.layouts`).
    """
    check_choice(normalize, "normalize", NORMALIZATIONS)
    check_batch(x, rank=4)
    module = resolve_layer(model, default_layer(model) if layer is None else layer)
    warn_if_training(model)
    target = resolve_target(model, x, target)
    act, g = activations_and_grads(model, x, target, module, reshape)
    cam = torch.relu((weighting(act, g) * act).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return minmax_normalize(cam) if normalize == "minmax" else cam


def grad_cam_pp(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: nn.Module | str | None = None,
    normalize: str = "none",
    reshape: Reshape | None = None,
) -> torch.Tensor:
    """Grad-CAM++ at ``layer`` (a module or its dotted name; ``None``: the model's default);
    ``[B, 1, H, W]``; ``layer``, ``normalize`` and ``reshape`` as in :func:`grad_cam`."""
    return grad_cam(
        model,
        x,
        target,
        layer=layer,
        weighting=grad_cam_pp_weights,
        normalize=normalize,
        reshape=reshape,
    )


# Names up to version 0.1.0, which spelled the weightings apart from their methods.
_RENAMED = {"gradcam_weights": "grad_cam_weights", "gradcampp_weights": "grad_cam_pp_weights"}
# the old names of the weightings still work, with a warning, until version 1.0
__getattr__ = module_getattr("smoothstab", _RENAMED, globals(), __name__)

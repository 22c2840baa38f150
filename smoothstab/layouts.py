"""A CAM layer's output as channels-first activations ``[B, C, h, w]``.

Grad-CAM weighs channels of a spatial map; not every architecture's layers give one. A 4-D
output's layout is taken from what the layer is (:func:`module_layout`), and from its sizes only
where the layer does not say:

* ``[B, C, h, w]`` (PyTorch's convention) for a layer of image modules: a convolution, a 2-D
  norm or pooling, or a container of such modules and activations (a ResNet stage); a module
  that keeps its input's layout (an activation, dropout, ``Identity``) inside an
  ``nn.Sequential`` has the layout of the module before it. Whatever its sizes: a convolution
  with as many channels as rows is never refused;
* ``[B, h, w, C]`` for a ``Linear`` or ``LayerNorm`` acting on the last dim, a ``Permute`` to
  channels-last, or where only the middle two dims have the input's aspect ratio and fit in it
  (Swin stages, channels-last ConvNeXt blocks); a 4-D output of a layer that says nothing is
  ambiguous when its last two dims fit too (then the error asks for ``reshape=``), and
  channels-first otherwise (also for maps larger than the input);
* ``[B, N, C]`` tokens (ViT, DeiT, Swin in Hugging Face) drop their leading class,
  distillation or register tokens and fold the rest into an ``h x w`` grid. The grid has the
  input's aspect ratio; the patch size (``model.patch_size``, ``model.patch_embed.patch_size``
  or ``model.config.patch_size``) and the number of leading tokens (``model.num_prefix_tokens``)
  narrow it down where the model says them. When more than one grid fits, the error asks for
  ``reshape=``.

A ``reshape(A) -> [B, C, h, w]`` callable replaces all of this; it must only select and move
elements (as dropping tokens and permuting do), since it is applied to the gradients too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

Reshape = Callable[[torch.Tensor], torch.Tensor]
MAX_PREFIX = 8  # class + distillation + register tokens considered when the model does not say
ASK = "pass grad_cam(..., reshape=fn) with fn mapping the layer's output to [B, C, h, w]"


def layer_tensor(out: object) -> object:
    """The tensor of a layer's output: itself, or the first of a tuple/list/mapping (Hugging
    Face layers return tuples)."""
    if isinstance(out, tuple | list) and out:
        return out[0]
    if isinstance(out, Mapping) and out:
        return next(iter(out.values()))
    return out


def to_channels_first(
    act: torch.Tensor,
    size: tuple[int, int],
    model: nn.Module,
    reshape: Reshape | None = None,
    layer: nn.Module | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function that takes this output of ``layer`` (and its gradient, same shape) to
    ``[B, C, h, w]``, for an input of spatial ``size`` (H, W); a one-line ``ValueError`` when
    it cannot be told."""
    if reshape is not None:
        return reshape
    if act.ndim == 4:
        said = module_layout(model, layer) if layer is not None else None
        first, last = _fits(act.shape[2:], size), _fits(act.shape[1:3], size)
        if said is None and first and last:
            raise ValueError(
                f"layer: output {tuple(act.shape)} could be [B, C, h, w] or [B, h, w, C] for "
                f"input {size}; {ASK}"
            )
        if said == "last" or (said is None and last):
            return lambda t: t.permute(0, 3, 1, 2)
        return lambda t: t
    if act.ndim == 3:
        prefix, h, w = token_grid(act.shape[1], size, model)
        return lambda t: t[:, prefix:].unflatten(1, (h, w)).permute(0, 3, 1, 2)
    raise ValueError(
        f"layer: expected an output [B, C, h, w], [B, h, w, C] or tokens [B, N, C], "
        f"got {tuple(act.shape)}; {ASK}"
    )


# Modules whose 4-D output is [B, C, h, w] by what they compute; by base class, and by the
# name of a class from another library (timm's LayerNorm2d normalises channels-first).
_IMAGE = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.Dropout2d,
    nn.Upsample,
    nn.PixelShuffle,
    nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
    nn.modules.padding._ConstantPadNd,
)
# Modules that keep their input's layout: elementwise maps.
_KEEP = (nn.Identity, nn.modules.dropout._DropoutNd)
_KEEP_NAMES = ("DropPath", "StochasticDepth")
_NOT_ELEMENTWISE = (nn.MultiheadAttention, nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d)


def _kind(m: nn.Module) -> str | None:
    """``first``/``last`` for a leaf module whose output layout it computes, ``keep`` for an
    elementwise one, ``None`` for anything else."""
    name = type(m).__name__
    if isinstance(m, _IMAGE) or name.endswith("2d"):
        return "first"
    if isinstance(m, nn.Linear) or (isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1):
        return "last"
    dims = getattr(m, "dims", None)
    if name == "Permute" and list(dims or ()) in ([0, 3, 1, 2], [0, 2, 3, 1]):
        return "first" if list(dims) == [0, 3, 1, 2] else "last"
    if isinstance(m, _KEEP) or name in _KEEP_NAMES:
        return "keep"
    if type(m).__module__ == nn.modules.activation.__name__ and not isinstance(m, _NOT_ELEMENTWISE):
        return "keep"
    return None


def _own_layout(module: nn.Module) -> str | None:
    """``first``, ``last`` or ``keep`` where the module alone says; ``None`` otherwise. A
    container says ``first`` when all its leaves are image modules or elementwise and one at
    least is an image module."""
    leaves = [m for m in module.modules() if next(m.children(), None) is None]
    if leaves == [module]:
        return _kind(module)
    kinds = {_kind(m) for m in leaves}
    if kinds <= {"first", "keep"}:
        return "first" if "first" in kinds else "keep"
    return None


def module_layout(model: nn.Module, layer: nn.Module) -> str | None:
    """What the layer says of its 4-D output: ``"first"`` ([B, C, h, w]), ``"last"``
    ([B, h, w, C]) or ``None`` (its sizes must tell). An elementwise module takes the layout of
    the module before it in an ``nn.Sequential`` (its input), up through nested ones."""
    said = _own_layout(layer)
    if said != "keep":
        return said
    parents = {
        id(child): (parent, name)
        for parent in model.modules()
        for name, child in parent.named_children()
    }
    node = layer
    while id(node) in parents:
        parent, name = parents[id(node)]
        if not isinstance(parent, nn.Sequential):
            return None
        names = [n for n, _ in parent.named_children()]
        for before in reversed(names[: names.index(name)]):
            said = _own_layout(parent.get_submodule(before))
            if said != "keep":
                return said
        node = parent  # the Sequential's input: what came before it
    return None


def _fits(hw: tuple[int, int] | torch.Size, size: tuple[int, int]) -> bool:
    """``h x w`` is a grid over an ``H x W`` input: no larger, with its aspect ratio (within
    one cell, for strides that do not divide the input)."""
    (h, w), (big_h, big_w) = hw, size
    return 1 <= h <= big_h and 1 <= w <= big_w and abs(h * big_w - w * big_h) < max(big_h, big_w)


def token_grid(n: int, size: tuple[int, int], model: nn.Module) -> tuple[int, int, int]:
    """``(leading tokens, h, w)`` for ``n`` tokens of an input of spatial ``size``."""
    patch, prefix = model_patch_size(model), getattr(model, "num_prefix_tokens", None)
    prefixes = range(MAX_PREFIX + 1) if not isinstance(prefix, int) else (prefix,)
    found = sorted({(e, *g) for e in prefixes for g in _grids(n - e, size, patch)})
    if len(found) == 1:
        return found[0]
    said = f", patch size {patch}" if patch else ""
    options = "; ".join(f"{e} leading tokens + {h}x{w}" for e, h, w in found[:4])
    what = f"could be {options}" if found else "no grid fits"
    raise ValueError(
        f"layer: cannot tell the token grid of {n} tokens for input {size}{said} ({what}); {ASK}"
    )


def _grids(n: int, size: tuple[int, int], patch: tuple[int, int] | None) -> set[tuple[int, int]]:
    """Grids ``h x w == n`` of one stride per axis over ``size``: the patch size times a power
    of 2 (patch merging) when known, else any common stride."""
    big_h, big_w = size
    if patch is None:
        strides = [(s, s) for s in range(1, max(size) + 1)]
    else:
        strides = [(patch[0] << k, patch[1] << k) for k in range(max(size).bit_length())]
    out = set()
    for sh, sw in strides:  # strides that do not divide the input: both axes floor or ceil
        for h, w in ((big_h // sh, big_w // sw), (-(-big_h // sh), -(-big_w // sw))):
            if n > 0 and h * w == n:
                out.add((h, w))
    return out


def model_patch_size(model: nn.Module) -> tuple[int, int] | None:
    """The patch size a model states (torchvision, timm or Hugging Face), or ``None``."""
    for owner in (model, getattr(model, "patch_embed", None), getattr(model, "config", None)):
        p = getattr(owner, "patch_size", None)
        if isinstance(p, int) and not isinstance(p, bool) and p > 0:
            return (p, p)
        if isinstance(p, tuple | list) and len(p) == 2 and all(isinstance(v, int) for v in p):
            return (int(p[0]), int(p[1]))
    return None

"""Model-parameter randomisation for the sanity checks of Adebayo et al. (2018), "Sanity checks
for saliency maps" (section 3.1).

:func:`randomize` gives copies of a model with some layers re-initialised:

* ``"cascading"``: copy ``k`` (``k = 1..n``) has the *last* ``k`` layers re-initialised, from
  the logits down towards the input, one more layer per copy; the last copy is fully random.
* ``"independent"``: copy ``k`` has only layer ``k`` re-initialised, the others trained.

**Layers.** By default every module with parameters of its own (``recurse=False``) and a
``reset_parameters()`` method (or ``_reset_parameters()``, which is what
``nn.MultiheadAttention`` has), in ``named_modules()`` order, which is the order the modules
were registered in (for the built-in models and torchvision's ResNets, the forward order; a
shortcut's 1x1 conv comes after the block's main branch). Modules with parameters of their own
but no ``reset_parameters()`` (e.g. a ViT's class token and position embedding, held on the
model itself) are *skipped* and listed in :attr:`Randomized.skipped`. ``layers=`` names the
steps explicitly, input side first, in the order they are to count; a name may be a container
(``"layer4"``): that step then re-initialises every parameterised module inside it.

**Re-initialisation.** Each module's own ``reset_parameters()``, i.e. PyTorch's default
initialisation (``Conv2d``/``Linear``: weight kaiming-uniform with ``a = sqrt(5)``, bias
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; ``BatchNorm``: weight 1, bias 0 *and* running mean 0,
running variance 1, batch count 0, so that in eval mode a reset BatchNorm is the identity up to
``1/sqrt(1 + eps)``; ``LayerNorm``: weight 1, bias 0; ``MultiheadAttention``: xavier-uniform
in-projection, zero in-projection bias, its ``out_proj`` being a ``Linear`` step of its own). It
runs on a CPU copy of the module, in the module's dtype, under torch's CPU generator seeded with
a per-layer seed derived from ``(seed, layer name)`` (:func:`layer_seed`), inside
``torch.random.fork_rng`` so torch's global generator is left as it was. The new tensors are
then copied into the model's copy on its own device. So a layer's new weights depend only on
``seed``, its name and its dtype: not on the mode, the device or which other layers are
randomised (copy ``k`` of a cascade equals the trained model with the new weights of each of its
``k`` layers from the independent copies). Resets that draw nothing (BatchNorm, LayerNorm) give
the same tensors for every seed.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator, Sequence
from typing import overload

import torch
from torch import nn

from smoothstab.checks import check_choice, check_int

MODES = ("cascading", "independent")


def layer_seed(seed: int, name: str) -> int:
    """The seed of one layer's re-initialisation: the first 63 bits of
    ``sha256(f"{seed}/{name}")``, so layers get unrelated streams that depend on nothing else."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _own_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _reset_fn(module: nn.Module):
    """``module.reset_parameters``, else ``module._reset_parameters`` (``nn.MultiheadAttention``
    has only that one), else ``None``."""
    for attr in ("reset_parameters", "_reset_parameters"):
        fn = getattr(module, attr, None)
        if callable(fn):
            return fn
    return None


def _resettable(module: nn.Module) -> bool:
    return _reset_fn(module) is not None


def randomizable_layers(model: nn.Module) -> tuple[list[str], list[str]]:
    """``(layers, skipped)``: the names of the modules :func:`randomize` re-initialises by
    default, in ``named_modules()`` order, and those with parameters of their own but no
    ``reset_parameters()``, which it skips."""
    layers, skipped = [], []
    for name, module in model.named_modules():
        if _own_params(module):
            (layers if _resettable(module) else skipped).append(name)
    return layers, skipped


def _members(model: nn.Module, step: str) -> list[str]:
    """The parameterised modules one step re-initialises: ``step`` itself and every module
    inside it with parameters of its own; each must have ``reset_parameters()``."""
    if not isinstance(step, str):
        raise ValueError(f"layers: expected module names, got {step!r}")
    try:
        root = model.get_submodule(step)
    except AttributeError:
        examples = ", ".join(repr(n) for n in randomizable_layers(model)[0][-3:]) or "(none)"
        raise ValueError(
            f"layers: expected module names of {type(model).__name__} such as {examples}, "
            f"got {step!r}"
        ) from None
    prefix = f"{step}." if step else ""
    members = [
        prefix + name if name else step
        for name, module in root.named_modules()
        if _own_params(module)
    ]
    bad = [m for m in members if not _resettable(model.get_submodule(m))]
    if bad or not members:
        why = f"{bad[0]!r} has no reset_parameters()" if bad else "it has no parameters"
        raise ValueError(f"layers: cannot re-initialise {step!r}: {why}")
    return members


def fresh_state(module: nn.Module, seed: int, name: str) -> dict[str, torch.Tensor]:
    """The re-initialised own parameters and buffers of ``module`` (CPU tensors, the module's
    dtypes), by its ``reset_parameters()`` under the CPU generator seeded ``layer_seed``."""
    clone = copy.deepcopy(module).to("cpu")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.default_generator.manual_seed(layer_seed(seed, name))
        _reset_fn(clone)()
    own = dict(clone.named_parameters(recurse=False))
    own.update(clone.named_buffers(recurse=False))
    return {k: v.detach() for k, v in own.items()}


class Randomized(Sequence[tuple[str, nn.Module]]):
    """The copies :func:`randomize` returns: a sequence of ``(name, model)``, built on access.

    A copy is made each time an item is read (from a snapshot of the model taken when this was
    made), so iterating holds one copy at a time: ``n`` copies of a ResNet-50 at once would take
    ``n`` times its memory. ``list(...)`` keeps them all.

    Attributes:
        steps: the step names, input side first; ``members[i]`` the modules step ``i`` resets.
        names: the name of each copy, in order: in a cascade the lowest randomised step (copy 0
            is the logit layer alone, the last copy everything), independently the step itself.
        skipped: parameterised modules without ``reset_parameters()`` (default layers only).
    """

    def __init__(
        self, model: nn.Module, steps: list[str], members: list[list[str]], mode: str, seed: int
    ) -> None:
        self._base = copy.deepcopy(model)
        self.steps, self.members, self.mode, self.seed = steps, members, mode, seed
        self.names = steps[::-1] if mode == "cascading" else list(steps)
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.steps)

    def randomized(self, i: int) -> list[str]:
        """The modules copy ``i`` re-initialises."""
        i = range(len(self))[i]
        chosen = range(len(self) - 1 - i, len(self)) if self.mode == "cascading" else [i]
        return [m for s in chosen for m in self.members[s]]

    @overload
    def __getitem__(self, i: int) -> tuple[str, nn.Module]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[str, nn.Module]]: ...
    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        names = self.randomized(i)
        model = copy.deepcopy(self._base)
        with torch.no_grad():
            for name in names:
                module = model.get_submodule(name)
                fresh = fresh_state(module, self.seed, name)
                own = dict(module.named_parameters(recurse=False))
                own.update(module.named_buffers(recurse=False))
                for key, tensor in own.items():
                    tensor.copy_(fresh[key])
        return self.names[range(len(self))[i]], model

    def __iter__(self) -> Iterator[tuple[str, nn.Module]]:
        return (self[i] for i in range(len(self)))


def randomize(
    model: nn.Module,
    mode: str = "cascading",
    layers: Sequence[str] | None = None,
    seed: int = 0,
) -> Randomized:
    """Copies of ``model`` with layers re-initialised (Adebayo et al. 2018, section 3.1).

    Args:
        model: the trained model; never changed (copies are deep copies, in its mode, dtype
            and device).
        mode: ``"cascading"`` (copy ``k`` resets the last ``k`` steps, from the logits down) or
            ``"independent"`` (copy ``k`` resets step ``k`` alone).
        layers: the steps, input side first; default :func:`randomizable_layers`.
        seed: int ``>= 0``; each layer's re-initialisation is seeded by ``layer_seed(seed,
            name)`` (see the module docstring for the exact initialisation).
    Returns:
        A :class:`Randomized` sequence of ``(name, model)``, one per step.
    """
    check_choice(mode, "mode", MODES)
    check_int(seed, "seed", low=0)
    skipped: list[str] = []
    if layers is None:
        steps, skipped = randomizable_layers(model)
    elif isinstance(layers, str) or not layers:
        raise ValueError(f"layers: expected a non-empty list of module names, got {layers!r}")
    else:
        steps = list(layers)
    if len(set(steps)) != len(steps):
        raise ValueError(f"layers: expected distinct names, got {list(steps)!r}")
    if not steps:
        raise ValueError(f"model: {type(model).__name__} has no layer to re-initialise")
    # a default step is the module alone (its children with parameters are steps of their own)
    members = [[s] for s in steps] if layers is None else [_members(model, s) for s in steps]
    flat = [m for ms in members for m in ms]
    if len(set(flat)) != len(flat):
        raise ValueError(f"layers: expected steps that do not overlap, got {list(steps)!r}")
    out = Randomized(model, steps, members, mode, seed)
    out.skipped = skipped
    return out

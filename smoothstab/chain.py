"""A network traced into the chain the paper's theory covers, with its departures from it.

The bounds of :mod:`smoothstab.bounds` cover chains ``f(x) = W_k s(W_{k-1} s(... s(W_1 x)))``:
bias-free linear maps (Linear, Conv; two in a row count as ``s = id``) and elementwise activations
that are 1-Lipschitz with ``s(0) = 0`` (ReLU, Tanh, LeakyReLU with slope <= 1, ELU with
alpha <= 1, Hardtanh around 0). The bounds also need a 1-smooth activation (``s'`` 1-Lipschitz:
Tanh, ELU(1); not ReLU): Proposition 7 and Remark 4(2) say so, and Theorems 5-6 rest on
Simple-Grad being Lipschitz in ``W``, which fails for ReLU. Biases only matter to Theorems 5-6
and Remark 4. Networks outside this class (skip connections, BatchNorm, pooling, biases, ReLU)
get numbers too, flagged heuristic with the reasons.

:func:`trace` runs one forward pass with hooks and records the leaf-module calls and the tensors
between them; :func:`walk` goes through the calls in order, sorts each into a ``_Kind``
(``_classify``), notes each departure from the chain with the :class:`Scope` of bounds it
affects (:class:`Reasons`), and returns the chain's :class:`Layer` s: a Linear/Conv
(:attr:`LayerKind.LINEAR`, maybe with a BatchNorm folded in) or a lone BatchNorm
(:attr:`LayerKind.DIAGONAL`). :mod:`smoothstab.spectral` computes their norms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum, auto
from typing import NamedTuple

import torch
from torch import nn

_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_PASS = (nn.Identity, nn.Flatten, nn.Unflatten, *_DROPOUT)  # reshapes; identities in eval mode
_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
_MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)


class _Activation(NamedTuple):
    lipschitz: bool  # 1-Lipschitz
    zero: bool  # s(0) == 0
    smooth: bool  # 1-smooth: s' 1-Lipschitz


_ACTIVATIONS: dict[type, Callable[[nn.Module], _Activation]] = {
    nn.ReLU: lambda m: _Activation(True, True, False),
    nn.LeakyReLU: lambda m: _Activation(abs(m.negative_slope) <= 1, True, False),
    nn.Tanh: lambda m: _Activation(True, True, True),  # |tanh''| <= 0.77
    nn.ELU: lambda m: _Activation(0 <= m.alpha <= 1, True, m.alpha == 1),
    nn.Hardtanh: lambda m: _Activation(True, m.min_val <= 0 <= m.max_val, False),  # and ReLU6
    nn.Sigmoid: lambda m: _Activation(True, False, True),
    nn.Softplus: lambda m: _Activation(True, False, m.beta <= 4),
    nn.SiLU: lambda m: _Activation(False, True, True),  # Lipschitz constant 1.10
    nn.GELU: lambda m: _Activation(False, True, True),  # Lipschitz constant 1.13
}


class Scope(Enum):
    """The bounds a departure from the theory affects; the value is printed in the reasons."""

    STABILITY = "Theorems 5-6 and Remark 4"
    FIDELITY = "Proposition 7"
    ALL = "all"


class LayerKind(Enum):
    """How a :class:`Layer` enters the chain, and so how its norm is computed."""

    LINEAR = "linear"  # Linear/Conv: power iteration (a folded BatchNorm's scale included)
    DIAGONAL = "diagonal"  # a lone eval-mode BatchNorm, diag(scale): norm max |scale|


@dataclass(frozen=True)
class Layer:
    """One linear map ``W_i`` of the chain, as found by the walk."""

    name: str
    module: nn.Module
    input_shape: tuple[int, ...]  # one example's shape, without batch
    kind: LayerKind
    folded_bn: nn.Module | None = None  # an eval-mode BatchNorm right after (LINEAR only)


@dataclass
class _Call:
    name: str
    module: nn.Module
    inp: torch.Tensor | None
    in_version: int
    out: torch.Tensor | None = None
    out_version: int = -1


def trace(model: nn.Module, shape: tuple[int, ...]) -> tuple[list[_Call], torch.Tensor, object]:
    """Leaf-module calls (with input and output tensors) of one eval-mode forward on zeros."""
    names = {m: n or type(m).__name__ for n, m in model.named_modules()}
    calls: list[_Call] = []

    def pre(module, args):
        t = next((a for a in args if isinstance(a, torch.Tensor)), None)
        calls.append(_Call(names[module], module, t, -1 if t is None else t._version))

    def post(module, args, out):
        call = next(c for c in reversed(calls) if c.module is module and c.out_version < 0)
        call.out = out if isinstance(out, torch.Tensor) else None
        call.out_version = out._version if isinstance(out, torch.Tensor) else 0

    param = next(model.parameters(), None)
    dtype, device = (torch.float32, "cpu") if param is None else (param.dtype, param.device)
    x = torch.zeros((1, *shape), dtype=dtype, device=device)
    modes = [(m, m.training) for m in model.modules()]
    handles = []
    try:
        for m in model.modules():
            if next(m.children(), None) is None:
                handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
        model.eval()
        with torch.no_grad():
            out = model(x)
    except RuntimeError as err:
        msg = str(err).splitlines()[0]
        raise ValueError(f"input_shape: model failed on zeros {tuple(x.shape)}: {msg}") from None
    finally:
        for h in handles:
            h.remove()
        for m, flag in modes:
            m.training = flag
    return calls, x, out


def _linked(a: torch.Tensor | None, a_version: int, b: object, b_version: int) -> bool:
    """``b`` is ``a`` (or a reshaped view of it) and nothing wrote to it in between."""
    if a is None or b is None or not isinstance(b, torch.Tensor):
        return False
    same = b.data_ptr() == a.data_ptr() and b.numel() == a.numel()
    return same and b_version == a_version


class Reasons:
    """Departures from the theory: message -> (scope, module names), in the order noted."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[Scope, list[str]]] = {}

    def add(self, scope: Scope, message: str, name: str) -> None:
        self.items.setdefault(message, (scope, []))[1].append(name)

    def lines(self) -> tuple[str, ...]:
        def where(names):
            names = list(dict.fromkeys(names))
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            return ", ".join(names[:3]) + more

        return tuple(f"[{s.value}] {m}: {where(n)}" for m, (s, n) in self.items.items())

    def affects(self, scope: Scope) -> bool:
        return any(s in (scope, Scope.ALL) for s, _ in self.items.values())


class _Kind(Enum):
    """What one leaf-module call is, for the walk."""

    LINEAR = auto()  # Linear or Conv
    BATCHNORM = auto()
    SMOOTH_ACT = auto()  # an activation that is 1-smooth
    ROUGH_ACT = auto()  # an activation that is not (ReLU)
    OTHER = auto()  # pooling, reshape, dropout, unknown module


def _classify(call: _Call, reasons: Reasons, seen_linear: bool) -> _Kind:
    """The call's kind; notes departures from the theory."""
    m, name = call.module, call.name
    if isinstance(m, _LINEAR):
        if m.bias is not None:
            reasons.add(Scope.STABILITY, "bias (the theory's layers are bias-free)", name)
        return _Kind.LINEAR
    if isinstance(m, _BATCHNORM):
        return _Kind.BATCHNORM
    act = next((_ACTIVATIONS[c] for c in type(m).__mro__ if c in _ACTIVATIONS), None)
    if act is not None:
        props = act(m)
        if not props.lipschitz:
            reasons.add(Scope.ALL, f"{type(m).__name__} is not 1-Lipschitz", name)
        if not props.zero:
            reasons.add(Scope.STABILITY, f"{type(m).__name__}(0) != 0", name)
        if not props.smooth:
            reasons.add(Scope.ALL, f"{type(m).__name__} is not 1-smooth", name)
        if not seen_linear:
            reasons.add(Scope.ALL, "activation before the first linear layer", name)
        return _Kind.SMOOTH_ACT if props.smooth else _Kind.ROUGH_ACT
    if isinstance(m, _AVGPOOL):
        reasons.add(Scope.ALL, "average pooling (linear, norm <= 1, not in the theory)", name)
    elif isinstance(m, _MAXPOOL):
        reasons.add(Scope.ALL, "max pooling (1-Lipschitz but neither linear nor elementwise)", name)
    elif not isinstance(m, _PASS):
        reasons.add(
            Scope.ALL, f"unknown module {type(m).__name__} (possibly skip connections)", name
        )
    return _Kind.OTHER


def walk(
    calls: list[_Call], x: torch.Tensor, out: object, fold: bool, reasons: Reasons
) -> tuple[list[Layer], bool]:
    """The chain's layers in order, and whether all activations are smooth; notes every break
    of the chain."""
    layers: list[Layer] = []
    prev, prev_version, prev_kind = x, x._version, None
    last_act, last_linear, smooth = -1, -1, True
    for i, call in enumerate(calls):
        linked = _linked(prev, prev_version, call.inp, call.in_version)
        if not linked:
            reasons.add(
                Scope.ALL,
                "not a chain: input is not the previous module's output "
                "(skip connection, branch or functional op)",
                call.name,
            )
        kind = _classify(call, reasons, bool(layers))
        shape = tuple(call.inp.shape[1:]) if call.inp is not None else ()
        if kind is _Kind.BATCHNORM and fold and prev_kind is _Kind.LINEAR and linked:
            layers[-1] = replace(layers[-1], folded_bn=call.module)
            reasons.add(Scope.STABILITY, "BatchNorm folded into the previous layer", call.name)
        elif kind is _Kind.LINEAR:
            layers.append(Layer(call.name, call.module, shape, LayerKind.LINEAR))
            last_linear = i
        elif kind is _Kind.BATCHNORM:
            layers.append(Layer(call.name, call.module, shape, LayerKind.DIAGONAL))
            last_linear = i
            reasons.add(Scope.STABILITY, "BatchNorm kept as its own diagonal layer", call.name)
        if kind in (_Kind.SMOOTH_ACT, _Kind.ROUGH_ACT):
            last_act = i
        smooth = smooth and kind is not _Kind.ROUGH_ACT
        prev, prev_version, prev_kind = call.out, call.out_version, kind
    if not isinstance(out, torch.Tensor) or not _linked(prev, prev_version, out, out._version):
        reasons.add(Scope.ALL, "the output is not the last module's output", "output")
    if layers and last_act > last_linear:
        reasons.add(Scope.ALL, "activation after the last linear layer", calls[last_act].name)
    return layers, smooth

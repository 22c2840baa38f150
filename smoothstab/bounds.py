"""The paper's bounds in numbers: Remark 4, Theorems 5 and 6, Proposition 7.

The theory covers chains ``f(x) = W_k s(W_{k-1} s(... s(W_1 x)))``: bias-free linear maps
(Linear, Conv; two in a row count as ``s = id``) and elementwise activations that are 1-Lipschitz
with ``s(0) = 0`` (ReLU, Tanh, LeakyReLU with slope <= 1, ELU with alpha <= 1, Hardtanh around 0).
The bounds also need a 1-smooth activation (``s'`` 1-Lipschitz: Tanh, ELU(1); not ReLU):
Proposition 7 and Remark 4(2) say so, and Theorems 5-6 rest on Simple-Grad being Lipschitz in
``W``, which fails for ReLU. Biases only matter to Theorems 5-6 and Remark 4. Networks outside
this class (skip connections, BatchNorm, pooling, biases, ReLU) get numbers too, flagged
heuristic with the reasons (:class:`LayerNorms`).

Pieces: :func:`spectral_norm` gives one layer's ``B_i`` by power iteration; :func:`layer_norms`
walks a model in forward order and checks it is such a chain; :func:`gamma` is ``Gamma_{t,i}``;
the bound functions take the norms (a list or a :class:`LayerNorms`). Formulas and their
reconstruction: ``protocol.md`` section 6. Bounds are products of norms and can exceed float
range, so they are computed in log space; ``log10=True`` returns ``log10`` of the bound.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_PASS = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)  # reshapes, and identities in eval mode
_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
_MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
# activation -> (1-Lipschitz, s(0) == 0, 1-smooth: s' 1-Lipschitz)
_ACTIVATIONS: dict[type, Callable[[nn.Module], tuple[bool, bool, bool]]] = {
    nn.ReLU: lambda m: (True, True, False),
    nn.LeakyReLU: lambda m: (abs(m.negative_slope) <= 1, True, False),
    nn.Tanh: lambda m: (True, True, True),  # |tanh''| <= 0.77
    nn.ELU: lambda m: (0 <= m.alpha <= 1, True, m.alpha == 1),
    nn.Hardtanh: lambda m: (True, m.min_val <= 0 <= m.max_val, False),  # and ReLU6
    nn.Sigmoid: lambda m: (True, False, True),
    nn.Softplus: lambda m: (True, False, m.beta <= 4),
    nn.SiLU: lambda m: (False, True, True),  # Lipschitz constant 1.10
    nn.GELU: lambda m: (False, True, True),  # Lipschitz constant 1.13
}
STABILITY, FIDELITY = "Theorems 5-6 and Remark 4", "Proposition 7"


def _positive(value: float, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number > 0, got {value!r}") from None
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{name}: expected a finite number > 0, got {value}")
    return value


def _sigmas(sigma) -> np.ndarray:
    s = np.asarray(sigma, dtype=float)
    if s.size == 0 or not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ValueError(f"sigma: expected finite numbers > 0, got {sigma!r}")
    return s


def _out(log_value, sigma_like=None, log10: bool = False):
    """A natural-log bound as the bound (``inf`` past float range) or its ``log10``."""
    v = np.asarray(log_value, dtype=float)
    with np.errstate(over="ignore"):
        v = v / math.log(10) if log10 else np.exp(v)
    return float(v) if v.ndim == 0 and np.ndim(sigma_like) == 0 else v


# ---------------------------------------------------------------------------- layer norms


def _bn_scale(bn: nn.Module, channels: int, dtype, device) -> torch.Tensor:
    """The eval-mode BatchNorm's per-channel scale ``gamma / sqrt(running_var + eps)``."""
    if not isinstance(bn, _BATCHNORM) or bn.running_var is None:
        raise ValueError(f"bn: expected a BatchNorm with running statistics, got {bn!r}")
    if bn.num_features != channels:
        raise ValueError(f"bn: expected {channels} features, got {bn.num_features}")
    scale = 1 / torch.sqrt(bn.running_var.detach().to(device, dtype) + bn.eps)
    return scale if bn.weight is None else scale * bn.weight.detach().to(device, dtype)


def _diag_norm(bn: nn.Module) -> float:
    """The norm of a lone eval-mode BatchNorm's linear part: ``max |scale|``."""
    return float(_bn_scale(bn, bn.num_features, torch.float64, "cpu").abs().max())


def _linear_map(layer: nn.Module, input_shape, bn, dtype) -> tuple[Callable, tuple[int, ...]]:
    """The layer's linear part (bias dropped, BatchNorm scale folded in) and its input shape."""
    if not isinstance(layer, _LINEAR):
        raise ValueError(f"layer: expected a Linear or Conv1d/2d/3d, got {type(layer).__name__}")
    w = layer.weight.detach().to(dtype)
    scale = None if bn is None else _bn_scale(bn, w.shape[0], dtype, w.device)
    if isinstance(layer, nn.Linear):
        if input_shape is not None and tuple(input_shape)[-1:] != (layer.in_features,):
            raise ValueError(f"input_shape: expected (..., {layer.in_features}), got {input_shape}")
        return (lambda v: v @ w.T if scale is None else (v @ w.T) * scale), (layer.in_features,)
    dims = w.ndim - 1
    shape = tuple(input_shape) if input_shape is not None else ()
    if len(shape) != dims or shape[0] != layer.in_channels:
        raise ValueError(
            f"input_shape: expected (C={layer.in_channels}, then {dims - 1} spatial sizes) for "
            f"{type(layer).__name__}, got {input_shape}"
        )
    view = (1, -1) + (1,) * (dims - 1)
    return (
        lambda v: layer._conv_forward(v, w, None) * (1 if scale is None else scale.view(view))
    ), shape


def spectral_norm(
    layer: nn.Module,
    input_shape: Sequence[int] | None = None,
    *,
    bn: nn.Module | None = None,
    n_iter: int = 1000,
    tol: float = 1e-7,
    seed: int = 0,
) -> float:
    """``B = ||A||_2`` of a layer's linear map ``A`` by power iteration on ``A^T A`` (float64).

    Args:
        layer: Linear (``A x = W x``) or Conv1d/2d/3d (``A`` = the convolution on inputs of
            ``input_shape``, with the layer's stride, padding, dilation, groups; the norm
            depends on the spatial size). The bias is not part of ``A``.
        input_shape: one example's shape without batch, ``(C, H, W)`` for Conv2d; optional for
            Linear.
        bn: an eval-mode BatchNorm after the layer: its scale ``gamma / sqrt(var + eps)`` is
            folded into the output channels (running statistics are used).
        n_iter, tol: stop when the estimate changes by less than ``tol`` relatively.
        seed: the random start vector's seed.
    Returns:
        The estimate, a lower bound of ``||A||_2`` that converges to it.
    """
    tol = _positive(tol, "tol")
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter: expected an integer >= 1, got {n_iter!r}")
    device = layer.weight.device if isinstance(layer, _LINEAR) else torch.device("cpu")
    dtype = torch.float32 if device.type == "mps" else torch.float64
    op, shape = _linear_map(layer, input_shape, bn, dtype)
    v = torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed), dtype=dtype)
    v = (v / v.norm()).to(device)
    estimate = 0.0
    with torch.enable_grad():
        for _ in range(n_iter):
            v.requires_grad_(True)
            u = op(v)
            (w,) = torch.autograd.grad(u, v, grad_outputs=u.detach())  # A^T A v
            norm = float(w.norm())
            if norm == 0:
                return 0.0
            new, v = math.sqrt(norm), (w / norm).detach()
            if abs(new - estimate) <= tol * new:
                return new
            estimate = new
    warnings.warn(
        f"spectral_norm: no convergence to tol={tol} in {n_iter} iterations", stacklevel=2
    )
    return estimate


@dataclass(frozen=True)
class LayerNorms:
    """The layers' norms in forward order and how the network departs from the theory.

    Attributes:
        names, norms, input_shapes: per linear layer (``B_i``, a folded BatchNorm included).
        input_shape: the model's input shape (one example); ``m`` is its size.
        reasons: one line per departure from the chain the theory covers.
        stability_heuristic: Theorems 5-6 and Remark 4 do not strictly apply.
        fidelity_heuristic: Proposition 7 does not strictly apply.
        smooth: every activation is 1-smooth (all bounds need it, see the module docstring).
    """

    names: tuple[str, ...]
    norms: tuple[float, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    input_shape: tuple[int, ...]
    reasons: tuple[str, ...]
    stability_heuristic: bool
    fidelity_heuristic: bool
    smooth: bool

    @property
    def heuristic(self) -> bool:
        return self.stability_heuristic or self.fidelity_heuristic

    @property
    def k(self) -> int:
        return len(self.norms)

    @property
    def m(self) -> int:
        return math.prod(self.input_shape)


@dataclass
class _Call:
    name: str
    module: nn.Module
    inp: torch.Tensor | None
    in_version: int
    out: torch.Tensor | None = None
    out_version: int = -1


def _trace(model: nn.Module, input_shape: tuple[int, ...]):
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
    kw = (
        {"dtype": torch.float32, "device": "cpu"}
        if param is None
        else {"dtype": param.dtype, "device": param.device}
    )
    x = torch.zeros((1, *input_shape), **kw)
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


def _linked(a: torch.Tensor | None, a_version: int, b: torch.Tensor | None, b_version: int):
    """``b`` is ``a`` (or a reshaped view of it) and nothing wrote to it in between."""
    if a is None or b is None or not isinstance(b, torch.Tensor):
        return False
    same = b.data_ptr() == a.data_ptr() and b.numel() == a.numel()
    return same and b_version == a_version


class _Reasons:
    def __init__(self):
        self.items: dict[str, tuple[str, list[str]]] = {}

    def add(self, scope: str, message: str, name: str) -> None:
        self.items.setdefault(message, (scope, []))[1].append(name)

    def lines(self) -> tuple[str, ...]:
        def where(names):
            names = list(dict.fromkeys(names))
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            return ", ".join(names[:3]) + more

        return tuple(f"[{s}] {m}: {where(n)}" for m, (s, n) in self.items.items())

    def affects(self, scope: str) -> bool:
        return any(s in (scope, "all") for s, _ in self.items.values())


def _classify(call: _Call, reasons: _Reasons, seen_linear: bool) -> str:
    """``linear``, ``bn``, ``act`` or ``other``; notes departures from the theory."""
    m, name = call.module, call.name
    if isinstance(m, _LINEAR):
        if m.bias is not None:
            reasons.add(STABILITY, "bias (the theory's layers are bias-free)", name)
        return "linear"
    if isinstance(m, _BATCHNORM):
        return "bn"
    act = next((_ACTIVATIONS[c] for c in type(m).__mro__ if c in _ACTIVATIONS), None)
    if act is not None:
        lipschitz, zero, smooth = act(m)
        if not lipschitz:
            reasons.add("all", f"{type(m).__name__} is not 1-Lipschitz", name)
        if not zero:
            reasons.add(STABILITY, f"{type(m).__name__}(0) != 0", name)
        if not smooth:
            reasons.add("all", f"{type(m).__name__} is not 1-smooth", name)
        if not seen_linear:
            reasons.add("all", "activation before the first linear layer", name)
        return "act" if smooth else "act_rough"
    if isinstance(m, _AVGPOOL):
        reasons.add("all", "average pooling (linear, norm <= 1, not in the theory)", name)
    elif isinstance(m, _MAXPOOL):
        reasons.add("all", "max pooling (1-Lipschitz but neither linear nor elementwise)", name)
    elif not isinstance(m, _PASS):
        reasons.add("all", f"unknown module {type(m).__name__} (possibly skip connections)", name)
    return "other"


def _walk(calls: list[_Call], x: torch.Tensor, out, fold: bool, reasons: _Reasons):
    """Linear layers ``[name, module, input shape, bn]`` in order, and whether all activations
    are smooth; notes every break of the chain."""
    layers: list[list] = []
    prev, prev_version, prev_kind, last_act, last_linear, smooth = x, x._version, "", -1, -1, True
    for i, call in enumerate(calls):
        linked = _linked(prev, prev_version, call.inp, call.in_version)
        if not linked:
            reasons.add(
                "all",
                "not a chain: input is not the previous module's output "
                "(skip connection, branch or functional op)",
                call.name,
            )
        kind = _classify(call, reasons, bool(layers))
        shape = tuple(call.inp.shape[1:]) if call.inp is not None else ()
        if kind == "bn" and fold and prev_kind == "linear" and linked:
            layers[-1][3] = call.module
            reasons.add(STABILITY, "BatchNorm folded into the previous layer", call.name)
        elif kind in ("linear", "bn"):
            layers.append([call.name, call.module, shape, None if kind == "linear" else "diag"])
            last_linear = i
            if kind == "bn":
                reasons.add(STABILITY, "BatchNorm kept as its own diagonal layer", call.name)
        last_act = i if kind.startswith("act") else last_act
        smooth = smooth and kind != "act_rough"
        prev, prev_version, prev_kind = call.out, call.out_version, kind
    if not isinstance(out, torch.Tensor) or not _linked(prev, prev_version, out, out._version):
        reasons.add("all", "the output is not the last module's output", "output")
    if layers and last_act > last_linear:
        reasons.add("all", "activation after the last linear layer", calls[last_act].name)
    return layers, smooth


def layer_norms(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    fold_batchnorm: bool = True,
    n_iter: int = 1000,
    tol: float = 1e-7,
    seed: int = 0,
) -> LayerNorms:
    """``B_i`` of every Linear/Conv layer of ``model`` in forward order, and the theory check.

    One eval-mode forward of a zeros input ``[1, *input_shape]`` (hooks removed afterwards,
    training flags restored) records the leaf modules called and the tensors between them. The
    network is a chain when each module's input is the previous module's output, unmodified
    (else: skip connection, branch or functional op). An eval-mode BatchNorm right after a layer
    is folded into it (``fold_batchnorm``), else kept as a diagonal layer of norm ``max|scale|``.
    """
    input_shape = tuple(int(s) for s in input_shape)
    calls, x, out = _trace(model, input_shape)
    reasons = _Reasons()
    layers, smooth = _walk(calls, x, out, fold_batchnorm, reasons)
    if not layers:
        raise ValueError(
            f"model: expected at least one Linear or Conv layer in the forward pass, got none "
            f"among {sorted({type(c.module).__name__ for c in calls})}"
        )
    norms = [
        _diag_norm(module)
        if bn == "diag"
        else spectral_norm(module, shape, bn=bn, n_iter=n_iter, tol=tol, seed=seed)
        for _, module, shape, bn in layers
    ]
    return LayerNorms(
        names=tuple(layer[0] for layer in layers),
        norms=tuple(norms),
        input_shapes=tuple(layer[2] for layer in layers),
        input_shape=input_shape,
        reasons=reasons.lines(),
        stability_heuristic=reasons.affects(STABILITY),
        fidelity_heuristic=reasons.affects(FIDELITY),
        smooth=smooth,
    )


# ---------------------------------------------------------------------------- Gamma


def _norms(norms, positive: bool = False) -> list[float]:
    values = list(norms.norms if isinstance(norms, LayerNorms) else norms)
    if not values:
        raise ValueError("norms: expected at least one layer norm, got none")
    out = []
    for b in values:
        try:
            b = float(b)
        except (TypeError, ValueError):
            raise ValueError(f"norms: expected numbers, got {b!r}") from None
        if math.isnan(b) or math.isinf(b) or b < 0 or (positive and b == 0):
            bound = "> 0" if positive else ">= 0"
            raise ValueError(f"norms: expected finite numbers {bound}, got {b}")
        out.append(b)
    return out


def _logadd(a: float, b: float) -> float:
    if a == -math.inf or b == -math.inf:
        return max(a, b)
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def _log_gammas(norms: list[float], degree_drop: int = 0) -> list[float]:
    """``log Gamma_{t,i}`` for ``t = 1..k``, ``i = degree_drop``, in one pass of the DP
    ``e_j <- e_j + B_t e_{j-1}`` over the elementary symmetric polynomials, in logs."""
    e, out = [0.0], []
    for b in norms:
        lb = math.log(b) if b > 0 else -math.inf
        e = [e[0]] + [_logadd(e[j], e[j - 1] + lb) for j in range(1, len(e))] + [e[-1] + lb]
        t = len(e) - 1
        out.append(e[t - degree_drop] if t >= degree_drop else -math.inf)
    return out


def _log_gamma(norms: list[float], t: int, i: int) -> float:
    return 0.0 if t == 0 else _log_gammas(norms[:t], i)[-1]


def gamma(norms, t: int, i: int) -> float:
    """``Gamma_{t,i}``: the elementary symmetric polynomial of degree ``t - i`` in
    ``B_1..B_t`` (section 3.2). ``Gamma_{t,0} = prod B_j``, ``Gamma_{t,t} = 1``."""
    b = _norms(norms)
    for value, name in ((t, "t"), (i, "i")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
    if not 0 <= i <= t <= len(b):
        raise ValueError(
            f"t, i: expected 0 <= i <= t <= {len(b)} (the number of norms), got {t}, {i}"
        )
    return _exp(_log_gamma(b, t, i))


def _exp(log_value: float) -> float:
    return math.inf if log_value > 709.78 else math.exp(log_value)


def _log_sum_gamma(b: list[float], i: int) -> float:
    """``log sum_{t=1}^{k-1} Gamma_{t,i}`` (``-inf`` for ``k = 1``)."""
    total = -math.inf
    for value in _log_gammas(b[:-1], i):
        total = _logadd(total, value)
    return total


# ---------------------------------------------------------------------------- Remark 4


def lipschitz_constant(norms, C: float) -> float:
    """Remark 4: ``L <= Gamma_{k,1} C``, the training loss's Lipschitz constant in ``W``
    (vanilla and noisy SGD; ``C >= ||x||_2`` over the data, loss 1-Lipschitz in the logits)."""
    b = _norms(norms)
    return _exp(_log_gamma(b, len(b), 1) + math.log(_positive(C, "C")))


def smoothness_vanilla(norms, C: float) -> float:
    """Remark 4(2): ``beta <= (3k + 1) Gamma_{k,1}^2 C^2`` for vanilla SGD (needs a 1-smooth
    activation and loss)."""
    b = _norms(norms)
    log_l = _log_gamma(b, len(b), 1) + math.log(_positive(C, "C"))
    return _exp(math.log(3 * len(b) + 1) + 2 * log_l)


def smoothness_noisy(norms, C: float, noise_std: float) -> float:
    """Remark 4(1) with Prop. 1: ``beta <= L / s_w`` for noisy SGD with weight-noise std
    ``s_w`` (Eq. 3)."""
    return lipschitz_constant(norms, C) / _positive(noise_std, "noise_std")


# ---------------------------------------------------------------------------- Theorems 5, 6


def _log_up_simplegrad(norms, C, n, T, c, beta, L) -> tuple[float, float]:
    """``(log Up(SG), 1 / (q + 1))`` of Theorem 5, after checking the arguments."""
    b = _norms(norms, positive=True)
    if len(b) < 2:
        raise ValueError("norms: Theorems 5 and 6 need k >= 2 layers, got 1")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n: expected an integer >= 2 (training-set size), got {n!r}")
    C, c, T = _positive(C, "C"), _positive(c, "c"), _positive(T, "T")
    if T < 1:
        raise ValueError(f"T: expected a number of SGD steps >= 1, got {T}")
    beta = math.inf if beta == math.inf else _positive(beta, "beta")
    log_l = math.log(_positive(L, "L")) if L is not None else _log_gamma(b, len(b), 1) + math.log(C)
    q = beta * c
    a = 1 / (1 + q)  # 1 / (beta c + 1); the other exponent is 1 - a = q / (q + 1)
    log_g0 = _log_gamma(b, len(b), 0)
    log_lip = math.log(2) + log_g0 + math.log(C) + _log_sum_gamma(b, 1)  # L' of the saliency loss
    log_bound = math.log(2) + log_g0  # M: ||Sal_S - Sal_D|| <= 2 Gamma_{k,0}
    log_phi = a * log_lip + (1 - a) * log_bound
    log_up = math.log1p(1 / q) - math.log(n - 1) + a * math.log(2 * c) + (1 - a) * math.log(T)
    return log_up + (a * log_l if a else 0.0) + log_phi, a


def stability_bound_simplegrad(
    norms,
    *,
    C: float,
    n: int,
    T: float,
    c: float,
    beta: float,
    L: float | None = None,
    log10: bool = False,
) -> float:
    """Theorem 5: ``Up(SG) = (1 + 1/q)/(n - 1) (2cL)^{1/(q+1)} T^{q/(q+1)} Phi``, ``q = beta c``,
    ``Phi = (2 Gamma_{k,0} C sum_{i<k} Gamma_{i,1})^{1/(q+1)} (2 Gamma_{k,0})^{q/(q+1)}``.

    Reconstruction (protocol.md section 6): the seed text garbles the prefactor; the form used
    here is Hardt et al. (2016, Thm 3.12) with a saliency loss bounded by ``2 Gamma_{k,0}`` and
    ``2 Gamma_{k,0} C sum Gamma_{i,1}``-Lipschitz in ``W``, which reproduces ``Phi`` exactly.
    Our own derivation of that Lipschitz constant gives ``Gamma_{k,1} + Gamma_{k,0} C sum
    Gamma_{i,1}`` for a 1-smooth activation (none exists for ReLU); the printed constant covers it
    when ``C >= sum_i 1/B_i``. For ``k = 1`` the printed ``Phi`` is 0, which is wrong (a linear
    model's gradient depends on ``W``), hence ``k >= 2``. The ``B_i`` must bound the weights along
    the whole SGD run; a trained network's norms are a plug-in estimate.

    Args:
        norms: ``B_1..B_k`` (``k >= 2``), a list or :class:`LayerNorms`.
        C: bound on ``||x||_2`` over the data. n: training-set size. T: SGD steps.
        c: step sizes ``eta_t <= c / t``. beta: smoothness of the training loss (Remark 4;
            ``inf`` allowed). L: its Lipschitz constant, default ``Gamma_{k,1} C``.
        log10: return ``log10`` of the bound (always finite).
    """
    log_up, _ = _log_up_simplegrad(norms, C, n, T, c, beta, L)
    return _out(log_up, None, log10)


def stability_bound_smoothgrad(
    norms,
    *,
    sigma,
    C: float,
    n: int,
    T: float,
    c: float,
    beta: float,
    L: float | None = None,
    clip: bool = False,
    log10: bool = False,
):
    """Theorem 6: ``Up(SG) [Gamma_{k,1} / (2 sigma Gamma_{k,0} sum_{i<k} Gamma_{i,1})]^{1/(q+1)}``.

    Reconstruction: the glyph before ``Gamma_{k,0}`` is unreadable in the seed text; it is read
    as ``sigma`` (the text: the bound vanishes as sigma grows; Stein's lemma gives Smooth-Grad a
    Lipschitz constant ``Gamma_{k,1} C / sigma`` in ``W``). The theorem assumes ``x + z``
    rescaled to norm ``<= C``. As printed the factor exceeds 1 for small sigma, making the bound
    larger than Theorem 5's; ``clip=True`` uses ``min(1, factor)``, which is also valid because
    averaging over ``z`` cannot raise Simple-Grad's Lipschitz constant in ``W``. The factor is
    below 1 for ``sigma > Gamma_{k,1} / (2 Gamma_{k,0} sum Gamma_{i,1})``.

    Args:
        sigma: Smooth-Grad noise std in input units, a number or an array (vectorised).
        clip, log10: see above and :func:`stability_bound_simplegrad` (other arguments too).
    Returns:
        A float for a scalar sigma, else an array like sigma.
    """
    log_up, a = _log_up_simplegrad(norms, C, n, T, c, beta, L)
    s = _sigmas(sigma)
    b = _norms(norms)
    log_factor = (
        _log_gamma(b, len(b), 1)
        - math.log(2)
        - np.log(s)
        - _log_gamma(b, len(b), 0)
        - _log_sum_gamma(b, 1)
    )
    if clip:
        log_factor = np.minimum(log_factor, 0.0)
    return _out(log_up + a * log_factor, sigma, log10)


# ---------------------------------------------------------------------------- Proposition 7


def _log_kappa(norms) -> float:
    """``log kappa``, ``kappa = Gamma_{k,0} sum_{i=1}^{k-1} Gamma_{i,0}`` (0 for ``k = 1``)."""
    b = _norms(norms)
    return _log_gamma(b, len(b), 0) + _log_sum_gamma(b, 0)


def _check_m(m: int) -> int:
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m: expected the input dimension, an integer >= 1, got {m!r}")
    return m


def fidelity_bound_smoothgrad(norms, *, sigma, m: int, log10: bool = False):
    """Proposition 7: ``eps_fid(Smooth-Grad, sigma) <= kappa sigma sqrt(m)`` (Eq. 11).

    ``kappa`` bounds the Lipschitz constant of the input gradient: it needs 1-Lipschitz,
    1-smooth activations (Tanh, not ReLU); biases do not matter. With it
    ``||E_z grad f(x+z) - grad f(x)|| <= kappa E||z|| <= kappa sigma sqrt(m)``, which also bounds
    every Monte-Carlo estimate's error by ``kappa`` times the mean ``||z_j||``.

    Args:
        norms: ``B_1..B_k``. sigma: noise std (number or array). m: input dimension.
    """
    s = _sigmas(sigma)
    log_b = _log_kappa(norms) + np.log(s) + 0.5 * math.log(_check_m(m))
    return _out(log_b, sigma, log10)


def fidelity_bound_smoothed_ig(norms, *, sigma, m: int, C: float, log10: bool = False):
    """Proposition 7: ``eps_fid(smoothed IG, sigma) <= kappa (3C + 1) sigma sqrt(m)``.

    ``C`` bounds ``||x||_2``; the IG integral is exact (no quadrature error) and the baseline
    zero. Same assumptions as :func:`fidelity_bound_smoothgrad`. The appendix proof is not
    available; our own derivation gives ``sigma sqrt(m) (kappa C / 2 + min(Gamma_{k,0},
    kappa sigma sqrt(m) / 2))``, within the printed bound whenever ``(1 + 2.5 C) sum_{i<k}
    Gamma_{i,0} >= 1`` (e.g. ``C >= 1`` and ``B_1 >= 0.3``).
    """
    s = _sigmas(sigma)
    log_b = (
        _log_kappa(norms)
        + math.log(3 * _positive(C, "C") + 1)
        + np.log(s)
        + 0.5 * math.log(_check_m(m))
    )
    return _out(log_b, sigma, log10)

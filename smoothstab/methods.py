"""Gradient saliency methods of the paper (section 3.3): Simple-Grad and Integrated-Gradients.

A method is a function ``method(model, x, target) -> Tensor`` returning raw, signed maps in the
model's input space. The explained score is the logit of ``target`` (``None``: the predicted
class); it is read from the model's output by :func:`output_logits`, whatever form the output
takes (a tensor, Hugging Face's ``ModelOutput``, a mapping, a tuple). Methods never change
``model.training``, parameter ``.grad``, the input, or leave hooks.
Grad-CAM and Grad-CAM++ live in :mod:`smoothstab.cam`; smoothing any of them in
:mod:`smoothstab.smoothing`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import nn

from smoothstab.checks import (
    check_batch,
    check_batch_size,
    check_choice,
    check_count,
    check_input,
    check_number,
    warn_if_training,
)
from smoothstab.types import Target

Baseline = float | torch.Tensor | None  # IG's x0: None is 0 in input space
IG_RULES = (
    "paper",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)


def output_logits(out: object, batch: int) -> torch.Tensor:
    """The logits ``[B, K]`` in a model's output, by one rule for every method and smoothing.

    ``out`` may be the logits tensor itself, an object with a ``.logits`` tensor (a Hugging
    Face ``ModelOutput``), a mapping with a ``"logits"`` entry, or a tuple or list whose first
    element is the logits (in that order of precedence). Anything else, or logits that are not
    ``[batch, K]``, is one ``ValueError`` line naming what came.
    """
    found = out
    if not isinstance(out, torch.Tensor):
        if isinstance(getattr(out, "logits", None), torch.Tensor):
            found = out.logits
        elif isinstance(out, Mapping):
            found = out.get("logits")
        elif isinstance(out, tuple | list):
            found = out[0] if out else None
        if not isinstance(found, torch.Tensor):
            raise ValueError(
                "model output: expected logits [B, K], an object with .logits, a mapping with "
                f"'logits' or a tuple/list whose first element is the logits; got "
                f"{type(out).__name__}" + ("" if found is out else f" holding {_kind(found)}")
            )
    if found.ndim != 2 or found.shape[0] != batch:
        raise ValueError(
            f"model output: expected logits [B, K] with B={batch}, got {tuple(found.shape)}"
        )
    return found


def _kind(value: object) -> str:
    return "no logits" if value is None else type(value).__name__


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``'s logits ``[B, K]``, found by :func:`output_logits`."""
    return output_logits(model(x), x.shape[0])


def resolve_target(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """``target`` as a LongTensor ``[B]`` on x's device; ``None`` means the predicted class."""
    if target is None:
        with torch.no_grad():
            return logits(model, x).argmax(dim=1)
    target = torch.as_tensor(target, device=x.device)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target: expected integer class indices, got dtype {target.dtype}")
    if target.ndim == 0:
        target = target.expand(x.shape[0])
    if target.shape != (x.shape[0],):
        raise ValueError(f"target: expected shape [{x.shape[0]}], got {tuple(target.shape)}")
    return target.long()


def select(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The target logits ``[B]``, after checking the indices are in range."""
    k = out.shape[1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= k):
        bad = int(target.max()) if int(target.max()) >= k else int(target.min())
        raise ValueError(f"target: expected class indices in [0, {k}), got {bad}")
    return out.gather(1, target[:, None]).squeeze(1)


def input_grad(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gradient of the target logits w.r.t. the rows of ``x`` (one backward for the batch).

    Rows are independent because the model is in eval mode, so the gradient of the summed
    logits is the per-row gradient. ``torch.autograd.grad`` leaves parameter ``.grad`` alone.
    """
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        score = select(logits(model, xg), target).sum()
        (g,) = torch.autograd.grad(score, xg)
    return g


def chunks(n_rows: int, batch_size: int | None) -> Iterator[torch.Tensor]:
    """Row indices ``0..n_rows-1`` in consecutive chunks of at most ``batch_size``."""
    size = n_rows if batch_size is None else batch_size
    for start in range(0, n_rows, size):
        yield torch.arange(start, min(start + size, n_rows))


def grad(model: nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
    """Simple-Grad (Eq. 4): the gradient of the target logit w.r.t. ``x``; ``[B, ...]``."""
    check_batch(x)
    warn_if_training(model)
    return input_grad(model, x, resolve_target(model, x, target))


def ig_rule(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature points and weights ``(alphas, weights)`` in float64 on [0, 1].

    Captum's names follow Captum's definitions exactly (its trapezoid halves the end weights of
    a ``1/steps`` grid, so the weights sum to ``(steps-1)/steps``). ``paper`` is what the
    paper's code did: ``linspace(0, 1, steps)`` with both endpoints, each weighted ``1/steps``.
    """
    check_choice(rule, "rule", IG_RULES)
    check_count(steps, "steps", 1 if rule == "gausslegendre" else 2)
    n = steps
    if rule == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        return torch.from_numpy(0.5 * (nodes + 1)), torch.from_numpy(0.5 * w)
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    lo, hi = {
        "paper": (0.0, 1.0),
        "riemann_trapezoid": (0.0, 1.0),
        "riemann_left": (0.0, 1 - 1 / n),
        "riemann_right": (1 / n, 1.0),
        "riemann_middle": (1 / (2 * n), 1 - 1 / (2 * n)),
    }[rule]
    if rule == "riemann_trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
    return torch.linspace(lo, hi, n, dtype=torch.float64), weights


def expand_baseline(baseline: Baseline, x: torch.Tensor) -> torch.Tensor:
    """The IG baseline broadcast to ``x``'s shape; ``None`` is zero in input space."""
    if baseline is None:
        return torch.zeros_like(x)
    if not isinstance(baseline, torch.Tensor):
        return torch.full_like(x, check_number(baseline, "baseline"))
    try:
        out = baseline.to(device=x.device, dtype=x.dtype).expand_as(x)
    except RuntimeError:
        raise ValueError(
            f"baseline: expected a tensor broadcastable to {tuple(x.shape)}, "
            f"got shape {tuple(baseline.shape)}"
        ) from None
    check_input(out, name="baseline")
    return out


def path_gradient_sum(
    model: nn.Module,
    x: torch.Tensor,
    x0: torch.Tensor,
    target: torch.Tensor,
    alphas: torch.Tensor,
    weights: torch.Tensor,
    batch_size: int | None,
) -> torch.Tensor:
    """``sum_k w_k grad f(x0 + a_k (x - x0))`` per row, steps x rows batched in chunks."""
    b_total = x.shape[0]
    alphas = alphas.to(device=x.device, dtype=x.dtype)
    weights = weights.to(device=x.device, dtype=x.dtype)
    acc = torch.zeros_like(x)
    for rows in chunks(len(alphas) * b_total, batch_size):
        rows = rows.to(x.device)
        k, b = rows // b_total, rows % b_total
        shape = (-1,) + (1,) * (x.ndim - 1)
        points = x0[b] + alphas[k].view(shape) * (x[b] - x0[b])
        g = input_grad(model, points, target[b])
        acc.index_add_(0, b, weights[k].view(shape) * g)
    return acc


def path_point_gradient(
    model: nn.Module,
    x: torch.Tensor,
    x0: torch.Tensor,
    target: torch.Tensor,
    alpha: torch.Tensor,
) -> torch.Tensor:
    """One sample of IG's integrand per row: ``(x - x0) * grad f(x0 + alpha (x - x0))``.

    ``alpha``: ``[B]`` path positions in [0, 1]. Averaged over ``alpha ~ U[0, 1]`` this is
    Integrated-Gradients; the ``joint`` smoothing sampler draws it together with the noise.
    """
    alpha = alpha.view((-1,) + (1,) * (x.ndim - 1))
    return (x - x0) * input_grad(model, x0 + alpha * (x - x0), target)


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    baseline: Baseline = None,
    steps: int = 20,
    rule: str = "paper",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Integrated-Gradients (Eq. 6): ``(x - x0) * sum_k w_k grad f(x0 + a_k (x - x0))``.

    Args:
        baseline: ``x0``; ``None`` is zero in input space (the paper's choice), a number, or a
            tensor broadcastable to ``x``.
        steps, rule: quadrature, see :func:`ig_rule`.
        batch_size: at most this many path points per forward pass.
    Returns:
        ``[B, ...]``, like ``x``.
    """
    check_batch(x)
    check_batch_size(batch_size)
    alphas, weights = ig_rule(rule, steps)
    warn_if_training(model)
    x0 = expand_baseline(baseline, x)
    target = resolve_target(model, x, target)
    return (x - x0) * path_gradient_sum(model, x, x0, target, alphas, weights, batch_size)

"""The paper's bounds in numbers: Remark 4, Theorems 5 and 6, Proposition 7.

Every bound is a closed form in the spectral norms ``B_1..B_k`` of a chain
``f(x) = W_k s(W_{k-1} s(... s(W_1 x)))`` with 1-Lipschitz, 1-smooth activations and ``s(0) = 0``;
:mod:`smoothstab.spectral` computes the norms of a network (:func:`layer_norms`, one layer:
:func:`spectral_norm`) and says where the network departs from that chain (:class:`LayerNorms`).
The bound functions take the norms as a list or a :class:`LayerNorms`.

How the pieces fit: :func:`gamma` is ``Gamma_{t,i}``, the elementary symmetric polynomial of
degree ``t - i`` in ``B_1..B_t``, from which every constant is built. Remark 4 gives the training
loss's Lipschitz constant and smoothness in ``W`` (:func:`lipschitz_constant`,
:func:`smoothness_vanilla`, :func:`smoothness_noisy`); they feed the stability of Simple-Grad
under SGD (Theorem 5, :func:`stability_bound_simplegrad`), which Theorem 6 scales down for
Smooth-Grad (:func:`stability_bound_smoothgrad`). Proposition 7 bounds the fidelity error of
Smooth-Grad and smoothed IG (:func:`fidelity_bound_smoothgrad`,
:func:`fidelity_bound_smoothed_ig`) through ``kappa``, a bound on the input gradient's Lipschitz
constant. Where the paper's printed formula is garbled in the text we have, the function's
docstring says which form is used here and why.

Bounds are products of norms and can exceed float range, so they are computed in log space;
``log10=True`` returns ``log10`` of the bound.

Long (about 380 lines) because every closed form keeps its derivation notes (two prefactors
are reconstructions) next to the code that evaluates it in log space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from smoothstab.checks import check_int, check_positive
from smoothstab.spectral import LayerNorms, layer_norms, spectral_norm

__all__ = [
    "LayerNorms",
    "fidelity_bound_smoothed_ig",
    "fidelity_bound_smoothgrad",
    "gamma",
    "layer_norms",
    "lipschitz_constant",
    "smoothness_noisy",
    "smoothness_vanilla",
    "smoothgrad_sigma_star",
    "spectral_norm",
    "stability_bound_simplegrad",
    "stability_bound_smoothgrad",
    "trivial_bound_grad",
    "trivial_bound_smoothed_ig",
]

Norms: TypeAlias = Sequence[float] | LayerNorms
"""``B_1..B_k`` in forward order: a list of numbers or a :class:`LayerNorms`."""
Sigma: TypeAlias = float | npt.ArrayLike
"""A Smooth-Grad noise std in input units, or an array of them (the bound is vectorised)."""


def _sigmas(sigma: Sigma) -> np.ndarray:
    s = np.asarray(sigma, dtype=float)
    if s.size == 0 or not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ValueError(f"sigma: expected finite numbers > 0, got {sigma!r}")
    return s


def _out(log_value, sigma_like: Sigma | None = None, log10: bool = False) -> float | np.ndarray:
    """A natural-log bound as the bound (``inf`` past float range) or its ``log10``."""
    v = np.asarray(log_value, dtype=float)
    with np.errstate(over="ignore"):
        v = v / math.log(10) if log10 else np.exp(v)
    return float(v) if v.ndim == 0 and np.ndim(sigma_like) == 0 else v


# ---------------------------------------------------------------------------- Gamma


def _norms(norms: Norms, positive: bool = False) -> list[float]:
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


def gamma(norms: Norms, t: int, i: int) -> float:
    """``Gamma_{t,i}``: the elementary symmetric polynomial of degree ``t - i`` in
    ``B_1..B_t`` (the paper's section 3.2). ``Gamma_{t,0} = prod B_j``, ``Gamma_{t,t} = 1``."""
    b = _norms(norms)
    check_int(t, "t")
    check_int(i, "i")
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


def lipschitz_constant(norms: Norms, C: float) -> float:
    """Remark 4: ``L <= Gamma_{k,1} C``, the training loss's Lipschitz constant in ``W``
    (vanilla and noisy SGD; ``C >= ||x||_2`` over the data, loss 1-Lipschitz in the logits)."""
    b = _norms(norms)
    return _exp(_log_gamma(b, len(b), 1) + math.log(check_positive(C, "C")))


def smoothness_vanilla(norms: Norms, C: float) -> float:
    """Remark 4(2): ``beta <= (3k + 1) Gamma_{k,1}^2 C^2`` for vanilla SGD (needs a 1-smooth
    activation and loss)."""
    b = _norms(norms)
    log_l = _log_gamma(b, len(b), 1) + math.log(check_positive(C, "C"))
    return _exp(math.log(3 * len(b) + 1) + 2 * log_l)


def smoothness_noisy(norms: Norms, C: float, noise_std: float) -> float:
    """Remark 4(1) with Prop. 1: ``beta <= L / s_w`` for noisy SGD with weight-noise std
    ``s_w`` (Eq. 3)."""
    return lipschitz_constant(norms, C) / check_positive(noise_std, "noise_std")


# ---------------------------------------------------------------------------- Theorems 5, 6


def _log_up_simplegrad(
    norms: Norms, C: float, n: int, T: float, c: float, beta: float, L: float | None
) -> tuple[float, float]:
    """``(log Up(SG), 1 / (q + 1))`` of Theorem 5, after checking the arguments."""
    b = _norms(norms, positive=True)
    if len(b) < 2:
        raise ValueError("norms: Theorems 5 and 6 need k >= 2 layers, got 1")
    check_int(n, "n", low=2, what="training-set size")
    C, c, T = check_positive(C, "C"), check_positive(c, "c"), check_positive(T, "T")
    if T < 1:
        raise ValueError(f"T: expected a number of SGD steps >= 1, got {T}")
    beta = math.inf if beta == math.inf else check_positive(beta, "beta")
    log_l = (
        math.log(check_positive(L, "L"))
        if L is not None
        else _log_gamma(b, len(b), 1) + math.log(C)
    )
    q = beta * c
    a = 1 / (1 + q)  # 1 / (beta c + 1); the other exponent is 1 - a = q / (q + 1)
    log_g0 = _log_gamma(b, len(b), 0)
    log_lip = math.log(2) + log_g0 + math.log(C) + _log_sum_gamma(b, 1)  # L' of the saliency loss
    log_bound = math.log(2) + log_g0  # M: ||Sal_S - Sal_D|| <= 2 Gamma_{k,0}
    log_phi = a * log_lip + (1 - a) * log_bound
    log_up = math.log1p(1 / q) - math.log(n - 1) + a * math.log(2 * c) + (1 - a) * math.log(T)
    return log_up + (a * log_l if a else 0.0) + log_phi, a


def stability_bound_simplegrad(
    norms: Norms,
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

    Reconstruction: the printed prefactor is garbled in the paper's text we have; the form used
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
    norms: Norms,
    *,
    sigma: Sigma,
    C: float,
    n: int,
    T: float,
    c: float,
    beta: float,
    L: float | None = None,
    clip: bool = False,
    log10: bool = False,
) -> float | np.ndarray:
    """Theorem 6: ``Up(SG) [Gamma_{k,1} / (2 sigma Gamma_{k,0} sum_{i<k} Gamma_{i,1})]^{1/(q+1)}``.

    Reconstruction: the glyph before ``Gamma_{k,0}`` is unreadable in the paper's text we have;
    it is read as ``sigma`` (the paper says the bound vanishes as sigma grows; Stein's lemma
    gives Smooth-Grad a Lipschitz constant ``Gamma_{k,1} C / sigma`` in ``W``). The theorem
    assumes ``x + z`` rescaled to norm ``<= C``. As printed the factor exceeds 1 for small
    sigma, making the bound larger than Theorem 5's; ``clip=True`` uses ``min(1, factor)``,
    which is also valid because averaging over ``z`` cannot raise Simple-Grad's Lipschitz
    constant in ``W``. The factor is below 1 for
    ``sigma > Gamma_{k,1} / (2 Gamma_{k,0} sum Gamma_{i,1})``.

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


def smoothgrad_sigma_star(norms: Norms, *, log10: bool = False) -> float:
    """``sigma* = Gamma_{k,1} / (2 Gamma_{k,0} sum_{i<k} Gamma_{i,1})``: the noise std past which
    Theorem 6's factor ``(sigma* / sigma)^{1/(q+1)}`` is below 1 (below it, the factor exceeds 1
    and :func:`stability_bound_smoothgrad` with ``clip=True`` is Theorem 5's bound).

    Computed in log space (the Gammas overflow floats for deep networks); ``log10=True`` returns
    ``log10 sigma*``. Needs ``k >= 2`` and every norm > 0, as Theorems 5-6 do.
    """
    b = _norms(norms, positive=True)
    if len(b) < 2:
        raise ValueError("norms: Theorem 6 needs k >= 2 layers, got 1")
    k = len(b)
    log_s = _log_gamma(b, k, 1) - math.log(2) - _log_gamma(b, k, 0) - _log_sum_gamma(b, 1)
    return _out(log_s, None, log10)


# ---------------------------------------------------------------------------- trivial bounds


def trivial_bound_grad(norms: Norms, *, log10: bool = False) -> float:
    """``2 Gamma_{k,0}``: what any distance between two Simple-Grad or Smooth-Grad maps of chains
    with these norms is at most, whatever the weights and the data.

    The input gradient of a logit of a chain with 1-Lipschitz activations has norm at most
    ``prod B_j = Gamma_{k,0}`` (biases do not matter); a Smooth-Grad map is an average of such
    gradients, so the same holds. Hence ``||Sal_A(x) - Sal_B(x)|| <= 2 Gamma_{k,0}`` bounds the
    stability error (Theorems 5-6) and Smooth-Grad's fidelity error (Proposition 7): a bound above
    it is vacuous.
    """
    b = _norms(norms)
    return _out(math.log(2) + _log_gamma(b, len(b), 0), None, log10)


def trivial_bound_smoothed_ig(
    norms: Norms, *, sigma: Sigma, m: int, C: float, log10: bool = False
) -> float | np.ndarray:
    """``Gamma_{k,0} (2C + sigma sqrt(m))``: what smoothed IG's fidelity error is at most for any
    weights, for inputs with ``||x||_2 <= C`` and a zero baseline.

    ``IG(x) = x * avg_a grad f(a x)`` (elementwise; quadrature weights >= 0 summing to at most
    1) has norm ``<= ||x||_2 ||avg grad||_inf <= ||x||_2 Gamma_{k,0}``; so ``||E_z IG(x + z)||
    <= Gamma_{k,0} E||x + z|| <= Gamma_{k,0} (C + sigma sqrt(m))`` (Jensen: ``E||z|| <= sigma
    sqrt(m)``), and ``||E_z IG(x + z) - IG(x)|| <= Gamma_{k,0} (2C + sigma sqrt(m))``. A fidelity
    bound above it is vacuous.
    """
    b = _norms(norms)
    s = _sigmas(sigma)
    C = check_positive(C, "C")
    log_b = _log_gamma(b, len(b), 0) + np.log(2 * C + s * math.sqrt(_check_m(m)))
    return _out(log_b, sigma, log10)


# ---------------------------------------------------------------------------- Proposition 7


def _log_kappa(norms: Norms) -> float:
    """``log kappa``, ``kappa = Gamma_{k,0} sum_{i=1}^{k-1} Gamma_{i,0}`` (0 for ``k = 1``)."""
    b = _norms(norms)
    return _log_gamma(b, len(b), 0) + _log_sum_gamma(b, 0)


def _check_m(m: int) -> int:
    return check_int(m, "m", low=1, what="the input dimension")


def fidelity_bound_smoothgrad(
    norms: Norms, *, sigma: Sigma, m: int, log10: bool = False
) -> float | np.ndarray:
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


def fidelity_bound_smoothed_ig(
    norms: Norms, *, sigma: Sigma, m: int, C: float, log10: bool = False
) -> float | np.ndarray:
    """Proposition 7: ``eps_fid(smoothed IG, sigma) <= kappa (3C + 1) sigma sqrt(m)``.

    ``C`` bounds ``||x||_2``; the IG integral is exact (no quadrature error) and the baseline
    zero. Same assumptions as :func:`fidelity_bound_smoothgrad`. The paper's appendix proof is not
    available to us; our own derivation gives ``sigma sqrt(m) (kappa C / 2 + min(Gamma_{k,0},
    kappa sigma sqrt(m) / 2))``, within the printed bound whenever ``(1 + 2.5 C) sum_{i<k}
    Gamma_{i,0} >= 1`` (e.g. ``C >= 1`` and ``B_1 >= 0.3``).
    """
    s = _sigmas(sigma)
    log_b = (
        _log_kappa(norms)
        + math.log(3 * check_positive(C, "C") + 1)
        + np.log(s)
        + 0.5 * math.log(_check_m(m))
    )
    return _out(log_b, sigma, log10)

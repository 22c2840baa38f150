"""Inference over retrained models: intervals for means over model pairs (or models) and test
images, paired differences between noise levels, relative changes, the advice on a noise level
with its one-standard-error rule, and how many models and images a chosen interval needs.

Pure numbers (numpy float64): no files and no words; the experiment layer applies these to a
run's per-image rows and says what they mean.

The design
----------
A run has ``k`` independently retrained models and ``m`` test images. A *pair statistic*
``v[p, i]`` is given for every model pair ``p = (a, b)``, ``a < b``, in the lexicographic order
of :func:`pair_index`, and every image ``i`` (a distance or similarity between two models'
maps); a *per-model statistic* ``v[a, i]`` for every model (fidelity, map norm). The summary is
the grand mean ``theta_hat``. Its target is the mean over new retrainings, new images and new
Monte-Carlo draws: ``theta_hat`` is a crossed U-statistic, of order 2 in the models (pairs share
models, so they are not independent) and of order 1 in the images (every pair sees the same
images). Its Hoeffding decomposition::

    Var(theta_hat) = 4 s_h1 / k + 2 s_h2 / (k (k-1))                 models
                   + s_b / m                                           images
                   + 4 s_g1 / (k m) + 2 s_g2 / (k (k-1) m)             models x images

with ``s_h1`` the variance of a model's main effect, ``s_h2`` that of a pair's own effect,
``s_b`` of an image's, ``s_g1`` model x image and ``s_g2`` pair x image
(:class:`DesignComponents`). Without images it is Hoeffding's ``[4 (k-2) zeta1 + 2 zeta2] /
[k (k-1)]`` with ``zeta1 = s_h1``, ``zeta2 = 2 s_h1 + s_h2``. A Student-t interval over the
``k (k-1) / 2`` pair means with ``K - 1`` degrees of freedom (the paper's band) ignores that pairs
share models: its coverage falls as ``k`` grows.

**Monte-Carlo error is part of the design.** Each image's noise draws are its own (independent
across images) and, under common random numbers, shared by the models. The Monte-Carlo error of
``v[p, i]`` is then a function of (model a, model b, image i with its draws): it sits in the image
and interaction terms, and the image jackknife below already contains it, correlations across
pairs included. Adding the mean Monte-Carlo variance on top would count it twice.

The interval ("jk2c", a bias-corrected two-way jackknife)
--------------------------------------------------------
::

    V_models = leave-one-model-out jackknife of theta_hat (images fixed)
    V_images = leave-one-image-out jackknife (models fixed)
    V_inter  = (mean over images of the per-image model jackknife - V_models) / (m - 1)
    V        = max(V_models - V_inter, 0) + V_images

``E[V_images]`` is the image term plus the interactions, ``V_inter`` removes from ``V_models``
the interaction part ``V_images`` already holds, and ``E[V] = Var(theta_hat) + [4 / (k (k-2)) -
2 / (k (k-1))] s_h2``: unbiased but for the jackknife's known over-statement of the pair-specific
term (conservative). For per-model statistics it is the two-way random-effects ANOVA estimate
``(MS_models + MS_images - MS_residual) / (k m)``.

Degrees of freedom: Welch-Satterthwaite over the three terms, with ``k - 1`` (and ``m - 1``)
lowered where the leave-one-out pseudo-values (image means) are heavy-tailed, ``2 / (2 / (n-1) +
kappa / n)`` with ``kappa`` their bias-corrected excess kurtosis floored at 0 (``df_rule =
"kurtosis"``; ``"satterthwaite"`` keeps the normal-theory ones). Per-model means from
:data:`MIN_MODELS` models get Hall's (1992) skewness-corrected interval (a few poor models skew
fidelity); pair statistics do not (their Edgeworth term has a part the pseudo-values do not
estimate).

Scope
-----
With ``k >= MIN_MODELS`` models (``scope = "retraining"``) an interval is over retraining,
images and draws. With fewer, the model part has too few degrees of freedom to cover (per-model
means of three models covered 88% in simulation): by default (``scope="auto"``) the interval is
then over images and draws only, *for these models* (``scope = "these models"``), and
:attr:`MeanEstimate.too_few_models` is set. ``scope="retraining"`` asks for the model interval
anyway from three models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MIN_MODELS",
    "Best",
    "DesignComponents",
    "MeanEstimate",
    "PerImage",
    "Recommendation",
    "SampleSizePlan",
    "best_level",
    "leave_one_model_out",
    "linearised_ratio",
    "model_difference",
    "model_mean",
    "models_from_pairs",
    "n_pairs",
    "pair_difference",
    "pair_index",
    "pair_mean",
    "per_image_pair_mean",
    "ratio_difference",
    "ratio_mean",
    "recommend",
    "relative_change",
    "sample_size",
    "sets_difference",
    "variance_components",
]

MIN_MODELS = 4
"""Models from which an interval is over retraining (below it: over images, for these models)."""
SCOPES = ("auto", "retraining", "these models")
DF_RULES = ("kurtosis", "satterthwaite")
RETRAINING, THESE_MODELS = "retraining", "these models"


# --- quantiles (scipy.special: scipy.stats takes a second to import) --------------------------


def _t_quantile(p: float, df) -> np.ndarray:
    """Student's t quantile at probability ``p`` (normal where ``df`` is infinite)."""
    from scipy import special

    df = np.asarray(df, dtype=np.float64)
    finite = np.isfinite(df)
    return np.where(finite, special.stdtrit(np.where(finite, df, 1.0), p), special.ndtri(p))


def _chi2_quantile(q: float, df: float) -> float:
    from scipy import special

    return float(special.chdtri(df, 1.0 - q))


# --- pairs ------------------------------------------------------------------------------------


def n_pairs(k: int) -> int:
    """The ``k (k-1) / 2`` pairs of ``k`` models."""
    return k * (k - 1) // 2


def models_from_pairs(n: int) -> int:
    """The ``k`` with ``k (k-1) / 2 == n`` (a ``ValueError`` if ``n`` is no such number)."""
    k = int(round((1 + math.sqrt(1 + 8 * n)) / 2))
    if n < 1 or n_pairs(k) != n:
        raise ValueError(f"values: {n} rows of pairs is not k(k-1)/2 for any number k of models")
    return k


def pair_index(k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)``: the models of the ``k (k-1) / 2`` pairs ``a < b``, in lexicographic order."""
    return np.triu_indices(k, 1)


def _incidence(k: int) -> np.ndarray:
    a, b = pair_index(k)
    inc = np.zeros((k, len(a)))
    inc[a, np.arange(len(a))] = 1.0
    inc[b, np.arange(len(a))] = 1.0
    return inc


# --- the estimate -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MeanEstimate:
    """A mean over models (or model pairs) and images, or a contrast of two, with its interval.

    ``components`` are the parts of ``se**2``: ``models`` (retraining; 0 for ``scope = "these
    models"``) and ``images`` (image sampling, the model x image interactions and the
    Monte-Carlo draws). ``order`` is 2 for pair statistics, 1 for per-model ones; ``k`` counts
    models, ``m`` images. ``skew`` (0: a symmetric t interval) is the estimator's skewness used
    by Hall's correction.
    """

    estimate: float
    se: float
    df: float
    k: int
    m: int
    order: int
    scope: str
    components: dict[str, float]
    skew: float = 0.0

    @property
    def too_few_models(self) -> bool:
        """Fewer than :data:`MIN_MODELS` models: no interval over retraining to be trusted."""
        return self.k < MIN_MODELS

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """The two-sided ``level`` interval: Student's t with :attr:`df`, skewness-corrected where
        :attr:`skew` is not 0."""
        lo, hi = _hall_interval(self.estimate, self.se, self.df, self.skew, level)
        return float(lo), float(hi)

    def halfwidth(self, level: float = 0.95) -> float:
        lo, hi = self.interval(level)
        return (hi - lo) / 2

    def sign(self, level: float = 0.95) -> int:
        """-1 where the interval lies below 0, +1 above it, 0 where it holds 0."""
        lo, hi = self.interval(level)
        return -1 if hi < 0 else 1 if lo > 0 else 0

    def __repr__(self) -> str:
        lo, hi = self.interval()
        return (
            f"MeanEstimate({self.estimate:.5g}, 95% [{lo:.5g}, {hi:.5g}], se {self.se:.3g}, "
            f"df {self.df:.3g}; {self.k} models, {self.m} images; over {self.scope})"
        )


# --- the variance, batched over leading dimensions --------------------------------------------


def _mu3(x: np.ndarray) -> np.ndarray:
    """Unbiased third central moment along the last axis (0 below 3 values)."""
    n = x.shape[-1]
    if n < 3:
        return np.zeros(x.shape[:-1])
    d = x - x.mean(-1, keepdims=True)
    return n / ((n - 1) * (n - 2)) * (d**3).sum(-1)


def _eff_df(x: np.ndarray) -> np.ndarray:
    """Degrees of freedom of the sample variance of ``x`` (last axis), lowered for heavy tails.

    ``Var(s^2) = sigma^4 [2 / (n-1) + kappa / n]`` (``kappa``: excess kurtosis), so a scaled
    chi-square matching it has ``2 / (2 / (n-1) + kappa / n)`` degrees of freedom; ``kappa`` is the
    bias-corrected sample excess kurtosis G2 floored at 0, so this never exceeds ``n - 1``.
    """
    n = x.shape[-1]
    if n < 4:
        return np.full(x.shape[:-1], n - 1.0)
    d = x - x.mean(-1, keepdims=True)
    m2 = (d**2).mean(-1)
    m4 = (d**4).mean(-1)
    safe = np.where(m2 > 0, m2, 1.0)
    g2 = np.where(m2 > 0, m4 / safe**2 - 3.0, 0.0)
    kappa = np.clip(((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3)), 0.0, None)
    return 2.0 / (2.0 / (n - 1) + kappa / n)


def _pair_parts(v: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Jackknife pieces of pair values ``v[..., K, m]`` (``k >= 3``): the model jackknife, its
    per-image mean, the image jackknife, the leave-one-model-out means, pseudo-values and
    image means."""
    n, m = v.shape[-2:]
    inc = _incidence(k)
    colsum = v.sum(-2)
    with_a = np.einsum("ap,...pi->...ai", inc, v)  # per image: the sum over pairs holding a
    loo_img = (colsum[..., None, :] - with_a) / (n - (k - 1))
    loo = loo_img.mean(-1)
    c = (k - 1) / k
    v_models = c * ((loo - loo.mean(-1, keepdims=True)) ** 2).sum(-1)
    v_models_img = c * ((loo_img - loo_img.mean(-2, keepdims=True)) ** 2).sum(-2).mean(-1)
    col = colsum / n
    theta = v.mean((-2, -1))
    return dict(
        theta=theta,
        v_models=v_models,
        v_models_img=v_models_img,
        v_images=col.var(-1, ddof=1) / m,
        loo=loo,
        psi=k * theta[..., None] - (k - 1) * loo,
        col=col,
    )


def _model_parts(v: np.ndarray) -> dict[str, np.ndarray]:
    """The same pieces for per-model values ``v[..., k, m]`` (``k >= 2``)."""
    k, m = v.shape[-2:]
    row, col = v.mean(-1), v.mean(-2)
    return dict(
        theta=v.mean((-2, -1)),
        v_models=row.var(-1, ddof=1) / k,
        v_models_img=v.var(-2, ddof=1).mean(-1) / k,
        v_images=col.var(-1, ddof=1) / m,
        loo=(row.sum(-1, keepdims=True) - row) / (k - 1),
        psi=row,
        col=col,
    )


def _parts(v: np.ndarray, order: int) -> dict[str, np.ndarray]:
    return _pair_parts(v, models_from_pairs(v.shape[-2])) if order == 2 else _model_parts(v)


def _variance(v: np.ndarray, order: int, scope: str, df_rule: str) -> dict[str, np.ndarray]:
    """``theta``, the variance parts ``models`` and ``images``, ``df`` and the third cumulant
    ``g3`` of the grand mean of ``v[..., units, m]`` (batched over leading dims)."""
    units, m = v.shape[-2:]
    k = models_from_pairs(units) if order == 2 else units
    if scope == THESE_MODELS:  # models fixed: the image jackknife of the per-image means
        col = v.mean(-2)
        v_images = col.var(-1, ddof=1) / m
        df = _eff_df(col) if df_rule == "kurtosis" else np.full(v_images.shape, m - 1.0)
        return dict(
            theta=v.mean((-2, -1)),
            models=np.zeros_like(v_images),
            images=v_images,
            df=df,
            g3=_mu3(col) / m**2,
        )
    p = _parts(v, order)
    v_inter = (p["v_models_img"] - p["v_models"]) / (m - 1)
    v_models = np.maximum(p["v_models"] - v_inter, 0.0)
    if df_rule == "kurtosis":
        nu_models, nu_images = _eff_df(p["psi"]), _eff_df(p["col"])
    else:
        nu_models, nu_images = k - 1.0, m - 1.0
    total = v_models + p["v_images"]
    den = (
        p["v_models"] ** 2 / nu_models
        + v_inter**2 / ((k - 1) * (m - 1))
        + p["v_images"] ** 2 / nu_images
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(den > 0, total**2 / np.where(den > 0, den, 1.0), np.inf)
    return dict(
        theta=p["theta"],
        models=v_models,
        images=p["v_images"],
        df=np.clip(df, 1.0, k * m - 1.0),
        g3=_mu3(p["psi"]) / k**2 + _mu3(p["col"]) / m**2,
    )


def _hall_interval(est, se, df, skew, level=0.95):
    """Hall's (1992) skewness-corrected t interval (vectorised).

    With ``a = skew / 3``, ``b = skew / 6`` the transformed pivot ``g(T) = ((1 + a T)^3 - 1) /
    (3 a) + b`` of ``T = (est - theta) / se`` is closer to symmetric; the interval inverts it at
    the t quantiles. ``g`` is monotone for every ``a``; ``skew = 0`` is the t interval.
    """
    est, se, df, skew = (
        np.asarray(x, dtype=np.float64) for x in np.broadcast_arrays(est, se, df, skew)
    )
    q = _t_quantile(0.5 + level / 2, df)
    a = skew / 3.0
    b = skew / 6.0
    small = np.abs(a) < 1e-12
    a_ = np.where(small, 1.0, a)
    up = np.where(small, q, (np.cbrt(1.0 + 3.0 * a_ * (q - b)) - 1.0) / a_)
    down = np.where(small, -q, (np.cbrt(1.0 + 3.0 * a_ * (-q - b)) - 1.0) / a_)
    return est - se * up, est - se * down


# --- public estimators --------------------------------------------------------------------------


def _matrix(values, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [units, images], got shape {v.shape}")
    if v.shape[1] < 2:
        raise ValueError(f"{name}: expected at least 2 images (columns), got {v.shape[1]}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name}: expected finite values, got NaN or Inf")
    return v


def _models(v: np.ndarray, order: int, k: int | None) -> int:
    if order == 1:
        if k is not None and k != v.shape[0]:
            raise ValueError(f"k: {v.shape[0]} rows of models do not match k={k}")
        return v.shape[0]
    found = models_from_pairs(v.shape[0])
    if k is not None and k != found:
        raise ValueError(f"k: {v.shape[0]} rows of pairs are {found} models, not k={k}")
    return found


def _scope(scope: str, k: int, order: int) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope: expected one of {', '.join(SCOPES)}, got {scope!r}")
    if scope == "auto":
        return RETRAINING if k >= MIN_MODELS else THESE_MODELS
    if scope == RETRAINING and k < (3 if order == 2 else 2):
        need = "3 models (a pair per model left out)" if order == 2 else "2 models"
        raise ValueError(f"scope: an interval over retraining needs at least {need}, got {k}")
    return scope


def _estimate(
    v: np.ndarray,
    order: int,
    k: int,
    scope: str,
    df_rule: str,
    skew_correction: bool | None,
    shift: float = 0.0,
) -> MeanEstimate:
    if df_rule not in DF_RULES:
        raise ValueError(f"df_rule: expected one of {', '.join(DF_RULES)}, got {df_rule!r}")
    scope = _scope(scope, k, order)
    c = {key: float(x) for key, x in _variance(v, order, scope, df_rule).items()}
    var = c["models"] + c["images"]
    if skew_correction is None:  # per-model means over retraining only (module docstring)
        skew_correction = order == 1 and scope == RETRAINING and k >= MIN_MODELS
    skew = c["g3"] / var**1.5 if (skew_correction and var > 0) else 0.0
    return MeanEstimate(
        estimate=c["theta"] + shift,
        se=math.sqrt(var),
        df=c["df"],
        k=k,
        m=v.shape[1],
        order=order,
        scope=scope,
        components={"models": c["models"], "images": c["images"]},
        skew=skew,
    )


def pair_mean(
    values,
    k: int | None = None,
    *,
    scope: str = "auto",
    df_rule: str = "kurtosis",
    skew_correction: bool | None = None,
) -> MeanEstimate:
    """The mean over model pairs and images of a pair statistic, with its interval.

    ``values``: ``[K, m]``, the ``K = k (k-1) / 2`` pairs in :func:`pair_index` order (``k``, if
    given, is checked against ``K``). ``scope``: ``"auto"`` (over retraining from
    :data:`MIN_MODELS` models, else over images for these models), ``"retraining"`` or ``"these
    models"``. ``df_rule``: ``"kurtosis"`` or ``"satterthwaite"``. ``skew_correction``: Hall's
    interval (default: off for pair statistics).
    """
    v = _matrix(values)
    return _estimate(v, 2, _models(v, 2, k), scope, df_rule, skew_correction)


def model_mean(
    values,
    *,
    scope: str = "auto",
    df_rule: str = "kurtosis",
    skew_correction: bool | None = None,
) -> MeanEstimate:
    """The mean over models and images of a per-model statistic ``values[k, m]``, with its
    interval (Hall's skewness correction over retraining by default); options as
    :func:`pair_mean`."""
    v = _matrix(values)
    return _estimate(v, 1, v.shape[0], scope, df_rule, skew_correction)


def _same_shape(a, b, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    va, vb = _matrix(a, names[0]), _matrix(b, names[1])
    if va.shape != vb.shape:
        raise ValueError(
            f"{', '.join(names)}: expected the same shape (same pairs, same images), got "
            f"{va.shape} and {vb.shape}"
        )
    return va, vb


def pair_difference(values_a, values_b, k: int | None = None, **options) -> MeanEstimate:
    """``mean(values_a) - mean(values_b)`` of one pair statistic measured twice on the same
    pairs and images (two noise levels): the interval of the mean of the differences, so that
    what both share (models, images, draws) cancels. ``options`` as :func:`pair_mean`."""
    a, b = _same_shape(values_a, values_b, ("values_a", "values_b"))
    return pair_mean(a - b, k, **options)


def model_difference(values_a, values_b, **options) -> MeanEstimate:
    """:func:`pair_difference` of a per-model statistic ``[k, m]``."""
    a, b = _same_shape(values_a, values_b, ("values_a", "values_b"))
    return model_mean(a - b, **options)


def linearised_ratio(values_r, values_0) -> np.ndarray:
    """``(v_r - R v_0) / mean(v_0)`` with ``R = mean(v_r) / mean(v_0)``: the values whose mean's
    variance is, to first order, that of ``R`` (the delta method). :func:`relative_change` uses
    them; :func:`variance_components` of them plans a relative change."""
    vr, v0 = _same_shape(values_r, values_0, ("values_r", "values_0"))
    t0 = v0.mean()
    if not t0 > 0:
        raise ValueError(f"values_0: a relative change needs a positive mean, got {t0:g}")
    return (vr - vr.mean() / t0 * v0) / t0


def relative_change(
    values_r,
    values_0,
    k: int | None = None,
    *,
    per_model: bool = False,
    scope: str = "auto",
    df_rule: str = "kurtosis",
    skew_correction: bool | None = None,
) -> MeanEstimate:
    """``mean(values_r) / mean(values_0) - 1`` with its interval by the delta method (the
    crossed interval of :func:`linearised_ratio`'s values; a jackknife of the ratio itself
    covered the same in simulation). ``per_model``: per-model values ``[k, m]``; other options
    as :func:`pair_mean`."""
    z = linearised_ratio(values_r, values_0)
    order = 1 if per_model else 2
    shift = float(np.mean(values_r) / np.mean(values_0) - 1.0)
    return _estimate(z, order, _models(z, order, k), scope, df_rule, skew_correction, shift=shift)


def _ratio_parts(num, den, names: tuple[str, str]) -> tuple[np.ndarray, float]:
    n, d = _same_shape(num, den, names)
    t = float(d.mean())
    if t == 0 or not math.isfinite(t):
        raise ValueError(f"{names[1]}: a ratio of means needs a nonzero mean, got {t:g}")
    ratio = float(n.mean()) / t
    return (n - ratio * d) / t, ratio


def ratio_mean(
    num,
    den,
    k: int | None = None,
    *,
    per_model: bool = False,
    scope: str = "auto",
    df_rule: str = "kurtosis",
) -> MeanEstimate:
    """``mean(num) / mean(den)`` over pairs (or models, ``per_model``) and images ``[K, m]``,
    with its interval by the delta method: the crossed interval of ``(num - R den) /
    mean(den)``, as :func:`relative_change`. Two uses: a mean over a subset of the cells
    (``num = values * mask``, ``den = mask``: pairs of a group, such as those whose models
    predict the same class), and a chance-corrected score ``(mean(v) - mean(f)) / (ideal -
    mean(f))`` (``num = v - f``, ``den = ideal - f``). Options as :func:`pair_mean`."""
    z, ratio = _ratio_parts(num, den, ("num", "den"))
    order = 1 if per_model else 2
    return _estimate(z, order, _models(z, order, k), scope, df_rule, False, shift=ratio)


def ratio_difference(
    num_1,
    den_1,
    num_0,
    den_0,
    k: int | None = None,
    *,
    per_model: bool = False,
    scope: str = "auto",
    df_rule: str = "kurtosis",
) -> MeanEstimate:
    """``mean(num_1) / mean(den_1) - mean(num_0) / mean(den_0)`` on the same pairs (or models)
    and images, with its interval (paired: the difference of the two linearised values, as
    :func:`ratio_mean`): e.g. the change of a group's mean from r = 0 to another r."""
    z1, r1 = _ratio_parts(num_1, den_1, ("num_1", "den_1"))
    z0, r0 = _ratio_parts(num_0, den_0, ("num_0", "den_0"))
    z = _same_shape(z1, z0, ("num_1", "num_0"))[0] - z0
    order = 1 if per_model else 2
    return _estimate(z, order, _models(z, order, k), scope, df_rule, False, shift=r1 - r0)


def sets_difference(
    values_1,
    values_0,
    *,
    per_model: bool = False,
    scope: str = "auto",
    df_rule: str = "kurtosis",
) -> MeanEstimate:
    """``mean(values_1) - mean(values_0)`` of two *independent* sets of models (two
    training-set sizes) measured on the same images: ``[K1, m]`` and ``[K0, m]`` pairs (or
    ``[k1, m]``, ``[k0, m]`` models with ``per_model``).

    The variance is each set's model part plus the image jackknife of the per-image difference
    (the images, with their draws, are shared, so their effect cancels where the sets agree).
    Over retraining when both sets have :data:`MIN_MODELS` models (``"auto"``); else over images,
    for these models. ``k`` of the result is the smaller set's.
    """
    v1, v0 = _matrix(values_1, "values_1"), _matrix(values_0, "values_0")
    if v1.shape[1] != v0.shape[1]:
        raise ValueError(
            f"values_1, values_0: expected the same images (columns), got {v1.shape[1]} and "
            f"{v0.shape[1]}"
        )
    if df_rule not in DF_RULES:
        raise ValueError(f"df_rule: expected one of {', '.join(DF_RULES)}, got {df_rule!r}")
    order = 1 if per_model else 2
    k1, k0 = _models(v1, order, None), _models(v0, order, None)
    k, m = min(k1, k0), v1.shape[1]
    scope = _scope(scope, k, order)
    diff_col = v1.mean(0) - v0.mean(0)
    v_images = float(diff_col.var(ddof=1) / m)
    nu_images = float(_eff_df(diff_col)) if df_rule == "kurtosis" else m - 1.0
    v_models, den = 0.0, v_images**2 / nu_images
    if scope == RETRAINING:
        for v, kk in ((v1, k1), (v0, k0)):
            p = _parts(v, order)
            inter = float((p["v_models_img"] - p["v_models"]) / (m - 1))
            v_models += max(float(p["v_models"]) - inter, 0.0)
            nu = float(_eff_df(p["psi"])) if df_rule == "kurtosis" else kk - 1.0
            den += float(p["v_models"]) ** 2 / nu + inter**2 / ((kk - 1) * (m - 1))
    total = v_models + v_images
    df = total**2 / den if den > 0 else math.inf
    df = min(max(df, 1.0), (k1 + k0) * m - 1.0)
    return MeanEstimate(
        estimate=float(v1.mean() - v0.mean()),
        se=math.sqrt(total),
        df=df,
        k=k,
        m=m,
        order=order,
        scope=scope,
        components={"models": v_models, "images": v_images},
    )


def leave_one_model_out(values, k: int | None = None, *, per_model: bool = False) -> np.ndarray:
    """``[k]``: the grand mean of ``values`` with each model (its pairs) left out in turn."""
    v = _matrix(values)
    order = 1 if per_model else 2
    kk = _models(v, order, k)
    if kk < (3 if order == 2 else 2):
        raise ValueError(f"values: leaving a model out needs at least 3 models, got {kk}")
    return _parts(v, order)["loo"]


@dataclass(frozen=True)
class PerImage:
    """Per image, the mean of a pair statistic over the model pairs (``mean`` ``[m]``) and its
    interval over retraining (``lo``, ``hi``: NaN below :data:`MIN_MODELS` models, where the
    models are these models and each pair's value is what there is); ``k`` models."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    k: int

    @property
    def over_retraining(self) -> bool:
        return self.k >= MIN_MODELS


def per_image_pair_mean(values, k: int | None = None, level: float = 0.95) -> PerImage:
    """Each image's mean over the model pairs of ``values[K, m]``, with a Student-t interval
    over retraining from the leave-one-model-out jackknife of that image's mean (``k - 1``
    degrees of freedom; its variance ``(k-1)/k sum_a (theta_(-a) - theta_(.))^2`` counts that
    pairs share models). From :data:`MIN_MODELS` models; below, the bounds are NaN."""
    v = _matrix(values)
    kk = _models(v, 2, k)
    mean = v.mean(0)
    nan = np.full_like(mean, np.nan)
    if kk < MIN_MODELS:
        return PerImage(mean, nan, nan.copy(), kk)
    keep = 1.0 - _incidence(kk)  # [k, K]: the pairs without model a
    loo = keep @ v / keep.sum(1, keepdims=True)  # [k, m]
    var = (kk - 1) / kk * ((loo - loo.mean(0)) ** 2).sum(0)
    half = float(_t_quantile(0.5 + level / 2, kk - 1.0)) * np.sqrt(var)
    return PerImage(mean, mean - half, mean + half, kk)


# --- variance components and sample size ------------------------------------------------------


@dataclass(frozen=True)
class DesignComponents:
    """The variance components of a crossed models x images mean (module docstring).

    Order 2 (pair statistics): ``s_h1`` model, ``s_h2`` pair, ``s_b`` image, ``s_g1`` model x
    image, ``s_g2`` pair x image; order 1 (per-model): ``s_h1``, ``s_b``, ``s_g1``. Negative
    estimates are clipped at 0 (named in ``clipped``). ``source``: ``"moments"`` (unbiased
    overlap-pattern moments, ``k >= 4``), ``"anova"`` (order 1), or ``"jackknife"`` (``k = 3``:
    pair effects folded into model effects, which over-predicts larger designs' variance).
    ``k`` and ``m`` are the run's the components were estimated from.
    """

    s_h1: float
    s_h2: float
    s_b: float
    s_g1: float
    s_g2: float
    k: int
    m: int
    order: int = 2
    source: str = "moments"
    clipped: tuple[str, ...] = ()

    def variance(self, k: int, m: int) -> float:
        """The variance of the grand mean of a run with ``k`` models and ``m`` images."""
        if self.order == 1:
            return self.s_h1 / k + self.s_b / m + self.s_g1 / (k * m)
        return (
            4 * self.s_h1 / k
            + 2 * self.s_h2 / (k * (k - 1))
            + self.s_b / m
            + 4 * self.s_g1 / (k * m)
            + 2 * self.s_g2 / (k * (k - 1) * m)
        )

    def expected_parts(self, k: int, m: int) -> tuple[float, float]:
        """The expected model and image parts of the interval's variance estimate at (k, m)."""
        if self.order == 1:
            return self.s_h1 / k, self.s_b / m + self.s_g1 / (k * m)
        if k < 3:
            raise ValueError(f"k: an interval over retraining needs at least 3 models, got {k}")
        models = 4 * self.s_h1 / k + 4 * self.s_h2 / (k * (k - 2))
        images = self.s_b / m + 4 * self.s_g1 / (k * m) + 2 * self.s_g2 / (k * (k - 1) * m)
        return models, images

    def expected_halfwidth(
        self, k: int, m: int, level: float = 0.95, quantile: float = 0.5
    ) -> float:
        """The predicted ``quantile`` (default: the median) of the interval's half-width at (k,
        m): ``t_df sqrt(E[V] chi2_df(quantile) / df)``, the variance estimate taken as a scaled
        chi-square with the Satterthwaite df of its expected parts. In simulation the realised
        median was 5-7% wider (the kurtosis df are lower than normal theory's)."""
        models, images = self.expected_parts(k, m)
        total = models + images
        if total <= 0:
            return 0.0
        den = models**2 / (k - 1) + images**2 / (m - 1)
        df = total**2 / den
        t = float(_t_quantile(0.5 + level / 2, df))
        return t * math.sqrt(total * _chi2_quantile(quantile, df) / df)


def _pattern_moments(c: np.ndarray, k: int) -> np.ndarray:
    """``M[s, t]``: the mean product ``c[p, i] c[q, j]`` of centred pair values over the cell
    pairs whose pairs share ``s`` models (0, 1, 2) and whose images are the same (``t = 1``) or
    not (``t = 0``); distinct cells only, except (2, 1), a cell with itself."""
    n, m = c.shape[-2:]
    inc = _incidence(k)
    shared = inc.T @ inc
    same = np.einsum("...pi,...qi->...pq", c, c)
    rows = c.sum(-1)
    other = rows[..., :, None] * rows[..., None, :] - same
    out = np.empty(c.shape[:-2] + (3, 2))
    for s in range(3):
        mask = shared == s
        count = mask.sum()
        out[..., s, 1] = (same * mask).sum((-2, -1)) / (count * m)
        out[..., s, 0] = (other * mask).sum((-2, -1)) / (count * m * (m - 1))
    return out


def variance_components(
    values, k: int | None = None, *, per_model: bool = False
) -> DesignComponents:
    """Estimate the crossed variance components of a run's values ``[K, m]`` (or ``[k, m]`` with
    ``per_model``).

    Pairs, ``k >= 4``: per overlap pattern (models shared 0, 1, 2; same image or not) the mean
    product of centred values, minus the pattern of disjoint pairs on different images (which
    estimates the squared mean): ``s_h1 = C10``, ``s_h2 = C20 - 2 C10``, ``s_b = C01``,
    ``s_g1 = C11 - C10 - C01``, ``s_g2 = C21 - C20 - C01 - 2 s_g1``, each unbiased. ``k = 3``: a
    conservative fallback from the jackknife pieces. Per-model: the two-way random-effects
    ANOVA.
    """
    v = _matrix(values)
    m = v.shape[1]
    if per_model:
        kk = v.shape[0]
        if kk < 2:
            raise ValueError("values: variance components need at least 2 models")
        row, col, g = v.mean(1), v.mean(0), v.mean()
        ms_rows = m * ((row - g) ** 2).sum() / (kk - 1)
        ms_cols = kk * ((col - g) ** 2).sum() / (m - 1)
        ms_res = ((v - row[:, None] - col[None, :] + g) ** 2).sum() / ((kk - 1) * (m - 1))
        raw = {"s_h1": (ms_rows - ms_res) / m, "s_b": (ms_cols - ms_res) / kk, "s_g1": ms_res}
        clipped = tuple(name for name, x in raw.items() if x < 0)
        raw = {name: max(float(x), 0.0) for name, x in raw.items()}
        return DesignComponents(
            raw["s_h1"], 0.0, raw["s_b"], raw["s_g1"], 0.0, kk, m, 1, "anova", clipped
        )
    kk = _models(v, 2, k)
    if kk < 3:
        raise ValueError(
            f"values: variance components need at least 3 models, got {kk} (one pair cannot "
            "tell how maps vary with retraining)"
        )
    if kk == 3:
        p = _pair_parts(v, kk)
        inter = float((p["v_models_img"] - p["v_models"]) / (m - 1))
        s_g1 = max(kk * m * inter / 4, 0.0)
        s_h1 = max(kk * (float(p["v_models"]) - inter) / 4, 0.0)
        s_b = max(m * float(p["v_images"]), 0.0)
        return DesignComponents(s_h1, 0.0, s_b, s_g1, 0.0, kk, m, 2, "jackknife")
    moments = _pattern_moments(v - v.mean(), kk)
    c = moments - moments[..., :1, :1]
    raw = {"s_h1": c[1, 0], "s_h2": c[2, 0] - 2 * c[1, 0], "s_b": c[0, 1]}
    raw["s_g1"] = c[1, 1] - c[1, 0] - c[0, 1]
    raw["s_g2"] = c[2, 1] - c[2, 0] - c[0, 1] - 2 * raw["s_g1"]
    clipped = tuple(name for name, x in raw.items() if x < 0)
    raw = {name: max(float(x), 0.0) for name, x in raw.items()}
    return DesignComponents(
        raw["s_h1"], raw["s_h2"], raw["s_b"], raw["s_g1"], raw["s_g2"], kk, m, 2, "moments", clipped
    )


@dataclass(frozen=True)
class SampleSizePlan:
    """Per number of models ``k``: the fewest images ``m`` on the grid whose predicted median
    half-width meets ``target`` (or the most images, when none does), as rows ``(k, m,
    half-width, cost, meets)``; ``best``: the cheapest row that meets it (``None``: none)."""

    target: float
    level: float
    rows: tuple[tuple[int, int, float, float, bool], ...]
    best: tuple[int, int, float, float, bool] | None
    components: DesignComponents


def sample_size(
    components: DesignComponents,
    target_halfwidth: float,
    *,
    level: float = 0.95,
    k_values: Sequence[int] = tuple(range(MIN_MODELS, 41)),
    m_values: Sequence[int] = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024),
    cost_per_model: float = 1.0,
    cost_per_image: float = 0.0,
) -> SampleSizePlan:
    """How many models and test images give an interval of half-width ``target_halfwidth``.

    ``components``: of the statistic to plan (:func:`variance_components`; for a relative
    change, of :func:`linearised_ratio`'s values, so a target of 0.02 is 2% of the baseline).
    The half-width is :meth:`DesignComponents.expected_halfwidth`'s median. Cost =
    ``cost_per_model k + cost_per_image k m`` (training a model; attributing one image with one
    model). One pilot's components are noisy (their model part has ``k - 1`` degrees of
    freedom): in simulation the ``k`` planned from single six-model pilots ranged 7-28 for one
    target, so a plan is a rough guide.
    """
    if not target_halfwidth > 0:
        raise ValueError(f"target_halfwidth: expected a number > 0, got {target_halfwidth}")
    rows = []
    for k in k_values:
        chosen = None
        for m in sorted(m_values):
            h = components.expected_halfwidth(k, m, level)
            cost = cost_per_model * k + cost_per_image * k * m
            chosen = (int(k), int(m), float(h), float(cost), bool(h <= target_halfwidth))
            if h <= target_halfwidth:
                break
        rows.append(chosen)
    meets = [row for row in rows if row[4]]
    best = min(meets, key=lambda row: (row[3], row[0])) if meets else None
    return SampleSizePlan(float(target_halfwidth), level, tuple(rows), best, components)


# --- the best level and the recommendation ------------------------------------------------------


@dataclass(frozen=True)
class Best:
    """The best of a sweep's levels and which others the data cannot tell from it.

    ``index``: the level with the lowest mean (``lower_is_better``) or the highest, among the
    ``allowed``; ``to_best[j]``: level j's mean minus the best's (:func:`pair_difference`;
    ``None`` at the best); ``indistinguishable[j]``: its interval holds 0 (the best is itself);
    ``at_edge``: the best is the sweep's first or last level.
    """

    index: int
    to_best: tuple[MeanEstimate | None, ...]
    indistinguishable: tuple[bool, ...]
    at_edge: bool


def _curve(values, k: int | None, per_model: bool) -> tuple[np.ndarray, int, int]:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 3 or v.shape[0] < 2:
        raise ValueError(
            f"values: expected [levels, units, images] with at least 2 levels, got {v.shape}"
        )
    order = 1 if per_model else 2
    return v, order, _models(_matrix(v[0]), order, k)


def best_level(
    values,
    k: int | None = None,
    *,
    lower_is_better: bool = True,
    allowed: Sequence[bool] | None = None,
    level: float = 0.95,
    per_model: bool = False,
    **options,
) -> Best:
    """The best level of a sweep ``values[R, units, images]`` (the same units and images at
    every level) and the levels whose paired difference to it is within its ``level`` interval.
    ``options`` as :func:`pair_mean`."""
    v, order, kk = _curve(values, k, per_model)
    ok = [True] * len(v) if allowed is None else [bool(a) for a in allowed]
    means = v.mean((1, 2))
    pick = [j for j in range(len(v)) if ok[j]]
    if not pick:
        raise ValueError("allowed: expected at least one allowed level")
    sign = 1.0 if lower_is_better else -1.0
    best = min(pick, key=lambda j: (sign * means[j], j))
    diff = pair_difference if order == 2 else model_difference
    kw = dict(options, k=kk) if order == 2 else options
    to_best = tuple(None if j == best else diff(v[j], v[best], **kw) for j in range(len(v)))
    same = tuple(j == best or to_best[j].sign(level) == 0 for j in range(len(v)))
    return Best(best, to_best, same, best in (0, len(v) - 1))


@dataclass(frozen=True)
class Recommendation:
    """The advice on a noise level from a sweep (:func:`recommend`).

    ``status``: ``"smooth"`` (recommend ``r[recommended]``), ``"no smoothing"`` (no allowed
    level is measurably better than ``r[0]``; ``recommended`` is 0) or ``"too few models"`` (no
    verdict; ``recommended`` is ``None``). ``change[j]``: level j's mean minus level 0's
    (``None`` at 0); ``better[j]``: its interval (at the multiplicity-adjusted level) lies below
    0; ``best``: :class:`Best` among the allowed levels; ``best_at_sweep_edge``: the best is
    the sweep's last level (the curve may keep falling beyond it); ``best_at_budget_edge``: the
    best is the last allowed level and the next is not allowed.
    """

    status: str
    recommended: int | None
    change: tuple[MeanEstimate | None, ...]
    better: tuple[bool, ...]
    best: Best
    allowed: tuple[bool, ...]
    best_at_sweep_edge: bool
    best_at_budget_edge: bool
    level: float
    adjusted_level: float


def recommend(
    values,
    k: int | None = None,
    *,
    allowed: Sequence[bool] | None = None,
    level: float = 0.95,
    multiplicity: str = "none",
    **options,
) -> Recommendation:
    """Which level of a sweep to use: ``values[R, K, m]`` of a pair statistic where lower is
    better (a distance between models' maps), level 0 the unsmoothed baseline, the same pairs
    and images at every level; ``allowed``: the levels within a fidelity budget (all by
    default; level 0 always).

    * Level j is *measurably better* than level 0 where the interval of its paired difference
      lies below 0 (``multiplicity="bonferroni"`` widens the intervals over the allowed levels
      j > 0; unadjusted, a flat curve still gave level 0 in 96-99.8% of simulated runs, the
      differences of one sweep being strongly correlated).
    * None allowed is measurably better: ``"no smoothing"``.
    * Otherwise, with ``best`` the allowed level of lowest mean: the smallest allowed level that
      is measurably better than level 0 and whose mean exceeds the best's by at most one
      standard error of their paired difference (the one-standard-error rule).
    * Fewer than :data:`MIN_MODELS` models: everything computed (over images, for these models),
      status ``"too few models"``, no recommendation.
    """
    v, _, kk = _curve(values, k, False)
    n_levels = len(v)
    ok = [True] * n_levels if allowed is None else [bool(a) for a in allowed]
    if len(ok) != n_levels:
        raise ValueError(f"allowed: expected {n_levels} flags, got {len(ok)}")
    ok[0] = True
    if multiplicity not in ("none", "bonferroni"):
        raise ValueError(f"multiplicity: expected none or bonferroni, got {multiplicity!r}")
    candidates = [j for j in range(1, n_levels) if ok[j]]
    adjusted = level
    if multiplicity == "bonferroni" and candidates:
        adjusted = 1 - (1 - level) / len(candidates)
    change = (None,) + tuple(pair_difference(v[j], v[0], kk, **options) for j in range(1, n_levels))
    better = (False,) + tuple(c.sign(adjusted) < 0 for c in change[1:])
    best = best_level(v, kk, allowed=ok, level=level, **options)
    last_allowed = max(j for j in range(n_levels) if ok[j])
    at_sweep_edge = best.index == n_levels - 1
    at_budget_edge = best.index == last_allowed < n_levels - 1
    if kk < MIN_MODELS:
        status, pick = "too few models", None
    elif not any(better[j] for j in candidates):
        status, pick = "no smoothing", 0
    else:
        near = [
            j
            for j in candidates
            if better[j] and (j == best.index or best.to_best[j].estimate <= best.to_best[j].se)
        ]
        # none within one standard error of the best: the best of those measurably better
        fallback = min((j for j in candidates if better[j]), key=lambda j: (v[j].mean(), j))
        status, pick = "smooth", min(near) if near else fallback
    return Recommendation(
        status=status,
        recommended=pick,
        change=change,
        better=better,
        best=best,
        allowed=tuple(ok),
        best_at_sweep_edge=at_sweep_edge,
        best_at_budget_edge=at_budget_edge,
        level=level,
        adjusted_level=adjusted,
    )

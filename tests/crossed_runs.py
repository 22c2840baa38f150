"""Simulated runs for calibrating the intervals of :mod:`smoothstab.inference`: k retrained
models x m test images x noise levels r, each map a Monte-Carlo mean over noise draws, compared
by the debiased unit-map distance the library reports.

For model ``a``, image ``i`` and noise level ``r`` the exact (infinitely many draws) map is::

    mu_a(i, r) = sig_i(r) + exp(-c_a r) sigma_a eta_i w_{a,i}              (dimension d)
    sig_i(r)   = sqrt(1 - om(r)) s_i + sqrt(om(r)) xi_i,   om(r) = min(1, (r / r_blur)^2)

``s_i`` is the image's true attribution (norm ``rho_i``); ``xi_i`` a blur artefact shared by
every model, which heavy smoothing makes every map agree on (stability up, fidelity down).
Models differ in quality (``sigma_a``, log-normal) and in how much smoothing helps them
(``c_a``, log-normal): model main effects and pair effects. Images differ in signal norm
(``rho_i``) and model-noise level (``eta_i``): image effects and model x image interactions.

The map computed is a mean over ``n`` draws in ``G`` groups; a group mean's Monte-Carlo error
is ``tau(r) kappa_a eta_i sqrt(G / n) (sqrt(crn) W_{i,g} + sqrt(1 - crn) W_{a,i,g})`` with
``W_{i,g}`` shared by all models (common random numbers) and independent across images, as in
smoothstab; ``tau(0) = 0``. The pair value is the unit-map distance from cross-group products
(``smoothstab.metrics.debiased_unit_distance``'s construction); the per-model value is the
fidelity proxy ``cos(map, s_i)`` of the Monte-Carlo mean map.

Everything is numpy float64, vectorised over replications. Adapted from the simulation study
that chose the estimator (its coverage tables are summarised in docs/estimators.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

R_LEVELS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


@dataclass(frozen=True)
class Design:
    d: int = 64  # map dimension
    groups: int = 4  # Monte-Carlo groups (>= 3)
    n: int = 64  # draws per map
    sigma0: float = 0.8  # typical model-specific noise scale
    sigma_sd: float = 0.4  # log-sd of model quality (0: identical models)
    c0: float = 3.0  # typical rate at which smoothing removes a model's own part
    c_sd: float = 0.5  # log-sd of that rate (0: smoothing helps every model alike)
    rho_sd: float = 0.3  # log-sd of an image's signal norm
    eta_sd: float = 0.3  # log-sd of an image's model-noise level
    tau0: float = 2.0  # per-draw Monte-Carlo noise at large r
    crn: float = 0.5  # share of the Monte-Carlo variance common to all models
    r_blur: float | None = 0.6  # the blur artefact's scale (None: no blur)
    flat: bool = False  # smoothing does nothing; only the Monte-Carlo noise grows with r


SCENARIOS = {
    "main": Design(),  # model and image effects, Monte-Carlo noise
    "hetero": Design(sigma_sd=0.7, c_sd=0.8),  # models differ a lot
    "homogeneous": Design(sigma_sd=0.0, c_sd=0.0),  # all models alike
    "high_mc": Design(n=16, tau0=4.0),  # few draws, large Monte-Carlo error
    "flat": Design(flat=True, r_blur=None),  # smoothing changes nothing
}


@dataclass(frozen=True)
class Models:
    """Fixed models (``[k]`` arrays of quality and smoothing rate) for runs conditional on them."""

    sigma: np.ndarray
    c: np.ndarray


def draw_models(design: Design, k: int, rng: np.random.Generator) -> Models:
    sigma = design.sigma0 * np.exp(design.sigma_sd * rng.standard_normal(k))
    c = np.zeros(k) if design.flat else design.c0 * np.exp(design.c_sd * rng.standard_normal(k))
    return Models(sigma, c)


def _chunk(design: Design, k, m, levels, b, rng, models: Models | None, mc: bool) -> dict:
    d, g = design.d, design.groups
    sd = 1.0 / np.sqrt(d)
    if models is None:
        fresh = [draw_models(design, k, rng) for _ in range(b)]
        sigma = np.stack([x.sigma for x in fresh])
        c = np.stack([x.c for x in fresh])
    else:
        sigma, c = np.broadcast_to(models.sigma, (b, k)), np.broadcast_to(models.c, (b, k))
    kappa = np.sqrt(sigma / design.sigma0)
    rho = np.exp(design.rho_sd * rng.standard_normal((b, m)))
    eta = np.exp(design.eta_sd * rng.standard_normal((b, m)))
    s = rho[..., None] * rng.standard_normal((b, m, d)) * sd
    xi = rho[..., None] * rng.standard_normal((b, m, d)) * sd
    e = (sigma[:, :, None, None] * eta[:, None, :, None]) * rng.standard_normal((b, k, m, d)) * sd
    shared = rng.standard_normal((b, m, g, d))
    own = rng.standard_normal((b, k, m, g, d))
    noise = (np.sqrt(design.crn) * shared[:, None] + np.sqrt(1 - design.crn) * own) * sd
    noise *= (kappa[:, :, None, None, None] * eta[:, None, :, None, None]) * np.sqrt(g / design.n)
    a_idx, b_idx = np.triu_indices(k, 1)
    s_norm = np.linalg.norm(s, axis=-1)
    out = {
        "pair": np.empty((b, len(levels), len(a_idx), m)),
        "fid": np.empty((b, len(levels), k, m)),
    }
    for j, r in enumerate(levels):
        om = 0.0 if (design.flat or design.r_blur is None) else min(1.0, (r / design.r_blur) ** 2)
        sig = np.sqrt(1 - om) * s + np.sqrt(om) * xi
        mu = sig[:, None] + np.exp(-c * r)[:, :, None, None] * e
        tau = design.tau0 * (1.0 - np.exp(-r / 0.1)) if mc else 0.0
        if tau == 0.0:  # exact maps
            gram = np.einsum("bkmd,blmd->bmkl", mu, mu)
            norm = np.sqrt(np.einsum("bmkk->bmk", gram))
            cos = gram / (norm[..., :, None] * norm[..., None, :])
            u = np.sqrt(np.clip(2 - 2 * cos, 0, None))
            out["pair"][:, j] = u[:, :, a_idx, b_idx].transpose(0, 2, 1)
            fid = np.einsum("bkmd,bmd->bkm", mu, s) / (norm.transpose(0, 2, 1) * s_norm[:, None])
            out["fid"][:, j] = fid
            continue
        x = mu[:, :, :, None, :] + tau * noise  # group means [b, k, m, g, d]
        flat = x.transpose(0, 2, 1, 3, 4).reshape(b, m, k * g, d)
        gm = np.matmul(flat, flat.swapaxes(-1, -2)).reshape(b, m, k, g, k, g)
        same_group = np.einsum("zmagcg->zmac", gm)
        cross = (gm.sum(axis=(3, 5)) - same_group) / (g * (g - 1))  # cross-group products only
        sq = np.clip(np.einsum("bmkk->bmk", cross), 1e-12, None)
        cos = np.clip(cross / np.sqrt(sq[..., :, None] * sq[..., None, :]), -1.0, 1.0)
        u = np.sqrt(2 - 2 * cos)
        out["pair"][:, j] = u[:, :, a_idx, b_idx].transpose(0, 2, 1)
        mean = x.mean(axis=3)
        fid = np.einsum("bkmd,bmd->bkm", mean, s) / (
            np.linalg.norm(mean, axis=-1) * s_norm[:, None]
        )
        out["fid"][:, j] = fid
    return out


def simulate(
    design: Design,
    k: int,
    m: int,
    levels=R_LEVELS,
    reps: int = 1,
    seed: int | np.random.Generator = 0,
    *,
    models: Models | None = None,
    mc: bool = True,
    max_floats: float = 4e6,
) -> dict[str, np.ndarray]:
    """``reps`` independent runs: ``pair [reps, R, K, m]`` (unit-map distances, pairs in
    lexicographic order) and ``fid [reps, R, k, m]`` (per-model fidelity proxy); new models
    for every run unless ``models`` fixes them."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    per_rep = k * m * design.groups * design.d * 2
    size = int(max(1, min(reps, max_floats // per_rep)))
    parts, done = [], 0
    while done < reps:
        b = min(size, reps - done)
        parts.append(_chunk(design, k, m, list(levels), b, rng, models, mc))
        done += b
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def truth(
    design: Design,
    levels=R_LEVELS,
    *,
    cells: int = 60000,
    seed: int = 12345,
    models: Models | None = None,
) -> dict[str, np.ndarray]:
    """The population values the intervals target, per level: ``theta`` (E of a pair value),
    ``D`` (theta(r) - theta(0)), ``rel`` (theta(r) / theta(0) - 1) and ``fid`` (E of a per-model
    value), over new models (or the given ``models``), images and draws; each from ``cells``
    independent (pair, image) values, with ``*_se`` their Monte-Carlo standard errors."""
    if models is None:  # independent two-model runs of one image each
        sim = simulate(design, 2, 1, levels, cells, seed)
        pair = sim["pair"][:, :, 0, 0]  # [cells, R]
        fid = sim["fid"][:, :, :, 0].reshape(cells, len(levels), 2).mean(-1)
    else:  # the given models on many new images
        k = len(models.sigma)
        m = max(1, cells // 50)
        sim = simulate(design, k, m, levels, 50, seed, models=models)
        pair = sim["pair"].mean(2).transpose(0, 2, 1).reshape(-1, len(levels))
        fid = sim["fid"].mean(2).transpose(0, 2, 1).reshape(-1, len(levels))
    theta, n = pair.mean(0), len(pair)
    diff = pair - pair[:, :1]
    lin = (pair - (theta / theta[0])[None] * pair[:, :1]) / theta[0]
    return {
        "theta": theta,
        "theta_se": pair.std(0, ddof=1) / np.sqrt(n),
        "D": diff.mean(0),
        "D_se": diff.std(0, ddof=1) / np.sqrt(n),
        "rel": theta / theta[0] - 1,
        "rel_se": lin.std(0, ddof=1) / np.sqrt(n),
        "fid": fid.mean(0),
        "fid_se": fid.std(0, ddof=1) / np.sqrt(n),
    }


def with_draws(design: Design, n: int) -> Design:
    return replace(design, n=n)

"""Known answers of smoothstab.disagreement: chance floors, chance-corrected scores, the
disagreement map of k models with its Monte-Carlo debiasing, and the per-image reliability."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from smoothstab import inference, metrics
from smoothstab.disagreement import (
    IDEAL,
    chance_corrected,
    chance_floor,
    derangement,
    disagreement_map,
    reliability,
)
from smoothstab.stats import SmoothStats
from smoothstab.views import to_gray


def blob(cx: float, cy: float, size: int = 32, width: float = 3.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * width**2)).double()


def test_derangement_is_a_seeded_cycle_without_fixed_points():
    for n in (2, 3, 7, 50):
        p = derangement(n, seed=3)
        assert sorted(p.tolist()) == list(range(n))  # a permutation: every image a partner once
        assert bool((p != torch.arange(n)).all())
        assert torch.equal(p, derangement(n, seed=3))
    assert not torch.equal(derangement(50, seed=3), derangement(50, seed=4))
    # one cycle: following partners from 0 visits all n images
    p, seen, i = derangement(20, seed=1), set(), 0
    while i not in seen:
        seen.add(i)
        i = int(p[i])
    assert len(seen) == 20


def test_derangement_small_blocks_and_classes():
    assert derangement(1, seed=0).tolist() == [-1]  # one image: no other image to pair with
    assert derangement(0, seed=0).tolist() == []
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    p = derangement(6, seed=5, labels=labels)
    assert int(p[3]) == -1  # alone in its class
    for i in (0, 1, 2, 4, 5):
        assert int(p[i]) != i and int(labels[p[i]]) == int(labels[i])
    with pytest.raises(ValueError, match="labels: expected 6"):
        derangement(6, seed=0, labels=torch.tensor([0, 1]))


def test_blob_position_only_scores_at_the_floor_and_identical_maps_score_one():
    """Maps that depend only on a blob position every image shares score exactly at the floor
    (chance-corrected 0); maps equal between models but different between images score 1."""
    n = 40
    shared = blob(12.0, 17.0).expand(n, 1, 32, 32).clone()
    gen = torch.Generator().manual_seed(0)
    noise, other = torch.randn(2, n, 1, 32, 32, generator=gen).double()
    partner = derangement(n, seed=0)
    own = torch.stack([blob(4.0 + 0.6 * i, 20.0 - 0.3 * i) for i in range(n)]).unsqueeze(1)
    own = own + 0.05 * noise  # distinct maps per image, the same for both models
    for name, fn, kw in [
        ("ssim", metrics.ssim_maps, {}),
        ("rank_agreement", metrics.rank_agreement, {}),
        ("unit_distance", metrics.unit_distance, {}),
        ("topk_iou", metrics.topk_iou, {"k": 50}),
    ]:
        f = lambda a, b, fn=fn, kw=kw: fn(a, b, **kw)  # noqa: E731
        a = shared + 0.05 * noise
        b = shared + 0.05 * other  # each model's own detail, independent of the image's
        obs, floor = f(a, b), chance_floor(f, a, b, partner)
        if name != "topk_iou":  # top-k IoU of a shared blob: the same top pixels either way
            score = chance_corrected(obs.mean(), floor.mean(), IDEAL[name])
            assert abs(float(score)) < 0.05, name
        same = chance_corrected(f(own, own).mean(), chance_floor(f, own, own, partner).mean(),
                                IDEAL[name])  # fmt: skip
        assert float(same) == pytest.approx(1.0, abs=1e-9), name
    # the exact case: maps equal to the shared blob, identical between images
    obs = metrics.ssim_maps(shared, shared)
    floor = chance_floor(metrics.ssim_maps, shared, shared, partner)
    assert torch.allclose(obs, floor)  # at the floor: the floor is the ideal, no scale left
    assert math.isnan(float(chance_corrected(obs[0], floor[0], 1.0)))


def test_chance_floor_matches_scikit_image_and_marks_lone_images():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(4, 3, 24, 24, generator=g).double(), torch.randn(4, 3, 24, 24, generator=g)
    partner = torch.tensor([2, -1, 3, 0])
    floor = chance_floor(metrics.ssim_maps, a, b.double(), partner)
    assert math.isnan(float(floor[1]))
    ga, gb = to_gray(a).numpy(), to_gray(b.double()).numpy()
    for i, j in [(0, 2), (2, 3), (3, 0)]:
        want = structural_similarity(ga[i], gb[j], data_range=1.0, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)  # fmt: skip
        assert float(floor[i]) == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError, match=r"partner: expected \[4\]"):
        chance_floor(metrics.ssim_maps, a, b, torch.tensor([1, 0]))


def test_chance_corrected_arrays_floats_tensors():
    assert chance_corrected(0.5, 0.25, 1.0) == pytest.approx(1 / 3)
    assert chance_corrected(1.0, 1.4, 0.0) == pytest.approx(1 - 1 / 1.4)  # a distance
    got = chance_corrected(np.array([0.5, 1.0]), np.array([0.25, 1.0]), 1.0)
    assert got[0] == pytest.approx(1 / 3) and math.isnan(got[1])
    t = chance_corrected(torch.tensor([0.5]), torch.tensor([0.0]), 1.0)
    assert float(t[0]) == 0.5


def test_disagreement_map_plain_matches_numpy_and_unit_distances():
    g = torch.Generator().manual_seed(4)
    maps = [torch.randn(3, 2, 8, 8, generator=g).double() for _ in range(4)]
    d = disagreement_map(maps)
    assert not d.debiased
    unit = np.stack([(m / m.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)).numpy() for m in maps])
    np.testing.assert_allclose(d.map.numpy(), unit.var(axis=0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(d.mean.numpy(), unit.mean(axis=0), rtol=1e-12)
    pairs = [
        metrics.unit_distance(maps[i], maps[j]) ** 2 / 2 for i in range(4) for j in range(i + 1, 4)
    ]
    torch.testing.assert_close(d.total, torch.stack(pairs).mean(0), rtol=1e-10, atol=1e-12)
    assert d.pixels.shape == (3, 8, 8)
    # identical maps (up to scale): 0; a unit map and its negative: 2 (pair distance 2)
    same = disagreement_map([maps[0], 3 * maps[0], maps[0]])
    assert float(same.total.abs().max()) < 1e-12
    opposite = disagreement_map([maps[0], -maps[0]]).total
    assert torch.allclose(opposite, torch.full((3,), 2.0).double())
    with pytest.raises(ValueError, match="at least 2 models"):
        disagreement_map(maps[:1])


def _stats(true: torch.Tensor, noise: float, n_groups: int, seed: int) -> SmoothStats:
    """A Monte-Carlo record of ``true`` with ``n_groups`` group means of independent noise."""
    g = torch.Generator().manual_seed(seed)
    groups = true + noise * torch.randn(n_groups, *true.shape, generator=g).double()
    mean = groups.mean(0)
    return SmoothStats(mean, None, groups[:2], None, 100, groups=groups)


def test_disagreement_debiased_removes_monte_carlo_noise():
    """k models with the same true map and independent noise: the plain total is far above 0,
    the debiased one 0 within its Monte-Carlo error; with different true maps the debiased
    total is the true maps' total."""
    true = torch.stack([blob(8.0 + i % 16, 8.0 + i // 4) for i in range(64)]).unsqueeze(1)
    same = [_stats(true, 0.05, 8, seed) for seed in range(4)]
    plain = disagreement_map(same, debiased=False).total
    deb = disagreement_map(same).total
    assert float(plain.mean()) > 0.01  # the noise alone: 0.011 here
    # the mean over 64 images of the debiased total: 0 within 4 standard errors of that mean
    se = float(deb.std()) / math.sqrt(len(deb))
    assert abs(float(deb.mean())) < 4 * se
    exact = [torch.stack([blob(8.0 + i % 16 + s, 8.0 + i // 4 - s) for i in range(64)]).unsqueeze(1)
             for s in range(4)]  # fmt: skip
    want = disagreement_map(exact).total
    noisy = disagreement_map([_stats(t, 0.05, 8, 10 + s) for s, t in enumerate(exact)])
    assert abs(float(noisy.total.mean() - want.mean())) < 4 * float(noisy.total.std()) / 8
    # identical records (the same draws for every model): exactly 0
    assert float(disagreement_map([same[0]] * 3).total.abs().max()) < 1e-12
    # exact maps mixed in enter every group unchanged
    mixed = disagreement_map([same[0], true]).total
    assert mixed.shape == (64,)
    with pytest.raises(ValueError, match="same number of groups"):
        disagreement_map([same[0], _stats(true, 0.05, 4, 9)])


def test_reliability_is_the_mean_pairwise_spearman():
    g = torch.Generator().manual_seed(6)
    base = torch.randn(2, 3, 9, 9, generator=g).double()
    maps = [base + 0.5 * torch.randn(2, 3, 9, 9, generator=g).double() for _ in range(3)]
    got = reliability(maps)
    for i in range(2):
        views = [m[i].abs().sum(0).flatten().numpy() for m in maps]
        rho = [spearmanr(views[a], views[b])[0] for a in range(3) for b in range(a + 1, 3)]
        want = np.mean(rho)
        assert float(got[i]) == pytest.approx(want, abs=1e-10)
    assert torch.allclose(reliability([base, base]), torch.ones(2).double())


def test_ratio_mean_subset_and_chance_corrected_intervals():
    rng = np.random.default_rng(0)
    v = rng.normal(0.5, 0.1, size=(6, 40))  # 4 models: 6 pairs
    mask = (rng.random((6, 40)) < 0.6).astype(float)
    est = inference.ratio_mean(v * mask, mask)
    assert est.estimate == pytest.approx((v * mask).sum() / mask.sum())
    assert est.scope == "retraining" and est.interval()[0] < est.estimate < est.interval()[1]
    # a full mask: the pair mean and its interval
    full = inference.ratio_mean(v, np.ones_like(v))
    plain = inference.pair_mean(v)
    assert full.estimate == pytest.approx(plain.estimate)
    assert full.se == pytest.approx(plain.se, rel=1e-9)
    f = rng.normal(0.3, 0.05, size=(6, 40))
    cc = inference.ratio_mean(v - f, 1.0 - f)
    assert cc.estimate == pytest.approx(chance_corrected(v.mean(), f.mean(), 1.0))
    diff = inference.ratio_difference(v * mask, mask, v, np.ones_like(v))
    assert diff.estimate == pytest.approx(est.estimate - v.mean())
    with pytest.raises(ValueError, match="den: a ratio of means needs a nonzero mean"):
        inference.ratio_mean(v, np.zeros_like(v))


def test_the_docs_pages_library_example_runs():
    """docs/agreement_high.md's example on maps in memory runs as written on three models'
    maps (the page's other example needs a run directory)."""
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "agreement_high.md"
    code = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)[1]
    g = torch.Generator().manual_seed(8)
    maps = [torch.randn(4, 3, 16, 16, generator=g).double() for _ in range(3)]
    stats = [_stats(m, 0.1, 4, seed) for seed, m in enumerate(maps)]
    names = dict(maps_a=maps[0], maps_b=maps[1], maps_c=maps[2], stats_a=stats[0],
                 stats_b=stats[1], stats_c=stats[2])  # fmt: skip
    exec(compile(code, str(page), "exec"), names)
    assert names["trust"].shape == (4,) and names["where"].debiased
    assert math.isfinite(float(names["score"]))


def test_derangement_leaves_unlabelled_images_alone():
    p = derangement(5, seed=1, labels=torch.tensor([-1, 0, -1, 0, 0]))
    assert p[0] == -1 and p[2] == -1
    assert sorted(p[[1, 3, 4]].tolist()) == [1, 3, 4] and all(p[i] != i for i in (1, 3, 4))


def test_ratio_mean_of_a_subset_covers_in_a_crossed_simulation():
    """A mean over the cells of a group that depends on the models (pairs whose models are both
    right or both wrong, each model right with its own probability): the interval over
    retraining covers the population mean in 96% of 400 seeded crossed designs (6 models, 24
    images; model, image and cell effects)."""
    rng = np.random.default_rng(0)
    k, m, reps = 6, 24, 400
    a, b = inference.pair_index(k)
    hits = 0
    for _ in range(reps):
        e, u = rng.normal(0, 0.1, k), rng.normal(0, 0.1, m)
        correct = rng.random((k, m)) < rng.uniform(0.3, 0.9, k)[:, None]
        v = 1 + e[a][:, None] + e[b][:, None] + u[None] + rng.normal(0, 0.05, (len(a), m))
        mask = (correct[a] == correct[b]).astype(float)
        lo, hi = inference.ratio_mean(v * mask, mask).interval()
        hits += lo <= 1 <= hi
    assert 0.92 <= hits / reps <= 0.99

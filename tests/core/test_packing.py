"""Packed attribution: the rows of several noise levels in shared model calls.

``Smoothed.stats_at`` must give, level by level, what separate ``.stats`` calls give (every
level keeps its own canonical draws; float64 here, so batches of other compositions agree to
1e-12), in fewer calls of at most ``batch_size`` rows; the attribute stage with
``attribution.pack = true`` must write the maps it writes without it (float32, 1e-5).
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import smoothstab as ss

FIELDS = ("mean", "mean_sq", "halves", "unit_var", "groups")
LEVELS = [(0.0, 1), (0.1, 5), (0.2, 5), (0.4, 7)]  # sigma 0; two levels sharing a seed (CRN)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)
        )
        .double()
        .eval()
    )


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def cam(model, x, target=None):
    return ss.grad_cam(model, x, target, layer=model[1])


CASES = {
    "grad": lambda s, seed: ss.smooth(ss.grad, s, 8, batch_size=10, seed=seed),
    "grad antithetic": lambda s, seed: ss.smooth(
        ss.grad, s, 8, batch_size=10, seed=seed, antithetic=True
    ),
    "grad groups": lambda s, seed: ss.smooth(ss.grad, s, 8, batch_size=7, seed=seed, groups=4),
    "gradcam": lambda s, seed: ss.smooth(cam, s, 6, batch_size=5, seed=seed),
    "ig nested": lambda s, seed: ss.smoothed_ig(s, 4, steps=3, batch_size=9, seed=seed),
    "ig joint": lambda s, seed: ss.smoothed_ig(s, 6, sampler="joint", batch_size=7, seed=seed),
}


@pytest.mark.parametrize("case", CASES)
def test_packed_levels_equal_separate_calls(case, model, x):
    make = CASES[case]
    got = make(0.3, 0).stats_at(model, x, None, levels=LEVELS)
    assert len(got) == len(LEVELS)
    for (sigma, seed), packed in zip(LEVELS, got, strict=True):
        alone = make(sigma, seed).stats(model, x)
        for field in FIELDS:
            a, b = getattr(packed, field), getattr(alone, field)
            assert (a is None) == (b is None), (case, sigma, field)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=f"{case} {field}")
        assert packed.n_units == alone.n_units


def test_the_template_sigma_and_seed_are_not_used(model, x):
    """Only the levels' sigmas and seeds count: templates of other sigmas and seeds (or none)
    give the same stats, bit for bit; the 0.1.0 call with levels by position still works, and
    no levels at all is refused."""
    levels = [(0.1, 3), (0.3, 4)]
    a = ss.smooth(ss.grad, 0.7, 4, seed=11).stats_at(model, x, None, levels=levels)
    b = ss.smooth(ss.grad, 0.0, 4).stats_at(model, x, None, levels)
    for one, other in zip(a, b, strict=True):
        assert torch.equal(one.mean, other.mean) and torch.equal(one.halves, other.halves)
    with pytest.raises(ValueError, match=r"levels: expected at least one \(sigma, seed\) pair"):
        ss.smooth(ss.grad, 0.1, 4, seed=0).stats_at(model, x, None, levels=[])


def test_packing_fills_calls_without_exceeding_batch_size(model, x):
    """3 images x 4 draws = 12 rows a level, batch_size 20: three levels alone take three
    calls of 12 rows; packed, two calls of 20 and 16 rows (the same 36 rows)."""
    sizes: list[int] = []

    def counted(m, xs, target=None):
        sizes.append(len(xs))
        return ss.grad(m, xs, target)

    levels = [(0.1, 1), (0.2, 2), (0.3, 3)]
    for sigma, seed in levels:
        ss.smooth(counted, sigma, 4, batch_size=20, seed=seed).stats(model, x)
    alone, sizes[:] = list(sizes), []
    ss.smooth(counted, 0.1, 4, batch_size=20, seed=0).stats_at(model, x, None, levels=levels)
    assert alone == [12, 12, 12] and sizes == [20, 16], (alone, sizes)
    assert sum(sizes) == sum(alone)


def test_the_unsmoothed_rows_share_the_calls(model, x):
    """Sigma 0 (one row per image, no draws) is packed with the smoothed rows, last, into the
    room of their last call: 3 + 12 rows in one call of 15 instead of calls of 3 and 12; the
    joint sampler's unsmoothed map is IG's own quadrature, not a row of it: a call of its own.
    The exact map is the method's, to float64's last bits."""
    sizes: list[int] = []

    def counted(m, xs, target=None):
        sizes.append(len(xs))
        return ss.grad(m, xs, target)

    levels = [(0.0, None), (0.1, 1)]
    got = ss.smooth(counted, 0.1, 4, batch_size=20).stats_at(model, x, None, levels=levels)
    assert sizes == [15]
    torch.testing.assert_close(got[0].mean, ss.grad(model, x), rtol=1e-12, atol=1e-12)
    assert torch.equal(got[0].halves[0], got[0].mean) and got[1].n_units == 4
    joint = ss.smoothed_ig(0.1, 4, sampler="joint", batch_size=20, seed=0)
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        joint.stats_at(model, x, None, levels=[(0.0, None), (0.1, 1)])
    finally:
        model._forward_hooks.clear()
    assert calls[-1] == 12 and 12 not in calls[:-1]  # the smoothed rows' own call, after IG's


def test_packing_needs_a_seed_per_level(model, x):
    sm = ss.smooth(ss.grad, 0.1, 4, seed=0)
    with pytest.raises(ValueError, match="seed: packed noise levels need an int seed"):
        sm.stats_at(model, x, None, levels=[(0.1, None), (0.2, None)])
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="seed: packed noise levels need an int seed"):
        sm.stats_at(model, x, None, levels=[(0.1, g), (0.2, g)])
    with pytest.raises(ValueError, match="sigma"):
        sm.stats_at(model, x, None, levels=[(0.1, 1), (-0.2, 2)])


def test_with_a_tolerance_levels_run_one_after_another(model, x):
    make = functools.partial(ss.smooth, ss.grad, tol=0.2, max_samples=64, batch_size=16)
    got = make(0.1, seed=0).stats_at(model, x, None, levels=[(0.1, 3), (0.3, 4)])
    for (sigma, seed), packed in zip([(0.1, 3), (0.3, 4)], got, strict=True):
        alone = make(sigma, seed=seed).stats(model, x)
        torch.testing.assert_close(packed.mean, alone.mean, rtol=0, atol=0)
        assert torch.equal(packed.units_per_image, alone.units_per_image)


@pytest.mark.slow
def test_the_attribute_stage_packs_to_the_same_maps(tmp_path, monkeypatch):
    """Two untrained small CNNs (DR) on 6 digits, all four methods at r in {0, 0.05, 0.1, 0.15,
    0.2}, blocks of 3 images: ``attribution.pack = true`` writes the maps of the default stage
    (within 1e-5, float32)."""
    from smoothstab.experiments.config.load import load_config
    from smoothstab.experiments.models.source import RunModels
    from smoothstab.experiments.rundir.layout import RunDir
    from smoothstab.experiments.stages import attribute

    monkeypatch.setenv("CI", "true")
    text = """\
name = "pack"
[train]
dataset = "digits"
[models]
setting = "DR"
[[models.specs]]
name = "small_cnn"
[[models.specs]]
name = "small_cnn"
[attribution]
n_images = 6
image_batch = 3
n_samples = 4
ig_steps = 3
batch_size = 64
stability_r = [0.0, 0.05, 0.1, 0.2]
fidelity_r = [0.0, 0.1]
[evaluation]
topk = 5
[maps]
keep = "all"
"""
    maps = {}
    for pack in (False, True):
        path = tmp_path / f"{pack}.toml"
        path.write_text(text.replace("[evaluation]", f"pack = {str(pack).lower()}\n[evaluation]"))
        cfg = load_config(path)
        run = RunDir(tmp_path / f"run{pack}")
        models = RunModels(cfg, run).models()
        blocks = attribute.run_attribution(cfg, run, models)
        assert blocks == 4 * 2  # methods x image blocks
        maps[pack] = {
            (k, m, r): run.load_map(k, m, r)
            for k in range(2)
            for m in cfg.attribution.methods
            for r in cfg.attribution.noise_grid()
        }
    for key, plain in maps[False].items():
        packed = maps[True][key]
        torch.testing.assert_close(packed.mean, plain.mean, rtol=1e-5, atol=1e-5, msg=str(key))
        torch.testing.assert_close(packed.rel_se, plain.rel_se, rtol=1e-4, atol=1e-6, msg=str(key))

"""sanity: the model-randomisation check across sigma, its Spearman view, and the edge control."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

import smoothstab as ss
from helpers import ConvNet, make
from smoothstab.experiments.models.architectures import build_model

SIGMAS = [0.0, 0.1]


@pytest.fixture
def x16():
    g = torch.Generator().manual_seed(2)
    return torch.rand(3, 3, 16, 16, dtype=torch.float64, generator=g)


def test_edge_map_is_sobel_and_ignores_the_model():
    ramp = torch.arange(10.0, dtype=torch.float64).expand(2, 1, 10, 10).clone()
    edges = ss.edge_map(None, ramp)  # no model at all
    assert edges.shape == ramp.shape
    assert torch.equal(edges[..., 1:-1, 1:-1], torch.full((2, 1, 8, 8), 8.0, dtype=torch.float64))


def test_shapes_and_common_random_numbers(convnet, x16):
    """The same model under another name is identical at every sigma: the noise is common."""
    same = [("copy", copy.deepcopy(convnet)), ("again", copy.deepcopy(convnet))]
    res = ss.sanity(ss.grad, convnet, x16, sigmas=SIGMAS, n_samples=4, randomized=same)
    assert res.names == ("copy", "again") and res.sigmas == tuple(SIGMAS)
    assert res.ssim.shape == res.spearman.shape == (2, 2, 3)
    assert torch.equal(res.ssim, torch.ones_like(res.ssim))
    assert torch.equal(res.spearman, torch.ones_like(res.spearman))


def test_target_resolved_once_on_the_trained_model(convnet, x16):
    seen = []

    def recording(model, x, target=None):
        seen.append(target.clone())
        return ss.grad(model, x, target)

    res = ss.sanity(recording, convnet, x16, sigmas=[0.0], n_samples=1)
    predicted = convnet(x16).argmax(1)
    assert len(seen) == 1 + len(res.names)
    assert all(torch.equal(t, predicted) for t in seen)


def test_edge_control_is_perfectly_stable_and_fails_the_check(x16):
    """A model-independent map looks perfectly stable across two independently initialised
    models, and its similarity to every randomised model's map is exactly 1."""
    a, b = make(ConvNet(), seed=0), make(ConvNet(), seed=1)
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    across = ss.sanity(ss.edge_map, a, x16, sigmas=SIGMAS, n_samples=4, randomized=[("b", b)])
    check = ss.sanity(ss.edge_map, a, x16, sigmas=SIGMAS, n_samples=4, mode="cascading")
    for res in (across, check):
        assert torch.equal(res.ssim, torch.ones_like(res.ssim))
        assert torch.equal(res.spearman, torch.ones_like(res.spearman))


def test_gradient_maps_drop_as_layers_are_randomised(x16):
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=5).double().eval()
    res = ss.sanity(ss.grad, model, x16, sigmas=SIGMAS, n_samples=8, mode="cascading")
    assert res.names[0] == "fc" and res.names[-1] == "features.0.0"
    full_ssim, full_rank = res.ssim[:, -1].mean(-1), res.spearman[:, -1].mean(-1)
    assert (full_ssim < 0.5).all() and (full_rank < 0.5).all(), (full_ssim, full_rank)
    indep = ss.sanity(ss.grad, model, x16, sigmas=[0.0], n_samples=1, mode="independent")
    assert indep.spearman.shape == (1, 5, 3) and (indep.spearman < 0.99).all()


def test_cams_and_errors(convnet, x16):
    cam = functools.partial(ss.grad_cam, layer="features.2")
    res = ss.sanity(cam, convnet, x16, sigmas=[0.0, 0.05], n_samples=2, init_seed=1)
    assert res.ssim.shape == (2, 3, 3) and np.isfinite(res.ssim.numpy()).all()
    with pytest.raises(ValueError, match="sigmas"):
        ss.sanity(ss.grad, convnet, x16, sigmas=[], n_samples=2)
    with pytest.raises(ValueError, match="randomized"):
        ss.sanity(ss.grad, convnet, x16, sigmas=[0.0], n_samples=2, randomized=[])
    with pytest.raises(ValueError, match="sigma"):
        ss.sanity(ss.grad, convnet, x16, sigmas=[-1.0], n_samples=2)


def test_given_smoothed_methods_replace_the_default_smoothing(convnet, x16):
    """``smoothed=`` (how the pipeline passes its own settings) gives the default's similarities
    when it smooths the same way; without it, ``n_samples`` is needed."""
    default = ss.sanity(ss.grad, convnet, x16, sigmas=SIGMAS, n_samples=4, seed=3)
    given = ss.sanity(
        None, convnet, x16, sigmas=SIGMAS, smoothed=lambda s: ss.smooth(ss.grad, s, 4, seed=3)
    )
    assert given.names == default.names
    torch.testing.assert_close(given.ssim, default.ssim, rtol=0, atol=0)
    torch.testing.assert_close(given.spearman, default.spearman, rtol=0, atol=0)
    with pytest.raises(ValueError, match="n_samples"):
        ss.sanity(ss.grad, convnet, x16, sigmas=SIGMAS)

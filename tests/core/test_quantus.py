"""smoothstab methods as Quantus ``explain_func``s (:func:`smoothstab.to_quantus`): two Quantus
metrics, one robustness and one randomisation, run with plain and smoothed methods on a small
model. Skipped without the ``quantus`` extra."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import smoothstab as ss
from helpers import ConvNet, make

quantus = pytest.importorskip("quantus")

METHODS = {
    "grad": ss.grad,
    "smooth_grad": ss.smooth(ss.grad, 0.2, 4, seed=0),
    "gradcam": functools.partial(ss.grad_cam, layer="features.3"),
    "smooth_ig_joint": ss.smoothed_ig(0.2, 4, sampler="joint", seed=0),
}


@pytest.fixture
def data():
    model = make(ConvNet(), dtype=torch.float32)
    gen = np.random.default_rng(0)
    x = gen.normal(size=(4, 3, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    return model, x, y


@pytest.mark.parametrize("name", list(METHODS))
def test_explain_func_returns_the_methods_maps(name, data):
    model, x, y = data
    explain = ss.to_quantus(METHODS[name])
    got = explain(model, x, y, device="cpu", channel_first=True)
    want = METHODS[name](model, torch.from_numpy(x), torch.from_numpy(y))
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want.numpy())
    assert explain(model, x, y[:, None]).shape == got.shape  # targets [B, 1] too


@pytest.mark.parametrize("name", list(METHODS))
def test_two_quantus_metrics_run(name, data):
    model, x, y = data
    explain = ss.to_quantus(METHODS[name])
    common = dict(model=model, x_batch=x, y_batch=y, explain_func=explain, device="cpu")
    robust = quantus.MaxSensitivity(nr_samples=2, lower_bound=0.05, disable_warnings=True)
    scores = robust(**common, channel_first=True)
    assert len(scores) == 4 and np.isfinite(scores).all()
    randomised = quantus.RandomLogit(num_classes=5, seed=0, disable_warnings=True)
    scores = randomised(**common, channel_first=True)
    assert len(scores) == 4 and np.isfinite(scores).all()
    # the model-randomisation test: each layer re-drawn, top down, maps compared to the first
    mprt = quantus.MPRT(seed=0, disable_warnings=True, return_average_correlation=True)
    scores = mprt(**common, channel_first=True)
    assert len(scores) == 4 and np.isfinite(scores).all()

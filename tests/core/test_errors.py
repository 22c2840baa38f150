"""Bad input: a ValueError whose single line says what was expected and what came."""

from __future__ import annotations

import functools

import pytest
import torch

import smoothstab as ss
from helpers import ConvNet, make


@pytest.fixture
def model():
    return make(ConvNet())


X = torch.randn(2, 3, 8, 8, dtype=torch.float64)
T = torch.tensor([0, 1])
CAM = functools.partial(ss.grad_cam, layer="features.3")


def nan_x():
    x = X.clone()
    x[0, 0, 0, 0] = float("nan")
    return x


def inf_x():
    x = X.clone()
    x[1, 2, 3, 4] = float("inf")
    return x


CASES = {
    "grad rank 1": (lambda m: ss.grad(m, torch.randn(8)), "x: expected a batch"),
    "cam rank 3": (lambda m: CAM(m, X[0], T[:1]), r"x: expected a batch \[B, C, H, W\]"),
    "target out of range": (lambda m: ss.grad(m, X, torch.tensor([0, 5])), r"\[0, 5\), got 5"),
    "negative target": (lambda m: ss.integrated_gradients(m, X, torch.tensor([-1, 0])), "got -1"),
    "target shape": (lambda m: ss.grad(m, X, torch.tensor([0, 1, 2])), "target: expected shape"),
    "float target": (lambda m: ss.grad(m, X, torch.tensor([0.0, 1.0])), "integer class"),
    "sigma < 0": (lambda m: ss.smooth(ss.grad, -0.1, 4), "sigma: expected a finite number >= 0"),
    "sigma NaN": (lambda m: ss.smooth(ss.grad, float("nan"), 4), "got nan"),
    "n_samples 0": (lambda m: ss.smooth(ss.grad, 0.1, 0), "n_samples: expected an integer >= 1"),
    "odd antithetic": (lambda m: ss.smooth(ss.grad, 0.1, 3, antithetic=True), "even"),
    "unknown layer": (lambda m: ss.grad_cam(m, X, T, layer="layer9"), "got 'layer9'"),
    "NaN in x": (lambda m: ss.grad(m, nan_x()), "x: expected finite values"),
    "Inf in x": (lambda m: ss.smooth(ss.grad, 0.1, 2)(m, inf_x()), "x: expected finite values"),
    "unknown rule": (lambda m: ss.integrated_gradients(m, X, rule="simpson"), "rule: expected"),
    "steps 1": (lambda m: ss.integrated_gradients(m, X, steps=1), "steps: expected"),
    "bad baseline": (
        lambda m: ss.integrated_gradients(m, X, baseline=torch.zeros(5)),
        "baseline: expected",
    ),
    "unknown reduce": (lambda m: ss.smooth(ss.grad, 0.1, 2, reduce="max"), "reduce: expected"),
    "unknown ig sampler": (
        lambda m: ss.smoothed_ig(0.1, 2, sampler="x"),
        "sampler: expected",
    ),
    "batch_size 0": (lambda m: ss.smooth(ss.grad, 0.1, 2, batch_size=0), "batch_size"),
    "unknown sampler": (lambda m: ss.smooth(ss.grad, 0.1, 2, sampler="sobol"), "sampler: expected"),
    "joint sampler on grad": (
        lambda m: ss.smooth(ss.grad, 0.1, 2, sampler="joint"),
        "expected integrated_gradients",
    ),
    "bad seed": (lambda m: ss.smooth(ss.grad, 0.1, 2, seed="a")(m, X), "seed: expected"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_value_error(case, model):
    call, match = CASES[case]
    with pytest.raises(ValueError, match=match) as err:
        call(model)
    assert "\n" not in str(err.value)


def test_model_output_must_be_logits():
    model = torch.nn.Flatten(0).double()  # [B, ...] -> 1-D output
    with pytest.raises(ValueError, match=r"model output: expected logits \[B, K\]"):
        ss.grad(model, X, T)

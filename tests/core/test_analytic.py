"""Known answers in float64: linear model, IG completeness, Smooth-Grad of ReLU, Grad-CAM = CAM."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import smoothstab as ss
from helpers import make


def linear_model(n_features=12, n_classes=4):
    model = nn.Sequential(nn.Flatten(), nn.Linear(n_features, n_classes))
    return make(model), model[1].weight.detach()


def test_grad_of_linear_model_is_weight_row():
    model, w = linear_model()
    x = torch.randn(5, 3, 2, 2, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 1])
    torch.testing.assert_close(ss.grad(model, x, target), w[target].view_as(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", ss.IG_RULES)
def test_ig_of_linear_model_is_weight_times_input(rule):
    model, w = linear_model()
    x = torch.randn(5, 3, 2, 2, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 1])
    _, weights = ss.ig_rule(rule, 10)
    expected = w[target].view_as(x) * x * weights.sum()
    got = ss.integrated_gradients(model, x, target, steps=10, rule=rule)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_ig_paper_rule_is_exact_on_linear_model_with_baseline():
    model, w = linear_model()
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    x0 = torch.full((3, 2, 2), 0.3, dtype=torch.float64)
    got = ss.integrated_gradients(model, x, torch.tensor([2, 0]), baseline=x0)
    torch.testing.assert_close(got, w[[2, 0]].view_as(x) * (x - x0), rtol=0, atol=1e-12)


def test_ig_completeness_on_smooth_network():
    torch.manual_seed(0)
    model = make(nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)))
    x = torch.randn(4, 2, 2, 2, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0])
    ig = ss.integrated_gradients(model, x, target, steps=40, rule="gausslegendre")
    with torch.no_grad():
        gap = (
            model(x).gather(1, target[:, None]).squeeze(1)
            - model(torch.zeros_like(x))[torch.arange(4), target]
        )
    torch.testing.assert_close(ig.flatten(1).sum(1), gap, rtol=1e-9, atol=1e-9)


class Relu1d(nn.Module):
    def forward(self, x):
        return torch.relu(x)  # one "logit" per example: [B, 1]


def test_smoothgrad_of_relu_is_normal_cdf():
    sigma = 0.7
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    stats = ss.smooth(ss.grad, sigma, 4000, seed=0).stats(
        Relu1d(), x, torch.zeros(9, dtype=torch.long)
    )
    expected = torch.tensor(
        [0.5 * (1 + math.erf(v / (sigma * math.sqrt(2)))) for v in x[:, 0]], dtype=torch.float64
    )
    se = stats.mean_var.sqrt()[:, 0]
    assert ((stats.mean[:, 0] - expected).abs() <= 4 * se + 1e-12).all()
    # the standard error itself matches the Bernoulli one, sqrt(p(1-p)/n), within 5%
    torch.testing.assert_close(se, (expected * (1 - expected) / 4000).sqrt(), rtol=0.05, atol=1e-4)


class CamNet(nn.Module):
    """conv -> ReLU (the CAM layer) -> global average pool -> linear, as in Zhou et al. 2016."""

    def __init__(self, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, stride=stride, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("stride", [1, 2])
def test_gradcam_on_gap_network_equals_cam(stride):
    model = make(CamNet(stride))
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    target = torch.tensor([1, 3, 0])
    with torch.no_grad():
        act = model.act(model.conv(x))
    cam = torch.relu(torch.einsum("bk,bkhw->bhw", model.fc.weight[target], act))[:, None]
    cam = F.interpolate(cam, size=(8, 8), mode="bilinear", align_corners=False)
    # Grad-CAM's weights are W[t, k] / (h w): the CAM up to that positive constant
    hw = act.shape[2] * act.shape[3]
    torch.testing.assert_close(
        ss.grad_cam(model, x, target, layer="act") * hw, cam, rtol=1e-10, atol=1e-12
    )

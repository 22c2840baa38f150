"""Cross-checks against trusted implementations: Captum and pytorch-grad-cam.

Both are optional test extras: a test that needs one is skipped when it is missing (the
``captum`` fixture, ``pytest.importorskip`` in the pytorch-grad-cam test); the rest still run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import smoothstab as ss
from helpers import ConvNet, StridedNet, make

CAPTUM_RULES = [r for r in ss.IG_RULES if r != "paper"]


@pytest.fixture
def captum():
    """``captum.attr``, or a skip when Captum is not installed."""
    return pytest.importorskip("captum.attr")


@pytest.fixture
def setup():
    model = make(ConvNet())
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return model, x, torch.tensor([0, 4, 2, 1])


def test_grad_matches_captum_saliency(setup, captum):
    model, x, target = setup
    want = captum.Saliency(model).attribute(x, target=target, abs=False)
    torch.testing.assert_close(ss.grad(model, x, target), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", CAPTUM_RULES)
def test_ig_matches_captum(rule, setup, captum):
    model, x, target = setup
    baseline = torch.full_like(x, 0.2)
    want = captum.IntegratedGradients(model).attribute(
        x, baselines=baseline, target=target, n_steps=16, method=rule
    )
    got = ss.integrated_gradients(model, x, target, baseline=baseline, steps=16, rule=rule)
    # Captum builds its grid with float32 linspace: agreement to ~1e-7 relative
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("net,layer", [(ConvNet, "features.3"), (StridedNet, "body.2")])
def test_gradcam_matches_captum_layergradcam_upsampled(net, layer, setup, captum):
    model = make(net())
    _, x, _ = setup
    target = torch.tensor([0, 3, 2, 1])
    attr = captum.LayerGradCam(model, model.get_submodule(layer)).attribute(
        x, target=target, relu_attributions=True
    )
    want = captum.LayerAttribution.interpolate(attr, x.shape[-2:], interpolate_mode="bilinear")
    got = ss.grad_cam(model, x, target, layer=layer)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def minmax(m: torch.Tensor) -> np.ndarray:
    m = m[:, 0].numpy()
    m = m - m.min(axis=(1, 2), keepdims=True)
    return m / (1e-7 + m.max(axis=(1, 2), keepdims=True))


@pytest.mark.parametrize(
    "ours,theirs", [(ss.grad_cam, "GradCAM"), (ss.grad_cam_pp, "GradCAMPlusPlus")]
)
def test_cams_match_pytorch_grad_cam_after_its_normalisation(ours, theirs):
    grad_cam_lib = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = make(ConvNet(), dtype=torch.float32)
    with torch.no_grad():  # large gradients so pytorch-grad-cam's eps=1e-6 is negligible
        model.fc.weight.mul_(40)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    target = [0, 4, 2, 1]
    layer = model.features[3]  # same spatial size as the input: no resize on either side
    with getattr(grad_cam_lib, theirs)(model=model, target_layers=[layer]) as cam:
        want = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in target])
    got = minmax(ours(model, x, torch.tensor(target), layer=layer))
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_smoothgrad_matches_captum_noise_tunnel_statistically(setup, captum):
    """Both are unbiased for the same Smooth-Grad: per-entry z-scores behave like N(0, 1)."""
    model, x, target = setup
    n, sigma = 200, 0.4
    ours = ss.smooth(ss.grad, sigma, n, seed=0).stats(model, x, target)
    torch.manual_seed(1)
    theirs = captum.NoiseTunnel(captum.Saliency(model)).attribute(
        x, target=target, nt_type="smoothgrad", nt_samples=n, stdevs=sigma, abs=False
    )
    z = (ours.mean - theirs) / (2 * ours.mean_var).sqrt()
    assert abs(z.mean()) < 0.1 and 0.8 < (z**2).mean() < 1.25, (z.mean(), (z**2).mean())


def test_nested_and_joint_smoothed_ig_agree_statistically(setup):
    """Nested with accurate quadrature and joint estimate the same E_z[IG(x + z)]."""
    model, x, target = setup
    nested = ss.smoothed_ig(0.4, 200, steps=12, rule="gausslegendre", seed=0)
    joint = ss.smoothed_ig(0.4, 4000, sampler="joint", seed=1)
    nested, joint = nested.stats(model, x, target), joint.stats(model, x, target)
    z = (nested.mean - joint.mean) / (nested.mean_var + joint.mean_var).sqrt()
    assert abs(z.mean()) < 0.1 and 0.75 < (z**2).mean() < 1.3, (z.mean(), (z**2).mean())


def test_joint_smoothed_ig_matches_captum_gradient_shap_statistically(setup, captum):
    """Captum's GradientShap with one zero baseline draws, per sample, the noise z (torch) and
    a path position a ~ U[0, 1] (NumPy) and averages (x + z) * grad f(a (x + z)): an unbiased
    estimate of E_z[IG(x + z)], what our joint sampler estimates with a stratified. The two
    agree within their Monte-Carlo errors: per-entry z-scores behave like N(0, 1) (ours a
    little narrower, since stratifying a lowers our error below the unit variance's estimate)."""
    model, x, target = setup
    n, sigma = 1000, 0.4
    ours = ss.smoothed_ig(sigma, n, sampler="joint", seed=0).stats(model, x, target)
    state = np.random.get_state()
    try:
        np.random.seed(1)  # the path positions
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)  # the noise
            theirs = captum.GradientShap(model).attribute(
                x, baselines=torch.zeros_like(x[:1]), target=target, n_samples=n, stdevs=sigma
            )
    finally:
        np.random.set_state(state)
    # Captum's draws are iid, so its error is the per-unit variance over its n samples
    z = (ours.mean - theirs) / (ours.mean_var + ours.unit_var / n).sqrt()
    # (entries of a map are correlated: over 5 seeds z.mean was 0.02-0.20, (z**2).mean 0.83-1.06)
    assert abs(z.mean()) < 0.3 and 0.7 < (z**2).mean() < 1.25, (z.mean(), (z**2).mean())
    # and the check has power: plain IG at x (no noise) is many errors away
    far = ss.integrated_gradients(model, x, target, steps=64, rule="gausslegendre") - theirs
    assert ((far / (ours.unit_var / n).sqrt()) ** 2).mean() > 4


def test_from_captum_wraps_any_attribution_class(setup, captum):
    model, x, target = setup
    sal = ss.from_captum(captum.Saliency, abs=False)
    torch.testing.assert_close(sal(model, x, target), ss.grad(model, x, target))
    lgc = ss.from_captum(captum.LayerGradCam, layer="features.3", relu_attributions=True)
    torch.testing.assert_close(
        lgc(model, x, target)[:, :, :, :],
        ss.grad_cam(model, x, target, layer="features.3"),
    )
    smoothed = ss.smooth(sal, 0.3, 4, seed=0)(model, x, target)
    torch.testing.assert_close(smoothed, ss.smooth(ss.grad, 0.3, 4, seed=0)(model, x, target))

"""The library behaves like its peers: a CAM finds its layer, a 3-D input is refused as one
image, a convolution's layout is taken from what it is, a mistyped layer gets the nearest names,
Captum's layer maps come at the input's size without Captum's warning, ``ss.plot`` is found on
first use, plots have a signed view, colour bars and one scale per method, and the result records
print what they hold instead of their tensors."""

from __future__ import annotations

import subprocess
import sys
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import smoothstab as ss  # noqa: E402
from helpers import ConvNet, make  # noqa: E402
from smoothstab.layouts import module_layout  # noqa: E402

X = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def tiny_resnet() -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=4).double().eval()


# --- the CAM's layer ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", [ss.grad_cam, ss.grad_cam_pp])
def test_cam_default_layer_is_the_known_one_of_the_family(method):
    model = tiny_resnet()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    default = method(model, x, torch.tensor([0, 3]))
    named = method(model, x, torch.tensor([0, 3]), layer="layer4")
    torch.testing.assert_close(default, named, rtol=0, atol=0)
    assert (default.amax(dim=(1, 2, 3)) > 0).all()


def test_cam_default_layer_honours_the_model_own_attribute():
    model = make(ConvNet())
    model.cam_layer = "features.2"
    torch.testing.assert_close(
        ss.grad_cam(model, X, 1), ss.grad_cam(model, X, 1, layer="features.2"), rtol=0, atol=0
    )


def test_cam_of_an_unknown_model_asks_for_layer_and_names_its_last_convolution():
    with pytest.raises(
        ValueError,
        match=r"^layer: no default CAM layer known for helpers.ConvNet;"
        r" pass layer= .*last convolution 'features.2'",
    ) as e:
        ss.grad_cam(make(ConvNet()), X, 1)
    assert "\n" not in str(e.value)


def test_the_experiment_layer_asks_the_core_for_its_cam_layers():
    from smoothstab.camlayers import CAM_LAYERS
    from smoothstab.experiments.models import architectures

    assert not hasattr(architectures, "CAM_LAYERS")  # one owner: the core
    assert architectures.cam_layer("resnet18") == "layer4" == CAM_LAYERS["torchvision.ResNet"][0]


# --- a 3-D input -------------------------------------------------------------------------------

ONE_IMAGE = X[0]


@pytest.mark.parametrize(
    "call",
    [
        lambda m: ss.grad(m, ONE_IMAGE, 1),
        lambda m: ss.integrated_gradients(m, ONE_IMAGE, 1, steps=2),
        lambda m: ss.grad_cam(m, ONE_IMAGE, 1, layer="features.2"),
        lambda m: ss.grad_cam_pp(m, ONE_IMAGE, 1, layer="features.2"),
    ],
    ids=["grad", "ig", "grad_cam", "grad_cam_pp"],
)
def test_one_image_without_its_batch_dim_is_refused_as_such(call):
    with pytest.raises(ValueError) as e:
        call(make(ConvNet()))
    assert str(e.value) == (
        "x: expected a batch [B, C, H, W], got shape (3, 8, 8); one image? x[None] adds the "
        "batch dim"
    )


def test_from_captum_refuses_one_image_too():
    captum = pytest.importorskip("captum.attr")
    with pytest.raises(ValueError, match=r"^x: expected a batch \[B, C, H, W\], got shape"):
        ss.from_captum(captum.Saliency)(make(ConvNet()), ONE_IMAGE, 1)


# --- the layout of a CAM layer -----------------------------------------------------------------


def test_a_convolution_with_as_many_channels_as_rows_is_channels_first():
    """Conv2d(3, 7, 4, stride=4) on 28x28 gives [2, 7, 7, 7], whose sizes fit either layout: a
    convolution's output is [B, C, h, w] whatever its sizes, and so is a ReLU after it in a
    Sequential (it keeps its input's layout). The map equals Grad-CAM computed by hand."""
    net = make(
        nn.Sequential(
            nn.Conv2d(3, 7, 4, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(7 * 7 * 7, 3)
        )
    )
    x = torch.randn(2, 3, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for layer in ("0", "1"):
        cam = ss.grad_cam(net, x, 1, layer=layer)
        act = net[: int(layer) + 1](x).detach().requires_grad_(True)
        score = net[int(layer) + 1 :](act)[:, 1].sum()
        (g,) = torch.autograd.grad(score, act)
        by_hand = torch.relu((g.mean(dim=(2, 3), keepdim=True) * act).sum(1, keepdim=True))
        by_hand = nn.functional.interpolate(by_hand, size=(28, 28), mode="bilinear")
        torch.testing.assert_close(cam, by_hand.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "module, said",
    [
        (nn.Conv2d(3, 4, 3), "first"),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), "first"),
        (nn.Linear(4, 4), "last"),
        (nn.LayerNorm(4), "last"),
        (nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 4), nn.GELU()), None),  # sizes tell
        (nn.Identity(), None),  # alone: its input's layout is not known
    ],
)
def test_module_layout_says_what_the_module_computes(module, said):
    assert module_layout(nn.Sequential(nn.Flatten(), module), module) == said


def test_torchvision_swin_and_convnext_stages_keep_their_layouts():
    """A Swin stage ends in Linear layers (channels-last), a ConvNeXt stage holds convolutions
    and Linear layers and is channels-first: for these mixed stages the sizes decide, as
    before; Swin's own Permute module says channels-first."""
    import torchvision

    swin = torchvision.models.swin_t(num_classes=3).eval()
    assert module_layout(swin, swin.permute) == "first"
    convnext = torchvision.models.convnext_tiny(num_classes=3).eval()
    assert module_layout(convnext, convnext.features[-1]) is None


# --- a mistyped layer --------------------------------------------------------------------------


def test_a_mistyped_layer_gets_the_nearest_names_by_spelling():
    with pytest.raises(ValueError) as e:
        ss.grad_cam(make(ConvNet()), X, 1, layer="featurs.2")
    message = str(e.value)
    assert message.startswith("layer: expected a submodule name of ConvNet, got 'featurs.2'; ")
    assert message.split("nearest names: ")[1].split(", ")[0] == "'features.2'"


def test_a_name_close_to_nothing_gets_the_last_children():
    with pytest.raises(ValueError, match=r"nearest names: 'features', 'pool', 'fc'$"):
        ss.grad_cam(make(ConvNet()), X, 1, layer="zzzzzz")


# --- Captum ------------------------------------------------------------------------------------


def test_from_captum_layer_gradcam_comes_at_the_input_size_and_equals_grad_cam():
    captum = pytest.importorskip("captum.attr")
    model = make(
        nn.Sequential(
            nn.Conv2d(3, 5, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(5, 3),
        )
    )
    target = torch.tensor([0, 2])
    up = ss.from_captum(captum.LayerGradCam, layer="1", relu_attributions=True)(model, X, target)
    assert up.shape == (2, 1, 8, 8)
    torch.testing.assert_close(up, ss.grad_cam(model, X, target, layer="1"), rtol=1e-10, atol=1e-12)
    raw = ss.from_captum(captum.LayerGradCam, layer="1", upsample=False)(model, X, target)
    assert raw.shape == (2, 1, 4, 4)


def test_from_captum_does_not_trigger_captum_requires_grad_warning():
    captum = pytest.importorskip("captum.attr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ss.from_captum(captum.Saliency, abs=False)(make(ConvNet()), X, 1)
    torch.testing.assert_close(got, ss.grad(make(ConvNet()), X, 1))


# --- ss.plot -----------------------------------------------------------------------------------


def test_plot_is_found_on_first_use_and_import_loads_no_matplotlib():
    probe = (
        "import sys, smoothstab as ss\n"
        "before = sorted(m for m in sys.modules if m.startswith(('matplotlib', 'smoothstab.plot',"
        " 'smoothstab.experiments', 'pandas')))\n"
        "print(before, callable(ss.plot.map_grid), 'plot' in dir(ss))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True True"


def test_lazy_names_are_the_declared_ones():
    """The package reaches outside the core only through these names, on first use."""
    assert ss.LAZY == {
        "plot": ("smoothstab.plot", None),
        "load_run": ("smoothstab.experiments.rundir.frames", "load_run"),
    }


def test_signed_view_is_the_channel_sum_on_a_symmetric_diverging_scale():
    m = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    fig = ss.plot.map_grid({"grad": m}, view="signed")
    for row, ax in enumerate(fig.axes):
        shown = ax.get_images()[-1]
        np.testing.assert_allclose(shown.get_array(), m[row].sum(0).numpy())
        low, high = shown.get_clim()
        assert low == -high and high == pytest.approx(
            np.percentile(m[row].sum(0).abs().numpy(), 99.5)
        )
        assert shown.get_cmap().name == "RdBu_r"


def test_default_scale_gives_a_cam_its_own_scale_beside_gradient_maps():
    g = 0.01 * torch.randn(2, 3, 8, 8, dtype=torch.float64)
    cam = 50 * torch.rand(2, 1, 8, 8, dtype=torch.float64)
    by_method = ss.plot.map_grid({"Simple-Grad": g, "Smooth-Grad": 0.5 * g, "Grad-CAM": cam})
    row = [ax.get_images()[-1].get_clim()[1] for ax in by_method.axes[:3]]
    assert row[0] == row[1] != row[2]
    assert row[2] == pytest.approx(np.percentile(cam[0].numpy(), 99.5))
    one = ss.plot.map_grid({"Simple-Grad": g, "Grad-CAM": cam}, scale="row")
    assert len({ax.get_images()[-1].get_clim() for ax in one.axes[:2]}) == 1
    named = ss.plot.map_grid({"a": g, "b": g, "c": 2 * g}, methods=["grad", "grad", "ig"])
    tops = [ax.get_images()[-1].get_clim()[1] for ax in named.axes[:3]]
    view = g[0].abs().sum(0).numpy()
    assert tops[0] == tops[1] == pytest.approx(np.percentile(np.stack([view, view]), 99.5))
    assert tops[2] == pytest.approx(np.percentile(2 * view, 99.5))


def test_colour_bars_one_per_scale():
    g, cam = torch.randn(2, 3, 8, 8), torch.rand(2, 1, 8, 8)
    fig = ss.plot.map_grid({"grad": g, "smooth": g, "cam": cam}, colorbar=True)
    assert len(fig.axes) == 2 * 3 + 2 * 2  # a bar per row for each of the two scales
    shown = ss.plot.overlay(g[0], torch.rand(3, 8, 8), colorbar=True)
    assert len(shown.axes.figure.axes) == 2


def test_bad_plot_arguments_are_one_line():
    g = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"^view: expected one of magnitude, signed, got 'abs'$"):
        ss.plot.map_grid({"a": g}, view="abs")
    with pytest.raises(ValueError, match=r"^methods: expected one method per entry of maps \(2\)"):
        ss.plot.map_grid({"a": g, "b": g}, methods=["grad"])
    with pytest.raises(ValueError, match=r"^methods: expected a method for every title, missing"):
        ss.plot.map_grid({"a": g, "b": g}, methods={"a": "grad"})


# --- what results print ------------------------------------------------------------------------


def _stats(seed: int, **kw) -> ss.SmoothStats:
    model = make(ConvNet())
    return ss.smooth(ss.grad, 0.3, 16, seed=seed, **kw).stats(model, X, torch.tensor([0, 1]))


def test_smooth_stats_print_their_shape_draws_and_errors_not_tensors():
    st = _stats(0, groups=4)
    text = repr(st)
    assert "tensor(" not in text and "\n" not in text
    assert text.startswith("SmoothStats(2 images, maps [3, 8, 8] float64; 16 draws per image, ")
    assert "4 groups kept" in text and "relative standard error mean " in text
    rel = st.rel_se
    assert f"({rel.min():.4g} to {rel.max():.4g})" in text
    page = st._repr_html_()
    assert page.count("<tr>") == 1 + 2 and "tensor(" not in page


@pytest.mark.parametrize(
    "make_estimate, name",
    [
        (lambda a, b: ss.debiased_distance(a, b), "DistanceEstimate"),
        (lambda a, b: ss.metrics.debiased_cosine(a, b), "Estimate"),
    ],
)
def test_estimates_print_value_plain_and_interval(make_estimate, name):
    est = make_estimate(_stats(0), _stats(1))
    text = repr(est)
    assert text.startswith(f"{name}(2 images: ") and "tensor(" not in text
    lo, hi = est.interval(0.95)
    assert f"95% interval {lo.mean():.4g} to {hi.mean():.4g} (means over images)" in text
    assert f"{est.value.mean():.4g}" in text and "normal quantile (halves)" in text
    page = est._repr_html_()
    assert page.count("<tr>") == 1 + 2 and "95% high" in page


def test_progress_postfix_prints_integers_as_integers():
    import io

    from smoothstab.experiments.io.progress import Progress

    bar = Progress(4, "attribute", stream=io.StringIO())
    bar.update(model=0, r=0.15, loss=0.5)
    assert bar.line().endswith("model=0, r=0.1500, loss=0.5000]"), bar.line()


# --- smooth(method, ..., **keywords) -------------------------------------------------------------


def test_smooth_passes_method_keywords_through_like_noise_tunnel():
    """``smooth(grad_cam, ..., layer=...)`` is the smoothing of the bound method, draw for
    draw (the same seed: the same maps)."""
    import functools

    model = make(ConvNet())
    target = torch.tensor([0, 1])
    given = ss.smooth(ss.grad_cam, 0.3, 8, seed=0, layer="features.2")
    bound = ss.smooth(functools.partial(ss.grad_cam, layer="features.2"), 0.3, 8, seed=0)
    torch.testing.assert_close(given(model, X, target), bound(model, X, target), rtol=0, atol=0)
    other = ss.smooth(ss.grad_cam, 0.3, 8, seed=0, layer="features.3")
    assert not torch.equal(given(model, X, target), other(model, X, target))
    assert given.__name__ == "smoothed_grad_cam"
    ig = ss.smooth(ss.integrated_gradients, 0.3, 8, seed=0, sampler="joint", baseline=0.5)
    assert ig.baseline == 0.5  # the joint sampler reads the bound baseline
    weights = ss.weight_smooth(ss.grad_cam, 0.1, 4, seed=0, layer="features.2")
    assert weights(model, X, target).shape == (2, 1, 8, 8)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: ss.smooth(ss.grad, 0.3, 8, layer="features.2"),
            "smooth: layer= is neither a keyword of smooth nor of grad, which takes none",
        ),
        (
            lambda: ss.smooth(ss.grad_cam, 0.3, 8, layr="features.2"),
            "smooth: layr= is neither a keyword of smooth nor of grad_cam, which takes layer, "
            "weighting, normalize, reshape",
        ),
        (
            lambda: ss.smooth(ss.grad, 0.3, 8, target=1),
            "smooth: target= is given at each call, method(model, x, target), not to smooth",
        ),
        (
            lambda: ss.weight_smooth(ss.grad, 0.1, 4, steps=3),
            "weight_smooth: steps= is neither a keyword of weight_smooth nor of grad, which "
            "takes none",
        ),
    ],
)
def test_a_keyword_the_method_does_not_take_is_one_line(call, message):
    with pytest.raises(TypeError) as e:
        call()
    assert str(e.value) == message


def test_smooth_refuses_one_image_without_its_batch_dim():
    with pytest.raises(ValueError, match=r"^x: expected a batch \[B, C, H, W\], got shape"):
        ss.smooth(ss.grad, 0.3, 4, seed=0)(make(ConvNet()), ONE_IMAGE, 1)
    with pytest.raises(ValueError, match=r"^x: expected a batch \[B, C, H, W\], got shape"):
        ss.weight_smooth(ss.grad, 0.1, 4, seed=0)(make(ConvNet()), ONE_IMAGE, 1)

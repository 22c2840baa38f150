"""CAMs at channels-last and token layers (:mod:`smoothstab.layouts`), and the default CAM layer
of torchvision, timm and Hugging Face architectures, each built small with random weights
(nothing is downloaded). timm / transformers cases skip when the extra is not installed."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch import nn

import smoothstab as ss
from helpers import TINY_HF_VIT, ConvNet, make
from smoothstab.experiments.models.architectures import cam_layer
from smoothstab.layouts import token_grid


class Relaid(nn.Module):
    """ConvNet whose CAM layer ``view`` hands on ``features``' output in another layout (and
    back): ``nhwc``, or ``tokens`` with ``extra`` leading tokens the head never reads."""

    def __init__(self, net: ConvNet, layout: str, extra: int = 0, patch: int | None = None):
        super().__init__()
        self.net, self.layout, self.extra = net, layout, extra
        self.view = nn.Identity()
        if patch is not None:
            self.patch_size = patch

    def forward(self, x):
        a = self.net.features(x)
        b, c, h, w = a.shape
        if self.layout == "nhwc":
            a = self.view(a.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        else:
            tokens = a.flatten(2).transpose(1, 2)
            lead = torch.zeros(b, self.extra, c, dtype=a.dtype)
            a = self.view(torch.cat([lead, tokens], 1))[:, self.extra :]
            a = a.transpose(1, 2).unflatten(2, (h, w))
        return self.net.fc(self.net.pool(a).flatten(1))


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_pp"])
@pytest.mark.parametrize("layout,extra", [("nhwc", 0), ("tokens", 0), ("tokens", 1), ("tokens", 5)])
def test_relaid_layer_gives_the_plain_cam(method, layout, extra, images):
    net = make(ConvNet())
    cam = getattr(ss, method)
    plain = cam(net, images, 1, layer="features.3")
    # 8x8 grid: with a patch size of 1 and up to 8 leading tokens, only one grid fits
    got = cam(Relaid(net, layout, extra, patch=1), images, 1, layer="view")
    torch.testing.assert_close(got, plain, rtol=1e-12, atol=1e-12)
    assert plain.abs().max() > 0


def test_own_reshape_is_used_for_activations_and_gradients(images):
    net = make(ConvNet())
    plain = ss.grad_cam(net, images, 0, layer="features.3")
    model = Relaid(net, "tokens", extra=3)
    reshape = lambda t: t[:, 3:].transpose(1, 2).unflatten(2, (8, 8))  # noqa: E731
    got = ss.grad_cam(model, images, 0, layer="view", reshape=reshape)
    torch.testing.assert_close(got, plain, rtol=1e-12, atol=1e-12)


def test_ambiguous_layouts_ask_for_reshape():
    """17 tokens on 32x32 with no patch size: 1 + 4x4 (stride 8) or 8 + 3x3 (stride 10)."""
    with pytest.raises(ValueError, match=r"1 leading tokens \+ 4x4; 8 leading .*reshape=") as e:
        token_grid(17, (32, 32), nn.Module())
    assert "\n" not in str(e.value)
    # [B, 6, 6, 6] on a 6x6 input from a layer that does not say its layout (an Identity
    # outside a Sequential): channels first or last? (A convolution's is never asked:
    # tests/test_library_frictions.py.)
    net = make(Relaid(make(ConvNet()), "nhwc"))
    with pytest.raises(ValueError, match=r"could be \[B, C, h, w\] or \[B, h, w, C\].*reshape="):
        ss.grad_cam(net, torch.randn(2, 3, 6, 6, dtype=torch.float64), 0, layer="view")


def test_token_grid_uses_patch_size_and_prefix_count():
    class Says(nn.Module):
        num_prefix_tokens = 5  # class token + 4 registers

    assert token_grid(21, (32, 32), Says()) == (5, 4, 4)
    vit = nn.Module()
    vit.patch_size = 8
    assert token_grid(25, (32, 48), vit) == (1, 4, 6)


@pytest.mark.parametrize("layer", ["", ".self_attention", ".ln_2", ".mlp"])
def test_zero_gradient_layer_warns(layer):
    """A torchvision ViT reads the class token only: what its last block computes at patch
    positions (attention output, second norm, MLP, the block's output) does not reach the
    score, so a CAM there is all zero, and we say so. (The attention returns a tuple.)"""
    tv = pytest.importorskip("torchvision.models")
    vit = _tiny_tv_vit(tv).eval()
    with pytest.warns(UserWarning, match="gradient of the score .* is all zero"):
        cam = ss.grad_cam(
            vit, torch.randn(2, 3, 32, 32), 0, layer=f"encoder.layers.encoder_layer_0{layer}"
        )
    assert not cam.any()


def _tiny_tv_vit(tv):
    return _no_zero_weights(
        tv.VisionTransformer(
            image_size=32,
            patch_size=8,
            num_layers=1,
            num_heads=2,
            hidden_dim=32,
            mlp_dim=64,
            num_classes=5,
        )
    )


def _no_zero_weights(model: nn.Module) -> nn.Module:
    """Some builders start the classifier at zero (torchvision's ViT): every gradient would be
    zero, so such weights are drawn instead."""
    gen = torch.Generator().manual_seed(0)
    for p in model.parameters():
        if p.ndim > 1 and not p.any():
            with torch.no_grad():
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    return model


def _tv(name):
    tv = pytest.importorskip("torchvision.models")
    from torchvision.models.convnext import CNBlockConfig

    if name == "vit":
        return _tiny_tv_vit(tv)
    if name == "swin":
        return tv.SwinTransformer(
            patch_size=[4, 4],
            embed_dim=16,
            depths=[1, 1],
            num_heads=[1, 2],
            window_size=[2, 2],
            num_classes=5,
        )
    if name == "convnext":
        return tv.ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=5)
    return tv.MaxVit(
        input_size=(32, 32),
        stem_channels=8,
        partition_size=2,
        block_channels=[16, 32],
        block_layers=[1, 1],
        head_dim=8,
        stochastic_depth_prob=0.0,
        num_classes=5,
    )


def _timm(name):
    timm = pytest.importorskip("timm")
    vit = dict(img_size=32, patch_size=8, depth=1, embed_dim=32, num_heads=2, num_classes=5)
    args = {
        "resnet": ("resnet10t", {"num_classes": 5}),
        "convnext": (
            "convnext_atto",
            dict(dims=(8, 8, 16, 16), depths=(1, 1, 1, 1), num_classes=5),
        ),
        "vit": ("vit_tiny_patch16_224", vit),
        "vit_registers": ("vit_tiny_patch16_224", dict(vit, reg_tokens=4)),
        "deit": ("deit_tiny_distilled_patch16_224", vit),
        "swin": (
            "swin_tiny_patch4_window7_224",
            dict(
                img_size=32,
                patch_size=4,
                embed_dim=16,
                depths=(1, 1),
                num_heads=(1, 2),
                window_size=2,
                num_classes=5,
            ),
        ),
    }[name]
    return timm.create_model(args[0], pretrained=False, **args[1])


def _hf(name):
    tr = pytest.importorskip("transformers")
    vit = dict(TINY_HF_VIT, num_labels=5)
    if name == "vit":
        return tr.ViTForImageClassification(tr.ViTConfig(**vit))
    if name == "deit":
        return tr.DeiTForImageClassification(tr.DeiTConfig(**vit))
    if name == "swin":
        return tr.SwinForImageClassification(
            tr.SwinConfig(
                image_size=32,
                patch_size=4,
                embed_dim=16,
                depths=[1, 1],
                num_heads=[1, 2],
                window_size=2,
                num_labels=5,
            )
        )
    return tr.ConvNextForImageClassification(
        tr.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=5)
    )


ARCHITECTURES = {
    **{
        f"torchvision_{n}": functools.partial(_tv, n) for n in ("vit", "swin", "convnext", "maxvit")
    },
    **{
        f"timm_{n}": functools.partial(_timm, n)
        for n in ("resnet", "convnext", "vit", "vit_registers", "deit", "swin")
    },
    **{f"hf_{n}": functools.partial(_hf, n) for n in ("vit", "deit", "swin", "convnext")},
}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_default_cam_layer_gives_a_nonzero_map(arch):
    torch.manual_seed(0)
    model = _no_zero_weights(ARCHITECTURES[arch]()).eval()
    layer = cam_layer(model)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no all-zero-gradient warning at the default layer
        for method in (ss.grad_cam, ss.grad_cam_pp):
            # (a 1x1 last stage, as in small CNNs at 32 px, makes some maps 0 after the ReLU)
            cam = method(model, x, torch.tensor([0, 1, 2, 3]), layer=layer)
            assert cam.shape == (4, 1, 32, 32), (layer, cam.shape)
            assert torch.isfinite(cam).all() and cam.amax() > 0, layer
    smoothed = ss.smooth(functools.partial(ss.grad_cam, layer=layer), 0.1, 2, seed=0)
    assert smoothed(model, x[:2], 0).shape == (2, 1, 32, 32)


def test_unknown_architecture_asks_for_layer():
    with pytest.raises(ValueError, match="no Grad-CAM layer known for torch.Sequential.*layer="):
        cam_layer(nn.Sequential(nn.Linear(2, 2)))


def test_a_map_larger_than_the_input_stays_channels_first():
    """A padded layer (10x10 on 8x8 inputs) is no grid over the input, but it is NCHW as ever."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 1, padding=1),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    ).double()
    cam = ss.grad_cam(net, torch.randn(2, 3, 8, 8, dtype=torch.float64), 0, layer="0")
    assert cam.shape == (2, 1, 8, 8)


def test_timm_resnet_grad_cam_is_the_plain_cam():
    """timm's ResNet ends conv -> global average pool -> linear, so Grad-CAM at its default
    layer is CAM (Zhou et al. 2016): ReLU(sum_k W[c, k] A_k) / (h w)."""
    pytest.importorskip("timm")
    torch.manual_seed(0)
    model = _timm("resnet").double().eval()
    x = torch.randn(4, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([1, 4, 0, 2])
    seen = []
    handle = model.get_submodule(cam_layer(model)).register_forward_hook(
        lambda m, i, o: seen.append(o)
    )
    with torch.no_grad():
        model(x)
    handle.remove()
    act = seen[0]
    w = model.get_classifier().weight[target][:, :, None, None]
    plain = torch.relu((w * act).sum(1, keepdim=True)) / (act.shape[2] * act.shape[3])
    plain = torch.nn.functional.interpolate(plain, size=(64, 64), mode="bilinear")
    got = ss.grad_cam(model, x, target, layer=cam_layer(model))
    torch.testing.assert_close(got, plain, rtol=1e-10, atol=1e-12)
    assert plain.amax() > 0

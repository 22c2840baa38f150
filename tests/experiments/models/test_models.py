"""Models by name, the Grad-CAM layer per architecture, and weights from local files only."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torchvision

from smoothstab import grad_cam
from smoothstab.experiments.models.architectures import build_model, cam_layer, resolve_weights


@pytest.mark.parametrize(
    ("name", "in_channels", "size"),
    [
        ("small_cnn", 1, 8),
        ("small_cnn", 3, 32),
        ("resnet18_cifar", 3, 32),
        ("resnet34_cifar", 3, 32),
        ("resnet18", 3, 64),
    ],
)
def test_build_and_forward(name, in_channels, size):
    model = build_model(name, num_classes=7, in_channels=in_channels).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, 7)


def test_cifar_resnet_has_a_3x3_stem_and_no_maxpool():
    model = build_model("resnet34_cifar", num_classes=10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3, model.layer4)] == [
        3,
        4,
        6,
        3,
    ]


def test_unknown_model_and_bad_channels():
    with pytest.raises(ValueError, match="small_cnn.*torchvision"):
        build_model("resnet9000", num_classes=10)
    with pytest.raises(ValueError, match="3 input channels"):
        build_model("resnet18", num_classes=10, in_channels=1)


@pytest.mark.parametrize(
    ("name", "size", "channels"),
    [
        ("small_cnn", 16, 32),
        ("resnet18_cifar", 32, 512),
        ("resnet18", 64, 512),
        ("convnext_tiny", 64, 768),
        ("swin_t", 64, 768),
        ("densenet121", 64, 1024),
    ],
)
def test_cam_layer_outputs_nchw(name, size, channels):
    model = build_model(name, num_classes=5).eval()
    layer = cam_layer(model)
    assert cam_layer(name) == layer
    seen = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    handle.remove()
    assert seen and seen[-1].ndim == 4 and seen[-1].shape[1] == channels


@pytest.mark.parametrize("name", ["small_cnn", "resnet18_cifar"])
def test_cam_layer_drives_core_grad_cam(name):
    model = build_model(name, num_classes=4).eval()
    cam = grad_cam(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 3]), layer=cam_layer(model))
    assert cam.shape == (2, 1, 32, 32)


def test_cam_layer_of_vit_is_the_last_blocks_first_norm():
    assert cam_layer("vit_b_16") == "encoder.layers.encoder_layer_11.ln_1"
    assert cam_layer("convnext_tiny") == "features.7"


def test_cam_layer_refuses_an_unknown_architecture():
    with pytest.raises(ValueError, match="no Grad-CAM layer known for torch.Identity.*layer="):
        cam_layer(torch.nn.Identity())


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_weights_from_dataparallel_checkpoint(tmp_path):
    source = build_model("small_cnn", num_classes=10, in_channels=1)
    # the paper's checkpoints: {"state_dict": {"module.<key>": ...}, "epoch": ..., ...}
    wrapped = {f"module.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 80, "state_dict": wrapped, "best_acc1": torch.tensor(76.1)}, path)
    loaded = build_model("small_cnn", num_classes=10, in_channels=1, weights=str(path))
    assert _same_weights(source, loaded)


def test_weights_from_hub_cache_by_torchvision_name(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    source = build_model("squeezenet1_1", num_classes=1000)
    url = torchvision.models.get_model_weights("squeezenet1_1")["IMAGENET1K_V1"].url
    (tmp_path / "checkpoints").mkdir()
    torch.save(source.state_dict(), tmp_path / "checkpoints" / Path(url).name)
    for name in ("IMAGENET1K_V1", "DEFAULT", "SqueezeNet1_1_Weights.IMAGENET1K_V1"):
        loaded = build_model("squeezenet1_1", num_classes=1000, weights=name)
        assert _same_weights(source, loaded)


def test_missing_hub_weights_name_the_expected_path(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    url = torchvision.models.get_model_weights("resnet50")["IMAGENET1K_V2"].url
    expected = tmp_path / "checkpoints" / Path(url).name
    with pytest.raises(ValueError, match="downloads are off") as info:  # the suite is offline
        resolve_weights("resnet50", "IMAGENET1K_V2")
    assert str(expected) in str(info.value) and url in str(info.value)
    with pytest.raises(ValueError, match="torchvision weight name of resnet50"):
        resolve_weights("resnet50", "IMAGENET1K_V9")
    with pytest.raises(ValueError, match="found nothing at"):
        build_model("small_cnn", num_classes=10, weights=str(tmp_path / "nope.pt"))


def test_weights_are_loaded_without_running_code(tmp_path):
    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        pickle.dump({"state_dict": Path("x")}, f, protocol=2)  # any class: refused by weights_only
    with pytest.raises(ValueError, match="cannot load"):
        build_model("small_cnn", num_classes=10, weights=str(path))


def test_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "ten.pt"
    torch.save(build_model("small_cnn", num_classes=10).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit SmallCNN"):
        build_model("small_cnn", num_classes=3, weights=str(path))

"""Any model in the pipeline: ``timm:NAME``, ``hf:LOCAL_DIR``, ``python:package.module:factory``
model names (:func:`smoothstab.experiments.models.architectures.build_model`), built small and
offline."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from helpers import TINY_HF_VIT
from smoothstab.experiments.models.architectures import build_model, cam_layer


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_python_factory_gets_what_it_takes():
    model = build_model("python:helpers:tiny_factory", num_classes=7, in_channels=1)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 7)
    plain = build_model("python:helpers:no_arguments", num_classes=10)
    assert plain(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    assert cam_layer(model) == "features.3"
    with pytest.raises(ValueError, match="no Grad-CAM layer known for torch.Sequential"):
        cam_layer(plain)


def test_timm_model_with_weights_from_a_local_file(tmp_path):
    pytest.importorskip("timm")
    source = build_model("timm:resnet10t", num_classes=4)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    loaded = build_model("timm:resnet10t", num_classes=4, weights=str(tmp_path / "w.pt"))
    assert _same(source, loaded)
    assert cam_layer(loaded) == "layer4"


def test_hf_model_from_a_local_folder(tmp_path):
    tr = pytest.importorskip("transformers")
    config = tr.ViTConfig(**TINY_HF_VIT, num_labels=5)
    tr.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    model = build_model(f"hf:{tmp_path / 'vit'}", num_classes=5).eval()
    again = build_model(f"hf:{tmp_path / 'vit'}", num_classes=5)
    assert _same(model, again)
    assert model(torch.randn(2, 3, 32, 32)).logits.shape == (2, 5)
    assert cam_layer(model).endswith("layernorm_before")
    with pytest.raises(ValueError, match="has 5 labels and 3 input channels, the data 10"):
        build_model(f"hf:{tmp_path / 'vit'}", num_classes=10)


BAD = {
    "unknown timm name": ("timm:no_such_net", "timm has no model 'no_such_net'", "timm"),
    "missing hf folder": (
        "hf:/nowhere/vit",
        r"found nothing at /nowhere/vit/config.json",
        "transformers",
    ),
    "python no module": ("python:no_such_pkg.mod:f", "no module no_such_pkg in .*", None),
    "python no factory": ("python:helpers:nothing", "helpers has no nothing", None),
    "python no colon": ("python:helpers", "expected python:package.module:factory", None),
    "python not a module": ("python:helpers:not_a_module", "returned str, not an", None),
    "unknown prefix": ("keras:net", "timm:NAME, hf:LOCAL_DIR, python:", None),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_model_names_are_one_line(case):
    name, match, needs = BAD[case]
    if needs:
        pytest.importorskip(needs)
    with pytest.raises(ValueError, match=match) as err:
        build_model(name, num_classes=3)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "name,extra", [("timm:resnet18", "timm"), ("hf:/some/dir", "hf")], ids=["timm", "hf"]
)
def test_missing_extra_names_the_extra(name, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ValueError, match=rf"pip install 'smoothstab\[{extra}\]'"):
        build_model(name, num_classes=3)


def test_weights_for_an_external_model_must_be_a_file():
    with pytest.raises(ValueError, match="expected a state-dict file, found nothing at V1"):
        build_model("python:helpers:tiny_factory", num_classes=3, weights="V1")


def test_a_spec_names_its_cam_layer():
    """[[models.specs]] cam_layer: for an architecture cam_layer does not know (or another
    layer of one it does), set on the given model where every stage reads it."""
    from smoothstab.experiments.config.tables import ExperimentConfig, ModelSpec
    from smoothstab.experiments.models.architectures import given_model

    cfg = ExperimentConfig()
    spec = ModelSpec("python:helpers:no_arguments", cam_layer="0")
    assert cam_layer(given_model(cfg, 0, spec, 10)) == "0"
    assert cam_layer(given_model(cfg, 0, ModelSpec("small_cnn"), 10)) == "features.3"
    other = ModelSpec("small_cnn", cam_layer="features.2")
    assert cam_layer(given_model(cfg, 0, other, 10)) == "features.2"

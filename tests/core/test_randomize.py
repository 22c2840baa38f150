"""randomize: copies re-initialised layer by layer (Adebayo et al. 2018), the original untouched."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch
from torch import nn

import smoothstab as ss
from helpers import ConvNet, StridedNet, make
from smoothstab.experiments.models.architectures import build_model
from smoothstab.experiments.models.data import load_dataset
from smoothstab.experiments.models.labels import (
    PermutedLabels,
    dataset_labels,
    permutation_name,
    permuted_labels,
)
from smoothstab.randomize import MODES


def module_of(key: str) -> str:
    """The module a state-dict key belongs to."""
    return key.rsplit(".", 1)[0] if "." in key else ""


def changed(a: nn.Module, b: nn.Module) -> set[str]:
    """Modules whose own parameters or buffers differ (bitwise) between a and b."""
    sa, sb = a.state_dict(), b.state_dict()
    return {module_of(k) for k in sa if not torch.equal(sa[k], sb[k])}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_original_untouched_and_global_rng_kept(convnet):
    before, rng = snapshot(convnet), torch.get_rng_state()
    for mode in MODES:
        for _name, copy in ss.randomize(convnet, mode, seed=3):
            assert copy is not convnet
    after = convnet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(rng, torch.get_rng_state())
    assert not convnet.training


def test_default_layers_in_forward_order():
    model = make(ConvNet())
    layers, skipped = ss.randomizable_layers(model)
    assert layers == ["features.0", "features.2", "fc"] and skipped == []


def test_cascading_differs_in_exactly_the_last_k_layers(convnet):
    layers, _ = ss.randomizable_layers(convnet)
    copies = ss.randomize(convnet, "cascading")
    assert len(copies) == len(layers)
    for k, (name, model) in enumerate(copies, start=1):
        assert name == layers[-k]
        assert changed(convnet, model) == set(layers[-k:])
        assert model.training == convnet.training
        assert next(model.parameters()).dtype == torch.float64


def test_independent_differs_in_exactly_one_layer():
    model = make(StridedNet())
    layers, _ = ss.randomizable_layers(model)
    copies = ss.randomize(model, "independent", seed=1)
    assert copies.names == layers
    for layer, (name, copy) in zip(layers, copies, strict=True):
        assert name == layer and changed(model, copy) == {layer}


def test_cascade_is_the_union_of_independent_resets(convnet):
    """A layer's new weights depend on the seed and its name only, not on the mode."""
    indep = dict(ss.randomize(convnet, "independent", seed=5))
    _, full = ss.randomize(convnet, "cascading", seed=5)[-1]
    for layer, copy in indep.items():
        for key, value in copy.get_submodule(layer).state_dict().items():
            assert torch.equal(full.get_submodule(layer).state_dict()[key], value)


def test_same_seed_same_weights_other_seed_other(convnet):
    a = ss.randomize(convnet, seed=0)[-1][1].state_dict()
    b = ss.randomize(convnet, seed=0)[-1][1].state_dict()
    c = ss.randomize(convnet, seed=1)[-1][1].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a)


def test_explicit_steps_and_containers():
    model = build_model("resnet18_cifar", num_classes=3).eval()
    copies = ss.randomize(model, layers=["layer3", "layer4", "fc"])
    assert copies.names == ["fc", "layer4", "layer3"]
    _, two = copies[1]
    assert {m.split(".")[0] for m in changed(model, two)} == {"layer4", "fc"}
    with pytest.raises(ValueError, match="layers: expected module names"):
        ss.randomize(model, layers=["nope"])
    with pytest.raises(ValueError, match="no parameters"):
        ss.randomize(model, layers=["relu"])
    with pytest.raises(ValueError, match="overlap"):
        ss.randomize(model, layers=["layer4", "layer4.0"])
    with pytest.raises(ValueError, match="mode"):
        ss.randomize(model, "all")


def test_module_without_reset_parameters_is_skipped():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x) * self.scale

    model = Scaled()
    copies = ss.randomize(model)
    assert copies.names == ["fc"] and copies.skipped == [""]
    with pytest.raises(ValueError, match="reset_parameters"):
        ss.randomize(model, layers=[""])


@pytest.mark.parametrize("name", ["small_cnn", "resnet18_cifar", "resnet18"])
def test_layer_types_of_the_built_in_and_torchvision_models(name):
    """Conv2d, Linear, BatchNorm2d: every parameterised module is re-initialised, none skipped;
    BatchNorm's reset also resets its running statistics."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=4).eval()
    with torch.no_grad():  # trained-looking statistics, so that their reset shows
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 2)
    layers, skipped = ss.randomizable_layers(model)
    kinds = {type(model.get_submodule(n)) for n in layers}
    assert skipped == [] and kinds <= {nn.Conv2d, nn.Linear, nn.BatchNorm2d}
    assert nn.Conv2d in kinds and nn.Linear in kinds
    copies = ss.randomize(model, "independent")
    picks = {0, len(layers) - 1} | {i for i, n in enumerate(layers) if n.endswith("bn1")}
    for i in sorted(picks)[:4]:
        layer, copy = copies[i]
        assert changed(model, copy) == {layer}
        module = copy.get_submodule(layer)
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.running_mean, torch.zeros_like(module.running_mean))
            assert torch.equal(module.running_var, torch.ones_like(module.running_var))
            assert torch.equal(module.weight, torch.ones_like(module.weight))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_weights_on_every_device(convnet):
    """Resets are drawn on the CPU, so a model on the GPU gets the same new weights."""
    cpu = ss.randomize(convnet, seed=2)[-1][1].state_dict()
    gpu = ss.randomize(deepcopy(convnet).cuda(), seed=2)[-1][1].state_dict()
    assert all(gpu[k].is_cuda and torch.equal(gpu[k].cpu(), cpu[k]) for k in cpu)


def test_vit_attention_is_reset_and_tokens_are_skipped():
    """torchvision's ViT: MultiheadAttention's in-projection is reset by its _reset_parameters;
    the class token (on the model) and position embedding (on the encoder) have no reset and
    are skipped, listed."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16
    ).eval()
    attention = "encoder.layers.encoder_layer_0.self_attention"
    copies = ss.randomize(model, "independent")
    assert copies.skipped == ["", "encoder"] and attention in copies.names
    with torch.no_grad():
        model.get_submodule(attention).in_proj_bias.uniform_(-1, 1)  # 0 at init, as reset
    _, copy = copies[copies.names.index(attention)]
    assert changed(model, copy) == {attention}


# --- data randomisation: permuted training labels --------------------------------------------


def test_label_permutation_is_named_and_seeded():
    """The same seed gives the same labels, another seed other labels; the name carries it."""
    labels = torch.arange(1000) % 10
    a, b = permuted_labels(labels, 3), permuted_labels(labels, 3)
    assert torch.equal(a, b) and not torch.equal(a, permuted_labels(labels, 4))
    assert permutation_name(3) == "labels-permuted-3"


def test_permuted_digits_keep_images_and_class_counts_and_move_most_labels():
    """On the digits training set (1297 images, 10 near-balanced classes): images untouched,
    every class keeps its count, and about 90% of images get another class (expected
    1 - sum p_c^2 = 0.90, s.d. about 0.008: at least 85% holds for any seed drawn)."""
    train = load_dataset("digits", train=True)
    permuted = PermutedLabels(train, seed=0)
    real = dataset_labels(train)
    assert len(permuted) == len(train) and permuted.classes == train.classes
    assert torch.equal(permuted[5][0], train[5][0])
    assert torch.equal(torch.bincount(permuted.labels), torch.bincount(real))
    for seed in range(5):
        moved = (PermutedLabels(train, seed).labels != real).double().mean().item()
        assert moved >= 0.85, (seed, moved)


@pytest.mark.parametrize("labels", [torch.zeros(4, 2, dtype=torch.long), torch.rand(5), [3]])
def test_label_permutation_refuses_what_is_no_label_vector(labels):
    with pytest.raises(ValueError, match="^labels: expected at least 2 integer class labels"):
        permuted_labels(labels, 0)

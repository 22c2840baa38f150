"""Options that make the pipeline follow the paper's choices where it differs from ours:
min-max normalised CAMs (``attribution.cam_normalize``), the paper's test-image order
(``attribution.image_order``), the best epoch on a validation split (``train.keep``), and an
accurate r = 0 reference for the joint smoothed-IG estimator (``attribution.ig_reference_steps``).
Every default keeps today's numbers."""

from __future__ import annotations

import dataclasses
import functools
import json
import random

import numpy as np
import pytest
import torch

import smoothstab as ss
from helpers import ConvNet, StridedNet, make
from smoothstab.cam import minmax_normalize
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.config.parse import ConfigError
from smoothstab.experiments.config.tables import AttributionConfig, TrainConfig
from smoothstab.experiments.models.data import (
    disjoint_splits,
    load_dataset,
    size_splits,
    test_indices,
    validation_split,
)
from smoothstab.experiments.models.recipe import ig_reference_quadrature, smoothed_method

# --- config: defaults and one-line errors ---------------------------------------------------------


def test_defaults_keep_todays_behaviour():
    a, t = AttributionConfig(), TrainConfig()
    assert (a.cam_normalize, a.image_order, a.ig_reference_steps) == ("none", "numpy", 64)
    assert (t.keep, t.val_size) == ("last", 0)
    assert ig_reference_quadrature(a) == (a.ig_steps, a.ig_rule)  # nested: the run's quadrature


def test_keep_best_and_val_size_in_either_order():
    for overrides in (
        ["train.keep=best", "train.val_size=50"],
        ["train.val_size=50", "train.keep=best"],
    ):
        cfg = load_config(None, overrides)
        assert (cfg.train.keep, cfg.train.val_size) == ("best", 50)


@pytest.mark.parametrize(
    "override, key",
    [
        ("attribution.cam_normalize=max", "attribution.cam_normalize"),
        ("attribution.image_order=python", "attribution.image_order"),
        ("attribution.ig_reference_steps=-1", "attribution.ig_reference_steps"),
        ("attribution.ig_reference_steps=1.5", "attribution.ig_reference_steps"),
        ("train.keep=first", "train.keep"),
        ("train.keep=best", "train.val_size"),  # keep = "best" needs a validation split
        ("train.val_size=-1", "train.val_size"),
    ],
)
def test_bad_values_are_one_line_config_errors(override, key):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert "\n" not in message and message.startswith(key), message


@pytest.mark.parametrize(
    "change, key",
    [
        ({"cam_normalize": "max"}, "cam_normalize"),
        ({"image_order": "python"}, "image_order"),
        ({"ig_reference_steps": -2}, "ig_reference_steps"),
    ],
)
def test_attribution_checks_without_the_loader(change, key):
    with pytest.raises(ValueError, match=f"^{key}"):
        AttributionConfig(**change)


def test_keep_best_with_a_validation_split_loads(tmp_path):
    from smoothstab.experiments.models.training import train_run

    cfg = load_config(None, ["train.val_size=50", "train.keep=best"])
    assert (cfg.train.keep, cfg.train.val_size) == ("best", 50)
    path = tmp_path / "c.toml"
    path.write_text(
        "[train]\ndataset = 'shapes'\nkeep = 'best'\nval_size = 20\n"
        "[attribution]\ncam_normalize = 'minmax'\n"
    )
    cfg = load_config(path)
    assert (cfg.train.keep, cfg.train.val_size, cfg.attribution.cam_normalize) == (
        "best",
        20,
        "minmax",
    )
    # Through the API the check comes when training starts, before anything is written.
    with pytest.raises(ValueError, match=r"^train\.val_size: expected 1 <= val_size"):
        train_run(TrainConfig(keep="best", quiet=True), tmp_path / "run")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    assert TrainConfig(keep="last", val_size=30).val_size == 30  # ignored with keep = "last"


# --- 1. min-max normalised CAMs -------------------------------------------------------------------


def test_minmax_normalize_is_pytorch_grad_cams_scale_cam_image():
    image = pytest.importorskip("pytorch_grad_cam.utils.image")
    cam = torch.rand(3, 1, 5, 6, generator=torch.Generator().manual_seed(0)) * 7 + 2
    cam[2] = 0  # an all-zero map stays zero
    want = image.scale_cam_image(cam[:, 0].numpy())
    np.testing.assert_allclose(minmax_normalize(cam)[:, 0].numpy(), want, rtol=1e-6, atol=1e-7)
    got = minmax_normalize(cam.double())
    assert got.dtype == torch.float64 and torch.equal(got[2], torch.zeros_like(got[2]))
    assert torch.allclose(got[:2].amin(dim=(1, 2, 3)), torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(got[:2].amax(dim=(1, 2, 3)), torch.ones(2, dtype=torch.float64))


# StridedNet: maps are upsampled (cv2 there, torch here: both half-pixel bilinear). Targets
# whose gradients are not tiny, so pytorch-grad-cam's Grad-CAM++ eps = 1e-6 stays negligible.
@pytest.mark.parametrize(
    "net, layer, target",
    [(ConvNet, "features.3", [0, 4, 2, 1]), (StridedNet, "body.2", [0, 3, 2, 1])],
)
@pytest.mark.parametrize("ours, theirs", [("gradcam", "GradCAM"), ("gradcampp", "GradCAMPlusPlus")])
def test_minmax_cams_match_pytorch_grad_cam(net, layer, target, ours, theirs):
    grad_cam_lib = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = make(net(), dtype=torch.float32)
    last = model.fc if hasattr(model, "fc") else model.head[-1]
    with torch.no_grad():  # large gradients so pytorch-grad-cam's Grad-CAM++ eps is negligible
        last.weight.mul_(40)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with getattr(grad_cam_lib, theirs)(
        model=model, target_layers=[model.get_submodule(layer)]
    ) as c:
        want = c(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in target])
    got = ss.METHODS[ours](model, x, torch.tensor(target), layer=layer, normalize="minmax")
    assert got.shape == (4, 1, 8, 8)
    np.testing.assert_allclose(got[:, 0].numpy(), want, atol=2e-4)


def test_smoothed_minmax_cam_is_the_mean_of_normalised_draws():
    model = make(ConvNet())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    target = torch.tensor([1, 3])
    sigma, n = 0.3, 6
    eps = ss.noise_draws(x, n, seed=5)
    per_draw = [ss.grad_cam(model, x + sigma * e, target, layer="features.3") for e in eps]
    want = torch.stack([minmax_normalize(m) for m in per_draw]).mean(0)
    cam = functools.partial(ss.grad_cam, layer="features.3", normalize="minmax")
    got = ss.smooth(cam, sigma, n, seed=5)(model, x, target)
    torch.testing.assert_close(got, want)
    # not the normalised mean: averaging and normalising do not commute
    assert not torch.allclose(got, minmax_normalize(torch.stack(per_draw).mean(0)))


@pytest.mark.parametrize("name", ["gradcam", "gradcampp"])
def test_pipeline_cams_follow_cam_normalize(name, monkeypatch):
    model = make(ConvNet())
    monkeypatch.setattr("smoothstab.experiments.models.recipe.cam_layer", lambda _m: "features.3")
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    target = torch.tensor([0, 2])
    raw = functools.partial(ss.METHODS[name], layer="features.3")  # today's maps
    for normalize, method in [
        ("none", raw),
        ("minmax", lambda m, x, t: minmax_normalize(raw(m, x, t))),
    ]:
        attr = AttributionConfig(cam_normalize=normalize, n_samples=4)
        for sigma in (0.0, 0.2):
            got = smoothed_method(name, model, attr, sigma, 7)(model, x, target)
            want = ss.smooth(method, sigma, 4, seed=7)(model, x, target)
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_cam_normalize_is_checked():
    with pytest.raises(ValueError, match="^normalize: expected one of minmax, none"):
        ss.grad_cam(
            make(ConvNet()),
            torch.zeros(1, 3, 8, 8, dtype=torch.float64),
            0,
            layer="features.3",
            normalize="max",
        )


# --- 2. the test images in the paper's order ------------------------------------------------------


def test_numpy_order_is_unchanged():
    want = np.random.default_rng(10007).permutation(500)[:32].tolist()
    assert test_indices(500, 32, 10007) == want == test_indices(500, 32, 10007, "numpy")


def test_paper_order_is_a_random_seed_shuffle_script():
    state = random.getstate()
    try:
        random.seed(10007)  # what the paper's script did, on the global generator
        indices = list(range(500))
        random.shuffle(indices)
    finally:
        random.setstate(state)
    before = random.random()
    random.setstate(state)
    got = test_indices(500, 32, 10007, "paper")
    assert random.random() == before  # the global generator is left alone
    assert got == indices[:32]
    idx = list(range(500))
    random.Random(10007).shuffle(idx)
    assert got == idx[:32]
    assert got != test_indices(500, 32, 10007, "numpy")


@pytest.mark.parametrize("order", ["numpy", "paper"])
def test_a_smaller_count_is_a_prefix(order):
    big = test_indices(1000, 512, 10007, order)
    assert len(set(big)) == 512 and all(0 <= i < 1000 for i in big)
    for count in (1, 32, 100):
        assert test_indices(1000, count, 10007, order) == big[:count]
    assert test_indices(1000, 32, 1, order) != big[:32]  # the seed matters


@pytest.mark.parametrize("order", ["numpy", "paper"])
def test_run_test_images_follow_image_order(tmp_path, order):
    from smoothstab.experiments.models.recipe import load_test_images
    from smoothstab.experiments.rundir.layout import RunDir

    # train.seed (model init) must not change the test set (shapes' images, digits' split)
    overrides = [f"attribution.image_order={order}", "attribution.n_images=8", "train.seed=3"]
    cfg = load_config(None, overrides)
    run = RunDir(tmp_path)
    x, y = load_test_images(cfg, run)
    test = load_dataset(cfg.train.dataset, train=False, seed=cfg.train.data_seed)
    want = test_indices(len(test), 8, cfg.attribution.image_seed, order)
    assert torch.load(run.test_images, weights_only=True)["indices"] == want
    assert torch.equal(x, torch.stack([test[i][0] for i in want]))
    assert y.tolist() == [int(test[i][1]) for i in want]


def test_image_order_is_checked():
    with pytest.raises(ValueError, match="^image_order"):
        test_indices(10, 2, 0, "python")


# --- 3. the best epoch on a validation split ------------------------------------------------------


@pytest.mark.parametrize("sizes", [(100,), (40, 100)])
def test_validation_split_follows_every_part(sizes):
    n, k, seed = 1000, 3, 7
    parts = size_splits(n, k, sizes, seed)
    val = validation_split(n, parts, 50, seed)
    order = np.random.default_rng(seed).permutation(n).tolist()
    assert val == order[k * max(sizes) : k * max(sizes) + 50]  # right after the largest parts
    assert not set(val) & {i for p in parts for i in p}
    assert validation_split(n, parts, 10, seed) == val[:10]
    with pytest.raises(ValueError, match=r"^train\.val_size: expected 1 <= val_size <= 700"):
        validation_split(n, parts, 701, seed)


def test_validation_split_after_even_parts():
    parts = disjoint_splits(100, 2, 45, seed=3)
    val = validation_split(100, parts, 10, seed=3)
    assert len(val) == 10 and not set(val) & set(parts[0] + parts[1])
    with pytest.raises(ValueError, match="val_size"):
        validation_split(100, parts, 11, seed=3)


def test_keep_best_too_large_fails_at_train_start(tmp_path):
    from smoothstab.experiments.models.training import train_run

    config = TrainConfig(parts=2, part_size=600, keep="best", val_size=200, quiet=True)
    with pytest.raises(ValueError, match=r"^train\.val_size: expected 1 <= val_size <= 97"):
        train_run(config, tmp_path / "run")
    assert not (tmp_path / "run" / "model_0.pt").exists()


def test_validation_images_are_not_augmented(tmp_path):
    pytest.importorskip("torchvision")
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{j}" for j in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [0, 1]}
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f)
    plain = load_dataset("cifar10", root=tmp_path, train=True, augment=False)
    test_like = load_dataset("cifar10", root=tmp_path, train=False)
    augmented = load_dataset("cifar10", root=tmp_path, train=True)
    assert len(plain) == 10
    assert repr(plain.transform) == repr(test_like.transform)
    assert "RandomCrop" in repr(augmented.transform) and "RandomCrop" not in repr(plain.transform)


class Killed(Exception):
    pass


def _weights(path):
    return torch.load(path, weights_only=True)


@pytest.mark.slow
def test_keep_best_resumes_exactly_and_records_the_split(tmp_path):
    from smoothstab.experiments.models.trainer import loss_and_accuracy
    from smoothstab.experiments.models.training import load_trained, train_run

    config = TrainConfig(
        parts=1,
        part_size=100,
        epochs=3,
        batch_size=32,
        quiet=True,
        device="cpu",
        keep="best",
        val_size=100,
        checkpoint_every=2,
    )
    whole = train_run(config, tmp_path / "whole")

    def kill(state):
        if state["global_step"] == 7:  # epoch 1, step 3; last checkpoint after global step 6
            raise Killed

    with pytest.raises(Killed):
        train_run(config, tmp_path / "killed", on_step=kill)
    saved = _weights(tmp_path / "killed" / "model_0.pt")
    assert (saved["complete"], saved["epoch"], saved["step"]) == (False, 1, 2)
    assert saved["best"]["epoch"] == 1 and len(saved["val_accuracies"]) == 1
    resumed = train_run(config, tmp_path / "killed")
    a, b = _weights(tmp_path / "whole" / "model_0.pt"), _weights(tmp_path / "killed" / "model_0.pt")
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert "best" not in a and "optimizer" not in a  # a complete checkpoint: weights only
    m = whole["models"][0]
    assert m == resumed["models"][0] | {"seconds": m["seconds"]}
    history = m["val_accuracies"]
    assert len(history) == 3 and m["kept_epoch"] == 1 + history.index(max(history))
    assert m["val_accuracy"] == max(history) and m["val_size"] == 100

    # the split: recorded, disjoint from the part, right after it in the split permutation
    val = json.loads((tmp_path / "whole" / "val_split.json").read_text())
    parts = json.loads((tmp_path / "whole" / "splits.json").read_text())
    assert val == validation_split(1297, parts, 100, config.split_seed)
    assert not set(val) & set(parts[0])
    # the kept weights score the recorded validation accuracy
    train_set = load_dataset("digits", train=True)
    model = load_trained(tmp_path / "whole" / "model_0.pt")
    got = loss_and_accuracy(model, torch.utils.data.Subset(train_set, val), 500, "cpu")
    assert got["accuracy"] == m["val_accuracy"]


@pytest.mark.slow
def test_keep_best_trains_exactly_as_keep_last(tmp_path, monkeypatch):
    """Validating after each epoch changes no training step: the last epoch's weights are
    bitwise those of keep = "last", whose checkpoint and metrics are as before."""
    from smoothstab.experiments.models.trainer import Trainer
    from smoothstab.experiments.models.training import train_run

    config = TrainConfig(parts=1, part_size=100, epochs=2, quiet=True, device="cpu")
    metrics = train_run(config, tmp_path / "last")
    assert not (tmp_path / "last" / "val_split.json").exists()
    assert not {"kept_epoch", "val_accuracy", "val_accuracies"} & set(metrics["models"][0])
    seen = []
    validate = Trainer.validate

    def spy(self):
        validate(self)
        seen.append({k: v.clone() for k, v in self.model.state_dict().items()})

    monkeypatch.setattr(Trainer, "validate", spy)
    train_run(dataclasses.replace(config, keep="best", val_size=50), tmp_path / "best")
    last = _weights(tmp_path / "last" / "model_0.pt")["state_dict"]
    assert len(seen) == 2 and all(torch.equal(seen[-1][k], last[k]) for k in last)


# --- 4. the r = 0 reference of the joint smoothed-IG estimator ------------------------------------


def test_joint_estimator_gets_an_accurate_reference():
    joint = AttributionConfig(ig_sampler="joint", ig_steps=10)
    assert ig_reference_quadrature(joint) == (64, "gausslegendre")
    assert ig_reference_quadrature(AttributionConfig(ig_sampler="joint", ig_reference_steps=0)) == (
        20,
        "paper",
    )
    nested = AttributionConfig(ig_steps=10, ig_reference_steps=128)
    assert ig_reference_quadrature(nested) == (10, "paper")


def test_r0_ig_map_uses_the_reference_quadrature():
    model = make(ConvNet())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    target = torch.tensor([1, 4])
    joint = AttributionConfig(ig_sampler="joint", ig_steps=10, ig_reference_steps=48)
    got = smoothed_method("ig", model, joint, 0.0, 0)(model, x, target)
    want = ss.integrated_gradients(model, x, target, steps=48, rule="gausslegendre")
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    coarse = ss.integrated_gradients(model, x, target, steps=10, rule="paper")
    nested = AttributionConfig(ig_steps=10)
    torch.testing.assert_close(
        smoothed_method("ig", model, nested, 0.0, 0)(model, x, target), coarse, rtol=0, atol=0
    )
    assert not torch.allclose(want, coarse)
    # r > 0 is untouched: the joint sampler, which has no quadrature
    smoothed = smoothed_method("ig", model, joint, 0.1, 3)
    assert smoothed.sampler == "joint"

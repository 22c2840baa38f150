"""Setting FT: replicas of one model by fine-tuning, SWAG-diagonal or noisy SGD, saved like
trained models, resumable, checked at load; one tiny run end to end. The tests that make
replicas train (a second or so each) and so are slow; the checks at load are not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from helpers import TINY_SETTINGS
from smoothstab.experiments import pipeline as stages
from smoothstab.experiments.cli import main
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.config.parse import ConfigError
from smoothstab.experiments.models.architectures import build_model
from smoothstab.experiments.models.data import load_splits
from smoothstab.experiments.models.proxies import SWAG_MOMENTS, trained_names
from smoothstab.experiments.models.source import RunModels
from smoothstab.experiments.models.training import load_trained, read_checkpoint
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.metrics_table import read_rows

BASE = 'models.specs=[{name="small_cnn"}]'
# Small CNNs on the 8x8 digits: each proxy run takes about a second on one core.
FT = ["train.dataset=digits", "models.setting=FT", BASE, "models.replicas=3", "quiet=true"]
FT += ["models.epochs=2", "models.part_size=150", "models.lr=0.05", "evaluation.topk=20"]


def ft_run(tmp_path: Path, *overrides: str, name: str = "ft") -> tuple:
    cfg = load_config("quickstart", [*FT, *overrides])
    run = RunDir(tmp_path / name)
    stages.prepare(cfg, run)
    stages.train(cfg, run)
    return cfg, run


def base_model(cfg):
    from smoothstab.experiments.models.architectures import given_model

    return given_model(cfg, 0, cfg.models.specs[0], 10)


def states(cfg, run):
    return [m.state_dict() for m in RunModels(cfg, run).models()]


def differs(a: dict, b: dict) -> set[str]:
    return {k for k in a if not torch.equal(a[k], b[k])}


@pytest.mark.slow
@pytest.mark.parametrize("proxy", ["finetune", "swag", "noisy_sgd"])
def test_replicas_are_saved_like_trained_models(tmp_path, proxy):
    cfg, run = ft_run(tmp_path, f"models.proxy={proxy}")
    base = base_model(cfg).state_dict()
    got = states(cfg, run)
    assert len(got) == 3
    for k, s in enumerate(got):
        saved = read_checkpoint(run.model(k))
        assert saved["complete"] and saved["config"]["model"] == "small_cnn"
        assert differs(s, base), f"replica {k} is the base model"
        assert all(torch.isfinite(v).all() for v in s.values())
    assert differs(got[0], got[1]) and differs(got[1], got[2])
    info = run.read_json(run.train_metrics)
    assert info["setting"] == "FT" and info["proxy"] == proxy and len(info["models"]) == 3
    steps = 2 * -(-150 // cfg.train.batch_size)  # 2 epochs of ceil(150 / 32) batches
    assert info["cost"]["steps"] == steps * (1 if proxy == "swag" else 3)
    assert all(0 <= m["test_accuracy"] <= 1 for m in info["models"])


@pytest.mark.slow
def test_finetune_parts_are_disjoint(tmp_path):
    cfg, run = ft_run(tmp_path)
    parts = load_splits(run.splits)
    assert len(parts) == 3 and all(len(p) == 150 for p in parts)
    assert not set(parts[0]) & set(parts[1]) and not set(parts[1]) & set(parts[2])


@pytest.mark.slow
@pytest.mark.parametrize("layers", ["classifier", "last_block"])
def test_only_the_chosen_layers_are_trained(tmp_path, layers):
    cfg, run = ft_run(tmp_path, f"models.layers={layers}")
    base = base_model(cfg)
    trained = trained_names(base, layers)
    expected = {"fc.weight", "fc.bias"}
    if layers == "last_block":
        expected |= {"features.3.0.weight", "features.3.0.bias"}
    assert trained == expected
    for s in states(cfg, run):
        moved = differs(s, base.state_dict())
        assert moved and moved <= trained


@pytest.mark.slow
def test_swag_scale_zero_gives_the_swa_mean(tmp_path):
    """With no spread every replica is the mean of the snapshots: all equal, not the base."""
    cfg, run = ft_run(tmp_path, "models.proxy=swag", "models.swag_scale=0")
    got = states(cfg, run)
    assert not differs(got[0], got[1]) and not differs(got[0], got[2])
    assert differs(got[0], base_model(cfg).state_dict())
    moments = torch.load(run.root / SWAG_MOMENTS, weights_only=True)
    assert moments["count"] >= 2 and moments["steps"] == 10
    assert all(float(v.min()) >= 0 for v in moments["var"].values())


@pytest.mark.slow
def test_swag_replicas_spread_as_the_moments_say(tmp_path):
    cfg, run = ft_run(tmp_path, "models.proxy=swag", "models.replicas=8")
    moments = torch.load(run.root / SWAG_MOMENTS, weights_only=True)
    w = torch.stack([s["features.1.0.weight"] for s in states(cfg, run)]).double()
    mean, var = (
        moments["mean"]["features.1.0.weight"].double(),
        moments["var"]["features.1.0.weight"],
    )
    z = (w - mean) / var.double().sqrt().clamp(min=1e-30)
    z = z[:, var > 0]
    assert abs(float(z.mean())) < 0.05 and float(z.std()) == pytest.approx(1.0, abs=0.05)


@pytest.mark.slow
def test_rerun_skips_finished_replicas_and_redoes_a_missing_one(tmp_path):
    cfg, run = ft_run(tmp_path)
    before = states(cfg, run)
    stamp = run.model(1).stat().st_mtime_ns
    run.model(2).unlink()
    stages.train(cfg, run)
    assert run.model(1).stat().st_mtime_ns == stamp
    after = states(cfg, run)
    for a, b in zip(before, after, strict=True):
        assert not differs(a, b)  # replica 2 again, bitwise (deterministic mode on CPU)


@pytest.mark.slow
def test_a_smoothstab_checkpoint_is_a_base_model(tmp_path):
    """A ``model_{p}.pt`` written by training (here: by a finished FT run) is a valid base."""
    cfg, run = ft_run(tmp_path)
    ckpt = str(run.model(0))
    cfg2, run2 = ft_run(
        tmp_path, f'models.specs=[{{name="small_cnn", weights="{ckpt}"}}]', name="again"
    )
    base = load_trained(ckpt).state_dict()
    assert not differs(base_model(cfg2).state_dict(), base)
    assert all(differs(s, base) for s in states(cfg2, run2))


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["models.specs=[]"], "models.specs: setting FT starts from exactly one model, got 0"),
        ([BASE.replace("}]", '}, {name="small_cnn"}]')], "exactly one model, got 2"),
        (["models.proxy=laplace"], "models.proxy"),
        (["models.layers=head"], "models.layers"),
        (["models.replicas=1"], "models.replicas"),
        (["models.epochs=0"], "models.epochs"),
        (["models.lr=-1"], "models.lr"),
        (["models.swag_scale=nan"], "models.swag_scale"),
        (["models.part_size=0"], "models.part_size"),
        (["models.proxy=noisy_sgd", "models.noise_std=0"], "models.noise_std"),
        (["models.setting=XX"], "models.setting"),
    ],
)
def test_bad_ft_keys_are_one_line_at_load(overrides, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_config("quickstart", [*FT, *overrides])
    assert "\n" not in str(e.value)


def test_bad_ft_config_exits_2(tmp_path, capsys):
    args = [a for o in [*FT, "models.replicas=1"] for a in ("--set", o)]
    assert main(["run", "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "models.replicas" in err[0]


def test_too_large_parts_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="models.part_size: expected replicas x part_size") as e:
        ft_run(tmp_path, "models.part_size=100000")
    assert "\n" not in str(e.value)


def test_trained_names_on_a_torchvision_resnet():
    model = build_model("resnet18", num_classes=3)
    assert trained_names(model, "classifier") == {"fc.weight", "fc.bias"}
    block = trained_names(model, "last_block") - {"fc.weight", "fc.bias"}
    assert block and all(n.startswith("layer4.1.") for n in block)


def test_last_block_of_a_vit_is_the_block_holding_its_cam_layer():
    """A ViT's Grad-CAM layer is the last block's first norm: the proxy trains that block."""
    import torchvision

    model = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=3,
    )
    head = {"heads.head.weight", "heads.head.bias"}
    block = trained_names(model, "last_block") - head
    assert block and all(n.startswith("encoder.layers.encoder_layer_1.") for n in block)
    assert "encoder.layers.encoder_layer_1.mlp.0.weight" in block


@pytest.mark.slow
def test_ft_run_end_to_end(tmp_path):
    """Every stage on three fine-tuned replicas of a random-init model: every pair compared."""
    out = tmp_path / "run"
    args = [*TINY_SETTINGS, "models.setting=FT", BASE, "models.replicas=3", "models.epochs=1"]
    args += ["models.part_size=100", 'attribution.methods=["grad", "gradcam"]']
    argv = ["run", "--out", str(out), "--quiet", *(a for o in args for a in ("--set", o))]
    assert main(argv) == 0
    rows = read_rows(out / "metrics.parquet")
    pairs = {r["pair"] for r in rows if r["pair"]}
    assert pairs == {"0-1", "0-2", "1-2"}
    assert (out / "report.html").is_file()
    assert "FT: replicas" in (out / "report.md").read_text()
    shutil.rmtree(out / "blocks")
    (out / "metrics.parquet").unlink()
    assert main([*argv, "--stages", "attribute", "evaluate"]) == 0  # replicas reused as saved
    assert read_rows(out / "metrics.parquet") == rows


def fake_imagefolder(root: Path, per_class: dict[str, int]) -> None:
    """``root/{train,val}/<class>/<i>.png``: small random RGB images."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, count in per_class.items():
        for cls in ("ant", "bee"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (40, 48, 3), generator=gen, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")


def test_hub_preset_loads_and_names_a_local_resnet50():
    cfg = load_config("hub_resnet50_ft")
    assert cfg.models.setting == "FT" and cfg.models.specs[0].name == "resnet50"
    assert cfg.train.dataset == "imagefolder" and cfg.train.num_classes == 1000


@pytest.mark.slow
def test_hub_preset_on_a_fake_imagefolder(tmp_path):
    """The hub preset end to end, with a random-weight ResNet-18 saved as a local weights file
    in place of ResNet-50 and a 2-class ImageFolder of random images, on the CPU."""
    fake_imagefolder(tmp_path / "data", {"train": 4, "val": 2})
    weights = tmp_path / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(build_model("resnet18", num_classes=1000).state_dict(), weights)
    out = tmp_path / "run"
    sets = [
        f"train.root={tmp_path / 'data'}",
        f'models.specs=[{{name="resnet18", weights="{weights}"}}]',
        "train.device=cpu",
        "train.num_workers=0",
        "train.batch_size=2",
        "models.replicas=2",
        "models.part_size=4",
        "attribution.device=cpu",
        "attribution.n_images=2",
        "attribution.n_samples=2",
        "attribution.ig_steps=2",
        "attribution.stability_r=[0, 0.1]",
        "attribution.fidelity_r=[0, 0.1]",
        "attribution.batch_size=8",
    ]
    argv = ["run", "hub_resnet50_ft", "--out", str(out), "--quiet"]
    argv += ["--stages", "train", "attribute", "evaluate"]
    assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    base = load_trained(out / "model_0.pt")
    assert type(base).__name__ == "ResNet"
    rows = read_rows(out / "metrics.parquet")
    methods = {r["method"] for r in rows if r["metric"] == "stability" and r["pair"] == "0-1"}
    assert methods == {"grad", "ig", "gradcam", "gradcampp"}
    given = torch.load(weights)
    moved = {n.split(".")[0] for n, v in base.state_dict().items() if not torch.equal(v, given[n])}
    assert {"conv1", "layer1", "layer4", "fc"} <= moved  # the preset fine-tunes every layer


@pytest.mark.slow
def test_a_killed_replica_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """Killed in its second epoch, replica 1 resumes from its epoch-1 checkpoint and ends with
    bitwise the weights of an uninterrupted run."""
    from smoothstab.experiments.models import proxies

    cfg, whole = ft_run(tmp_path, name="whole")
    original = proxies.ProxyTrainer.after_step

    def kill(self, steps_per_epoch, loss):
        original(self, steps_per_epoch, loss)
        if self.part_id == 1 and self.epoch == 1 and self.step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(proxies.ProxyTrainer, "after_step", kill)
    run = RunDir(tmp_path / "killed")
    stages.prepare(cfg, run)
    with pytest.raises(KeyboardInterrupt):
        stages.train(cfg, run)
    assert not read_checkpoint(run.model(1))["complete"]
    monkeypatch.setattr(proxies.ProxyTrainer, "after_step", original)
    stages.train(cfg, run)
    for a, b in zip(states(cfg, whole), states(cfg, run), strict=True):
        assert not differs(a, b)

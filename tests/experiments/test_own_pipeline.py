"""The pipeline with models it does not ship: DT training of a ``python:`` factory and of a
``timm:`` model, DR with two random ``timm:`` models, DA across ``python:``, ``timm:`` and
``hf:`` models, a grey ImageFolder of its own size, and k checkpoints of one's own, all end to
end through the CLI, offline. (Slow: each runs every stage.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import smoothstab as ss
from helpers import TINY_HF_VIT, TINY_SETTINGS, tiny_factory
from smoothstab.experiments.cli import main
from smoothstab.experiments.rundir.metrics_table import read_rows

FACTORY = "python:helpers:tiny_factory"


def run_config(tmp_path: Path, toml: str, *extra: str) -> Path:
    """Every stage of the tiny settings plus ``toml``'s tables; the run directory."""
    path = tmp_path / "own.toml"
    path.write_text(toml)
    out = tmp_path / "run"
    args = [a for s in TINY_SETTINGS for a in ("--set", s)] + list(extra)
    assert main(["run", str(path), "--out", str(out), "--quiet", *args]) == 0
    return out


def check_rows(out: Path, setting: str, pairs: set[str]) -> None:
    rows = read_rows(out / "metrics.parquet")
    assert {row["setting"] for row in rows} == {setting}
    assert {row["pair"] for row in rows if row["pair"]} == pairs
    assert {row["method"] for row in rows} == set(ss.METHODS)
    assert (out / "report.md").is_file()


@pytest.mark.slow
def test_dt_trains_a_python_factory(tmp_path):
    out = run_config(
        tmp_path, f'name = "own_dt"\n[train]\ndataset = "shapes"\nmodel = "{FACTORY}"\n'
    )
    check_rows(out, "DT", {"0-1"})
    saved = torch.load(out / "model_0.pt", weights_only=True)
    assert saved["config"]["model"] == FACTORY


@pytest.mark.slow
def test_dt_trains_a_timm_model(tmp_path):
    pytest.importorskip("timm")
    toml = 'name = "own_dt_timm"\n[train]\ndataset = "shapes"\nmodel = "timm:test_resnet"\n'
    check_rows(run_config(tmp_path, toml), "DT", {"0-1"})


@pytest.mark.slow
def test_dr_with_two_random_timm_models(tmp_path):
    pytest.importorskip("timm")
    specs = '[[models.specs]]\nname = "timm:resnet10t"\n' * 2
    toml = f'name = "own_dr"\n[train]\ndataset = "shapes"\n[models]\nsetting = "DR"\n{specs}'
    check_rows(run_config(tmp_path, toml), "DR", {"0-1"})


@pytest.mark.slow
def test_da_across_python_timm_and_hf_models(tmp_path):
    pytest.importorskip("timm")
    tr = pytest.importorskip("transformers")
    vit = tr.ViTConfig(**TINY_HF_VIT, num_labels=10)  # the shapes' classes
    tr.ViTForImageClassification(vit).save_pretrained(tmp_path / "vit")
    specs = "".join(
        f'[[models.specs]]\nname = "{name}"\nlabel = "{label}"\n'
        for name, label in (
            (FACTORY, "CNN"),
            ("timm:resnet10t", "timm"),
            (f"hf:{tmp_path / 'vit'}", "HF ViT"),
        )
    )
    toml = f'name = "own_da"\n[train]\ndataset = "shapes"\n[models]\nsetting = "DA"\n{specs}'
    check_rows(run_config(tmp_path, toml), "DA", {"0-1", "0-2", "1-2"})


@pytest.mark.slow
def test_dr_on_a_grey_imagefolder_of_your_own_size(tmp_path):
    """train.dataset = imagefolder with image_size, mean, std and channels, given models."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / "images" / split / c).mkdir(parents=True)
            for i in range(4):
                pixels = torch.randint(0, 256, (20, 20), generator=gen, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(tmp_path / "images" / split / c / f"{i}.png")
    specs = f'[[models.specs]]\nname = "{FACTORY}"\n' * 2
    toml = (
        f'name = "own_folder"\n[train]\ndataset = "imagefolder"\nroot = "{tmp_path / "images"}"\n'
        "image_size = 16\nmean = [0.5]\nstd = [0.25]\nchannels = 1\n"
        f'[models]\nsetting = "DR"\n{specs}'
    )
    out = run_config(tmp_path, toml)
    check_rows(out, "DR", {"0-1"})
    assert torch.load(out / "test_images.pt", weights_only=True)["x"].shape[1:] == (1, 16, 16)


@pytest.mark.slow
def test_k_models_i_trained_myself(tmp_path):
    """Three checkpoints of one architecture, saved by the user's own training code in the usual
    formats (a state dict; {"state_dict": ...}; {"model": ...}), as setting DR: attribute,
    evaluate, figures and report, every pair compared."""

    specs = ""
    for k, wrap in enumerate((lambda s: s, lambda s: {"state_dict": s}, lambda s: {"model": s})):
        torch.manual_seed(k)
        torch.save(wrap(tiny_factory(10, 3).state_dict()), tmp_path / f"mine_{k}.pt")
        specs += f'[[models.specs]]\nname = "{FACTORY}"\nweights = "{tmp_path / f"mine_{k}.pt"}"\n'
    toml = f'name = "mine"\n[train]\ndataset = "shapes"\n[models]\nsetting = "DR"\n{specs}'
    stages = ["--stages", "attribute", "evaluate", "figures", "report"]
    out = run_config(tmp_path, toml, *stages)
    check_rows(out, "DR", {"0-1", "0-2", "1-2"})
    assert not (out / "model_0.pt").exists()  # nothing trained

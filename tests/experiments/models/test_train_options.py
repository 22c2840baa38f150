"""Training speed options: mixed precision, channels_last, torch.compile, persistent workers and
the last batch. Each trains a small CNN on 3-channel shapes and is compared with the plain loop.

Tolerances, as the largest weight change relative to the largest weight of its tensor, after 3
epochs of 10 steps at lr 0.05: channels_last at most 1e-3 (other conv kernels, other summation
order; 8e-6 measured here); bf16 and fp16 autocast at most 0.1 (7e-3 and, on a smaller run,
3e-3 measured), and test accuracy within 0.1 of the plain loop's; persistent workers and the
compile path (with the eager backend) within 1e-4. fp16 autocast on CPU is slow (no fast
kernels: about 1 s a step here), so its tests train 64 images for 2 epochs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, Subset

from smoothstab.experiments.config.parse import ConfigError, dataclass_from_dict, free_keys
from smoothstab.experiments.config.tables import TrainConfig
from smoothstab.experiments.models import trainer as trainer_module
from smoothstab.experiments.models.data import load_dataset
from smoothstab.experiments.models.training import train_model

PART = list(range(320))
SMALL = dict(part_size=64, epochs=2)


def config(**overrides) -> TrainConfig:
    base = dict(
        dataset="shapes", parts=1, part_size=320, epochs=3, batch_size=32, lr=0.05, quiet=True
    )
    return TrainConfig(**{**base, "device": "cpu", **overrides})


@pytest.fixture(scope="module")
def shapes():
    train = load_dataset("shapes", train=True)
    test = load_dataset("shapes", train=False)
    return train, Subset(test, range(200))


def fit(tmp: Path, data, **overrides) -> tuple[dict[str, torch.Tensor], dict]:
    train, test = data
    cfg = config(**overrides)
    out = tmp / "_".join(f"{k}{v}" for k, v in overrides.items()) if overrides else tmp / "plain"
    metrics = train_model(cfg, PART[: cfg.part_size], out, 0, train_set=train, test_set=test)
    state = torch.load(out / "model_0.pt", weights_only=True)["state_dict"]
    return {k: v.contiguous() for k, v in state.items()}, metrics


def relative_change(a: dict, b: dict) -> float:
    """The largest weight change, relative to the largest weight of its tensor."""
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in a)


@pytest.fixture(scope="module")
def plain(shapes, tmp_path_factory):
    return fit(tmp_path_factory.mktemp("plain"), shapes)


def test_option_values_are_checked():
    with pytest.raises(ConfigError, match="train.amp"):
        dataclass_from_dict(TrainConfig, {"amp": "fp8"}, where="train")
    with pytest.raises(ConfigError, match="train.channels_last"):
        dataclass_from_dict(TrainConfig, {"channels_last": "yes"}, where="train")
    # they change the floating point of the result: a resume with other values is refused
    assert not {"amp", "channels_last", "compile", "drop_last"} & free_keys(TrainConfig)
    assert TrainConfig().amp == "none" and not TrainConfig().drop_last


@pytest.mark.slow
def test_channels_last_is_tight(shapes, plain, tmp_path):
    state, metrics = fit(tmp_path, shapes, channels_last=True)
    assert relative_change(plain[0], state) < 1e-3
    assert metrics["test_accuracy"] == pytest.approx(plain[1]["test_accuracy"], abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_is_close(shapes, plain, tmp_path, amp):
    small = amp == "fp16"
    ref = fit(tmp_path / "ref", shapes, **SMALL) if small else plain
    state, metrics = fit(tmp_path, shapes, amp=amp, **(SMALL if small else {}))
    assert 0 < relative_change(ref[0], state) < 0.1  # really in lower precision, and close
    assert metrics["test_accuracy"] == pytest.approx(ref[1]["test_accuracy"], abs=0.1)
    assert all(v.dtype == torch.float32 for v in state.values())  # weights stay float32


@pytest.mark.slow
def test_fp16_checkpoints_its_gradient_scaler(shapes, tmp_path):
    """A run killed in its second epoch resumes with the scaler's state of the first."""
    train, test = shapes

    class Killed(Exception):
        pass

    def kill(info):
        if info["epoch"] == 1:
            raise Killed

    cfg = config(amp="fp16", **SMALL)
    with pytest.raises(Killed):
        train_model(cfg, PART[:64], tmp_path, 0, train_set=train, test_set=test, on_step=kill)
    saved = torch.load(tmp_path / "model_0.pt", weights_only=True)
    assert not saved["complete"] and saved["scaler"]["scale"] > 0
    train_model(cfg, PART[:64], tmp_path, 0, train_set=train, test_set=test)  # resumes to the end
    assert torch.load(tmp_path / "model_0.pt", weights_only=True)["complete"]


@pytest.mark.slow
def test_compile_flag_path(shapes, plain, tmp_path, monkeypatch):
    """The flag wraps the forward pass in torch.compile. Inductor's C++ compilation takes minutes
    on this machine, so the eager backend stands in (same kernels: same weights); set
    SMOOTHSTAB_TEST_INDUCTOR=1 to compile for real."""
    compiled = []
    real_compile = torch.compile

    def spy(model, **kwargs):
        compiled.append(model)
        if os.environ.get("SMOOTHSTAB_TEST_INDUCTOR") != "1":
            kwargs.setdefault("backend", "eager")
        return real_compile(model, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    state, metrics = fit(tmp_path, shapes, compile=True)
    assert len(compiled) == 1
    assert relative_change(plain[0], state) < 1e-4
    assert metrics["test_accuracy"] == pytest.approx(plain[1]["test_accuracy"], abs=0.01)


@pytest.mark.slow
def test_last_batch_kept_as_the_paper_did_or_dropped(shapes, tmp_path):
    train, test = shapes
    for drop_last, steps in ((False, 10), (True, 9)):  # 300 = 9 x 32 + 12
        seen = []
        cfg = config(epochs=1, part_size=300, drop_last=drop_last)
        out = tmp_path / str(drop_last)
        train_model(cfg, PART[:300], out, 0, train_set=train, test_set=test, on_step=seen.append)
        assert len(seen) == steps


class Flipped(Dataset):
    """A dataset with random augmentation (a horizontal flip drawn from torch's RNG), so that
    the loader's workers must reproduce the per-(epoch, image) seeds."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return (x.flip(-1) if torch.rand(()) < 0.5 else x), y


@pytest.mark.slow
def test_persistent_workers_change_nothing(shapes, tmp_path, monkeypatch):
    train, test = shapes
    made = []
    real = trainer_module._EpochLoader.__init__

    def spy(self, *args, **kwargs):
        made.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module._EpochLoader, "__init__", spy)
    states = []
    for workers in (0, 2):
        cfg = config(num_workers=workers, **SMALL)
        out = tmp_path / f"w{workers}"
        train_model(cfg, PART[:64], out, 0, train_set=Flipped(train), test_set=test)
        states.append(torch.load(out / "model_0.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert len(made) == 1  # one loader (its workers kept) for both epochs


@pytest.mark.slow
def test_fp16_on_the_cpu_warns(tmp_path, capsys):
    """train.amp = 'fp16' on the CPU trains, with one warning line that names the key."""
    from smoothstab.experiments.cli import main

    sets = ["epochs=1", "parts=2", "part_size=8", "batch_size=8", "amp=fp16", "device=cpu"]
    args = [a for s in sets for a in ("--set", s)]
    assert main(["train", "--out", str(tmp_path / "run"), "--quiet", *args]) == 0
    warnings = [x for x in capsys.readouterr().err.splitlines() if "warning" in x]
    assert warnings == [
        "train.amp: warning: 'fp16' on the CPU is slower than float32 on most CPUs (few "
        "compute in float16) and rounds more; 'bf16' or 'none' suit a CPU"
    ]

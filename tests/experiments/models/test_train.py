"""Training: config parsing, reproducibility, exact resume, noisy SGD, torchrun, CLI."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import ROOT
from smoothstab.experiments.cli import main
from smoothstab.experiments.config.parse import ConfigError, apply_overrides, dataclass_from_dict
from smoothstab.experiments.config.tables import TrainConfig
from smoothstab.experiments.models.data import load_dataset, load_splits, seed_torch
from smoothstab.experiments.models.trainer import loss_and_accuracy, perturbed
from smoothstab.experiments.models.training import load_trained, train_run


def tiny(**overrides) -> TrainConfig:
    """One small CNN on 100 digits, 2 epochs of 4 steps (32, 32, 32, 4 images)."""
    base = dict(parts=1, part_size=100, epochs=2, batch_size=32, quiet=True, device="cpu")
    return TrainConfig(**{**base, **overrides})


def weights(run_dir: Path, part: int = 0) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / f"model_{part}.pt", weights_only=True)["state_dict"]


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "weights differ"


class Killed(Exception):
    pass


# --- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"schedule": "linear"}, "schedule"),
        ({"epochs": 0}, "epochs"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"dataset": "mnist"}, "dataset"),
    ],
)
def test_train_config_checks(change, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**change)


@dataclasses.dataclass(frozen=True)
class Inner:
    r: tuple[float, ...] = (0.0, 0.1)
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class Outer:
    n: int = 1
    x: float = 0.5
    on: bool = False
    inner: Inner = Inner()


def test_dataclass_from_dict_checks_keys_and_types():
    got = dataclass_from_dict(Outer, {"n": 3, "x": 1, "inner": {"r": [0.2], "name": "a"}})
    assert got == Outer(n=3, x=1.0, inner=Inner(r=(0.2,), name="a"))
    with pytest.raises(ConfigError, match=r"^outer\.nn: unknown key; did you mean outer\.n\?$"):
        dataclass_from_dict(Outer, {"nn": 1}, where="outer")
    with pytest.raises(ConfigError, match=r"^outer\.zzz: unknown key; expected one of n, x"):
        dataclass_from_dict(Outer, {"zzz": 1}, where="outer")
    with pytest.raises(ConfigError, match="n: expected int, got 1.5"):
        dataclass_from_dict(Outer, {"n": 1.5})
    with pytest.raises(ConfigError, match="on: expected bool"):
        dataclass_from_dict(Outer, {"on": 1})
    with pytest.raises(ConfigError, match=r"inner\.r\[1\]: expected float"):
        dataclass_from_dict(Outer, {"inner": {"r": [0.1, "a"]}})


def test_apply_overrides():
    got = apply_overrides(Outer(), ["n=4", "x=2", "on=true", "inner.r=[0.3, 0.4]", "inner.name=b"])
    assert got == Outer(n=4, x=2.0, on=True, inner=Inner(r=(0.3, 0.4), name="b"))
    assert apply_overrides(got, ["inner.name=none"]).inner.name is None
    cfg = apply_overrides(TrainConfig(), ["root=/data/cifar", "dataset=cifar10", "lr=0.1"])
    assert (cfg.root, cfg.dataset, cfg.lr) == ("/data/cifar", "cifar10", 0.1)
    for bad, match in [("n=x", "n: expected int"), ("m=1", "m: unknown key"), ("n", "key=value")]:
        with pytest.raises(ConfigError, match=match):
            apply_overrides(Outer(), [bad])
    with pytest.raises(ConfigError, match="^schedule: expected one of cosine, step"):
        apply_overrides(TrainConfig(), ["schedule=linear"])


# --- training ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_seed_same_weights(tmp_path):
    a = train_run(tiny(), tmp_path / "a")
    train_run(tiny(), tmp_path / "b")
    train_run(tiny(seed=1), tmp_path / "c")
    assert_same(weights(tmp_path / "a"), weights(tmp_path / "b"))
    wa, wc = weights(tmp_path / "a"), weights(tmp_path / "c")
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a["config"]["seed"] == 0 and a["models"][0]["seed"] > 0  # seeds recorded


@pytest.mark.slow
@pytest.mark.parametrize("noise_std", [0.0, 0.02])
def test_resume_after_kill_is_exact(tmp_path, noise_std):
    config = tiny(epochs=3, checkpoint_every=2, noise_std=noise_std, noise_draws=2)
    train_run(config, tmp_path / "whole")

    def kill(state):
        if state["global_step"] == 7:  # epoch 1, step 3; last checkpoint after global step 6
            raise Killed

    with pytest.raises(Killed):
        train_run(config, tmp_path / "killed", on_step=kill)
    saved = torch.load(tmp_path / "killed" / "model_0.pt", weights_only=True)
    assert (saved["complete"], saved["epoch"], saved["step"]) == (False, 1, 2)  # mid-epoch
    train_run(config, tmp_path / "killed")
    assert_same(weights(tmp_path / "whole"), weights(tmp_path / "killed"))


@pytest.mark.slow
def test_finished_models_are_skipped_and_configs_checked(tmp_path):
    first = train_run(tiny(), tmp_path)

    def fail(state):
        raise AssertionError("a finished model was trained again")

    assert train_run(tiny(quiet=False), tmp_path, on_step=fail)["models"] == first["models"]
    with pytest.raises(ValueError, match="lr=0.05.*0.1.*new --out"):
        train_run(tiny(lr=0.1), tmp_path)


@pytest.mark.slow
def test_checkpoint_contents(tmp_path):
    metrics = train_run(tiny(), tmp_path)
    saved = torch.load(tmp_path / "model_0.pt", weights_only=True)
    assert saved["complete"] and "optimizer" not in saved
    assert saved["config"]["num_classes"] == 10 and saved["config"]["part_size"] == 100
    assert saved["metrics"] == metrics["models"][0]
    model = load_trained(tmp_path / "model_0.pt")
    assert not model.training
    test = loss_and_accuracy(model, load_dataset("digits", train=False), 500, "cpu")
    assert test["accuracy"] == pytest.approx(saved["metrics"]["test_accuracy"])
    assert [len(p) for p in load_splits(tmp_path / "splits.json")] == [100]


@pytest.mark.slow
def test_noisy_sgd(tmp_path):
    train_run(tiny(), tmp_path / "plain")
    train_run(tiny(noise_std=0.05, noise_draws=2), tmp_path / "noisy")
    train_run(tiny(noise_std=1e-12, noise_draws=2), tmp_path / "almost")
    plain, noisy, almost = (weights(tmp_path / d) for d in ("plain", "noisy", "almost"))
    assert max((plain[k] - noisy[k]).abs().max() for k in plain) > 1e-3
    for k in plain:
        torch.testing.assert_close(almost[k], plain[k], atol=1e-6, rtol=0)


def test_perturbed_draws_and_restores():
    p = torch.nn.Parameter(torch.randn(100, 100))
    before = p.detach().clone()
    with perturbed([p], 0.1, torch.Generator().manual_seed(0)):
        assert (p - before).std().item() == pytest.approx(0.1, rel=0.05)
    assert torch.equal(p, before)


@pytest.mark.slow
def test_progress_quiet_under_ci(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CI", "true")
    train_run(tiny(quiet=False), tmp_path / "ci")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("model 0: test accuracy")
    monkeypatch.delenv("CI")
    train_run(tiny(quiet=False), tmp_path / "bars")
    err = capsys.readouterr().err
    assert "model 0 epoch 2/2: 100%|" in err and "4/4 [" in err, err
    assert "it/s, loss=" in err and "acc=" in err, err


# --- CLI -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_trains_from_a_toml_file(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text('[train]\nparts = 2\npart_size = 50\nepochs = 1\nmodel = "small_cnn"\n')
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    metrics = (tmp_path / "run" / "train_metrics.json").read_text()
    assert '"part_size": 50' in metrics and '"epochs": 1' in metrics
    assert [len(p) for p in load_splits(tmp_path / "run" / "splits.json")] == [50, 50]


@pytest.mark.parametrize(
    ("args", "toml", "message"),
    [
        (["--set", "lr=fast"], None, "lr: expected float"),
        (["--set", "colour=red"], None, "colour: unknown key"),
        ([], "[train]\nepochs = 1\nbogus = 2\n", "train.bogus: unknown key"),
        ([], "[training]\nepochs = 1\n", "training: unknown key"),
        ([], "[train\n", "not valid TOML"),
        (["missing.toml"], None, "expected a TOML file, found nothing"),
    ],
)
def test_cli_config_errors(tmp_path, capsys, args, toml, message):
    if toml is not None:
        (tmp_path / "bad.toml").write_text(toml)
        args = [str(tmp_path / "bad.toml"), *args]
    out = tmp_path / "run"
    assert main(["train", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not out.exists()  # nothing half-written


def test_cli_data_error_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--set", "dataset=cifar10", "--set", f"root={out}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cifar-10-batches-py" in err


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """``smoothstab train CONFIG --out DIR`` with an empty ``[train]`` table: the defaults, two
    small CNNs on disjoint halves of digits (and its time)."""
    out = tmp_path_factory.mktemp("digits")
    config = out.parent / "digits.toml"
    config.write_text("[train]\n")
    start = time.perf_counter()
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 0
    return out, time.perf_counter() - start


@pytest.mark.slow
def test_acceptance_two_cnns_on_disjoint_halves_of_digits(quickstart):
    out, seconds = quickstart
    print(f"quickstart: {seconds:.1f} s")
    import json

    metrics = json.loads((out / "train_metrics.json").read_text())
    accuracies = [m["test_accuracy"] for m in metrics["models"]]
    assert len(accuracies) == 2 and min(accuracies) >= 0.90, accuracies
    parts = load_splits(out / "splits.json")
    assert [len(p) for p in parts] == [648, 648] and not set(parts[0]) & set(parts[1])


@pytest.mark.slow
def test_cli_train_writes_the_run_directory(quickstart):
    out, _ = quickstart
    assert {p.name for p in out.iterdir()} >= {
        "splits.json",
        "model_0.pt",
        "model_1.pt",
        "train_metrics.json",
    }
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    for part in (0, 1):
        saved = torch.load(out / f"model_{part}.pt", weights_only=True)
        assert saved["complete"] and saved["config"]["model"] == "small_cnn"


# --- torchrun ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("noise_std", [0.0, 0.02])
def test_torchrun_two_processes_match_one(tmp_path, noise_std):
    """DDP on 2 CPU processes (gloo), each with half of every global batch of 48 (the last
    batch of 8 is 4 + 4), equals one process up to float summation order: atol 1e-5."""
    config = tiny(part_size=200, batch_size=48, noise_std=noise_std, noise_draws=2)
    toml = tmp_path / "ddp.toml"
    fields = {"parts": 1, "part_size": 200, "epochs": 2, "batch_size": 48, "device": "cpu"}
    body = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in fields.items())
    toml.write_text(f"[train]\n{body}noise_std = {noise_std}\nnoise_draws = 2\n")
    train_run(config, tmp_path / "single")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    cmd += ["-m", "smoothstab", "train", str(toml), "--out", str(tmp_path / "ddp"), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = torch.load(tmp_path / "ddp" / "model_0.pt", weights_only=True)
    assert saved["metrics"]["world_size"] == 2
    single = weights(tmp_path / "single")
    for k, v in saved["state_dict"].items():
        torch.testing.assert_close(v, single[k], atol=1e-5, rtol=0)


@pytest.mark.parametrize("outcome", ["done", "user error", "interrupted", "bug"])
def test_every_exit_leaves_the_process_group(outcome, tmp_path, monkeypatch):
    """A rank must not reach interpreter exit with its gloo group alive (its threads are then
    aborted: SIGABRT, and torchrun kills the other ranks). ``main`` leaves the group however the
    command ends; a group of one process on a file store stands in for torchrun's."""
    import torch.distributed as dist

    from smoothstab.experiments import cli

    def command(args):
        store = f"file://{tmp_path / 'store'}"
        dist.init_process_group("gloo", init_method=store, rank=0, world_size=1)
        if outcome == "bug":
            raise RuntimeError("a bug keeps its traceback")
        return {"done": 0, "user error": 2, "interrupted": 130}[outcome]

    monkeypatch.setattr(cli, "_dispatch", command)
    if outcome == "bug":
        with pytest.raises(RuntimeError):
            main(["train", "--out", str(tmp_path / "out")])
    else:
        assert (
            main(["train", "--out", str(tmp_path / "out")])
            == ({"done": 0, "user error": 2, "interrupted": 130}[outcome])
        )
    assert not dist.is_initialized()


def test_a_fast_test_that_trains_fails(tmp_path):
    """The suite's guard (``conftest.py``): outside the slow tier an SGD step is an error, so a
    test that trains cannot sit in the fast tier unnoticed."""
    cfg = TrainConfig(dataset="digits", epochs=1, parts=1, part_size=8, batch_size=8)
    with pytest.raises(AssertionError, match="trains a model: mark it @pytest.mark.slow"):
        train_run(cfg, tmp_path / "run")


def test_seed_torch_seeds_the_cpu_stream_as_manual_seed_does():
    """The per-step seeding (:func:`seed_torch`) draws what ``torch.manual_seed`` did, so
    weights trained before and after it are the same; it leaves CUDA's generators to runs on
    CUDA."""
    torch.manual_seed(1234)
    expected = torch.randn(64), torch.rand(8)
    torch.manual_seed(99)
    seed_torch(1234)
    assert torch.equal(torch.randn(64), expected[0]) and torch.equal(torch.rand(8), expected[1])
    seed_torch(1234, torch.device("cpu"))
    assert torch.equal(torch.randn(64), expected[0])


def test_deterministic_mode_switches_kernels_without_importing_inductor():
    """Deterministic kernels on inside the block and off after it; inductor (about 2 s to
    import) is imported only for a block that compiles, whose inductor flag is then set."""
    code = """
import sys, torch
from smoothstab.experiments.models.trainer import deterministic_mode
with deterministic_mode(True):
    assert torch.are_deterministic_algorithms_enabled()
assert not torch.are_deterministic_algorithms_enabled()
assert "torch._inductor.config" not in sys.modules
with deterministic_mode(True, compiled=True):
    import torch._inductor.config as c
    assert torch.are_deterministic_algorithms_enabled() and c.deterministic
assert not torch.are_deterministic_algorithms_enabled() and not c.deterministic
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr

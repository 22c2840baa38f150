"""A catalogue of bad inputs, one parametrised table over the command line and the API.

Every case is something a user (or an attacker) can hand the library: a malformed or hostile
file, a wrong value, a path that cannot be used. The promise, checked for each:

* CLI: exit code 2 and exactly one line on stderr, ``smoothstab CMD: error: ...``, naming the
  problem (the case's pattern); no traceback (``main`` is called in-process, so an escaping
  exception would fail the test);
* API: ``ValueError`` or ``TypeError`` with a one-line message naming the problem;
* both: every file that existed before (the case's whole temporary directory, run directories
  included) has the same SHA-256 afterwards, no temporary file is left, and a pickle that tries
  to run code did not run it (its side effect, a file, does not exist).

Nothing here trains a model: run directories are made by hand (an untrained checkpoint is a
checkpoint), so the whole table runs in a few seconds.

Long because it is one table of 93 cases, each a line or two.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import re
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

import smoothstab as ss
from conftest import ConvNet, make
from smoothstab.experiments import stages
from smoothstab.experiments.cli import main
from smoothstab.experiments.experiment import AttributionConfig, load_config
from smoothstab.experiments.models import build_model
from smoothstab.experiments.rundir import RunDir

SIDE_EFFECT = "pwned"  # the file a hostile pickle tries to create

TINY_TOML = """\
name = "bad"
[train]
dataset = "digits"
parts = 2
part_size = 50
epochs = 1
[attribution]
methods = ["grad"]
n_images = 2
n_samples = 2
ig_steps = 2
stability_r = [0.0, 0.1]
fidelity_r = [0.0, 0.1]
image_batch = 2
[evaluation]
topk = 5
"""


class Hostile:
    """Pickles to a call of ``os.system`` that would create the file ``SIDE_EFFECT``."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def __reduce__(self):
        return (os.system, (f"touch {self.where / SIDE_EFFECT}",))


# --- building blocks: files a case writes before it runs -----------------------------------------


def config(tmp: Path, text: str = TINY_TOML, name: str = "c.toml") -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def fake_run(tmp: Path, name: str = "run") -> Path:
    """A DT run directory as ``smoothstab train`` leaves it, with untrained models."""
    d = tmp / name
    cfg = load_config(config(tmp, name="run.toml"))
    stages.prepare(cfg, RunDir(d))
    train = dataclasses.replace(cfg.train, num_classes=10)
    for p in range(2):
        torch.manual_seed(p)
        model = build_model("small_cnn", num_classes=10, in_channels=1)
        metrics = {"part": p, "train_size": 50}
        state = {"state_dict": model.state_dict(), "config": asdict(train), "metrics": metrics}
        torch.save({**state, "complete": True, "part": p, "seed": p}, d / f"model_{p}.pt")
    (d / "splits.json").write_text(json.dumps([list(range(50)), list(range(50, 100))]))
    models = [{"part": p, "train_size": 50} for p in range(2)]
    (d / "train_metrics.json").write_text(json.dumps({"config": asdict(train), "models": models}))
    return d


def raw(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def weights(tmp: Path, obj, name: str = "w.pt") -> str:
    path = tmp / name
    torch.save(obj, path)
    return str(path)


def hostile_pickle(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_bytes(pickle.dumps(Hostile(tmp)))
    return path


def dr_config(tmp: Path, weights_path: str, name: str = "small_cnn") -> str:
    """A DR run of two given small CNNs on digits, the second from ``weights_path``."""
    specs = (
        f'[models]\nsetting = "DR"\n[[models.specs]]\nname = "small_cnn"\n'
        f'[[models.specs]]\nname = "{name}"\nweights = {json.dumps(weights_path)}\n'
    )
    return config(tmp, TINY_TOML + specs, "dr.toml")


def cifar(tmp: Path, *, data_batch=None, test_batch=None, meta=None) -> Path:
    """A fake ``cifar-10-batches-py`` folder with 4 images per batch; any batch replaceable."""
    folder = tmp / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{j}" for j in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch))
    for name, obj in (("data_batch_1", data_batch), ("test_batch", test_batch)):
        if obj is not None:
            (folder / name).write_bytes(obj if isinstance(obj, bytes) else pickle.dumps(obj))
    if meta is not None:
        (folder / "batches.meta").write_bytes(meta)
    return tmp


def imagefolder(tmp: Path, *, corrupt: bool = False, empty: bool = False) -> Path:
    from PIL import Image

    root = tmp / "images"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        if empty:
            continue
        for c in ("cat", "dog"):
            (root / split / c).mkdir()
            for i in range(2):
                path = root / split / c / f"{i}.png"
                if corrupt:
                    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
                else:
                    Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(path)
    return root


def cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def unwritable(tmp: Path) -> Path:
    """A directory path that cannot be created or written, also for root."""
    if os.geteuid() == 0:
        probe = Path("/sys/smoothstab-test")  # sysfs refuses new entries, even to root
        try:
            probe.mkdir()
        except OSError:
            return probe / "run"
        probe.rmdir()
        pytest.skip("running as root with a writable /sys: no unwritable place to try")
    locked = tmp / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked / "run"


def damaged_metrics(tmp: Path) -> Path:
    """A run whose evaluate stage recorded metrics.csv, which was then cut mid-row."""
    from smoothstab.experiments import manifest

    d = fake_run(tmp)
    text = "setting,n,method,r,sigma,metric,pair,model,image,value,stderr\n"
    text += "".join(f"DT,50,grad,0.0,0.0,stability,0-1,,{i},0.5,\n" for i in range(40))
    (d / "metrics.csv").write_text(text)
    manifest.record(d, "evaluate")
    (d / "metrics.csv").write_text(text[: len(text) // 2])
    return d


# --- the table -----------------------------------------------------------------------------------

# A case: (setup(tmp) -> CLI argv (a list) or an API call (a callable), pattern in the message,
# and for the API the exception types allowed).
Setup = Callable[[Path], "list[str] | Callable[[], object]"]
X = torch.randn(2, 3, 8, 8, dtype=torch.float64)
T = torch.tensor([0, 1])


def api(call: Callable[[], object]) -> Setup:
    return lambda tmp: call


def run(*args: str) -> Setup:
    """``smoothstab run --out TMP/out ARGS`` on the tiny digits config."""
    return lambda tmp: ["run", config(tmp), "--out", str(tmp / "out"), "--quiet", *args]


def imagefolder_run(*sets: str, **tree: bool) -> Setup:
    """``run`` on a fake ImageFolder in TMP (``imagefolder(TMP, **tree)``), with more
    ``--set`` overrides ``sets``."""
    more = [a for s in sets for a in ("--set", s)]
    args = ("--set", "train.dataset=imagefolder")
    return lambda t: run(*args, "--set", f"train.root={t}/images", *more)(imagefolder(t, **tree))


def cifar_run(**files: object) -> Setup:
    """``run`` on a fake CIFAR-10 folder in TMP whose named batches are replaced (a callable
    value is called with TMP); no files: TMP itself is the root, without the batches."""
    sets = ("--set", "train.dataset=cifar10")
    if not files:
        return lambda t: run(*sets, "--set", f"train.root={t}")(t)

    def setup(t: Path) -> list[str]:
        made = {k: v(t) if callable(v) else v for k, v in files.items()}
        return run(*sets, "--set", f"train.root={t}")(cifar(t, **made))

    return setup


def with_value(x: torch.Tensor, index, value) -> torch.Tensor:
    x = x.clone()
    x[index] = value
    return x


def model() -> torch.nn.Module:
    return make(ConvNet())


CASES: dict[str, tuple[Setup, str, tuple[type, ...]]] = {
    # config files
    "toml malformed": (
        lambda t: ["run", config(t, "[train\nepochs = 2\n"), "--out", str(t / "o")],
        r"c\.toml is not valid TOML",
        (),
    ),
    "toml not utf-8": (
        lambda t: ["run", raw(t / "c.toml", b'name = "\xff\xfe"\n'), "--out", str(t / "o")],
        r"c\.toml is not UTF-8",
        (),
    ),
    "toml unknown key": (
        lambda t: ["run", config(t, "[train]\nepoch = 2\n"), "--out", str(t / "o")],
        r"train\.epoch: unknown key",
        (),
    ),
    "toml unknown table": (
        lambda t: ["run", config(t, "[trian]\nepochs = 2\n"), "--out", str(t / "o")],
        r"trian: unknown key",
        (),
    ),
    "toml wrong type": (
        lambda t: ["run", config(t, '[train]\nepochs = "5"\n'), "--out", str(t / "o")],
        r"train\.epochs: expected int",
        (),
    ),
    "config missing": (
        lambda t: ["run", str(t / "missing.toml"), "--out", str(t / "o")],
        r"found nothing at .*missing\.toml",
        (),
    ),
    "preset name with ..": (
        lambda t: ["run", "paper/../../../secret", "--out", str(t / "o")],
        r"expected a TOML file or a preset .*got 'paper/\.\./\.\./\.\./secret'",
        (),
    ),
    "preset unknown": (
        lambda t: ["run", "no_such_preset", "--out", str(t / "o")],
        r"expected a TOML file or a preset",
        (),
    ),
    # --set
    "set unknown key": (run("--set", "train.epoch=2"), r"train\.epoch: unknown key", ()),
    "set without =": (run("--set", "train.epochs"), r"expected key=value", ()),
    "set word for int": (run("--set", "train.epochs=two"), r"train\.epochs: expected int", ()),
    "set list for float": (run("--set", "train.lr=[1]"), r"train\.lr: expected float", ()),
    "set bool for int": (
        run("--set", "attribution.n_samples=true"),
        r"attribution\.n_samples: expected int",
        (),
    ),
    "set a value outside a Literal": (
        run("--set", "train.amp=fp17"),
        r"train\.amp: expected one of 'none', 'bf16', 'fp16', got 'fp17'",
        (),
    ),
    "min_samples without a tolerance": (
        run("--set", "attribution.min_samples=8"),
        r"attribution\.min_samples: only with attribution\.tolerance, got 8",
        (),
    ),
    "tolerance negative": (
        run("--set", "attribution.tolerance=-0.5"),
        r"attribution\.tolerance: expected a finite number > 0, got -0\.5",
        (),
    ),
    "groups odd": (
        run("--set", "attribution.groups=3"),
        r"attribution\.groups: expected an even number of groups of draws",
        (),
    ),
    "amp with float64 maps": (
        run("--set", "attribution.amp=bf16", "--set", "attribution.dtype=float64"),
        r"attribution\.amp: 'bf16' autocasts float32 computations",
        (),
    ),
    "pack not a bool": (run("--set", "attribution.pack=1"), r"pack: expected bool", ()),
    "FT without its model": (
        run("--set", "models.setting=FT"),
        r"models\.specs: setting FT starts from exactly one model, got 0",
        (),
    ),
    "plan with no time budget": (
        lambda t: ["plan", config(t), "--no-timing", "--budget", "0"],
        r"--budget: expected a number of seconds > 0, got '0'",
        (),
    ),
    "set sub-key of scalar": (run("--set", "name.x=1"), r"name\.x: name has no sub-keys", ()),
    # values
    "r nan": (run("--set", "attribution.table_r=nan"), r"table_r: expected a finite .*got nan", ()),
    "r inf": (
        run("--set", "attribution.stability_r=[0, inf]"),
        r"stability_r: expected finite noise levels >= 0, got \[0\.0, inf\]",
        (),
    ),
    "r negative": (
        run("--set", "attribution.fidelity_r=[0, -0.1]"),
        r"fidelity_r: expected finite noise levels >= 0, got \[0\.0, -0\.1\]",
        (),
    ),
    "n_samples zero": (
        run("--set", "attribution.n_samples=0"),
        r"n_samples: expected an integer >= 1, got 0",
        (),
    ),
    "epochs negative": (
        run("--set", "train.epochs=-3"),
        r"epochs: expected an integer >= 1, got -3",
        (),
    ),
    "parts zero": (run("--set", "train.parts=0"), r"parts: expected an integer >= 1", ()),
    "odd n antithetic": (
        run("--set", "attribution.antithetic=true", "--set", "attribution.n_samples=5"),
        r"n_samples: expected an even number with antithetic",
        (),
    ),
    "training diverges": (
        run("--set", "train.lr=1e30"),
        r"model 0: training diverged, the loss is (nan|inf) at epoch 1, step \d+; lower train\.lr",
        (),
    ),
    "noisy training diverges": (
        run("--set", "train.noise_std=1e30"),
        r"model 0: training diverged, .* at epoch 1, step 1; .*or train\.noise_std",
        (),
    ),
    "lr inf": (run("--set", "train.lr=inf"), r"lr: expected a finite number >= 0, got inf", ()),
    "noise_std inf": (
        run("--set", "train.noise_std=inf"),
        r"noise_std: expected a finite number >= 0, got inf",
        (),
    ),
    "drop_last drops every batch": (
        run("--set", "train.drop_last=true", "--set", "train.batch_size=64"),
        r"train\.drop_last: true drops every batch of a part of 50 images with batch_size = 64",
        (),
    ),
    "topk above pixels": (
        run("--set", "evaluation.topk=65"),
        r"evaluation\.topk: expected at most the 64 pixels",
        (),
    ),
    "grid pair out of range": (
        run("--set", 'evaluation.grid_pairs=["0-7"]'),
        r"evaluation\.grid_pairs: expected models 0\.\.1",
        (),
    ),
    "unknown method": (
        run("--set", 'attribution.methods=["grad", "lime"]'),
        r"methods: expected one of .*got 'lime'",
        (),
    ),
    "duplicate method": (
        run("--set", 'attribution.methods=["grad", "ig", "grad"]'),
        r"methods: .*'grad' twice",
        (),
    ),
    "unknown model": (
        run("--set", "train.model=resnet9000"),
        r"model: expected one of .*got 'resnet9000'",
        (),
    ),
    "unknown stage": (run("--stages", "train", "plot"), r"--stages: expected some of", ()),
    "bad device string": (
        run("--set", "attribution.device=gpu"),
        r"device: expected a device such as cpu, cuda, cuda:0 or mps, got 'gpu'",
        (),
    ),
    "absent gpu": (
        run("--set", f"train.device=cuda:{cuda_count() + 7}"),
        r"train\.device: 'cuda:\d+' but this machine has",
        (),
    ),
    "fewer classes than data": (
        run("--set", "train.num_classes=3"),
        r"train\.num_classes: .*10 classes.*got 3",
        (),
    ),
    # paths
    "name with ..": (
        lambda t: ["run", config(t, TINY_TOML.replace('"bad"', '"../../escape"')), "--quiet"],
        r"name: expected a plain name.*'\.\./\.\./escape'",
        (),
    ),
    "absolute name": (
        lambda t: ["run", config(t, TINY_TOML.replace('"bad"', f'"{t}/abs"')), "--quiet"],
        r"name: expected a plain name",
        (),
    ),
    "out is a file": (
        lambda t: ["run", config(t), "--out", config(t, "x", "file.txt")],
        r"--out: expected a directory, .*file\.txt is a file",
        (),
    ),
    "train out is a file": (
        lambda t: ["train", config(t), "--out", config(t, "x", "file.txt")],
        r"--out: expected a directory, .*file\.txt is a file",
        (),
    ),
    "out unwritable": (
        lambda t: ["run", config(t), "--out", str(unwritable(t))],
        r"--out: cannot (create|write)",
        (),
    ),
    # data
    "cifar root missing": (
        run("--set", "train.dataset=cifar10", "--set", "train.root=/nonexistent/cifar"),
        r"cifar10: expected cifar-10-batches-py.*not found",
        (),
    ),
    "cifar wrong layout": (
        cifar_run(),
        r"cifar10: expected cifar-10-batches-py",
        (),
    ),
    "cifar pickle runs code": (
        cifar_run(data_batch=lambda t: pickle.dumps(Hostile(t))),
        r"refusing to load posix\.system",
        (),
    ),
    "cifar batch is a list": (
        cifar_run(test_batch=[1, 2, 3]),
        r"cifar10: .*cannot read .*test_batch",
        (),
    ),
    "cifar meta runs code": (
        cifar_run(meta=lambda t: pickle.dumps(Hostile(t))),
        r"batches\.meta.*refusing to load posix\.system",
        (),
    ),
    "cifar meta is a list": (
        cifar_run(meta=pickle.dumps([b"cat"])),
        r"batches\.meta",
        (),
    ),
    "imagefolder empty": (
        imagefolder_run(empty=True),
        r"imagefolder: expected an ImageFolder tree",
        (),
    ),
    "imagefolder corrupt image": (
        imagefolder_run("train.part_size=2", corrupt=True),
        r"images/train/\w+/\d\.png: not a readable image \(UnidentifiedImageError\)",
        (),
    ),
    "corrupt image in a loader worker": (
        imagefolder_run("train.part_size=2", "train.num_workers=1", corrupt=True),
        r"images/train/\w+/\d\.png: not a readable image \(UnidentifiedImageError\)",
        (),
    ),
    # run directories and checkpoints
    "no run directory": (
        lambda t: ["evaluate", str(t)],
        r"expected a run directory with config\.toml",
        (),
    ),
    "run dir of another config": (
        lambda t: [
            "run",
            config(t, TINY_TOML.replace("epochs = 1", "epochs = 3"), "other.toml"),
            "--out",
            str(fake_run(t)),
        ],
        r"was made with train\.epochs=1, this config has 3; use another --out",
        (),
    ),  # fmt: skip
    "stage before its inputs": (
        lambda t: ["evaluate", str(fake_run(t))],
        r"r0\.000000\.pt does not exist; run the stages before this one",
        (),
    ),
    "damaged config in run dir": (
        lambda t: ["evaluate", str(Path(raw(fake_run(t) / "config.toml", b"[train\n")).parent)],
        r"config\.toml is not valid TOML",
        (),
    ),
    "truncated checkpoint": (
        lambda t: ["attribute", str(truncate(fake_run(t) / "model_0.pt", 3000).parent)],
        r"model_0\.pt: cannot be read",
        (),
    ),
    "checkpoint is a state dict": (
        lambda t: ["attribute", str(replace_file(fake_run(t) / "model_0.pt", small_cnn()).parent)],
        r"model_0\.pt: .*not a checkpoint",
        (),
    ),
    "checkpoint runs code": (
        lambda t: ["attribute", str(hostile_pickle(fake_run(t), "model_0.pt").parent)],
        r"model_0\.pt: cannot be read",
        (),
    ),
    "damaged metrics.csv": (
        lambda t: ["report", str(damaged_metrics(t))],
        r"metrics\.csv: damaged .*rerun the evaluate stage",
        (),
    ),
    "weights of another architecture": (
        lambda t: ["run", dr_config(t, weights(t, resnet_weights())), "--out", str(t / "o")],
        r"weights: .*w\.pt does not fit SmallCNN",
        (),
    ),
    "weights with other class count": (
        lambda t: ["run", dr_config(t, weights(t, small_cnn(classes=5))), "--out", str(t / "o")],
        r"weights: .*does not fit SmallCNN: size mismatch for fc\.weight",
        (),
    ),
    "weights not a state dict": (
        lambda t: ["run", dr_config(t, weights(t, [1, 2])), "--out", str(t / "o")],
        r"weights: expected a state dict .*got list",
        (),
    ),
    "weights run code": (
        lambda t: ["run", dr_config(t, str(hostile_pickle(t, "w.pt"))), "--out", str(t / "o")],
        r"weights: cannot load .*w\.pt",
        (),
    ),
    "weights missing": (
        lambda t: ["run", dr_config(t, str(t / "nope.pt")), "--out", str(t / "o")],
        r"weights: expected a state-dict file, found nothing at .*nope\.pt",
        (),
    ),
    # the API
    "api NaN image": (
        api(lambda: ss.grad(model(), with_value(X, (0, 0, 0, 0), np.nan))),
        r"x: expected finite values",
        (),
    ),  # noqa: E501
    "api Inf image": (
        api(lambda: ss.smooth(ss.grad, 0.1, 2)(model(), with_value(X, (1, 2, 3, 4), np.inf))),
        r"x: expected finite values",
        (),
    ),
    "api integer image": (
        api(lambda: ss.grad(model(), torch.zeros(2, 3, 8, 8, dtype=torch.long))),
        r"x: expected a floating-point tensor",
        (),
    ),
    "api image of rank 3": (
        api(lambda: ss.grad_cam(model(), X[0], layer="features.3")),
        r"x: expected a 4-D tensor",
        (),
    ),
    "api target out of range": (
        api(lambda: ss.grad(model(), X, torch.tensor([0, 5]))),
        r"target: expected class indices in \[0, 5\), got 5",
        (),
    ),
    "api target of wrong length": (
        api(lambda: ss.integrated_gradients(model(), X, torch.tensor([0, 1, 2]))),
        r"target: expected shape \[2\]",
        (),
    ),
    "api unknown layer": (
        api(lambda: ss.grad_cam(model(), X, T, layer="layer9")),
        r"layer: expected a submodule name .*got 'layer9'",
        (),
    ),
    "api sigma nan": (api(lambda: ss.smooth(ss.grad, float("nan"), 4)), r"sigma: .*got nan", ()),
    "api sigma inf": (api(lambda: ss.smooth(ss.grad, float("inf"), 4)), r"sigma: .*got inf", ()),
    "api sigma negative": (api(lambda: ss.smooth(ss.grad, -0.5, 4)), r"sigma: .*got -0\.5", ()),
    "api n_samples zero": (api(lambda: ss.smooth(ss.grad, 0.1, 0)), r"n_samples: expected", ()),
    "api odd antithetic": (
        api(lambda: ss.smooth(ss.grad, 0.1, 3, antithetic=True)),
        r"even",
        (),
    ),
    "api tolerance as a string": (
        api(lambda: ss.smooth(ss.grad, 0.1, tol="0.1")),
        r"tol: expected a number > 0.*got '0\.1'",
        (),
    ),
    "api stats_at of bare sigmas": (
        api(lambda: ss.smooth(ss.grad, 0.1, 4, seed=0).stats_at(model(), X, T, [0.1, 0.2])),
        r"levels: expected \(sigma, seed\) pairs, got \[0\.1, 0\.2\]",
        (),
    ),
    "api tolerance zero": (
        api(lambda: ss.smooth(ss.grad, 0.1, tol=0)),
        r"tol: expected a finite number > 0, got 0\.0",
        (),
    ),
    "api weight_smooth sigma negative": (
        api(lambda: ss.weight_smooth(ss.grad, -0.1, 4)),
        r"sigma: expected a finite number >= 0, got -0\.1",
        (),
    ),
    "api weight_smooth odd antithetic": (
        api(lambda: ss.weight_smooth(ss.grad, 0.1, 3, antithetic=True)),
        r"n_samples: .*even",
        (),
    ),
    "api NaN baseline": (
        api(lambda: ss.integrated_gradients(model(), X, T, baseline=float("nan"))),
        r"baseline: expected a finite number, got nan",
        (),
    ),
    "api from_captum of a non-class": (
        api(lambda: ss.from_captum(len)),
        r"attribution_class: expected a Captum attribution class",
        (TypeError,),
    ),
    "api unknown method in a config": (
        api(lambda: AttributionConfig(methods=("grad", "lime"))),
        r"methods: expected one of .*got 'lime'",
        (),
    ),
    "api config file missing": (
        api(lambda: load_config("/nonexistent/x.toml")),
        r"found nothing at /nonexistent/x\.toml",
        (),
    ),
    "api weights run code": (
        lambda t: (
            lambda: build_model("small_cnn", num_classes=10, weights=str(hostile_pickle(t, "w.pt")))
        ),
        r"weights: cannot load",
        (),
    ),
    "api truncated checkpoint": (
        lambda t: lambda: load_trained(truncate(fake_run(t) / "model_1.pt", 500)),
        r"model_1\.pt: cannot be read",
        (),
    ),
}


def small_cnn(classes: int = 10) -> dict:
    return build_model("small_cnn", num_classes=classes, in_channels=1).state_dict()


def resnet_weights() -> dict:
    return build_model("resnet18_cifar", num_classes=10, in_channels=1).state_dict()


def truncate(path: Path, size: int) -> Path:
    path.write_bytes(path.read_bytes()[:size])
    return path


def replace_file(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def load_trained(path: Path):
    from smoothstab.experiments.train import load_trained as load

    return load(path)


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_the_catalogue_is_large_enough():
    cli = [k for k in CASES if not k.startswith("api ")]
    assert len(CASES) >= 30 and len(cli) >= 30, (len(CASES), len(cli))


SLOW = {"corrupt image in a loader worker"}  # starts a DataLoader worker process: ~5 s


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in CASES]
)
def test_bad_input(case, tmp_path, capsys, monkeypatch):
    setup, pattern, types = CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # a run without --out would land in work/runs
    monkeypatch.setenv("CI", "true")
    what = setup(tmp_path)
    assert what != [], "setup failed"
    before = digests(tmp_path)
    if callable(what):
        with pytest.raises(types or (ValueError,)) as err:
            what()
        message = str(err.value)
        assert "\n" not in message, message
    else:
        code = main(what)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2, err
        assert "Traceback" not in err
        assert len(lines) == 1 and lines[0].startswith(f"smoothstab {what[0]}: error: "), err
        message = lines[0]
    assert re.search(pattern, message), message
    after = digests(tmp_path)
    assert {k: after.get(k) for k in before} == before, "a file that existed changed"
    assert not [k for k in after if k.endswith(".tmp")]
    assert not (tmp_path / SIDE_EFFECT).exists(), "the pickle ran its code"
    assert not (tmp_path / "escape").exists() and not (tmp_path / "abs").exists()

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

Long because it is one table of its cases, each a line or two.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import smoothstab as ss
from helpers import TINY_TOML, ConvNet, config, digests, fake_run, make, truncate
from smoothstab import inference
from smoothstab.experiments.cli import main
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.config.tables import AttributionConfig
from smoothstab.experiments.models.architectures import build_model

SIDE_EFFECT = "pwned"  # the file a hostile pickle tries to create


class Hostile:
    """Pickles to a call of ``os.system`` that would create the file ``SIDE_EFFECT``."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def __reduce__(self):
        return (os.system, (f"touch {self.where / SIDE_EFFECT}",))


# --- building blocks: files a case writes before it runs -----------------------------------------


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
    """A run whose evaluate stage recorded metrics.parquet, which was then cut short."""
    from smoothstab.experiments.rundir import manifest
    from smoothstab.experiments.rundir.metrics_table import rows_table, write_table

    d = fake_run(tmp)
    rows = [dict(setting="DT", n="50", method="grad", r=0.0, sigma=0.0, metric="stability",
                 pair="0-1", image=str(i), value=0.5) for i in range(40)]  # fmt: skip
    write_table(d / "metrics.parquet", rows_table(rows))
    manifest.record(d, "evaluate")
    data = (d / "metrics.parquet").read_bytes()
    (d / "metrics.parquet").write_bytes(data[: len(data) // 2])
    return d


def block_run(tmp: Path, damage: str) -> list[str]:
    """``evaluate`` on a run whose attribute stage left one block file, damaged as ``damage``
    says: a block of another method or another run put in its place, or a flipped bit."""
    from smoothstab.experiments.models.recipe import block_identity
    from smoothstab.experiments.rundir.blockfile import BlockFile

    d = fake_run(tmp)
    cfg = load_config(d / "config.toml")
    x, y = torch.zeros(2, 1, 8, 8), torch.tensor([0, 1])
    torch.save({"x": x, "y": y, "indices": [0, 1]}, d / "test_images.pt")
    ident = block_identity(cfg, "grad", 0, 2)
    ident.update({"method": "ig"} if damage == "method" else {"run": "0" * 16} if damage == "run"
                 else {})  # fmt: skip
    ident = {k: tuple(map(tuple, v)) if k == "seeds" else tuple(v) if isinstance(v, list) else v
             for k, v in ident.items()}  # fmt: skip
    f = BlockFile(**ident, metric=("stability",), r=(0.0,), pair=("0-1",), model=("",),
                  has_stderr=(False,), values=torch.full((1, 2), 0.5, dtype=torch.float64),
                  stderr=torch.full((1, 2), float("nan"), dtype=torch.float64), figure_images=(),
                  figure_maps=torch.zeros(2, len(ident["rs"]), 0, 1, 8, 8), extreme_images=(),
                  extreme_maps=torch.zeros(len(ident["rs"]), 0, 2, 8, 8))  # fmt: skip
    path = f.save(d / "blocks" / "grad" / "block00000.pt")
    if damage == "flip":
        data = bytearray(path.read_bytes())
        data[data.index(torch.tensor(0.5, dtype=torch.float64).numpy().tobytes()) + 3] ^= 0x01
        path.write_bytes(bytes(data))
    return ["evaluate", str(d)]


def earlier_run(tmp: Path) -> list[str]:
    """``figures`` on a run directory whose manifest records ``metrics.csv`` (an earlier
    version's layout)."""
    d = fake_run(tmp)
    path = d / "manifest.json"
    data = json.loads(path.read_text())
    data["stages"]["evaluate"] = {"metrics.csv": {"size": 1, "sha256": "0" * 64}}
    path.write_text(json.dumps(data))
    return ["figures", str(d)]


def planted_map_block(tmp: Path) -> Callable[[], object]:
    """Joining a kept map whose block 1 is a copy of another r's block 1."""
    import dataclasses

    from smoothstab.experiments.rundir.layout import RunDir
    from smoothstab.experiments.rundir.mapfile import MapFile

    run_dir, want = RunDir(tmp / "run"), []
    for b, r in ((0, 0.1), (1, 0.1), (1, 0.2)):
        stats = ss.SmoothStats.exact(torch.zeros(2, 1, 8, 8))
        ident = dict(method="grad", model=0, r=r, sigma=r, images=(2 * b, 2 * b + 2), block=b,
                     seeds=(b,))  # fmt: skip
        f = dataclasses.replace(MapFile.from_stats(stats, r, r, keep=False), **ident)
        f.save(run_dir.map(0, "grad", r, b))
        want += [f.identity()] if r == 0.1 else []
    planted = run_dir.map(0, "grad", 0.2, 1).read_bytes()
    run_dir.map(0, "grad", 0.1, 1).write_bytes(planted)
    return lambda: run_dir.join_map(0, "grad", 0.1, want)


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


FT_TOML = TINY_TOML + '[models]\nsetting = "FT"\n[[models.specs]]\nname = "small_cnn"\n'


def ft_run(*sets: str) -> Setup:
    """``run`` on the tiny config in setting FT (replicas of one small CNN), with ``--set``
    overrides ``sets``."""
    more = [a for s in sets for a in ("--set", s)]
    return lambda t: ["run", config(t, FT_TOML, "ft.toml"), "--out", str(t / "o"), "--quiet", *more]


def plan(*args: str) -> Setup:
    """``smoothstab plan`` of the tiny config, counts only, with ``args``."""
    return lambda t: ["plan", config(t), "--no-timing", *args]


def with_value(x: torch.Tensor, index, value) -> torch.Tensor:
    x = x.clone()
    x[index] = value
    return x


def model() -> torch.nn.Module:
    return make(ConvNet())


class Output(torch.nn.Module):
    """The test ConvNet with its logits passed through ``out``: a model whose output is not
    plain logits."""

    def __init__(self, out: Callable[[torch.Tensor], object]) -> None:
        super().__init__()
        self.net, self.out = model(), out

    def forward(self, x: torch.Tensor) -> object:
        return self.out(self.net(x))


class Probed(torch.nn.Module):
    """The test ConvNet with a layer ``probe`` whose output is ``view(features)``: a CAM layer
    of a chosen shape (the logits do not change)."""

    def __init__(self, view: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.net, self.view, self.probe = model(), view, torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net.features(x)
        return self.net.fc(self.net.pool(f).flatten(1)) + 0 * self.probe(self.view(f)).sum()


X12 = torch.randn(2, 3, 12, 12, dtype=torch.float64)  # large enough for the SSIM window


def sanity(**kwargs) -> object:
    """``ss.sanity`` of gradients of the test ConvNet on 12x12 images, with ``kwargs``."""
    return ss.sanity(ss.grad, model(), X12, T, **{"sigmas": [0.0], "n_samples": 2, **kwargs})


def sanity_of_a_layer_object() -> object:
    """``ss.sanity`` of Grad-CAM with its layer given as the trained model's module."""
    m = model()
    cam = functools.partial(ss.grad_cam, layer=m.features[3])
    return ss.sanity(cam, m, X12, T, sigmas=[0.0], n_samples=2)


def levels(*pairs) -> object:
    """``stats_at`` of a 4-draw Smooth-Grad at ``pairs`` (the levels as given)."""
    return ss.smooth(ss.grad, 0.1, 4, seed=0).stats_at(model(), X, T, levels=pairs)


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
        r"attribution\.groups: expected an even number \(each half splits evenly\), got 3",
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
        r"cifar10: not downloaded yet and downloads are off \(SMOOTHSTAB_OFFLINE=1\); place "
        r"cifar-10-batches-py/.* in /nonexistent/cifar, or the archive",
        (),
    ),
    "cifar wrong layout": (
        cifar_run(),
        r"cifar10: not downloaded yet .* place cifar-10-batches-py/",
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
        r"test_images\.pt does not exist; run the stages before this one",
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
    "damaged metrics table": (
        lambda t: ["report", str(damaged_metrics(t))],
        r"metrics\.parquet: damaged .*rerun the evaluate stage",
        (),
    ),
    "run directory of an earlier version": (
        earlier_run,
        r"manifest\.json: written by an earlier version of smoothstab .*metrics\.csv.*NEW_DIR",
        (),
    ),
    "block file of another method": (
        lambda t: block_run(t, "method"),
        r"block00000\.pt: holds method = 'ig', not 'grad' .*rm .*--stages attribute",
        (),
    ),
    "block file of another run": (
        lambda t: block_run(t, "run"),
        r"block00000\.pt: holds run = '0000000000000000', not '[0-9a-f]{16}'",
        (),
    ),
    "block file with a flipped bit": (
        lambda t: block_run(t, "flip"),
        r"block00000\.pt: damaged \(its content does not match the SHA-256 it records\)",
        (),
    ),
    "api kept map joined from a planted block": (
        planted_map_block,
        r"r0\.100000\.block1\.pt: holds r = 0\.2, not 0\.1",
        (ValueError,),
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
        r"x: expected a batch \[B, C, H, W\], got shape \(3, 8, 8\); one image\?",
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
    # [attribution]: tolerance, sample counts, groups, speed options, the IG sampler
    "tolerance nan": (
        run("--set", "attribution.tolerance=nan"),
        r"attribution\.tolerance: expected a finite number > 0, got nan",
        (),
    ),
    "min_samples above max_samples": (
        run(
            *("--set", "attribution.tolerance=0.1", "--set", "attribution.min_samples=64"),
            *("--set", "attribution.max_samples=8"),
        ),
        r"attribution\.min_samples: expected at most max_samples=8, got 64",
        (),
    ),
    "max_samples without a tolerance": (
        run("--set", "attribution.max_samples=50"),
        r"attribution\.max_samples: only with attribution\.tolerance, got 50",
        (),
    ),
    "min_samples zero with a tolerance": (
        run("--set", "attribution.tolerance=0.1", "--set", "attribution.min_samples=0"),
        r"attribution\.min_samples: expected an integer >= 1, got 0",
        (),
    ),
    "one antithetic pair with debiasing": (
        run(*("--set", "attribution.antithetic=true", "--set", "attribution.n_samples=2")),
        r"evaluation\.debiased: .*got n_samples=2 in antithetic pairs; raise "
        r"attribution\.n_samples",
        (),
    ),
    "groups zero": (
        run("--set", "attribution.groups=0"),
        r"attribution\.groups: expected an integer >= 2, got 0",
        (),
    ),
    "groups above the units of n_samples": (
        run("--set", "attribution.groups=4"),
        r"attribution\.groups: .*at most the 2 units of n_samples, got 4",
        (),
    ),
    "groups above the units of max_samples": (
        run(
            *("--set", "attribution.tolerance=0.1", "--set", "attribution.max_samples=32"),
            *("--set", "attribution.groups=64"),
        ),
        r"attribution\.groups: .*at most the 32 units of max_samples, got 64",
        (),
    ),
    "amp fp16 for attribution": (
        run("--set", "attribution.amp=fp16"),
        r"attribution\.amp: expected one of 'none', 'bf16', got 'fp16'",
        (),
    ),
    "channels_last not a bool": (
        run("--set", "attribution.channels_last=yes"),
        r"attribution\.channels_last: expected bool, got 'yes'",
        (),
    ),
    "ig_sampler unknown": (
        run("--set", "attribution.ig_sampler=both"),
        r"attribution\.ig_sampler: expected one of 'nested', 'joint', got 'both'",
        (),
    ),
    # the FT proxies and the models table
    "FT proxy unknown": (
        ft_run("models.proxy=bayes"),
        r"models\.proxy: expected one of 'finetune', 'swag', 'noisy_sgd', got 'bayes'",
        (),
    ),
    "FT one replica": (
        ft_run("models.replicas=1"),
        r"models\.replicas: expected an integer >= 2, got 1",
        (),
    ),
    "FT epochs zero": (ft_run("models.epochs=0"), r"models\.epochs: expected an integer >= 1", ()),
    "FT lr nan": (
        ft_run("models.lr=nan"),
        r"models\.lr: expected a finite number >= 0, got nan",
        (),
    ),
    "FT layers unknown": (
        ft_run("models.layers=head"),
        r"models\.layers: expected one of 'all', 'last_block', 'classifier', got 'head'",
        (),
    ),
    "FT part_size zero": (
        ft_run("models.part_size=0"),
        r"models\.part_size: expected an integer >= 1, got 0",
        (),
    ),
    "FT part_size above the data": (
        ft_run("models.part_size=100000"),
        r"models\.part_size: expected replicas x part_size <= the \d+ training images, "
        r"got 4 x 100000",
        (),
    ),
    "FT noise_std inf": (
        ft_run("models.noise_std=inf"),
        r"models\.noise_std: expected a finite number >= 0, got inf",
        (),
    ),
    "FT noisy_sgd without noise": (
        ft_run("models.proxy=noisy_sgd", "models.noise_std=0"),
        r"models\.noise_std: proxy noisy_sgd expected a weight noise > 0, got 0",
        (),
    ),
    "FT one swag snapshot": (
        ft_run("models.proxy=swag", "models.swag_snapshots=1"),
        r"models\.swag_snapshots: expected an integer >= 2, got 1",
        (),
    ),
    "FT swag_scale negative": (
        ft_run("models.swag_scale=-1"),
        r"models\.swag_scale: expected a finite number >= 0, got -1\.0",
        (),
    ),
    "FT from two models": (
        lambda t: ["run", config(t, FT_TOML + FT_TOML[FT_TOML.index("[[") :], "ft.toml")],
        r"models\.specs: setting FT starts from exactly one model, got 2",
        (),
    ),
    "FT grid pair beyond the replicas": (
        ft_run('evaluation.grid_pairs=["0-5"]'),
        r"evaluation\.grid_pairs: expected models 0\.\.3, got '0-5'",
        (),
    ),
    "DT with model specs": (
        lambda t: ["run", config(t, FT_TOML.replace('setting = "FT"\n', ""), "dt.toml")],
        r"models\.specs: setting DT trains its models; give specs only for DR/DA/FT",
        (),
    ),
    "DR of one model": (
        lambda t: ["run", config(t, FT_TOML.replace('"FT"', '"DR"'), "dr.toml")],
        r"models\.specs: setting DR needs at least 2 models",
        (),
    ),
    # smoothstab plan
    "plan of a malformed config": (
        lambda t: ["plan", config(t, "[train\n"), "--no-timing"],
        r"c\.toml is not valid TOML",
        (),
    ),
    "plan with a bad --set value": (
        plan("--set", "train.epochs=two"),
        r"train\.epochs: expected int, got 'two'",
        (),
    ),
    "plan with a misspelt --set key": (
        plan("--set", "attribution.tolerence=0.1"),
        r"attribution\.tolerence: unknown key; did you mean attribution\.tolerance\?",
        (),
    ),
    "plan with a word for a budget": (
        plan("--budget", "ten"),
        r"--budget: expected a number of seconds > 0, got 'ten'",
        (),
    ),
    "plan with an infinite budget": (
        plan("--budget", "inf"),
        r"--budget: expected a number of seconds > 0, got 'inf'",
        (),
    ),
    "plan with a target half-width but no pilot": (
        plan("--target-halfwidth", "0.05"),
        r"--target-halfwidth: needs --pilot RUN_DIR, the run it plans from",
        (),
    ),
    "plan with a word for a target half-width": (
        lambda t: [
            "plan",
            config(t),
            "--no-timing",
            "--pilot",
            str(fake_run(t)),
            "--target-halfwidth",
            "two percent",
        ],  # fmt: skip
        r"--target-halfwidth: expected a fraction of the baseline in \(0, 10\), e\.g\. 0\.05, "
        r"got 'two percent'",
        (),
    ),
    "plan from a pilot that was never evaluated": (
        lambda t: ["plan", config(t), "--no-timing", "--pilot", str(fake_run(t))],
        r"--pilot: .*run has no metrics\.parquet; give a run directory whose evaluate stage ran",
        (),
    ),
    "plan from a pilot for given checkpoints": (
        lambda t: ["plan", "paper/table1_dr", "--no-timing", "--pilot", str(fake_run(t))],
        r"--pilot: plans how many models to train per size; setting DR compares the models it "
        r"is given \(use setting DT\)",
        (),
    ),
    "a target half-width of 0": (
        run("--set", "evaluation.target_halfwidth=0"),
        r"target_halfwidth: expected a number in \(0, 10\), got 0",
        (),
    ),
    # the API: smoothing, packed levels, smoothed IG, weight noise
    "api stats_at no levels": (
        api(lambda: levels()),
        r"levels: expected at least one \(sigma, seed\) pair, got none",
        (),
    ),
    "api stats_at level of nan": (
        api(lambda: levels((0.1, 0), (float("nan"), 1))),
        r"sigma: expected a finite number >= 0, got nan",
        (),
    ),
    "api stats_at levels as a string": (
        api(lambda: ss.smooth(ss.grad, 0.1, 4).stats_at(model(), X, T, "0.1")),
        r"levels: expected \(sigma, seed\) pairs, got \['0', '\.', '1'\]",
        (),
    ),
    "api stats_at level of three": (
        api(lambda: levels((0.1, 0, 1))),
        r"levels: expected \(sigma, seed\) pairs, got \[\(0\.1, 0, 1\)\]",
        (),
    ),
    "api stats_at shared generator": (
        api(lambda: (lambda g: levels((0.1, g), (0.2, g)))(torch.Generator())),
        r"seed: packed noise levels need an int seed or a torch\.Generator of their own each",
        (),
    ),
    "api stats_at unseeded levels": (
        api(lambda: levels((0.1, None), (0.2, None))),
        r"seed: packed noise levels need an int seed",
        (),
    ),
    "api stats_at seed of a string": (
        api(lambda: levels((0.1, "a"), (0.2, 1))),
        r"seed: expected an int, a torch\.Generator or None, got 'a'",
        (),
    ),
    "api smooth seed of a float": (
        api(lambda: ss.smooth(ss.grad, 0.1, 4, seed=1.5)),
        r"seed: expected an int, a torch\.Generator or None, got 1\.5",
        (),
    ),
    "api smooth of a method name": (
        api(lambda: ss.smooth("grad", 0.1, 4)),
        r"method: expected a callable method\(model, x, target\), got 'grad'",
        (),
    ),
    "api smooth groups above the draws": (
        api(lambda: ss.smooth(ss.grad, 0.1, 4, groups=8)),
        r"groups: expected at most the 4 units of n_samples, got 8",
        (),
    ),
    "api smooth groups odd": (
        api(lambda: ss.smooth(ss.grad, 0.1, 8, groups=3)),
        r"groups: expected an even number .*got 3",
        (),
    ),
    "api smooth min_samples above max_samples": (
        api(lambda: ss.smooth(ss.grad, 0.1, tol=0.1, min_samples=64, max_samples=8)),
        r"min_samples: expected at most max_samples=8, got 64",
        (),
    ),
    "api smooth both n_samples and tol": (
        api(lambda: ss.smooth(ss.grad, 0.1, 4, tol=0.1)),
        r"n_samples: expected either n_samples or tol=, got both \(4, 0\.1\)",
        (),
    ),
    "api smoothed_ig sampler unknown": (
        api(lambda: ss.smoothed_ig(0.1, 4, sampler="both")),
        r"sampler: expected one of joint, nested, got 'both'",
        (),
    ),
    "api smoothed_ig one step": (
        api(lambda: ss.smoothed_ig(0.1, 4, steps=1)),
        r"steps: expected an integer >= 2, got 1",
        (),
    ),
    "api smoothed_ig rule unknown": (
        api(lambda: ss.smoothed_ig(0.1, 4, rule="simpson")),
        r"rule: expected one of .*got 'simpson'",
        (),
    ),
    "api smoothed_ig baseline of another shape": (
        api(lambda: ss.smoothed_ig(0.1, 2, seed=0, baseline=torch.zeros(5))(model(), X, T)),
        r"baseline: expected a tensor broadcastable to .*got shape \(5,\)",
        (),
    ),
    "api weight_smooth noise unknown": (
        api(lambda: ss.weight_smooth(ss.grad, 0.1, 4, noise="gaussian")),
        r"noise: expected one of additive, multiplicative, got 'gaussian'",
        (),
    ),
    "api weight_smooth unknown layer": (
        api(lambda: ss.weight_smooth(ss.grad, 0.1, 2, layers=["nope"], seed=0)(model(), X, T)),
        r"layers: expected names of parameters or modules of ConvNet .*got 'nope'",
        (),
    ),
    "api weight_smooth layers as a string": (
        api(lambda: ss.weight_smooth(ss.grad, 0.1, 2, layers="fc", seed=0)(model(), X, T)),
        r"layers: expected a non-empty list of parameter or module names, got 'fc'",
        (),
    ),
    "api weight_smooth seed of a float": (
        api(lambda: ss.weight_smooth(ss.grad, 0.1, 2, seed=0.5)),
        r"seed: expected an int, a torch\.Generator or None, got 0\.5",
        (),
    ),
    # randomisation and the sanity check
    "api randomize mode unknown": (
        api(lambda: ss.randomize(model(), "top-down")),
        r"mode: expected one of cascading, independent, got 'top-down'",
        (),
    ),
    "api randomize a layer twice": (
        api(lambda: ss.randomize(model(), layers=["fc", "fc"])),
        r"layers: expected distinct names, got \['fc', 'fc'\]",
        (),
    ),
    "api randomize overlapping layers": (
        api(lambda: ss.randomize(model(), layers=["features", "features.0"])),
        r"layers: expected steps that do not overlap",
        (),
    ),
    "api randomize a layer without weights": (
        api(lambda: ss.randomize(model(), layers=["features.1"])),
        r"layers: cannot re-initialise 'features\.1': it has no parameters",
        (),
    ),
    "api randomize unknown layer": (
        api(lambda: ss.randomize(model(), layers=["nope"])),
        r"layers: expected module names of ConvNet .*got 'nope'",
        (),
    ),
    "api randomize seed negative": (
        api(lambda: ss.randomize(model(), seed=-1)),
        r"seed: expected an integer >= 0, got -1",
        (),
    ),
    "api sanity without sigmas": (
        api(lambda: sanity(sigmas=[])),
        r"sigmas: expected at least one noise level, got none",
        (),
    ),
    "api sanity sigmas of one number": (
        api(lambda: sanity(sigmas=0.1)),
        r"sigmas: expected a list of noise levels, got 0\.1",
        (),
    ),
    "api sanity of models without names": (
        api(lambda: sanity(randomized=[model()])),
        r"randomized: expected \(name, model\) pairs, got ConvNet",
        (),
    ),
    "api sanity with a CAM layer object": (
        api(lambda: sanity_of_a_layer_object()),
        r"layer: expected the CAM layer by name .*got a ReLU module",
        (),
    ),
    "api sanity of images under the SSIM window": (
        api(lambda: ss.sanity(ss.grad, model(), X, T, sigmas=[0.0], n_samples=2)),
        r"x: expected images at least 11x11 \(the SSIM window\), got 8x8",
        (),
    ),
    # Quantus
    "api to_quantus of a method name": (
        api(lambda: ss.to_quantus("grad")),
        r"method: expected a callable method\(model, x, target\), got 'grad'",
        (),
    ),
    "api to_quantus float targets": (
        api(lambda: ss.to_quantus(ss.grad)(model(), X.numpy(), np.array([0.5, 1.0]))),
        r"target: expected integer class indices, got dtype torch\.float64",
        (),
    ),
    # model outputs and CAM layers
    "api output a dict without logits": (
        api(lambda: ss.grad(Output(lambda o: {"probs": o}), X, T)),
        r"model output: expected logits \[B, K\].*; got dict holding no logits",
        (),
    ),
    "api output of one dimension": (
        api(lambda: ss.grad(Output(lambda o: o[:, 0]), X, T)),
        r"model output: expected logits \[B, K\] with B=2, got \(2,\)",
        (),
    ),
    "api output of another batch": (
        api(lambda: ss.smooth(ss.grad, 0.1, 2, seed=0)(Output(lambda o: o[:1]), X, T)),
        r"model output: expected logits \[B, K\] with B=\d+, got \(1, 5\)",
        (),
    ),
    "api output an empty tuple": (
        api(lambda: ss.integrated_gradients(Output(lambda o: ()), X, T)),
        r"model output: .*got tuple holding no logits",
        (),
    ),
    "api CAM layer of logits": (
        api(lambda: ss.grad_cam(model(), X, T, layer="fc")),
        r"layer: expected an output \[B, C, h, w\], \[B, h, w, C\] or tokens \[B, N, C\], "
        r"got \(2, 5\)",
        (),
    ),
    "api CAM layer of either layout": (
        api(lambda: ss.grad_cam(Probed(lambda f: f[:, :4, ::2, ::2]), X, T, layer="probe")),
        r"layer: output \(2, 4, 4, 4\) could be \[B, C, h, w\] or \[B, h, w, C\]",
        (),
    ),
    "api CAM layer of tokens without a grid": (
        api(lambda: ss.grad_cam(Probed(lambda f: f.flatten(2).mT[:, :5]), X, T, layer="probe")),
        r"layer: cannot tell the token grid of 5 tokens for input \(8, 8\)",
        (),
    ),
    # compare, the images data set, downloads and the library's frictions (issue 35)
    "compare without --model": (
        lambda t: ["compare", "a.pt", "b.pt", "--images", str(image_dir(t))],
        r"--model: a\.pt is a weights file or a torchvision weight name; give --model",
        (),
    ),
    "compare one checkpoint": (
        lambda t: ["compare", "a.pt", "--model", "small_cnn", "--images", str(image_dir(t))],
        r"checkpoints: expected two or more to compare, got 1",
        (),
    ),
    "compare labels file missing": (
        lambda t: [
            "compare",
            "a",
            "b",
            "--model",
            "m",
            "--images",
            str(image_dir(t)),
            "--labels",
            str(t / "none.csv"),
        ],
        r"--labels: expected a CSV file of file,label lines, .*none\.csv is not a file",
        (),
    ),
    "compare labels with a data set": (
        lambda t: ["compare", "a", "b", "--model", "m", "--dataset", "shapes", "--labels", "x"],
        r"--labels: only with --images",
        (),
    ),
    "compare empty images folder": (
        lambda t: ["compare", "a", "b", "--model", "m", "--images", str(mkdir(t / "empty"))],
        r"images: expected a folder of images .* has none",
        (),
    ),
    "compare grey images without normalisation": (
        lambda t: ["compare", "a", "b", "--model", "m", "--images", str(image_dir(t, "L"))],
        r"train\.mean: the images in .* are grey \(one channel\); give the normalisation",
        (),
    ),
    "compare images that are not images": (
        lambda t: ["compare", "a", "b", "--model", "m", "--images", str(image_dir(t, bad=True))],
        r"bad\.png: not a readable image",
        (),
    ),
    "images data set in setting DT": (
        run("--set", "train.dataset=images", "--set", "train.root=x"),
        r"train\.dataset: 'images' is a folder of test images, and setting DT trains",
        (),
    ),
    "labels key on another data set": (
        run("--set", "train.labels=labels.csv"),
        r"train\.labels: only with dataset = 'images'",
        (),
    ),
    "n_images beyond the test set": (
        plan("--set", "attribution.n_images=600"),
        r"attribution\.n_images: 600 images asked, the digits test set has 500; set "
        r"attribution\.n_images = 500 or fewer",
        (),
    ),
    "n_images beyond a folder of images": (
        lambda t: ["plan", images_config(t, n_images=5), "--no-timing"],
        r"attribution\.n_images: 5 images asked, .*imgs has 3; set attribution\.n_images = 3",
        (),
    ),
    "labels file without a label": (
        lambda t: ["run", images_config(t, labels="0.png,1\n"), "--out", str(t / "o"), "--quiet"],
        r"train\.labels: .*labels\.csv gives no label for 1\.png",
        (),
    ),
    "images without labels explain the label": (
        lambda t: ["run", images_config(t, target="label"), "--out", str(t / "o"), "--quiet"],
        r"attribution\.target: 'label' explains each image's label, and the images of",
        (),
    ),
    "torchvision weights offline": (
        lambda t: [
            "run",
            given_config(t, '{name = "resnet18", weights = "IMAGENET1K_V1"}'),
            "--out",
            str(t / "o"),
            "--offline",
            "--quiet",
            "--stages",
            "train",
            "attribute",
        ],
        r"weights: resnet18 IMAGENET1K_V1: not downloaded yet and downloads are off "
        r"\(SMOOTHSTAB_OFFLINE=1\); place the file https://download\.pytorch\.org/.* at ",
        (),
    ),
    "hf hub id offline": (
        lambda t: [
            "run",
            given_config(t, '{name = "hf:someone/vit"}'),
            "--out",
            str(t / "o"),
            "--quiet",
            "--stages",
            "train",
            "attribute",
        ],
        r"model: hf:someone/vit \(no local folder someone/vit; a hub id\): not downloaded yet",
        (),
    ),
    "api CAM of a model with no known layer": (
        api(lambda: ss.grad_cam(model(), X)),
        r"layer: no default CAM layer known for helpers\.ConvNet; pass layer=",
        (),
    ),
    "api grad of one image": (
        api(lambda: ss.grad(model(), X[0], 1)),
        r"x: expected a batch \[B, C, H, W\], got shape \(3, 8, 8\); one image\?",
        (),
    ),
    "api plot view unknown": (
        api(lambda: __import__("smoothstab.plot").plot.map_grid({"a": X}, view="abs")),
        r"view: expected one of magnitude, signed, got 'abs'",
        (),
    ),
    "api load_run of a folder that is no run": (
        lambda t: lambda: ss.load_run(t),
        r"load_run: .* is not a finished run directory \(config\.toml is missing\)",
        (),
    ),
    "floor pairs not a choice": (
        plan("--set", "evaluation.floor_pairs=class"),
        r"evaluation\.floor_pairs: expected one of 'any', 'same_class', got 'class'",
        (),
    ),
    "api derangement labels of another length": (
        api(lambda: ss.disagreement.derangement(4, 0, labels=torch.tensor([0, 1]))),
        r"labels: expected 4 labels \(one per image\), got 2",
        (),
    ),
    "api chance floor partner of another length": (
        api(lambda: ss.disagreement.chance_floor(ss.metrics.cosine, X, X, torch.tensor([1, 0, 1]))),
        r"partner: expected \[2\] \(one per image\), got \[3\]",
        (),
    ),
    "api disagreement of one model": (
        api(lambda: ss.disagreement.disagreement_map([X])),
        r"maps: a disagreement needs at least 2 models' maps, got 1",
        (),
    ),
    "api disagreement of maps of other shapes": (
        api(lambda: ss.disagreement.disagreement_map([X, X[:, :1]])),
        r"maps\[1\]: expected the shape of maps\[0\]",
        (),
    ),
    "api reliability of one model": (
        api(lambda: ss.disagreement.reliability([X])),
        r"maps: a reliability score needs at least 2 models' maps, got 1",
        (),
    ),
    "api ratio of means over a zero mean": (
        api(lambda: inference.ratio_mean(np.ones((3, 4)), np.zeros((3, 4)))),
        r"den: a ratio of means needs a nonzero mean, got 0",
        (),
    ),
    "api from_captum upsample not a bool": (
        api(lambda: ss.from_captum(type("A", (), {"attribute": lambda self: 0}), upsample="yes")),
        r"upsample: expected True, False or None, got 'yes'",
        (TypeError,),
    ),
}


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def image_dir(tmp: Path, mode: str = "RGB", bad: bool = False, n: int = 3) -> Path:
    """A folder of ``n`` small images of ``mode`` (and a file named ``bad.png`` that is not
    one, when ``bad``)."""
    from PIL import Image

    folder = mkdir(tmp / "imgs")
    for i in range(n):
        Image.new(mode, (8, 8), 100 + i).save(folder / f"{i}.png")
    if bad:
        (folder / "bad.png").write_bytes(b"not an image")
    return folder


def given_config(tmp: Path, spec: str) -> str:
    """A DR config of a small CNN and the model ``spec`` (an inline TOML table) on shapes."""
    text = TINY_TOML.replace('dataset = "digits"', 'dataset = "shapes"').replace(
        "parts = 2\npart_size = 50\n", ""
    )
    specs = f'[models]\nsetting = "DR"\nspecs = [{{name = "small_cnn"}}, {spec}]\n'
    return config(tmp, text + specs, "given.toml")


def images_config(tmp: Path, n_images: int = 2, labels: str = "", target: str = "predicted"):
    """A DR config of two small CNNs on a folder of 3 images (with a labels file when given)."""
    image_dir(tmp)
    extra = f'labels = "{tmp / "labels.csv"}"\n' if labels else ""
    if labels:
        (tmp / "labels.csv").write_text(labels)
    text = (
        f'name = "imgs"\n[train]\ndataset = "images"\nroot = "{tmp / "imgs"}"\nimage_size = 8\n'
        f'num_classes = 5\n{extra}[models]\nsetting = "DR"\n'
        'specs = [{name = "small_cnn"}, {name = "small_cnn"}]\n'
        f'[attribution]\nmethods = ["grad"]\nn_images = {n_images}\nn_samples = 2\n'
        f'stability_r = [0.0]\nfidelity_r = [0.0]\ntarget = "{target}"\n[evaluation]\ntopk = 5\n'
    )
    return config(tmp, text, "imgs.toml")


def small_cnn(classes: int = 10) -> dict:
    return build_model("small_cnn", num_classes=classes, in_channels=1).state_dict()


def resnet_weights() -> dict:
    return build_model("resnet18_cifar", num_classes=10, in_channels=1).state_dict()


def replace_file(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def load_trained(path: Path):
    from smoothstab.experiments.models.training import load_trained as load

    return load(path)


# --- a config's code, a run directory's data: python:/hf:/timm: names, checkpoints, FIFOs ---


def python_run(spec: str, module: str = "", code: str = "") -> Setup:
    """``run`` with ``train.model = spec``; ``module``: a file ``TMP/<module>.py`` of ``code``,
    beside the config (each case its own module name: a process imports a name once)."""

    def setup(t: Path) -> list[str]:
        if module:
            (t / f"{module}.py").write_text(code)
        return run("--set", f"train.model={spec}")(t)

    return setup


def hf_folder(t: Path, *, weights: bytes | None = None, **config) -> Path:
    """A tiny Hugging Face ViT folder for the digits (8x8, 1 channel, 10 labels): its
    config.json with ``config`` changes, and ``weights`` as its pytorch_model.bin."""
    tr = pytest.importorskip("transformers")
    folder = t / "hfvit"
    tiny = dict(image_size=8, patch_size=4, num_channels=1, num_labels=10, hidden_size=8)
    tiny.update(num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    tr.ViTConfig(**tiny).to_json_file(folder.mkdir() or folder / "config.json")
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, **config}))
    if weights is not None:
        (folder / "pytorch_model.bin").write_bytes(weights)
    return folder


def fifo_config(folder: Path) -> Path:
    """``folder`` with a FIFO for its config.json."""
    (folder / "config.json").unlink()
    os.mkfifo(folder / "config.json")
    return folder


def hf_run(make: Callable[[Path], Path]) -> Setup:
    """``run`` of an ``hf:`` model in the folder ``make(TMP)`` makes."""
    return lambda t: run("--set", f"train.model=hf:{make(t)}")(t)


def run_with(rel: str, command: str, make: Callable[[Path], None] = os.mkfifo) -> Setup:
    """``smoothstab COMMAND R`` (``run`` into R) on a fake run whose ``rel`` was replaced by
    ``make(path)`` (a FIFO by default)."""

    def setup(t: Path) -> list[str]:
        from smoothstab.experiments.rundir import manifest

        d = fake_run(t)
        manifest.record(d, "train")
        path = d / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        make(path)
        if command == "run":
            return ["run", str(t / "run.toml"), "--out", str(d), "--quiet"]
        return [command, str(d)]

    return setup


def checkpoints_naming(spec: str, module: str = "", code: str = "") -> Setup:
    """``attribute`` of a fake run whose checkpoints (and their manifest entries) name the model
    ``spec``; ``module``: a file of ``code`` in the working directory, where a lookup would find
    it."""

    def setup(t: Path) -> list[str]:
        from smoothstab.experiments.rundir import manifest

        d = fake_run(t)
        for path in d.glob("model_*.pt"):
            saved = torch.load(path, weights_only=True)
            saved["config"]["model"] = spec
            torch.save(saved, path)
        manifest.record(d, "train")
        if module:
            (t / "work" / f"{module}.py").write_text(code)
        return ["attribute", str(d)]

    return setup


def n_cell(t: Path) -> list[str]:
    """``report`` of a run whose recorded metrics table has ``nan`` (text) in its ``n``
    column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from smoothstab.experiments.rundir import manifest

    d = fake_run(t)
    row = dict(setting=["DT"], n=["nan"], method=["grad"], r=[0.0], sigma=[0.0],
               metric=["stability"], pair=["0-1"], model=[""], image=[0], value=[0.5],
               stderr=[None])  # fmt: skip
    pq.write_table(pa.table(row), d / "metrics.parquet")
    manifest.record(d, "evaluate")
    return ["report", str(d)]


def ft_weights(make: Callable[[Path], str]) -> Setup:
    """``run`` of setting FT from the weights ``make(TMP)`` names."""

    def setup(t: Path) -> list[str]:
        spec = f'\nweights = "{make(t)}"\n'
        return ["run", config(t, FT_TOML + spec, "ft.toml"), "--out", str(t / "o"), "--quiet"]

    return setup


TOUCH = "from pathlib import Path\nPath(__file__).parent.parent.joinpath('pwned').touch()\n"
CODE_CASES: dict[str, tuple[Setup, str, tuple[type, ...]]] = {
    # python: names, every way a factory can fail: one line naming the spec
    "python factory not callable": (
        python_run("python:math:pi"),
        r"model: python:math:pi: math\.pi is a float, expected a function",
        (),
    ),
    "python factory is a module": (
        python_run("python:os:path"),
        r"model: python:os:path: os\.path is a module, expected a function",
        (),
    ),
    "python factory takes other arguments": (
        python_run("python:json:loads"),
        r"model: python:json:loads raised TypeError: .*missing 1 required positional argument",
        (),
    ),
    "python factory calls sys.exit": (
        python_run("python:sys:exit"),
        r"model: python:sys:exit exited \(SystemExit\(None\)\) instead of returning a model",
        (),
    ),
    "python factory raises": (
        python_run("python:bad33_raises:make", "bad33_raises", "def make():\n    1 / 0\n"),
        r"model: python:bad33_raises:make raised ZeroDivisionError: division by zero",
        (),
    ),
    "python factory returns no module": (
        python_run("python:tempfile:gettempdir"),
        r"model: python:tempfile:gettempdir returned str, not an nn\.Module",
        (),
    ),
    "python module relative": (
        python_run("python:.os:x"),
        r"model: expected python:package\.module:factory .*got 'python:\.os:x'",
        (),
    ),
    "python module of dots": (
        python_run("python:..:x"),
        r"model: expected python:package\.module:factory .*got 'python:\.\.:x'",
        (),
    ),
    "python module nowhere": (
        python_run("python:nowhere33:make"),
        r"model: python:nowhere33:make: no module nowhere33 in .* \(the config's folder\), "
        r".* \(the working directory\) or the installed packages",
        (),
    ),
    "python module does not compile": (
        python_run("python:bad33_syntax:make", "bad33_syntax", "def make(:\n"),
        r"model: python:bad33_syntax:make: importing bad33_syntax raised SyntaxError",
        (),
    ),
    "python module exits on import": (
        python_run("python:bad33_exits:make", "bad33_exits", "raise SystemExit(3)\n"),
        r"model: python:bad33_exits:make: importing bad33_exits exited \(SystemExit\(3\)\)",
        (),
    ),
    "python module shadows an imported one": (
        python_run("python:json:loads", "json", "def loads():\n    pass\n"),
        r"model: python:json:loads: .*json\.py would be imported as json, but json is already "
        r"imported from",
        (),
    ),
    "api python factory raises": (
        api(lambda: build_model("python:sys:exit", num_classes=3)),
        r"model: python:sys:exit exited \(SystemExit\(None\)\)",
        (),
    ),
    # hf: folders
    "hf weights a hostile pickle": (
        hf_run(lambda t: hf_folder(t, weights=pickle.dumps(Hostile(t)))),
        r"model: cannot load hf:.*hfvit \(UnpicklingError: Weights only load failed\)",
        (),
    ),
    "hf 20 million labels": (
        hf_run(lambda t: hf_folder(t, num_labels=20_000_000, id2label=None, label2id=None)),
        r"model: hf:.*hfvit has 20000000 labels and 1 input channels, the data 10 classes",
        (),
    ),
    "hf config.json of 17 MB": (
        hf_run(lambda t: hf_folder(t, padding="x" * (17 << 20))),
        r"model: hf:.*config\.json is 17,8\d\d,\d\d\d bytes, more than a model's config\.json "
        r"has \(at most 16 MiB\)",
        (),
    ),
    "hf config.json a FIFO": (
        hf_run(lambda t: fifo_config(hf_folder(t))),
        r"model: hf:.*config\.json is a FIFO \(named pipe\), expected the folder's config\.json",
        (),
    ),
    "hf folder asks to run its code": (
        hf_run(lambda t: hf_folder(t, auto_map={"AutoModelForImageClassification": "m.Net"})),
        r"model: hf:.*: its config\.json asks to run the folder's own Python \(auto_map\); that "
        r"code runs only with models\.trust_remote_code = true",
        (),
    ),
    "timm name that downloads, offline": (
        python_run("timm:hf-hub:timm/resnet18.a1_in1k"),
        r"model: timm:hf-hub:timm/resnet18\.a1_in1k: not downloaded yet and downloads are off "
        r"\(SMOOTHSTAB_OFFLINE=1\); download config\.json and model\.safetensors of "
        r"timm/resnet18\.a1_in1k into the Hugging Face cache",
        (),
    ),
    # a checkpoint is data: the name it stores never chooses code
    "checkpoint names code": (
        checkpoints_naming("python:pwned33:make", "pwned33", TOUCH),
        r"model_0\.pt: a checkpoint of the model 'python:pwned33:make', but the run's config\.toml "
        r"names 'small_cnn'",
        (),
    ),
    "checkpoint names a Hugging Face folder": (
        checkpoints_naming("hf:/tmp"),
        r"model_0\.pt: a checkpoint of the model 'hf:/tmp', but the run's config\.toml names",
        (),
    ),
    "api checkpoint names code": (
        lambda t: (lambda d: lambda: load_trained(d / "model_0.pt"))(
            Path(checkpoints_naming("python:os:abort")(t)[1])
        ),
        r"model_0\.pt: a checkpoint of the model 'python:os:abort', which would import code",
        (),
    ),
    # special files where run files belong: refused before they are opened (5 used to hang)
    "fifo metrics table for figures": (
        run_with("metrics.parquet", "figures"),
        r"metrics\.parquet: a FIFO \(named pipe\) where a run file belongs",
        (),
    ),
    "fifo checkpoint for attribute": (
        run_with("model_0.pt", "attribute"),
        r"model_0\.pt: a FIFO \(named pipe\) where a run file belongs",
        (),
    ),
    "fifo checkpoint for run": (
        run_with("model_0.pt", "run"),
        r"model_0\.pt: a FIFO \(named pipe\) where a run file belongs",
        (),
    ),
    "fifo test images for figures": (
        run_with("test_images.pt", "figures"),
        r"test_images\.pt: a FIFO \(named pipe\) where a run file belongs",
        (),
    ),
    "fifo table1.csv for report": (
        run_with("table1.csv", "report"),
        r"table1\.csv: a FIFO \(named pipe\) where a run file belongs",
        (),
    ),
    "fifo lock": (
        run_with(".lock", "evaluate"),
        r"\.lock: a FIFO \(named pipe\) where a run file belongs",
        (),
    ),
    "fifo map file": (
        run_with("maps/model0/grad/r0.000000.pt", "evaluate"),
        r"r0\.000000\.pt: a FIFO \(named pipe\) where a run file belongs",
        (),
    ),
    # the smaller ones
    "metrics n cell nan": (
        n_cell,
        r"metrics\.parquet: not the metrics table \(its column n: expected integers, got string\)",
        (),
    ),
    "name of 129 characters": (
        lambda t: ["run", config(t, TINY_TOML.replace('"bad"', '"' + "a" * 129 + '"'))],
        r"name: expected at most 128 characters .*got 129",
        (),
    ),
    "FT weights that are text": (
        ft_weights(lambda t: raw(t / "w.pt", b"not a state dict\n")),
        r"weights: cannot load .*w\.pt as a state dict \(not a PyTorch file: it begins with "
        r"b'not '",
        (),
    ),
    "FT weights /etc/passwd": (
        ft_weights(lambda t: "/etc/passwd"),
        r"weights: cannot load /etc/passwd as a state dict \(not a PyTorch file",
        (),
    ),
    "FT weights a directory": (
        ft_weights(lambda t: str(t)),
        r"weights: expected a state-dict file, .* is a directory",
        (),
    ),
    "FT swag of one step": (
        ft_run("models.proxy=swag", "models.epochs=1", "models.part_size=10"),
        r"models\.swag_snapshots: the SWAG run takes 1 steps, too few for 2 snapshots",
        (),
    ),
}
CASES.update(CODE_CASES)


def test_the_catalogue_is_large_enough():
    cli = [k for k in CASES if not k.startswith("api ")]
    assert len(CASES) >= 230 and len(cli) >= 158, (len(CASES), len(cli))  # docs/reliability.md


SLOW = {
    "corrupt image in a loader worker",  # starts a DataLoader worker process: ~5 s
    "training diverges",  # these two train until the loss is not finite
    "noisy training diverges",
}


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

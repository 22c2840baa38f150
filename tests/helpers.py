"""What the tests share: the tiny quickstart's settings, small models, the browser, and
helpers that run the pipeline and read what a run wrote. The fixtures are in
``conftest.py``; test modules import these names from here (``tests`` is on the path)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from smoothstab.experiments import pipeline as stages
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.cli import main
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.config.parse import to_toml
from smoothstab.experiments.config.tables import ModelsConfig
from smoothstab.experiments.models.architectures import build_model
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.rundir.metrics_table import read_rows

ROOT = Path(__file__).resolve().parents[1]  # the repository
TESTS = ROOT / "tests"


# The tiny quickstart the end-to-end tests run (as `--set` values): 2 small CNNs on 400 shapes
# each, 2 epochs at lr 0.05 (pinned, so that tuning the quickstart's recipe moves no test), 4
# images, 6 noise draws, 4 IG points, r in {0, 0.1, 0.15, 0.2, 0.4}.
TINY_SETTINGS = [
    "train.epochs=2",
    "train.lr=0.05",
    "train.parts=2",
    "train.part_size=400",
    "attribution.n_images=4",
    "attribution.n_samples=6",
    "attribution.ig_steps=4",
    "attribution.stability_r=[0, 0.2]",
    "attribution.fidelity_r=[0, 0.1, 0.4]",
    "attribution.image_batch=2",
    "evaluation.topk=20",
    # what the quickstart preset chose for its speed, kept as before so the tests and the golden
    # numbers still cover the nested sampler, the paper's Table-1 level, 256-row calls and
    # training in the default memory format
    "train.channels_last=false",
    "attribution.channels_last=false",
    "attribution.ig_sampler=nested",
    "attribution.table_r=0.15",
    "attribution.batch_size=256",
]


# Headless Chromium for the tests that open pages in a browser (the report, the docs site); where
# none is found they are skipped with NO_BROWSER.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


BROWSER = next((b for b in map(shutil.which, BROWSERS) if b), None)


NO_BROWSER = "no Chromium (.ci/run installs Debian's chromium)"


# A Hugging Face ViT small enough for a test (32 px, 8 px patches, one block): the tests that
# build one from a config with random weights share it.
TINY_HF_VIT = dict(
    image_size=32,
    patch_size=8,
    num_hidden_layers=1,
    hidden_size=32,
    num_attention_heads=2,
    intermediate_size=64,
)


class ConvNet(nn.Module):
    """conv-ReLU-conv-ReLU-GAP-linear; ``features.3`` keeps the input's spatial size."""

    def __init__(self, in_channels: int = 3, num_classes: int = 5, width: int = 6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


class StridedNet(nn.Module):
    """Like ConvNet but the CAM layer ``body.2`` is at half resolution, so maps are upsampled."""

    def __init__(self, in_channels: int = 3, num_classes: int = 4):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, stride=2, padding=1),
            nn.Tanh(),
            nn.Conv2d(8, 8, 3, padding=1),
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)
        )

    def forward(self, x):
        return self.head(self.body(x))


def rand(*shape, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Standard normal values of ``shape`` from their own generator seeded with ``seed``."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def make(model: nn.Module, dtype=torch.float64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in model.parameters():
        nn.init.normal_(p, std=0.5)
    return model.to(dtype).eval()


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


TINY = [a for s in TINY_SETTINGS for a in ("--set", s)]


GRID = [0.0, 0.1, 0.15, 0.2, 0.4]  # both sweeps, 0 and the Table-1 level


N_IMAGES, N_MODELS = 4, 2


TRAINED = ("config.toml", "splits.json", "model_0.pt", "model_1.pt", "train_metrics.json")


FIGURES = ("answer", "stability", "fidelity", "ssim_topk", "tradeoff", "bounds")


def run(*args) -> int:
    return main([str(a) for a in args])


def copy_trained(src: Path, dst: Path, names=TRAINED) -> Path:
    """A new run directory holding only ``src``'s trained models (and config), so that later
    stages run again without training."""
    dst.mkdir(parents=True)
    for name in names:
        shutil.copy2(src / name, dst / name)
    return dst


def mean_curve(rows: list[dict], method: str, metric: str) -> dict[float, float]:
    """``{r: value}``: mean over images, then over pairs (or models), as the paper plots."""
    summary = Summary.from_rows([row for row in rows if row["method"] == method])
    return {r: b.mean for r, b in summary.curve(method, metric)}


def leftovers(run_dir: Path) -> list[Path]:
    """Temporary files of atomic writes and unjoined block files: none may outlive a stage."""
    return [p for p in run_dir.rglob("*") if p.name.endswith(".tmp") or ".block" in p.name]


def map_path(run_dir: Path, model: int, method: str, r: float, block: int | None = None) -> Path:
    """A kept map file (``maps.keep`` = ``means`` or ``all``), or one of its blocks."""
    return RunDir(run_dir).map(model, method, r, block)


def load_map(run_dir: Path, model: int, method: str, r: float) -> dict:
    """A kept map file as saved (``maps.keep`` = ``means`` or ``all``)."""
    return torch.load(map_path(run_dir, model, method, r), weights_only=True)


def block_files(run_dir: Path, method: str) -> list[dict]:
    """``method``'s block files as saved, in block order."""
    paths = sorted((Path(run_dir) / "blocks" / method).glob("block*.pt"))
    return [torch.load(p, weights_only=True) for p in paths]


def figure_means(run_dir: Path, model: int, method: str, r: float) -> torch.Tensor:
    """``model``'s mean maps of the figure images at ``r``, from the block files, by image: every
    image of the tiny run (4 images, ``evaluation.grid_images`` = 4)."""
    found = {}
    for f in block_files(run_dir, method):
        i = f["rs"].index(r)
        for j, image in enumerate(f["figure_images"]):
            found[image] = f["figure_maps"][model, i, j]
    return torch.stack([found[i] for i in sorted(found)])


def same_map(run_a: Path, run_b: Path, model: int, method: str, r: float) -> bool:
    """The two runs' mean maps of their figure images are equal (:func:`figure_means`)."""
    return torch.equal(figure_means(run_a, model, method, r), figure_means(run_b, model, method, r))


def rises(values: list[float]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def without_values(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("value", "stderr")}


def attribute_again(tiny_run: Path, d: Path, *overrides: str, twins: bool = False) -> list[dict]:
    """Attribute and evaluate on ``tiny_run``'s trained models (or twice model 0: ``twins``)
    with Simple-Grad and IG and extra ``--set`` overrides; the rows of the metrics table."""
    copy_trained(tiny_run, d, names=TRAINED[1:])  # not the config: this is another one
    if twins:
        shutil.copy2(d / "model_0.pt", d / "model_1.pt")
    args = [*TINY, "--set", 'attribution.methods=["grad", "ig"]']
    args += [a for o in overrides for a in ("--set", o)]
    assert run("run", "--out", d, "--quiet", "--stages", "attribute", "evaluate", *args) == 0
    assert not leftovers(d)
    return read_rows(d / "metrics.parquet")


def values(rows: list[dict], metric: str, *, r: float | None = None, method: str | None = None):
    return [
        row["value"]
        for row in rows
        if row["metric"] == metric
        and (r is None or row["r"] == r)
        and (method is None or row["method"] == method)
    ]


def given_models_run(tiny_run: Path, tmp_path: Path, setting: str, specs) -> Path:
    """Run every stage for ``specs`` with the tiny run's other settings; the run directory."""
    cfg = load_config(tiny_run / "config.toml")
    cfg = dataclasses.replace(cfg, name=setting, models=ModelsConfig(setting, tuple(specs)))
    path = tmp_path / f"{setting}.toml"
    path.write_text(to_toml(cfg))
    out = tmp_path / setting
    assert run("run", path, "--out", out, "--quiet") == 0
    assert not leftovers(out)
    return out


def state_dict_file(tiny_run: Path, part: int, path: Path) -> str:
    """A trained model of the tiny run as a plain state-dict file, as DR/DA specs take them."""
    saved = torch.load(tiny_run / f"model_{part}.pt", weights_only=True)
    torch.save(saved["state_dict"], path)
    return str(path.resolve())


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true", "OMP_NUM_THREADS": "1"}


class Killed(Exception):
    """Stands in for a kill: not a ValueError, so the CLI does not turn it into an exit code."""


# --- run directories and model factories for the tests of bad input and own models ----------


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


def truncate(path: Path, size: int) -> Path:
    path.write_bytes(path.read_bytes()[:size])
    return path


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tiny_factory(num_classes: int, in_channels: int) -> nn.Module:
    """A factory a user might write: a small CNN for the data's classes and channels."""

    model = ConvNet(in_channels=in_channels, num_classes=num_classes)
    model.cam_layer = "features.3"  # how a model names its Grad-CAM layer for the pipeline
    return model


def no_arguments() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))


def not_a_module(num_classes: int) -> str:
    return "model"


def crossed_rows(
    k: int,
    m: int,
    change: dict[float, float],
    *,
    model_sd: float = 0.03,
    noise: float = 0.01,
    fidelity: dict[float, float] | None = None,
    seed: int = 0,
    method: str = "grad",
    n: int | str = "",
    first: int = 0,
) -> list[dict]:
    """``metrics.csv`` rows of a designed crossed run: ``k`` models (numbered from ``first``),
    every pair, ``m`` images, r in ``change``. Per pair (a, b) and image i the unit-map distance
    (plain and debiased) is ``u_i (1 + change[r]) (1 + e_a + e_b) + noise``, with image levels
    ``u_i`` around 1, model effects ``e ~ N(0, model_sd)`` and fresh noise per cell; the raw
    distance is 10 times it and each model's map norm falls 20% by the largest r, so the raw
    distance falls 20% more than the unit one. Per model: the fidelity error ``fidelity[r]``
    (default ``r``) and the map norm."""
    rng = random.Random(seed)
    models = [first + a for a in range(k)]
    effect = {a: rng.gauss(0, model_sd) for a in models}
    level = [1 + rng.gauss(0, 0.1) for _ in range(m)]
    r_max = max(change)
    rows = []
    for r, c in change.items():
        base = {"setting": "DT", "n": n, "method": method, "r": r, "sigma": 3 * r, "stderr": ""}
        shrink = 1 - 0.2 * r / r_max if r_max else 1.0
        for a, b in itertools.combinations(models, 2):
            for i in range(m):
                u = level[i] * (1 + c) * (1 + effect[a] + effect[b]) + rng.gauss(0, noise)
                for metric, value in (("unit_distance", u), ("unit_distance_debiased", u),
                                      ("stability", 10 * u * shrink),
                                      ("stability_debiased", 10 * u * shrink)):  # fmt: skip
                    rows.append({**base, "metric": metric, "pair": f"{a}-{b}", "model": "",
                                 "image": i, "value": value})  # fmt: skip
        for a in models:
            for i in range(m):
                fid = (fidelity or {}).get(r, r)
                for metric, value in (
                    ("fidelity", fid),
                    ("fidelity_debiased", fid),
                    ("map_norm", 5 * shrink),
                    ("map_norm_debiased", 5 * shrink),
                ):
                    rows.append({**base, "metric": metric, "pair": "", "model": str(a),
                                 "image": i, "value": value})  # fmt: skip
    return rows

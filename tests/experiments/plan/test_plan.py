"""``smoothstab plan``: exact counts on a small config, map bytes against files really written.
The time estimate against a real run is a benchmark (``benchmarks/bench_plan.py``): a timed check
fails on a busy machine."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from helpers import TINY_SETTINGS
from smoothstab.experiments.cli import main
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.plan import counts as P
from smoothstab.experiments.plan.make import make_plan


def tiny(*extra: str):
    return load_config("quickstart", [*TINY_SETTINGS, *extra])


def test_training_runs_and_passes():
    """Every size trains ``parts`` models; with weight noise every image seen is a forward and
    backward pass per noise draw (steps and images: against the trainer, below)."""
    noisy = tiny("train.noise_std=0.01", "train.noise_draws=3", "train.part_size=[100, 400]")
    costs = P.training_costs(noisy)
    assert [(c.size, c.models) for c in costs] == [(100, 2), (400, 2)]
    assert all(c.passes == 3 * c.images_seen for c in costs)


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["train.drop_last=true"],
        ["train.part_size=[100, 400]", "train.batch_size=48", "train.epochs=3"],
        ["train.part_size=none", "train.keep=best", "train.val_size=37"],
    ],
)
def test_training_counts_are_the_trainers_batches(extra):
    """Steps and images per model are what :meth:`.Trainer.batches` cuts a part into."""
    from torch.utils.data import TensorDataset

    from smoothstab.experiments.models.distributed import DistInfo
    from smoothstab.experiments.models.trainer import Trainer

    cfg = tiny(*extra)
    costs = P.training_costs(cfg)
    assert [c.size for c in costs] == [s or (5000 - 37) // 2 for s in cfg.train.sizes]
    for c in costs:
        t = replace(cfg.train, part_size=c.size, num_classes=6, device="cpu", keep="last")
        dummy = TensorDataset(torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long))
        trainer = Trainer(t, range(c.size), 0, DistInfo(), Path("unused"), dummy, None)
        epochs = []
        for trainer.epoch in range(t.epochs):  # each epoch's own permutation and cuts
            epochs.append(trainer.batches())
        assert c.steps_per_epoch == len(epochs[0]) and c.steps == sum(map(len, epochs))
        assert c.images_seen == sum(len(b) for batches in epochs for b in batches)


@pytest.mark.parametrize("n", [1, 7, 31, 32, 33, 64, 95])
@pytest.mark.parametrize("world", [1, 2, 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_epoch_batches_counts_the_cuts(n, world, drop_last):
    """:func:`.epoch_batches` against cutting ``n`` indices into batches of 32: the last,
    partial one dropped with ``drop_last``, any batch smaller than the world dropped."""
    from smoothstab.experiments.models.trainer import epoch_batches

    cuts = [list(range(n))[i : i + 32] for i in range(0, n, 32)]
    if drop_last and len(cuts[-1]) < 32:
        cuts.pop()
    cuts = [c for c in cuts if len(c) >= world]
    assert epoch_batches(n, 32, drop_last, world) == (len(cuts), sum(map(len, cuts)))
    assert epoch_batches(n, 4, drop_last, world=5) == (0, 0)  # no batch fills the world


def test_dataset_sizes_are_the_loaders():
    from smoothstab.experiments.config.datasets import dataset_info
    from smoothstab.experiments.models.data import load_dataset

    for name in ("digits", "shapes"):
        info = dataset_info(name)
        sizes = [len(load_dataset(name, train=train)) for train in (True, False)]
        assert sizes == [info.train_size, info.test_size], name


def test_attribution_totals_are_per_image_counts_over_images_and_models():
    """Every (method, r) of the attribute stage, in its order; a map's count per image (checked
    against the engine below) times images and models; the other estimator's for IG only."""
    cfg = tiny()  # 2 models, 4 images
    grid = cfg.attribution.noise_grid()
    costs = P.attribution_costs(cfg)
    order = [(m, r) for m in cfg.attribution.methods for r in grid]
    assert [(c.method, c.r) for c in costs] == order
    for c in costs:
        assert c.total == c.per_image * 4 * 2
        if c.method == "ig":
            assert c.other_total == c.other_per_image * 4 * 2
        else:
            assert c.other_per_image is None and c.other_total is None


def test_given_checkpoints_train_nothing():
    cfg = load_config("paper/table1_dr")
    assert P.training_costs(cfg) == [] and Setting.of(cfg).n_models == 2
    costs = {(c.method, c.r): c for c in P.attribution_costs(cfg)}
    assert costs["ig", 0.15].total == 2 * 512 * 100 * 20  # the paper's 2,000 passes per map


@pytest.mark.parametrize(
    "extra",
    [
        [],  # 6 draws: the halves only
        ["attribution.n_samples=32"],  # default groups: 16
        ["attribution.n_samples=32", "attribution.groups=16", "attribution.antithetic=true"],
        ["attribution.tolerance=0.5", "attribution.min_samples=32", "attribution.max_samples=64"],
        ["attribution.ig_sampler=joint"],
        ["attribution.ig_sampler=joint", "attribution.ig_reference_steps=0"],
    ],
)
def test_map_files_are_what_plan_counts(tmp_path, extra):
    """Map files made the way the attribute stage makes them (its own smoothing of a random
    model on images of the run's shape, with the run's groups and tolerance) have the sizes
    ``plan`` counts, up to the zip format's alignment, and record the model evaluations it
    counts per image (at most those with a tolerance), for the other IG estimator too."""
    from smoothstab.experiments.config.datasets import dataset_info
    from smoothstab.experiments.models.architectures import build_model
    from smoothstab.experiments.models.recipe import map_identity
    from smoothstab.experiments.stages.attribute import attribute_blocks

    cfg = tiny(*extra, "maps.keep=all")
    a = cfg.attribution
    assert P.storage(cfg).map_files == 2 * 4 * 5
    costs = {(c.method, c.r): c for c in P.attribution_costs(cfg)}
    info = dataset_info(cfg.train.dataset)
    torch.manual_seed(0)
    model = build_model(cfg.train.model, num_classes=info.num_classes, in_channels=info.in_channels)
    x = torch.randn(a.n_images, info.in_channels, info.image_size, info.image_size)
    rs = [0.0, 0.2]
    for method in a.methods:
        maps = attribute_blocks(model.eval(), method, x, None, rs, 1.0, a, [0, 1],
                                keep=cfg.evaluation.debiased)  # fmt: skip
        for r, f in zip(rs, maps, strict=True):
            if r > 0:
                assert f.groups is None if a.n_groups == 2 else f.groups.shape[0] == a.n_groups
            ident = map_identity(cfg, 0, method, r, None, a.n_images)
            f = replace(f, **{k: tuple(v) if isinstance(v, list) else v for k, v in ident.items()})
            written = f.save(tmp_path / f"{method}{r}.pt").stat().st_size
            assert abs(P.map_file_bytes(cfg, method, r) - written) <= 64, (method, r)
            _assert_evals(f.evals, costs[method, r].per_image, r > 0 and a.tolerance is not None)
    other = replace(a, ig_sampler="joint" if a.ig_sampler == "nested" else "nested")
    for r, f in zip(rs, attribute_blocks(model.eval(), "ig", x, None, rs, 1.0, other, [0, 1],
                                         keep=False), strict=True):  # fmt: skip
        _assert_evals(f.evals, costs["ig", r].other_per_image, r > 0 and a.tolerance is not None)
    assert P.map_shape(cfg, "gradcam") == (1, 32, 32) and P.map_shape(cfg, "ig") == (3, 32, 32)


def _assert_evals(evals: torch.Tensor, counted: int, tolerance: bool) -> None:
    """A map's recorded evaluations per image: plan's count, or at most it with a tolerance
    (an image stops drawing once it meets it)."""
    if tolerance:
        assert (evals <= counted).all() and evals.min() > 0, (evals, counted)
    else:
        assert evals.tolist() == [counted] * len(evals)


def test_cli_counts_only(capsys):
    assert main(["plan", "quickstart", "--no-timing", "--set", "attribution.n_samples=8"]) == 0
    out = capsys.readouterr().out
    assert "steps/epoch" in out and "all models: 48,000 images seen" in out  # 6 x 800 x 10
    # 1 block of 24 images (image_batch) x 4 methods; kept maps: 6 models x 4 methods x 6 noise
    # levels (Table 1 at the grid's r = 0.144)
    assert "144 forward passes without gradients" in out  # 6 models x 24 images
    assert "block files      4 files" in out and '"all": 144 files' in out
    # 81,216 measures + per method 6 levels x (15 pairs x 5 floors + 2 disagreement totals)
    # + 6 models x 2 predictions at r = 0, x 24 images x 4 methods = 45,504 meaning rows
    assert "metrics.parquet  126,720 rows" in out and "time on this machine" not in out


def test_cli_bad_input_is_one_line(capsys):
    assert main(["plan", "quickstart", "--set", "attribution.n_samples=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("smoothstab plan: error: attribution.n_samples") and "\n" not in err
    assert main(["plan", "quickstart", "--no-timing", "--budget", "0"]) == 2


@pytest.mark.slow  # times real training steps
def test_cli_times_a_tiny_config_in_seconds(capsys):
    start = time.perf_counter()
    assert main(["plan", "quickstart", "--budget", "0.2", *_sets(TINY_SETTINGS)]) == 0
    assert time.perf_counter() - start < 30
    out = capsys.readouterr().out
    assert "an extrapolation" in out and "attribute" in out and "total" in out


def _sets(settings: list[str]) -> list[str]:
    return [a for s in settings for a in ("--set", s)]


# The tiny run with 16 groups of draws and a tolerance no map meets, so that every image draws
# max_samples, the most plan counts.
GROUPED = [
    *TINY_SETTINGS,
    "attribution.tolerance=1e-6",
    "attribution.min_samples=32",
    "attribution.max_samples=64",
    "attribution.groups=16",
]


@pytest.mark.slow
def test_plan_counts_what_a_run_evaluates_and_writes(tmp_path):
    """The model evaluations the run counts (``model_evals`` in the metrics table, per model,
    image, method and r), its rows and the bytes of the kept map files it writes are plan's,
    exactly; the block files' bytes up to the zip format's alignment (64 bytes a tensor); the
    metrics table's bytes from above, within 1.5x (plan writes random values, which compress less
    than real ones: 24,012 against 17,901 bytes here)."""
    from smoothstab.experiments.rundir.layout import RunDir
    from smoothstab.experiments.rundir.metrics_table import read_rows

    settings = [*GROUPED, "maps.keep=all"]
    cfg = load_config("quickstart", settings)
    assert cfg.attribution.n_groups == 16
    plan = make_plan(cfg, timing=False)
    out = tmp_path / "run"
    stages = ["--stages", "train", "attribute", "evaluate"]
    assert main(["run", "quickstart", "--out", str(out), "--quiet", *_sets(settings), *stages]) == 0
    every = read_rows(RunDir(out).metrics)
    assert len(every) == plan.storage.table_rows
    table = RunDir(out).metrics.stat().st_size
    assert table <= plan.storage.table_bytes <= 1.5 * table, (table, plan.storage.table_bytes)
    rows = [row for row in every if row["metric"] == "model_evals"]
    costs = {(c.method, c.r): c for c in plan.attribution}
    assert {(row["method"], row["r"]) for row in rows} == set(costs)
    for row in rows:
        assert row["value"] == costs[row["method"], row["r"]].per_image, row
    for key, c in costs.items():
        assert sum(row["value"] for row in rows if (row["method"], row["r"]) == key) == c.total
    files = sorted((out / "maps").rglob("*.pt"))
    assert len(files) == plan.storage.map_files
    assert sum(f.stat().st_size for f in files) == plan.storage.map_bytes
    blocks = sorted((out / "blocks").rglob("*.pt"))
    assert len(blocks) == plan.storage.block_files == 4 * 2
    written = sum(f.stat().st_size for f in blocks)
    assert abs(written - plan.storage.block_bytes) <= 3 * 64 * len(blocks)


def test_ft_counts_its_proxy_runs_and_replicas():
    """Setting FT trains the proxy's short runs (one per replica; one for SWAG) and compares
    its replicas, not the one given model."""
    ft = [
        "models.setting=FT",
        'models.specs=[{name="small_cnn"}]',
        "models.replicas=3",
        "models.epochs=2",
        "models.part_size=100",
    ]
    cfg = tiny(*ft)
    (c,) = P.training_costs(cfg)  # batch 32: 3 full batches and one of 4, kept
    assert (c.size, c.models, c.steps_per_epoch, c.steps, c.images_seen) == (100, 3, 4, 8, 200)
    (swag,) = P.training_costs(tiny(*ft, "models.proxy=swag"))
    assert swag.models == 1 and swag.steps == 8
    assert Setting.of(cfg).model_names() == ["small_cnn"] * 3
    costs = {(a.method, a.r): a for a in P.attribution_costs(cfg)}
    assert costs["grad", 0.2].total == 6 * 4 * 3  # samples x images x replicas


def test_an_empty_config_plans_with_the_defaults(tmp_path, capsys):
    """An empty TOML is the defaults, which must be a valid config: digits have 64 pixels, so
    an unset evaluation.topk (500) becomes a quarter of them; a set one is still checked."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert main(["plan", str(empty), "--no-timing"]) == 0, capsys.readouterr().err
    assert load_config(empty).evaluation.topk == 16
    assert main(["plan", str(empty), "--no-timing", "--set", "evaluation.topk=500"]) == 2
    assert "evaluation.topk: expected at most the 64 pixels" in capsys.readouterr().err


def test_the_paper_at_imagenet_scale_stores_under_a_gibibyte():
    """The ImageNet preset (8 ResNet-50s, 4 methods, 17 noise levels, 32 images) keeps its block
    files (rows and the figure maps) and everything else in under 1 GiB (its maps alone were
    122.9 GiB when every map was written); at 1,000 test images, under 2 GiB beyond the rows.
    Kept maps are the user's choice, and plan counts them too."""
    cfg = load_config("paper/imagenet_resnet50")
    s = P.storage(cfg)
    assert s.map_files == 0 and s.total < 2**30 and s.figure_images == 4
    assert s.alternatives["all"][1] > 100 * 2**30  # what keeping every map would take
    big = P.storage(load_config("paper/imagenet_resnet50", ["attribution.n_images=1000"]))
    rows = big.table_bytes + 16 * big.table_rows  # the table and the blocks' values and errors
    assert big.total - rows < 2 * 2**30
    # 12 pairs, 8 models; per r each pair's 5 chance floors and the 2 disagreement totals of the
    # largest size's 4 models; at r = 0 each model's prediction and correctness
    assert big.table_rows == 1000 * 4 * (17 * (12 * 7 + 8 * 6 + 12 * 5 + 2) + 8 * 2)


def test_plan_says_when_a_device_is_too_small(monkeypatch, capsys):
    """Where the config's device is here and what one rank holds exceeds its memory, plan says
    so and what to do."""
    from smoothstab.experiments.plan import text

    monkeypatch.setattr(text, "_device_bytes", lambda device: 2**20)
    assert main(["plan", "quickstart", "--no-timing", "--set", "attribution.pack=true"]) == 0
    out = capsys.readouterr().out
    assert "does not fit in cpu's 1.0 MiB: lower attribution.image_batch" in out
    assert "or set attribution.pack = false (one r at a time)" in out


def test_timing_targets_classes_the_model_has():
    """A folder of images says nothing of the classes (the plan counts ImageNet's 1000): the
    timed calls' targets are the model's own classes, so a 10-class model with more images
    than classes is timed (before: 'target: expected class indices in [0, 10), got 11', and
    `smoothstab compare` of two such checkpoints on 12 images stopped there)."""
    from smoothstab.experiments.config.tables import (
        AttributionConfig,
        ExperimentConfig,
        TrainConfig,
    )
    from smoothstab.experiments.plan.timing import time_attribution

    cfg = ExperimentConfig(
        train=TrainConfig(dataset="images", image_size=16),
        attribution=AttributionConfig(
            methods=["grad"], n_images=12, image_batch=12, n_samples=2, stability_r=[0.1],
            fidelity_r=[0.1], batch_size=24,
        ),
    )  # fmt: skip
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))
    seconds = time_attribution(cfg, model, torch.device("cpu"), budget=0.05)
    assert set(seconds) == {"grad"} and seconds["grad"] > 0

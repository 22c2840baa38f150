"""``smoothstab compare`` and the errors of a first try with your own checkpoints: a config built
from checkpoints, a model and a folder of images; ``plan`` validating and timing what ``run``
runs (a spec's CAM layer included); a too-large ``n_images`` naming the key and the folder's
size; the line before a long run; the ``images`` data set and its labels. The five-try scenario
end to end is the slow test at the bottom."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import ROOT
from smoothstab.experiments.cli import main
from smoothstab.experiments.config.compare import Images, compare_config, compare_table
from smoothstab.experiments.config.parse import ConfigError
from smoothstab.experiments.models import data
from smoothstab.experiments.models import images as images_set

MYNETS = """\
from torch import nn


def make_net(num_classes=10, in_channels=3):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )
"""


def user_files(tmp: Path, n_images: int = 10, size: int = 16, mode: str = "RGB") -> Path:
    """What the user has: ``mynets.py`` (a factory of an ``nn.Sequential``), two checkpoints of
    it and a folder of ``n_images`` images."""
    from PIL import Image

    (tmp / "mynets.py").write_text(MYNETS)
    exec(MYNETS, space := {})
    for seed in (1, 2):
        torch.manual_seed(seed)
        torch.save(space["make_net"]().state_dict(), tmp / f"net{seed}.pt")
    (tmp / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n_images):
        shape = (size, size, 3) if mode == "RGB" else (size, size)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
            tmp / "imgs" / f"img{i}.png"
        )
    return tmp


@pytest.fixture
def user(tmp_path, monkeypatch):
    """The user's files in the working directory, importable as the console script will
    import them (the module lookup rule is ``python:``'s own; here the path is put first)."""
    user_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CI", "true")
    yield tmp_path
    sys.modules.pop("mynets", None)


def images(root="imgs", count=10, size=(16, 16), grey=False, folders=False, labels=None):
    return Images(root, count, size, grey, folders, labels)


# --- the config compare builds -----------------------------------------------------------------


def test_checkpoints_become_specs_of_one_setting():
    table = compare_table(["a.pt", "b.pt"], model="python:m:f", images=images(), cam_layer="3")
    assert table["models"] == {
        "setting": "DR",
        "specs": [
            {"name": "python:m:f", "weights": "a.pt", "label": "a", "cam_layer": "3"},
            {"name": "python:m:f", "weights": "b.pt", "label": "b", "cam_layer": "3"},
        ],
    }
    mixed = compare_table(
        ["IMAGENET1K_V1", "timm:resnet18.a1_in1k", "hf:org/vit", "timm:hf-hub:me/net"],
        model="resnet18",
        images=images(),
    )
    assert mixed["models"]["setting"] == "DA"
    assert mixed["models"]["specs"] == [
        {"name": "resnet18", "weights": "IMAGENET1K_V1", "label": "IMAGENET1K_V1"},
        {"name": "timm:resnet18.a1_in1k", "label": "resnet18.a1_in1k", "weights": "pretrained"},
        {"name": "hf:org/vit", "label": "org/vit"},
        {"name": "timm:hf-hub:me/net", "label": "hf-hub:me/net"},
    ]
    same_stem = compare_table(["x/net.pt", "y/net.pt"], model="m", images=images())
    assert [s["label"] for s in same_stem["models"]["specs"]] == ["x/net.pt", "y/net.pt"]


def test_the_images_set_the_data_and_the_cpu_sized_attribution():
    cfg = compare_config(compare_table(["a.pt", "b.pt"], model="m", images=images()), [])
    assert (cfg.train.dataset, cfg.train.root, cfg.train.image_size) == ("images", "imgs", 16)
    a = cfg.attribution
    assert (a.n_images, a.image_batch, a.n_samples, a.ig_sampler) == (10, 10, 16, "joint")
    assert a.stability_r == a.fidelity_r == (0.0, 0.05, 0.1, 0.2) and a.target == "predicted"
    labelled = compare_table(["a", "b"], model="m", images=images(labels="l.csv", count=40))
    assert labelled["attribution"]["target"] == "label" and labelled["train"]["labels"] == "l.csv"
    assert labelled["attribution"]["n_images"] == 16  # the preset's, under the folder's 40
    folders = compare_table(["a", "b"], model="m", images=images(folders=True, size=(40, 30)))
    assert folders["attribution"]["target"] == "label"
    assert folders["train"]["image_size"] == 30  # the shorter side: nothing is cut away
    over = compare_config(
        compare_table(["a", "b"], model="m", images=images()), ["attribution.n_samples=32"]
    )
    assert over.attribution.n_samples == 32
    cifar = compare_config(compare_table(["a", "b"], model="m", dataset="cifar10"), [])
    assert cifar.train.dataset == "cifar10" and cifar.attribution.target == "label"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: compare_table(["a.pt", "b.pt"], images=images()), r"^--model: a\.pt is a weights"),
        (
            lambda: compare_table(["a.pt"], model="m", images=images()),
            r"^checkpoints: expected two",
        ),
        (lambda: compare_table(["a", "b"], model="m"), r"^--images: expected a folder of images"),
        (
            lambda: compare_config(
                compare_table(["a", "b"], model="m", images=images(grey=True)), []
            ),
            r"^train\.mean: the images in imgs are grey \(one channel\); give the normalisation",
        ),
    ],
)
def test_compare_refuses_in_one_line(call, message):
    with pytest.raises(ConfigError, match=message) as e:
        call()
    assert "\n" not in str(e.value)


def test_grey_images_take_the_given_normalisation():
    table = compare_table(["a", "b"], model="m", images=images(grey=True))
    cfg = compare_config(table, ["train.mean=[0.5]", "train.std=[0.25]"])
    assert (cfg.train.channels, cfg.train.mean, cfg.train.std) == (1, (0.5,), (0.25,))


def test_the_example_config_is_what_compare_starts_from():
    from smoothstab.experiments.config.load import load_config

    preset = load_config("own_checkpoints")
    built = compare_config(compare_table(["a", "b"], model="m", images=images(count=99)), [])
    assert built.attribution == preset.attribution  # 16 images of 99: the preset's own
    assert built.evaluation.debiased == preset.evaluation.debiased
    assert built.evaluation.topk == 16 * 16 // 4  # 500 fitted to a 16x16 image, as for digits
    assert preset.models.setting == "DR" and preset.train.dataset == "images"


# --- plan: what run runs ------------------------------------------------------------------------


def dr_config(tmp: Path, cam_layer: str = "3", n_images: int = 10) -> str:
    text = (
        'name = "mine"\n[train]\ndataset = "images"\nroot = "imgs"\nimage_size = 16\n'
        '[models]\nsetting = "DR"\nspecs = [\n'
        f'  {{name = "python:mynets:make_net", weights = "net1.pt", cam_layer = "{cam_layer}"}},\n'
        f'  {{name = "python:mynets:make_net", weights = "net2.pt", cam_layer = "{cam_layer}"}},\n'
        ']\n[attribution]\nmethods = ["grad", "gradcam"]\nstability_r = [0.0, 0.1]\n'
        f"fidelity_r = [0.0, 0.1]\nn_samples = 4\nn_images = {n_images}\nimage_batch = 5\n"
        'target = "predicted"\n[evaluation]\ntopk = 20\n'
    )
    (tmp / "mine.toml").write_text(text)
    return str(tmp / "mine.toml")


def test_plan_times_the_spec_cam_layer_as_run_does(user, capsys):
    """Try 3 of the first-try table: ``cam_layer`` set on both specs of an ``nn.Sequential``
    (an architecture with no known CAM layer); ``plan``'s timing builds the models as the run
    does, so it honours it. A mistyped layer fails in plan as it would in the run."""
    assert main(["plan", dr_config(user), "--budget", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "plan for mine: 2 models (DR)" in out and "gradcam" in out and "total" in out
    assert main(["plan", dr_config(user, cam_layer="33"), "--budget", "0.05"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "smoothstab plan: error: layer: expected a submodule name of Sequential, got '33'; "
        "nearest names: '3'"
    )


def test_plan_loads_the_given_weights_and_refuses_one_that_does_not_fit(user, capsys):
    torch.save({"0.weight": torch.zeros(1)}, user / "net2.pt")
    assert main(["plan", dr_config(user), "--budget", "0.05"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("smoothstab plan: error: weights: net2.pt does not fit Sequential: ")


def test_too_many_images_name_the_key_and_the_folder_size(user, capsys):
    """Try 2: ``n_images = 32`` of a 10-image folder is refused by ``plan`` (counts only too)
    and by the run's attribute stage, in the same words."""
    from smoothstab.experiments.config.load import load_config
    from smoothstab.experiments.models.recipe import load_test_images
    from smoothstab.experiments.rundir.layout import RunDir

    said = (
        "attribution.n_images: 32 images asked, imgs has 10; set attribution.n_images = 10 or fewer"
    )
    assert main(["plan", dr_config(user, n_images=32), "--no-timing"]) == 2
    assert capsys.readouterr().err.strip() == f"smoothstab plan: error: {said}"
    (user / "run").mkdir()
    with pytest.raises(ValueError) as e:
        load_test_images(load_config(dr_config(user, n_images=32)), RunDir(user / "run"))
    assert str(e.value) == said
    with pytest.raises(
        ConfigError,
        match=r"^attribution\.n_images: 1200 images asked, the "
        r"shapes test set has 1000; set attribution\.n_images = 1000 or fewer$",
    ):
        load_config(None, ["attribution.n_images=1200"])


def test_a_long_plan_names_the_keys_that_cut_it(user):
    """Try 4: a run over the threshold is one line with its estimate and the keys that cut it
    most, each costed by the plan (here the threshold is lowered so that the small config is
    over it; the shares come from its own counts and timings)."""
    from smoothstab.experiments.config.load import load_config
    from smoothstab.experiments.plan import budget
    from smoothstab.experiments.plan.make import make_plan

    more = [
        'attribution.methods=["grad", "ig", "gradcam"]',
        "attribution.n_samples=40",
        'attribution.ig_sampler="nested"',
        "attribution.ig_steps=8",
        "attribution.stability_r=[0, 0.05, 0.1, 0.2, 0.3, 0.4]",
    ]
    cfg = load_config(dr_config(user), more)
    plan = make_plan(cfg, timing=True, budget=0.05)
    assert budget.over_threshold(cfg, plan) is None or plan.timing.total_s > 600
    line = budget.over_threshold(cfg, plan, threshold=0.0)
    assert line.startswith("plan: about ") and ", over 0 s; each of these cuts it alone: " in line
    found = dict(budget.cuts(cfg, plan))
    levels = "'attribution.stability_r=[0, 0.1, 0.15, 0.4]' and fidelity_r alike"  # 0.15: table_r
    assert set(found) == {
        "attribution.n_samples=16",
        'attribution.ig_sampler="joint"',
        "attribution.n_images=8",
        levels,
    }
    assert list(found.values()) == sorted(found.values(), reverse=True)
    share = plan.timing.attribute_s / plan.timing.total_s  # no cut saves more than all of it
    assert all(0.05 <= s < share for s in found.values())
    for key in found:
        assert f"--set {key} (-{found[key]:.0%})" in line


def test_run_says_a_long_plan_before_it_starts(user, capsys, monkeypatch):
    from smoothstab.experiments.plan import budget

    monkeypatch.setattr(budget, "THRESHOLD_S", 0.0)
    argv = ["run", dr_config(user), "--out", str(user / "r"), "--stages", "train", "--quiet"]
    assert main(argv) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("model: ")]
    assert lines[0].startswith("plan: about ") and "over 0 s" in lines[0]  # before the stages
    assert main(argv) == 0  # resumed: the run directory has its config, no second plan
    assert "plan: about" not in capsys.readouterr().err


def test_progress_postfix_in_the_attribute_stage_prints_the_model_as_an_integer(user, capsys):
    """Try 4's ``model=0.0000``: the attribute stage's bar in a log names its image block as an
    integer (it counts blocks: ``block=1``, not ``block=1.0000``)."""
    monkey = ["run", dr_config(user), "--out", str(user / "r2"), "--stages", "train", "attribute"]
    os.environ.pop("CI", None)
    try:
        assert main(monkey) == 0
    finally:
        os.environ["CI"] = "true"
    err = capsys.readouterr().err
    assert re.search(r"block=\d+[\],]", err) and not re.search(r"block=\d+\.\d", err), err


# --- the images data set ------------------------------------------------------------------------


def test_a_flat_folder_has_no_labels_and_a_class_tree_has_its_folders(tmp_path):
    from PIL import Image

    info = data.dataset_info("images")
    for folder in ("flat", "tree/cat", "tree/dog"):
        (tmp_path / folder).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (20, 10), (i * 100, 0, 0)).save(tmp_path / folder / f"{i}.png")
    flat = data.load_dataset("images", root=tmp_path / "flat", train=False, info=info)
    assert len(flat) == 2 and flat.targets == [-1, -1] and flat[0][0].shape == (3, 224, 224)
    tree = data.load_dataset("images", root=tmp_path / "tree", train=False, info=info)
    assert tree.targets == [0, 0, 1, 1] and tree.classes == ["cat", "dog"]
    (tmp_path / "labels.csv").write_text("file,label\n0.png,3\n1.png,7\n")
    labelled = images_set.ImageFiles(tmp_path / "flat", info, tmp_path / "labels.csv")
    assert labelled.targets == [3, 7]
    assert images_set.describe_images(tmp_path / "flat") == (2, (20, 10), False, False)
    assert images_set.describe_images(tmp_path / "tree")[3] is True


@pytest.mark.parametrize(
    "text, message",
    [
        ("0.png,3\n", r"gives no label for 1\.png"),
        ("0.png,3\n1.png,x\n", r"line 2: expected file,label with a class index >= 0"),
        ("0.png,-1\n1.png,2\n", r"line 1: expected file,label"),
    ],
)
def test_a_bad_labels_file_is_one_line(tmp_path, text, message):
    from PIL import Image

    (tmp_path / "im").mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8)).save(tmp_path / "im" / f"{i}.png")
    (tmp_path / "l.csv").write_text(text)
    with pytest.raises(ValueError, match=r"^train\.labels: .*l\.csv " + message):
        images_set.ImageFiles(tmp_path / "im", data.dataset_info("images"), tmp_path / "l.csv")


def test_images_without_labels_cannot_explain_the_label(user):
    from smoothstab.experiments.config.load import load_config
    from smoothstab.experiments.models.recipe import load_test_images
    from smoothstab.experiments.rundir.layout import RunDir

    cfg = load_config(dr_config(user), ['attribution.target="label"'])
    (user / "run").mkdir()
    with pytest.raises(
        ValueError,
        match=r"^attribution\.target: 'label' explains each image's "
        r"label, and the images of imgs have none",
    ):
        load_test_images(cfg, RunDir(user / "run"))


# --- the five tries in one command ---------------------------------------------------------------


@pytest.mark.slow
def test_the_first_try_scenario_is_one_compare_command(tmp_path):
    """A ``python:`` factory in a module in the working directory, two checkpoints, a 10-image
    folder: ``smoothstab compare`` prints what it chose and its plan, then runs to a report."""
    user_files(tmp_path, size=32)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CI": "true"}
    script = Path(sys.executable).parent / "smoothstab"  # the console script, as a user types it
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "smoothstab"]
    argv = [*command, "compare", "net1.pt", "net2.pt", "--model", "python:mynets:make_net"]
    argv += ["--images", "imgs", "--cam-layer", "3"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("compare: 2 models (DR: python:mynets:make_net): net1, net2\n")
    assert "10 of the 10 images in imgs, resized to 32x32, RGB" in out
    assert "16 noise draws per map at r = 0, 0.05, 0.1, 0.2" in out
    assert "plan for compare: 2 models (DR)" in out and "  total " in out
    run = tmp_path / "runs" / "compare"
    assert (run / "report.html").is_file() and (run / "table1.csv").is_file()
    err = done.stderr.strip().splitlines()
    assert err[0] == (
        "model: python:mynets:make_net: importing mynets from the working directory "
        f"({tmp_path / 'mynets.py'})"
    )
    assert err[-1] == "compare: done -> runs/compare/report.html"
    frames = subprocess.run(
        [
            sys.executable,
            "-c",
            "import smoothstab as ss; r = ss.load_run('runs/compare'); "
            "print(len(r.table1), sorted(set(r.summary()['method'])))",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert frames.stdout.strip() == "4 ['grad', 'gradcam', 'gradcampp', 'ig']"


def test_compare_without_a_cam_layer_for_a_sequential_names_the_flag(user, capsys):
    argv = [
        "compare",
        "net1.pt",
        "net2.pt",
        "--model",
        "python:mynets:make_net",
        "--images",
        "imgs",
        "--out",
        str(user / "r"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after python:'s notice line
    assert err == (
        "smoothstab compare: error: cam_layer: no Grad-CAM layer known for torch.Sequential; "
        "name one (its last convolution is '2'): [[models.specs]] cam_layer = NAME in a config, "
        "--cam-layer NAME for compare, a cam_layer attribute on the model, or "
        "grad_cam(..., layer=NAME)"
    )
    assert not (user / "r").exists()  # refused by the plan, before the run directory


def test_plan_times_a_config_with_groups_of_draws(user, capsys):
    """The timed calls draw at least one unit per group the run keeps (the engine refuses
    fewer): plan, and so the check before a run, times a grouped config."""
    argv = ["plan", dr_config(user), "--set", "attribution.groups=4", "--budget", "0.05"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "  total " in capsys.readouterr().out
    tolerance = ["attribution.tolerance=0.1", "attribution.min_samples=4", "attribution.groups=4"]
    tolerance += ["attribution.n_samples=2", "attribution.max_samples=8"]
    argv = ["plan", dr_config(user), *(a for t in tolerance for a in ("--set", t)), "--budget"]
    assert main([*argv, "0.05"]) == 0, capsys.readouterr().err

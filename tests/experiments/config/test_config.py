"""Experiment configs: TOML tables to frozen dataclasses, ``--set`` overrides, the paper configs,
and the one-line errors (exit 2) the CLI gives for config problems. Nothing here trains or
attributes: every failure happens before a run directory is made."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest

import smoothstab as ss
from helpers import ROOT
from smoothstab.experiments.cli import main
from smoothstab.experiments.config.load import load_config, preset_names
from smoothstab.experiments.config.parse import ConfigError, apply_overrides, to_toml
from smoothstab.experiments.config.tables import ExperimentConfig, ModelsConfig, ModelSpec

PAPER_CONFIGS = sorted((ROOT / "smoothstab" / "configs" / "paper").glob("*.toml"))
QUICKSTART = load_config(None)


def run_cli(capsys, *args) -> tuple[int, str]:
    """Exit status and stderr of ``smoothstab ARGS``."""
    status = main([str(a) for a in args])
    return status, capsys.readouterr().err


def assert_one_line(err: str, *words: str) -> None:
    """A config problem is reported on one line that names what is wrong."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]


def round_trip(cfg: ExperimentConfig, tmp_path: Path) -> ExperimentConfig:
    path = tmp_path / "config.toml"
    path.write_text(to_toml(cfg))
    return load_config(path)


# --- the CLI's config errors: exit 2, one line, nothing written ----------------------------------


@pytest.mark.parametrize(
    "toml, words",
    [
        ("[attribution]\nn_sample = 5\n", ["attribution.n_sample", "unknown key"]),
        ("[atribution]\nn_samples = 5\n", ["atribution", "unknown key"]),
        ("[attribution]\nn_samples = 'many'\n", ["attribution.n_samples", "int"]),
        ("[models]\nsetting = 'XX'\n", ["models.setting"]),
        ("[attribution]\nmethods = ['grad', 'lime']\n", ["methods", "lime"]),
        ("[attribution\n", ["not valid TOML"]),
    ],
)
def test_bad_config_file(tmp_path, capsys, toml, words):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    out = tmp_path / "run"
    status, err = run_cli(capsys, "run", path, "--out", out, "--quiet")
    assert status == 2
    assert_one_line(err, *words)
    assert not out.exists()


@pytest.mark.parametrize(
    "override, words",
    [
        ("attribution.n_samples=abc", ["attribution.n_samples", "int", "abc"]),
        ("attribution.n_samples=2.5", ["attribution.n_samples"]),
        ("attribution.antithetic=1", ["attribution.antithetic", "bool"]),
        ("attribution.stability_r=0.1", ["attribution.stability_r"]),
        ("attribution.stability_r=[0,-0.1]", ["noise levels >= 0"]),
        ("attribution.ig_sampler=both", ["attribution.ig_sampler"]),
        ("attribution.ig_rule=simpson", ["ig_rule", "simpson"]),
        ("nosuch.key=1", ["nosuch", "unknown key"]),
        ("attribution.nosuch=1", ["attribution.nosuch", "unknown key"]),
        ("attribution.n_samples.x=1", ["n_samples has no sub-keys"]),
        ("attribution.n_samples", ["expected key=value"]),
        ("train.epochs=0", ["epochs"]),
        # Values the attribute stage could not use are refused before any training.
        ("attribution.n_samples=0", ["n_samples", ">= 1"]),
        ("attribution.image_batch=0", ["image_batch", ">= 1"]),
        ("attribution.ig_steps=0", ["ig_steps", ">= 1"]),
        ("attribution.methods=[]", ["methods"]),
        ("attribution.fidelity_r=[0, nan]", ["noise levels >= 0"]),
        ("evaluation.topk=0", ["topk", ">= 1"]),
        ("evaluation.topk=1025", ["evaluation.topk", "1024 pixels", "32x32"]),
        ("evaluation.fidelity_budget=-0.1", ["fidelity_budget"]),
        (["attribution.n_samples=5", "attribution.antithetic=true"], ["even", "5"]),
        ("attribution.n_samples=1", ["evaluation.debiased", "n_samples=1"]),
        ("train.parts=1", ["train.parts", "DT", "at least 2"]),
        (["attribution.n_samples=2", "attribution.antithetic=true"], ["evaluation.debiased"]),
    ],
)
def test_bad_override(tmp_path, capsys, override, words):
    out = tmp_path / "run"
    overrides = [override] if isinstance(override, str) else override
    sets = [arg for o in overrides for arg in ("--set", o)]
    status, err = run_cli(capsys, "run", "--out", out, "--quiet", *sets)
    assert status == 2
    assert_one_line(err, *words)
    assert not out.exists()


def test_missing_config_file_and_run_directory(tmp_path, capsys):
    status, err = run_cli(capsys, "run", tmp_path / "nothing.toml", "--out", tmp_path / "r")
    assert status == 2
    assert_one_line(err, "nothing.toml")
    # A stage subcommand needs a run directory with its saved config.
    for stage in ("attribute", "evaluate", "figures", "report", "bounds"):
        status, err = run_cli(capsys, stage, tmp_path)
        assert status == 2
        assert_one_line(err, "config.toml")


def test_unknown_stage(tmp_path, capsys):
    status, err = run_cli(capsys, "run", "--out", tmp_path / "r", "--stages", "train", "plot")
    assert status == 2
    assert_one_line(err, "--stages", "plot")


# --- one key form for every subcommand -----------------------------------------------------------


def subcommand(name: str, tmp_path: Path) -> list:
    """``smoothstab NAME`` up to its options, on a new output or a run directory."""
    if name in ("train", "run"):
        return [name, "--out", tmp_path / "out", "--quiet"]
    if name == "plan":
        return [name, "--no-timing"]
    if name == "config":
        return [name]
    (tmp_path / "config.toml").write_text(to_toml(QUICKSTART))  # a stage's run directory
    return [name, tmp_path, "--quiet"]


@pytest.mark.parametrize("name", ["train", "run", "plan", "config", "attribute", "evaluate"])
def test_every_subcommand_takes_the_full_key_form(tmp_path, capsys, name):
    # train.amp is taken (the error is the next key's); train.epochs=0 is refused by its value.
    sets = ["--set", "train.amp=bf16", "--set", "train.epochs=0"]
    status, err = run_cli(capsys, *subcommand(name, tmp_path), *sets)
    assert status == 2
    assert_one_line(err, f"smoothstab {name}: error: train.epochs: expected an integer >= 1")
    assert not (tmp_path / "out").exists()


def test_train_keeps_the_short_key_form(tmp_path, capsys):
    status, err = run_cli(capsys, *subcommand("train", tmp_path), "--set", "epochs=0")
    assert status == 2
    assert_one_line(err, "train: error: epochs: expected an integer >= 1")
    cfg = apply_overrides(QUICKSTART.train, ["amp=bf16", "train.lr=0.2"], prefix="train")
    assert (cfg.amp, cfg.lr) == ("bf16", 0.2)


@pytest.mark.parametrize(
    "name, key, message",
    [
        (
            "run",
            "attribution.n_sample",
            "attribution.n_sample: unknown key; did you mean attribution.n_samples?",
        ),
        ("plan", "atribution.n_samples", "atribution: unknown key; did you mean attribution?"),
        (
            "attribute",
            "evaluation.top_k",
            "evaluation.top_k: unknown key; did you mean evaluation.topk?",
        ),
        ("train", "train.epoch", "train.epoch: unknown key; did you mean train.epochs?"),
        ("train", "epoch", "epoch: unknown key; did you mean epochs?"),
        ("run", "train.colour", "train.colour: unknown key; expected one of amp, batch_size,"),
    ],
)
def test_unknown_key_names_the_closest(tmp_path, capsys, name, key, message):
    status, err = run_cli(capsys, *subcommand(name, tmp_path), "--set", f"{key}=1")
    assert status == 2
    assert_one_line(err, f"smoothstab {name}: error: {message}")


def test_unknown_key_in_a_file_names_the_closest(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[attribution]\nn_sample = 5\n")
    status, err = run_cli(capsys, "run", path, "--out", tmp_path / "out")
    assert status == 2
    assert_one_line(err, "attribution.n_sample: unknown key; did you mean attribution.n_samples?")


# --- overrides ------------------------------------------------------------------------------------


def test_overrides_are_typed_and_reach_nested_tables():
    cfg = apply_overrides(
        QUICKSTART,
        [
            "attribution.n_samples=7",
            "attribution.stability_r=[0, 1, 0.25]",  # ints are accepted for floats
            'attribution.methods=["grad", "ig"]',
            "train.dataset=shapes",  # a bare word is a string
            "attribution.ig_sampler=joint",
            "evaluation.debiased=false",
            "train.root=/data/x",
            "train.root=none",  # none clears an optional field
            "name=other",
        ],
    )
    assert cfg.attribution.n_samples == 7
    assert cfg.attribution.stability_r == (0.0, 1.0, 0.25)
    assert all(type(r) is float for r in cfg.attribution.stability_r)
    assert cfg.attribution.methods == ("grad", "ig")
    assert cfg.attribution.ig_sampler == "joint"
    assert cfg.evaluation.debiased is False
    assert cfg.train.dataset == "shapes"
    assert cfg.train.root is None
    assert cfg.name == "other"
    # Frozen: the quickstart itself is untouched.
    assert QUICKSTART == load_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.attribution.n_samples = 3


RENAMED_KEY = "attribution.ig_estimator is renamed attribution.ig_sampler; the old key goes in "


def test_the_old_ig_sampler_key_warns_and_sets_the_new_one(tmp_path):
    """``attribution.ig_estimator``, the old name of ``ig_sampler``, in a file and by --set."""
    path = tmp_path / "old.toml"
    path.write_text('[attribution]\nig_estimator = "joint"\n', encoding="utf-8")
    with pytest.warns(FutureWarning, match=RENAMED_KEY + "version 1.0"):
        from_file = load_config(path)
    with pytest.warns(FutureWarning, match=RENAMED_KEY + "version 1.0"):
        from_set = load_config(None, ["attribution.ig_estimator=joint"])
    assert from_file.attribution.ig_sampler == from_set.attribution.ig_sampler == "joint"
    path.write_text('[attribution]\nig_estimator = "joint"\nig_sampler = "nested"\n')
    with pytest.warns(FutureWarning), pytest.raises(ConfigError, match="give one"):
        load_config(path)


def test_code_reading_the_old_ig_sampler_name_gets_the_new_one():
    attr = dataclasses.replace(QUICKSTART.attribution, ig_sampler="nested")
    with pytest.warns(FutureWarning, match="AttributionConfig.ig_estimator is renamed ig_sampler"):
        assert attr.ig_estimator == "nested"
    with pytest.raises(AttributeError, match="has no attribute 'ig_estimatr'"):
        attr.ig_estimatr  # noqa: B018


@pytest.mark.parametrize("name", preset_names())
def test_the_presets_use_no_old_key(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        load_config(name)


def test_the_old_key_is_one_warning_line_from_the_cli(capsys):
    status, err = run_cli(capsys, "config", "--set", "attribution.ig_estimator=joint")
    assert status == 0
    assert err == "smoothstab config: warning: " + RENAMED_KEY + "version 1.0\n"


def test_one_noise_draw_without_debiasing():
    """Split-half debiasing needs two draws; without it one draw is allowed, in either order."""
    for overrides in (
        ["attribution.n_samples=1", "evaluation.debiased=false"],
        ["evaluation.debiased=false", "attribution.n_samples=1"],
    ):
        cfg = load_config(None, overrides)
        assert (cfg.attribution.n_samples, cfg.evaluation.debiased) == (1, False)


def test_debiasing_with_a_tolerance_counts_the_engines_first_round():
    """A tolerance's first round draws at least two units whatever min_samples is (the engine's
    rule, which the config asks), so a debiased tolerance run never lacks its two halves; a
    small n_samples, unused with a tolerance, does not stop it either."""
    tol = ["attribution.tolerance=0.1", "attribution.antithetic=true"]
    cfg = load_config(None, [*tol, "attribution.n_samples=2"])
    assert cfg.evaluation.debiased and cfg.attribution.min_samples == 16
    cfg = load_config(None, [*tol, "attribution.min_samples=2"])
    assert cfg.evaluation.debiased and cfg.attribution.sampling().first_units == 2


def test_settings_are_checked(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[models]\nsetting = 'DT'\nspecs = [{ name = 'small_cnn' }]\n")
    with pytest.raises(ConfigError, match="setting DT trains its models"):
        load_config(path)
    for setting in ("DR", "DA"):
        path.write_text(f"[models]\nsetting = '{setting}'\nspecs = [{{ name = 'small_cnn' }}]\n")
        with pytest.raises(ConfigError, match=f"setting {setting} needs at least 2 models"):
            load_config(path)
    path.write_text("[models]\nsetting = 'DR'\nspecs = [{ name = 'small_cnn', weight = 'x' }]\n")
    with pytest.raises(ConfigError, match="weight: unknown key"):
        load_config(path)


# --- the paper configs and the saved config -------------------------------------------------------


def test_quickstart_is_the_embedded_default():
    """No config: generated data, k >= 2 disjoint splits, all four methods, a sigma sweep; and
    ``make demo`` runs exactly ``smoothstab run``."""
    cfg = load_config(None)
    assert cfg == load_config("quickstart") and cfg.name == "quickstart"
    assert cfg.train.dataset in ("digits", "shapes") and cfg.train.root is None
    assert cfg.models.setting == "DT" and cfg.train.parts >= 2
    assert set(cfg.attribution.methods) == set(ss.METHODS)
    assert len(cfg.attribution.stability_r) >= 5 and len(cfg.attribution.fidelity_r) >= 5
    makefile = (ROOT / "Makefile").read_text().splitlines()
    demo = next(i for i, line in enumerate(makefile) if line.startswith("demo:"))
    assert makefile[demo + 1].strip() == "$(BIN)/smoothstab run"


def test_paper_configs_load():
    """Every paper config loads, in the setting its file name implies, with known methods."""
    assert len(PAPER_CONFIGS) >= 4
    for path in PAPER_CONFIGS:
        cfg = load_config(path)
        expected = {"table1_da": "DA", "table1_dr": "DR"}.get(path.stem, "DT")
        assert cfg.models.setting == expected, path.name
        assert cfg.name == path.stem
        assert set(cfg.attribution.methods) <= set(ss.METHODS)
        if expected != "DT":
            assert len(cfg.models.specs) >= 2 and all(s.weights for s in cfg.models.specs)


@pytest.mark.parametrize("source", ["quickstart", *(f"paper/{p.stem}" for p in PAPER_CONFIGS)])
def test_to_toml_round_trips(tmp_path, source):
    cfg = load_config(source)
    assert round_trip(cfg, tmp_path) == cfg


def test_presets_by_name_are_the_packaged_files(tmp_path, capsys):
    """``smoothstab run paper/imagenet_resnet50`` reads the TOML file shipped in the package;
    an unknown name is a one-line error listing the presets."""
    for path in PAPER_CONFIGS:
        assert load_config(f"paper/{path.stem}") == load_config(path)
    status, err = run_cli(capsys, "run", "paper/no_such_config", "--out", tmp_path / "r")
    assert status == 2
    assert_one_line(err, "paper/no_such_config", "paper/imagenet_resnet50", "quickstart")
    assert not (tmp_path / "r").exists()


def test_free_fields_are_marked_in_the_dataclasses():
    """Which fields change no result is field metadata, not a hand-kept list: devices, worker
    counts, chunk sizes, checkpoint cadence, data location and verbosity."""
    from smoothstab.experiments.config.parse import free_keys

    assert free_keys(ExperimentConfig) == {
        "quiet",
        "train.quiet",
        "train.device",
        "train.num_workers",
        "train.eval_batch_size",
        "train.checkpoint_every",
        "train.root",
        "train.labels",  # where the labels file is, as train.root says where the images are
        "attribution.device",
        "attribution.batch_size",
        "sanity.enabled",  # turning the check on later leaves every earlier stage's files valid
        "sanity.labels",  # likewise: the train stage adds the twin, the sanity stage its rows
        "models.code_dir",  # where a python: model's module is, like train.root for the data
        "models.trust_remote_code",  # whether an hf: folder may run its code, not what it computes
        "evaluation.band",  # the figures' bands only: no table, verdict or advice reads it
    }


def test_to_toml_round_trips_awkward_values(tmp_path):
    """Small floats, quotes and backslashes in strings, optional fields set and unset, specs."""
    cfg = apply_overrides(
        QUICKSTART,
        [
            "train.lr=1e-05",
            "train.weight_decay=0",
            "train.part_size=123",
            'train.root="a \\"quoted\\" name with \\\\ and ü"',
            "attribution.fidelity_r=[0, 0.000123, 1e-7]",
        ],
    )
    assert cfg.train.root == 'a "quoted" name with \\ and ü'
    assert round_trip(cfg, tmp_path) == cfg
    specs = (ModelSpec("small_cnn", "/w/a b.pt", "A"), ModelSpec("resnet18_cifar", None, ""))
    da = dataclasses.replace(cfg, models=ModelsConfig(setting="DA", specs=specs))
    assert round_trip(da, tmp_path) == da


def test_sanity_table_is_off_by_default_and_checked_at_load():
    """``[sanity]``: off in every preset, its keys checked when the config loads (a bad mode,
    a negative seed, a repeated layer, an unknown key, an image too small for SSIM)."""
    from smoothstab.experiments.config.load import preset_names
    from smoothstab.experiments.config.tables import SanityConfig

    for name in preset_names():
        assert load_config(name).sanity == SanityConfig(), name
    cfg = load_config(None, ["sanity.enabled=true", 'sanity.layers=["features.0", "fc"]'])
    assert cfg.sanity.layers == ("features.0", "fc") and cfg.sanity.mode == "cascading"
    assert load_config(None, ["sanity.mode=independent"]).sanity.mode == "independent"
    bad = {
        "sanity.mode=shuffled": "'cascading', 'independent'",
        "sanity.init_seed=-1": ">= 0",
        'sanity.layers=["fc", "fc"]': "distinct",
        "sanity.seed=1": "unknown key",
    }
    for override, words in bad.items():
        with pytest.raises(ConfigError, match=words):
            load_config(None, [override])
    with pytest.raises(ConfigError, match="11x11"):
        load_config(None, ["train.dataset=digits", "evaluation.topk=16", "sanity.enabled=true"])


# --- every key documented once: `smoothstab config` and the documentation's page of keys -------


def test_every_key_has_its_type_default_and_meaning():
    """Each field of each config dataclass is a key with the docstring under it; a field added
    without one is an error, not a blank row."""
    from smoothstab.experiments.config.keys import REQUIRED, SPECS, config_keys

    keys = {k.name: k for k in config_keys()}
    expected = set()
    for section in ("train", "models", "attribution", "evaluation", "maps", "sanity"):
        table = getattr(ExperimentConfig(), section)
        expected |= {f"{section}.{f.name}" for f in dataclasses.fields(table)}
    expected |= {"name", "quiet"} | {f"{SPECS}[].{f.name}" for f in dataclasses.fields(ModelSpec)}
    assert set(keys) == expected
    assert all(len(k.help) > 10 for k in keys.values())
    assert keys["attribution.n_samples"].default == 100
    assert keys["attribution.tolerance"].type == "float | None"
    assert keys[f"{SPECS}[].name"].default is REQUIRED
    assert keys["train.device"].free and not keys["train.lr"].free

    @dataclasses.dataclass(frozen=True)
    class Undocumented:
        size: int = 1
        """Documented."""
        seed: int = 0

    from smoothstab.experiments.config.keys import _keys

    with pytest.raises(TypeError, match="Undocumented.seed: a config key without a docstring"):
        _keys(Undocumented, Undocumented(), "")


@pytest.mark.parametrize("source", ["quickstart", "hub_resnet50_ft", "paper/table1_da"])
def test_config_command_prints_the_config_as_commented_toml(capsys, source):
    """``smoothstab config PRESET`` is the resolved config as TOML that reads back to the same
    config, every key with its meaning in a comment; --set values show with the default."""
    import tomllib

    from smoothstab.experiments.config.parse import dataclass_from_dict

    assert main(["config", source, "--set", "attribution.n_samples=40"]) == 0
    out = capsys.readouterr().out
    cfg = load_config(source, ["attribution.n_samples=40"])
    assert dataclass_from_dict(ExperimentConfig, tomllib.loads(out)) == cfg
    assert "# n_samples: int; default 100\n" in out and "\nn_samples = 40\n" in out
    assert "#   Noise draws per smoothed map" in out
    assert out.splitlines().count("[[models.specs]]") == len(cfg.models.specs)
    assert max(map(len, out.splitlines()[1:])) <= 100


def test_keys_markdown_has_a_row_per_key():
    from smoothstab.experiments.config.keys import _cell, config_keys, keys_markdown

    text = keys_markdown()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(config_keys())
    assert "| `n_samples` | `int` | `100` | Noise draws per smoothed map" in text
    assert "| `tolerance` | `float | None` | `none` |" in text  # a code span keeps its pipe
    assert "`||se|| / ||map||`" in text
    assert _cell("a | b `c | d` e | f") == "a \\| b `c | d` e \\| f"  # outside code: escaped

"""One object per setting (:mod:`smoothstab.experiments.config.setting`) answers every question the
stages, ``plan`` and the config's checks ask about it; no other module branches on the setting's
name. The package is parsed with :mod:`ast`, as ``test_layering`` does for imports."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from helpers import ROOT, TINY_SETTINGS
from smoothstab.experiments.config import tables
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.config.parse import ConfigError
from smoothstab.experiments.config.setting import SETTINGS, Setting
from smoothstab.experiments.config.tables import ModelsConfig

HOME = ROOT / "smoothstab" / "experiments" / "config" / "setting.py"
NAMES = set(SETTINGS)


def _mentions_setting(node: ast.AST) -> bool:
    """``x.setting``, a name ``setting``, or a setting's name as a literal (alone or in a
    tuple, list or set)."""
    if isinstance(node, ast.Attribute | ast.Name):
        return (node.attr if isinstance(node, ast.Attribute) else node.id) == "setting"
    if isinstance(node, ast.Constant):
        return node.value in NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_mentions_setting(e) for e in node.elts)
    return False


def setting_branches(source: str) -> list[int]:
    """Lines that compare with the setting or its names, or look something up by the setting
    (``SETTINGS[cfg.models.setting]``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            if any(_mentions_setting(x) for x in (node.left, *node.comparators)):
                lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and _mentions_setting(node.slice):
            if not (isinstance(node.value, ast.Name) and node.value.id == "Literal"):  # a type
                lines.append(node.lineno)
        elif isinstance(node, ast.match_case) and _mentions_setting(
            getattr(node.pattern, "value", None) or ast.Constant(None)
        ):
            lines.append(node.pattern.lineno)
    return lines


def test_no_module_but_the_settings_own_branches_on_the_setting():
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "smoothstab").rglob("*.py"))
        if path != HOME
        for line in setting_branches(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "branch on the setting outside setting.py (ask Setting.of(cfg)): " + (
        ", ".join(found)
    )


@pytest.mark.parametrize(
    "code",
    [
        'if cfg.models.setting == "DT": pass',
        'dt = m.setting != "FT"',
        'x = setting in ("DR", "DA")',
        'y = "DA" == name',
        "t = SETTINGS[cfg.models.setting]",
        'match name:\n    case "FT": pass',
    ],
)
def test_the_checker_finds_each_kind_of_branch(code):
    assert setting_branches(code) == [code.count("\n") + 1]  # the branch's line


def test_the_checker_lets_passing_through_be():
    code = 'row = {"setting": cfg.models.setting}\nsay(f"setting {cfg.models.setting}")\n'
    code += 'setting: Literal["DT", "DR", "DA", "FT"] = "DT"\n'
    assert setting_branches(code) == []


def test_the_config_offers_exactly_the_settings_there_are():
    hints = typing.get_type_hints(ModelsConfig)
    assert set(typing.get_args(hints["setting"])) == NAMES
    assert {cls.name for cls in SETTINGS.values()} == NAMES
    assert tuple(SETTINGS) == tables.SETTINGS  # the key's choices are the classes


def tiny(*extra: str):
    return load_config("quickstart", [*TINY_SETTINGS, *extra])


SPECS = '[{name="small_cnn", label="a"}, {name="resnet18", label="b"}, {name="vgg11"}]'
FT = ["models.setting=FT", 'models.specs=[{name="small_cnn"}]', "models.replicas=3"]


def given(tmp_path: Path, setting: str, specs: str = SPECS, *extra: str):
    """The tiny quickstart with given checkpoints (a file: ``--set`` checks each key alone)."""
    path = tmp_path / "given.toml"
    text = (ROOT / "smoothstab" / "configs" / "quickstart.toml").read_text(encoding="utf-8")
    path.write_text(f'{text}\n[models]\nsetting = "{setting}"\nspecs = {specs}\n')
    return load_config(path, [*TINY_SETTINGS, *extra])


def test_dt_compares_models_of_one_training_set_size():
    s = Setting.of(tiny("train.parts=3", "train.part_size=[100, 400]"))
    assert (s.name, s.n_models, s.sizes) == ("DT", 6, (100, 400))
    assert s.model_names() == ["small_cnn"] * 6
    assert s.pairs() == [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)]
    assert s.first_of_largest() == 3 and s.pair_labels() == {}
    assert s.sgd_bounds and not s.no_bounds and not s.every_pair_drawn
    assert s.training(5000, 6)[1] == 3


def test_given_checkpoints_are_compared_pair_by_pair(tmp_path):
    dr = Setting.of(given(tmp_path, "DR"))
    assert (dr.name, dr.n_models, dr.sizes, dr.first_of_largest()) == ("DR", 3, (None,), 0)
    assert dr.model_names() == ["small_cnn", "resnet18", "vgg11"]
    assert dr.pairs() == [(0, 1), (0, 2), (1, 2)]
    assert dr.pair_labels() == {
        "0-1": "a vs b",
        "0-2": "a vs vgg11 (model 2)",
        "1-2": "b vs vgg11 (model 2)",
    }
    assert dr.training(5000, 6) is None and not dr.sgd_bounds and not dr.no_bounds
    da = Setting.of(given(tmp_path, "DA"))
    assert da.pair_labels() == dr.pair_labels() and da.every_pair_drawn
    assert "different architectures" in da.no_bounds


def test_ft_compares_replicas_of_its_one_model():
    s = Setting.of(tiny(*FT, "models.part_size=100"))
    assert (s.name, s.n_models, s.model_names()) == ("FT", 3, ["small_cnn"] * 3)
    assert s.pairs() == [(0, 1), (0, 2), (1, 2)] and s.pair_labels() == {}
    t, runs = s.training(None, 6)
    assert (t.model, t.part_size, t.parts, runs) == ("small_cnn", 100, 3, 3)
    with pytest.raises(ValueError, match="models.part_size"):
        Setting.of(tiny(*FT)).training(None, 6)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["train.parts=1"], "train.parts: setting DT compares models trained on disjoint"),
        (["evaluation.grid_pairs=['0-2']"], "expected models 0..1"),
        (["train.part_size=[100, 400]", "evaluation.grid_pairs=['1-2']"], "different training"),
        ([*FT[:1], f"models.specs={SPECS}"], "FT starts from exactly one model, got 3"),
        ([*FT, "models.proxy=noisy_sgd", "models.noise_std=0"], "models.noise_std"),
        ([*FT, "evaluation.grid_pairs=['0-3']"], "expected models 0..2"),
    ],
)
def test_each_setting_checks_its_config(extra, message):
    with pytest.raises(ConfigError, match=message):
        tiny(*extra)


def test_given_checkpoints_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="models.specs: setting DR needs at least 2 models"):
        given(tmp_path, "DR", '[{name="small_cnn"}]')
    with pytest.raises(ConfigError, match="models.specs: setting DT trains its models"):
        given(tmp_path, "DT")
    with pytest.raises(ConfigError, match="expected models 0..2"):
        given(tmp_path, "DA", SPECS, "evaluation.grid_pairs=['1-3']")

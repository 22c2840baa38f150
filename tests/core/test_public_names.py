"""Public names: one spelling per method, and renamed names that still work with a warning."""

import re
import subprocess
import sys

import pytest
import torch

import smoothstab as ss


def test_cam_names_share_one_spelling():
    """Every public name of a CAM is ``grad_cam`` or ``grad_cam_pp`` plus a suffix."""
    cams = [n for n in ss.__all__ if "cam" in n.lower()]
    assert cams and all(re.fullmatch(r"grad_cam(_pp)?(_weights)?", n) for n in cams), cams


@pytest.mark.parametrize(
    "old, new",
    [("gradcam_weights", "grad_cam_weights"), ("gradcampp_weights", "grad_cam_pp_weights")],
)
def test_renamed_weightings_warn_and_are_the_new_functions(old, new):
    with pytest.warns(FutureWarning, match=f"renamed {new}; the old name goes in version 1.0"):
        fn = getattr(ss, old)
    assert fn is getattr(ss, new)
    act, g = torch.rand(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert torch.equal(fn(act, g), getattr(ss, new)(act, g))


def test_the_old_smoothed_ig_keyword_warns_and_chooses_the_sampler():
    model, x = torch.nn.Linear(6, 3), torch.randn(2, 6)
    with pytest.warns(
        FutureWarning, match=r"renamed smoothed_ig\(sampler=\); the old name goes in"
    ):
        old = ss.smoothed_ig(0.5, 4, estimator="joint", seed=0)
    new = ss.smoothed_ig(0.5, 4, sampler="joint", seed=0)
    nested = ss.smoothed_ig(0.5, 4, sampler="nested", seed=0)
    assert torch.equal(old(model, x, 0), new(model, x, 0))
    assert not torch.equal(old(model, x, 0), nested(model, x, 0))


@pytest.mark.parametrize("sampler", ["nested", "joint"])
def test_smoothed_ig_refuses_the_old_and_the_new_keyword_together(sampler):
    with pytest.raises(TypeError, match=r"^smoothed_ig: got sampler=.* give sampler only$"):
        ss.smoothed_ig(0.5, 4, sampler=sampler, estimator="joint")


def test_smoothed_ig_is_nested_by_default():
    model, x = torch.nn.Linear(6, 3), torch.randn(2, 6)
    default = ss.smoothed_ig(0.5, 4, seed=0)
    nested = ss.smoothed_ig(0.5, 4, sampler="nested", seed=0)
    assert torch.equal(default(model, x, 0), nested(model, x, 0))


@pytest.mark.parametrize(
    "old, new", [("samples", "draws_per_image"), ("per_unit", "draws_per_unit")]
)
def test_renamed_counts_of_smooth_stats_warn_and_read_the_new_ones(old, new):
    st = ss.smooth(ss.grad, 0.5, 6, antithetic=True, seed=0).stats(
        torch.nn.Linear(4, 2), torch.randn(3, 4), 0
    )
    with pytest.warns(FutureWarning, match=f"SmoothStats.{old} is renamed SmoothStats.{new}; the"):
        value = getattr(st, old)
    assert torch.equal(torch.as_tensor(value), torch.as_tensor(getattr(st, new)))
    assert torch.equal(st.draws_per_image, torch.full((3,), 6))  # 3 antithetic pairs each
    assert st.draws_per_unit == 2


def test_importing_the_package_warns_nothing():
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import smoothstab"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_unknown_names_are_still_attribute_errors():
    with pytest.raises(AttributeError, match="has no attribute 'grad_cam_ppp'"):
        ss.grad_cam_ppp  # noqa: B018


def test_the_old_name_of_summary_per_pair_or_model_warns_and_reads_the_same():
    from smoothstab.experiments.analysis.summary import Summary

    row = dict(method="grad", metric="stability", r=0.1, n="", model="")
    summary = Summary.from_rows(
        [{**row, "pair": "0-1", "value": 0.2}, {**row, "pair": "0-2", "value": 0.4}]
    )
    with pytest.warns(FutureWarning, match="Summary.per_unit is renamed Summary.per_pair_or_model"):
        old = summary.per_unit("grad", "stability", 0.1)
    assert old == summary.per_pair_or_model("grad", "stability", 0.1) == {"0-1": 0.2, "0-2": 0.4}
    with pytest.warns(FutureWarning, match="Summary.units is renamed Summary.by_pair_or_model"):
        assert summary.units is summary.by_pair_or_model


def test_trainer_evaluate_is_renamed_loss_and_accuracy():
    """A model's test loss and accuracy, named apart from the evaluate stage."""
    from smoothstab.experiments.models import trainer

    with pytest.warns(FutureWarning, match="trainer.evaluate is renamed loss_and_accuracy; the"):
        fn = trainer.evaluate
    assert fn is trainer.loss_and_accuracy
    with pytest.raises(AttributeError, match="has no attribute 'evaluat'"):
        trainer.evaluat  # noqa: B018

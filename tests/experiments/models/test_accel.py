"""Attribution speed options against float32: bf16 autocast and channels_last.

The bounds checked, as the largest relative L2 distance of a map to the float32 map over 4 images
of a small CNN: with bf16 autocast, gradient maps (Simple-Grad, IG; nested and joint) within 15%
(11.5% measured unsmoothed, 4-7% smoothed with 4-8 draws: the input gradient goes back through
every bf16 convolution, and averaging over draws averages the rounding out), Grad-CAM and
Grad-CAM++ within 3% (0.2-1.2% measured: one bf16 layer's activations and gradients); with
channels_last, every map within 1e-5 (5e-7 measured: other kernels, float32 arithmetic).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from smoothstab.experiments.config.parse import ConfigError, dataclass_from_dict
from smoothstab.experiments.config.tables import AttributionConfig
from smoothstab.experiments.models import accel
from smoothstab.experiments.models.architectures import build_model
from smoothstab.experiments.stages.attribute import attribute_blocks

METHODS = ("grad", "ig", "gradcam", "gradcampp")
CAMS = ("gradcam", "gradcampp")


def bound(option: str, method: str, r: float) -> float:
    if option == "channels_last":
        return 1e-5
    if method in CAMS:
        return 0.03
    return 0.15


def maps(attr: AttributionConfig, method: str, r: float) -> torch.Tensor:
    torch.manual_seed(0)
    model = accel.prepare_model(build_model("small_cnn", num_classes=10).eval(), attr)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.arange(4)
    with accel.autocast(attr.amp, torch.device("cpu")):
        (out,) = attribute_blocks(model, method, x, y, [r], 1.0, attr, [0], True)
    return accel.in_dtype(out, attr)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).max())


@pytest.mark.parametrize("option", ["bf16", "channels_last"])
@pytest.mark.parametrize("sampler", ["nested", "joint"])
def test_maps_within_the_stated_bound_of_float32(option, sampler):
    base = AttributionConfig(n_samples=8, ig_steps=4, batch_size=64, ig_sampler=sampler)
    fast = replace(base, amp="bf16") if option == "bf16" else replace(base, channels_last=True)
    for method in METHODS if sampler == "nested" else ("ig",):
        for r in (0.0, 0.1):
            ref, out = maps(base, method, r), maps(fast, method, r)
            assert out.mean.dtype == torch.float32 and out.mean.is_contiguous()
            assert out.halves is None or out.halves.dtype == torch.float32
            err = relative_error(out.mean, ref.mean)
            assert err < bound(option, method, r), (method, r, err)
            if option == "bf16":
                assert err > 0  # it really ran in bf16


def test_amp_needs_float32():
    with pytest.raises(ConfigError, match="attribution.amp"):
        dataclass_from_dict(
            AttributionConfig, {"amp": "bf16", "dtype": "float64"}, where="attribution"
        )
    with pytest.raises(ConfigError, match="attribution.amp"):
        dataclass_from_dict(AttributionConfig, {"amp": "fp16"}, where="attribution")


def test_no_option_is_the_same_object():
    out = maps(AttributionConfig(n_samples=4, ig_steps=2), "grad", 0.1)
    assert accel.in_dtype(out, AttributionConfig()) is out


def test_the_attribute_stage_applies_the_options(tmp_path):
    """Through the stage: the same kept map files (dtype, shapes) as without options, maps
    within bounds."""
    from smoothstab.experiments.config.load import load_config
    from smoothstab.experiments.rundir.layout import RunDir
    from smoothstab.experiments.stages.attribute import run_attribution

    sets = [
        "attribution.methods=['grad', 'gradcam']",
        "attribution.n_images=2",
        "attribution.n_samples=4",
        "attribution.stability_r=[0]",
        "attribution.fidelity_r=[0]",
        "attribution.table_r=0.1",
        "maps.keep=all",
        "train.parts=2",  # the two models below
        "train.part_size=800",
    ]
    files = {}
    for option in ("none", "amp=bf16", "channels_last=true"):
        extra = [] if option == "none" else [f"attribution.{option}"]
        cfg = load_config("quickstart", [*sets, *extra, "quiet=true"])
        torch.manual_seed(0)
        models = [build_model("small_cnn", num_classes=10).eval() for _ in range(2)]
        run = RunDir(tmp_path / option.split("=")[0])
        run_attribution(cfg, run, models)
        files[option] = {
            (k, m, r): run.load_map(k, m, r) for k in (0, 1) for m in ("grad", "gradcam")
            for r in (0.0, 0.1)
        }  # fmt: skip
    for option in ("amp=bf16", "channels_last=true"):
        for key, ref in files["none"].items():
            out = files[option][key]
            assert out.mean.dtype == ref.mean.dtype and out.mean.shape == ref.mean.shape
            option_name = "bf16" if option.startswith("amp") else "channels_last"
            assert relative_error(out.mean, ref.mean) < bound(option_name, key[1], key[2])

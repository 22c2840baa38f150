"""The block file and the kept map file on their own: what they store, and what they refuse."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import smoothstab as ss
from smoothstab.experiments.io.files import DamagedFile
from smoothstab.experiments.rundir.blockfile import BlockFile
from smoothstab.experiments.rundir.mapfile import MapFile, stored
from smoothstab.views import abs_sum


def test_stored_maps_in_their_view_and_precision():
    """``abs``: the 2-D sum over channels of |map| as ``[B, 1, H, W]`` (also for a block without
    figure images: no image at all); ``float16``: within its rounding."""
    maps = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(stored(maps, "float32", "abs"), abs_sum(maps)[:, None])
    assert stored(maps[:0], "float32", "abs").shape == (0, 1, 8, 8)
    assert stored(maps[:0], "float16", "map").shape == (0, 3, 8, 8)
    half = stored(maps, "float16", "map")
    assert half.dtype == torch.float16 and half.is_contiguous()
    torch.testing.assert_close(half.float(), maps, rtol=2**-10, atol=0)


def block(**changes) -> BlockFile:
    fields = dict(
        method="grad", block=1, images=(2, 4), rs=(0.0, 0.1), sigmas=(0.0, 0.3), models=2,
        seeds=((5, 5), (5, 5)), run="0123456789abcdef", metric=("stability", "ssim"),
        r=(0.0, 0.1), pair=("0-1", "0-1"), model=("", ""), has_stderr=(True, False),
        values=torch.tensor([[0.5, 0.25], [1.0, 0.75]], dtype=torch.float64),
        stderr=torch.tensor([[0.1, 0.2], [float("nan")] * 2], dtype=torch.float64),
        figure_images=(3,), figure_maps=torch.ones(2, 2, 1, 1, 8, 8), view="map",
        precision="float32", extreme_images=(2, 3),
        extreme_maps=torch.arange(2 * 2 * 2 * 64, dtype=torch.float16).reshape(2, 2, 2, 8, 8),
    )  # fmt: skip
    return BlockFile(**{**fields, **changes})


def test_a_block_file_round_trips_and_checks_what_it_is(tmp_path):
    f = block()
    path = f.save(tmp_path / "block00001.pt")
    again = BlockFile.load(path, f.identity())
    assert again.groups() == f.groups() and torch.equal(again.values, f.values)
    assert torch.equal(again.figure_map(1, 0.1, 3), torch.ones(1, 8, 8))
    mean, spread = again.extreme(0.1, 3)  # level 1, image 3 (the second extreme)
    assert torch.equal(mean, f.extreme_maps[1, 1, 0]) and torch.equal(
        spread, f.extreme_maps[1, 1, 1]
    )
    with pytest.raises(DamagedFile, match=r"holds images = \[2, 4\], not \[0, 2\]"):
        BlockFile.load(path, {**f.identity(), "images": [0, 2]})
    with pytest.raises(DamagedFile, match=r"holds precision = 'float32', not 'float16'"):
        BlockFile.load(path, {**f.identity(), "precision": "float16"})
    torch.save({"mean": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(DamagedFile, match="not a block file of this version"):
        BlockFile.load(tmp_path / "other.pt")
    bad = block(values=torch.zeros(3, 2, dtype=torch.float64)).save(tmp_path / "bad.pt")
    with pytest.raises(DamagedFile, match="its rows do not line up"):
        BlockFile.load(bad)
    a_map = MapFile(torch.zeros(1), 0.0, 0.0).save(tmp_path / "map.pt")
    with pytest.raises(DamagedFile, match="not a block file"):
        BlockFile.load(a_map)


def test_mean_maps_kept_alone(tmp_path):
    """``keep = "means"``: the mean maps, their cost and error, no halves, variances or groups,
    in the view and precision asked; the record says which."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    x = torch.randn(2, 3, 8, 8)
    net(x)
    st = ss.smooth(ss.grad, 0.3, 8, seed=0, groups=4).stats(net.eval(), x)
    f = MapFile.from_stats(st, 0.1, 0.3, keep=True)
    means = dataclasses.replace(f.means_only("float16", "abs"), method="grad", model=0)
    assert means.halves is None and means.groups is None and means.unit_var is None
    assert means.mean.shape == (2, 1, 8, 8) and means.mean.dtype == torch.float16
    assert torch.equal(means.rel_se, f.rel_se) and torch.equal(means.evals, f.evals)
    loaded = MapFile.load(means.save(tmp_path / "m.pt"), means.identity())
    assert (loaded.view, loaded.precision) == ("abs", "float16")
    assert torch.equal(loaded.estimate(), means.mean)  # no halves: distances take the means

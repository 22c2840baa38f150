"""smoothstab.plot: what the figures show (their data and colour scales), beyond drawing."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from smoothstab import plot  # noqa: E402
from smoothstab.views import abs_sum  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def maps(seed: int, b: int = 3) -> torch.Tensor:
    return torch.randn(
        b, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )


def images_of(fig, rows: int, cols: int):
    grid = np.array(fig.axes).reshape(rows, cols)
    return [[ax.get_images()[-1] for ax in row] for row in grid]


def test_a_row_shares_one_scale_so_a_stronger_map_is_brighter():
    """Model B's maps are twice model A's: on the shared scale every B panel holds twice the
    values under the same limits; normalised each on its own they would look identical."""
    a = maps(0)
    fig = plot.map_grid({"A": a, "B": 2 * a})
    shown = images_of(fig, 3, 2)
    for row in range(3):
        ia, ib = shown[row]
        assert ia.get_clim() == ib.get_clim()
        np.testing.assert_allclose(ia.get_array(), abs_sum(a)[row].numpy())
        np.testing.assert_allclose(ib.get_array(), 2 * abs_sum(a)[row].numpy())
        pooled = torch.cat([abs_sum(a)[row].flatten(), 2 * abs_sum(a)[row].flatten()])
        assert ia.get_clim() == (0, pytest.approx(float(np.percentile(pooled.numpy(), 99.5))))
    each = images_of(plot.map_grid({"A": a, "B": 2 * a}, scale="each"), 3, 2)
    for ia, ib in each:
        assert ib.get_clim()[1] == pytest.approx(2 * ia.get_clim()[1])  # the difference hidden


def test_scale_all_is_one_scale_for_the_grid_and_images_come_first():
    a, x = maps(1), torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    fig = plot.map_grid({"r=0": a, "r=0.2": 0.5 * a}, images=x, scale="all", image_range=(0, 1))
    shown = images_of(fig, 3, 3)
    clims = {im.get_clim() for row in shown for im in row[1:]}
    assert len(clims) == 1
    np.testing.assert_allclose(shown[0][0].get_array(), x[0].permute(1, 2, 0).numpy())
    assert [ax.get_title() for ax in fig.axes[:3]] == ["input", "r=0", "r=0.2"]


def test_overlay_draws_the_magnitude_over_the_image():
    m, x = maps(3, 1)[0], torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(4))
    shown = plot.overlay(m, x, alpha=0.5, vmax=2.0)
    np.testing.assert_allclose(shown.get_array(), abs_sum(m[None])[0].numpy())
    assert shown.get_clim() == (0, 2.0) and shown.get_alpha() == 0.5
    base = shown.axes.get_images()[0]
    np.testing.assert_allclose(base.get_array(), ((x[0] - x.min()) / (x.max() - x.min())).numpy())


def test_an_all_zero_map_is_drawn_black():
    fig = plot.map_grid({"zero": torch.zeros(1, 1, 4, 4)})
    (im,) = images_of(fig, 1, 1)[0]
    assert im.get_clim() == (0, 1.0) and not im.get_array().any()


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: plot.map_grid({}), "maps: expected at least one"),
        (lambda: plot.map_grid({"a": maps(0), "b": maps(0, 2)}), "maps: expected one shape"),
        (lambda: plot.map_grid({"a": maps(0)}, scale="global"), "scale: expected one of"),
        (
            lambda: plot.map_grid({"a": maps(0)}, images=torch.rand(2, 3, 8, 8)),
            "images: expected 3",
        ),
        (lambda: plot.map_grid({"a": maps(0)}, percentile=0), "percentile"),
        (lambda: plot.overlay(maps(0)[0], torch.rand(1, 4, 4)), "image: expected the map's"),
    ],
)
def test_bad_arguments_are_one_line(call, message):
    with pytest.raises(ValueError, match=message) as e:
        call()
    assert "\n" not in str(e.value)

"""Pictures of saliency maps: a map over its image, and grids of maps on one colour scale.

A stability study compares the maps of several models (or noise levels) for the same image, so a
grid here puts every map of a row on **one colour scale** by default: a map twice as strong is
drawn twice as bright, and a smoothed map that shrank looks fainter. Normalising each map on its
own (``scale="each"``, what most visualisers do) hides exactly those differences.

What is drawn is the magnitude view of each map, ``sum_c |m_c|`` (:func:`~smoothstab.views.abs_sum`;
CAMs have one channel), from 0 up to ``vmax``: the ``percentile``-th percentile (default 99.5) of
the magnitudes pooled over the maps that share the scale, so that a few extreme pixels do not
darken everything else; brighter values are clipped to the top of the colour map.

matplotlib is imported inside the functions, so ``import smoothstab`` (and this module) load
none of it; the functions return matplotlib objects and never write files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from smoothstab.checks import check_choice, check_input, check_number
from smoothstab.views import abs_sum
from smoothstab.views import percentile as _percentile

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

SCALES = ("row", "all", "each")


def magnitude(maps: torch.Tensor) -> torch.Tensor:
    """The view that is drawn: ``[B, C, H, W] -> [B, H, W]`` float64, ``sum_c |m_c|``."""
    return abs_sum(maps).double()


def limit(views: Sequence[torch.Tensor], q: float = 99.5) -> float:
    """The top of a shared colour scale: the ``q``-th percentile of all values of ``views``
    pooled (1.0 where they are all 0, so that an all-zero map is drawn black)."""
    check_number(q, "percentile", low=0, high=100, open_low=True)
    pooled = torch.cat([v.detach().flatten().double().cpu() for v in views])[None]
    top = float(_percentile(pooled, q)[0])
    return top if top > 0 else 1.0


def _image(image: torch.Tensor, image_range: tuple[float, float] | None) -> torch.Tensor:
    """``[C, H, W]`` as something ``imshow`` shows: ``[H, W]`` or ``[H, W, 3]`` in [0, 1]."""
    check_input(image[None], name="images", rank=4)
    img = image.detach().double().cpu()
    if image_range is None:  # min-max per image: right for normalised inputs of any range
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else torch.zeros_like(img)
    else:
        lo, hi = image_range
        img = ((img - lo) / (hi - lo)).clamp(0, 1)
    return img[0] if img.shape[0] == 1 else img[:3].permute(1, 2, 0)


def overlay(
    map_: torch.Tensor,
    image: torch.Tensor | None = None,
    ax: Axes | None = None,
    *,
    alpha: float = 0.6,
    cmap: str = "inferno",
    vmax: float | None = None,
    percentile: float = 99.5,
    image_range: tuple[float, float] | None = None,
) -> AxesImage:
    """One map ``[C, H, W]`` drawn over its ``image`` ``[C', H, W]`` (grey, or RGB from its
    first three channels); returns the map's ``AxesImage`` (``.get_array()`` is the magnitude
    view, ``.get_clim()`` its scale ``(0, vmax)``; ``vmax`` defaults to the map's own
    percentile). ``image_range``: the images' value range (e.g. ``(0, 1)``); ``None`` scales
    each image by its own minimum and maximum."""
    import matplotlib.pyplot as plt

    check_number(alpha, "alpha", low=0, high=1)
    view = magnitude(map_[None])[0]
    top = limit([view], percentile) if vmax is None else check_number(vmax, "vmax", low=0)
    if ax is None:
        _, ax = plt.subplots(figsize=(2.5, 2.5))
    if image is not None:
        if image.shape[-2:] != map_.shape[-2:]:
            raise ValueError(
                f"image: expected the map's height and width {tuple(map_.shape[-2:])}, got "
                f"{tuple(image.shape[-2:])}"
            )
        ax.imshow(_image(image, image_range).numpy(), cmap="gray")
    shown = ax.imshow(
        view.numpy(), cmap=cmap, vmin=0, vmax=top, alpha=alpha if image is not None else 1
    )
    ax.axis("off")
    return shown


def map_grid(
    maps: Mapping[str, torch.Tensor],
    images: torch.Tensor | None = None,
    *,
    scale: str = "row",
    cmap: str = "inferno",
    percentile: float = 99.5,
    image_range: tuple[float, float] | None = None,
    row_titles: Sequence[str] | None = None,
    panel_size: float = 1.6,
) -> Figure:
    """A grid: a row per image, a column per entry of ``maps`` (``{title: [B, C, H, W]}``, e.g.
    one per model or per noise level, all for the same ``B`` images), and the images themselves
    in a first column when given (``[B, C, H, W]``).

    ``scale``: ``row`` (default) puts each row's maps on one colour scale, so the maps of one
    image are comparable; ``all`` one scale for the whole grid; ``each`` every map on its own
    (hides differences of strength). Each map panel's ``AxesImage`` carries its magnitude view
    and its scale (``get_array``, ``get_clim``); the figure is returned, not saved.
    """
    import matplotlib.pyplot as plt

    check_choice(scale, "scale", SCALES)
    if not maps:
        raise ValueError("maps: expected at least one {title: [B, C, H, W]} entry, got none")
    views = {title: magnitude(m) for title, m in maps.items()}
    shapes = {tuple(v.shape) for v in views.values()}
    if len(shapes) > 1:
        raise ValueError(
            f"maps: expected one shape [B, H, W] for all entries, got {sorted(shapes)}"
        )
    b = next(iter(views.values())).shape[0]
    if images is not None and (images.shape[0] != b or images.shape[-2:] != next(iter(shapes))[1:]):
        raise ValueError(
            f"images: expected {b} images of the maps' size {next(iter(shapes))[1:]}, got "
            f"{tuple(images.shape)}"
        )
    if row_titles is not None and len(row_titles) != b:
        raise ValueError(f"row_titles: expected {b} titles, got {len(row_titles)}")
    every = limit(list(views.values()), percentile) if scale == "all" else None
    first = 0 if images is None else 1
    cols = first + len(views)
    fig, axes = plt.subplots(b, cols, figsize=(panel_size * cols, panel_size * b), squeeze=False)
    for row in range(b):
        row_top = limit([v[row] for v in views.values()], percentile) if scale == "row" else every
        if images is not None:
            axes[row][0].imshow(_image(images[row], image_range).numpy(), cmap="gray")
        for j, view in enumerate(views.values(), start=first):
            top = row_top if scale != "each" else limit([view[row]], percentile)
            axes[row][j].imshow(view[row].numpy(), cmap=cmap, vmin=0, vmax=top)
        if row_titles is not None:
            axes[row][0].set_ylabel(row_titles[row], fontsize=8)
    titles = (["input"] if images is not None else []) + list(views)
    for j, title in enumerate(titles):
        axes[0][j].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    return fig

"""Pictures of saliency maps: a map over its image, and grids of maps on shared colour scales.

A stability study compares the maps of several models (or noise levels) for the same image, so a
grid here puts the maps of one method in a row on **one colour scale** by default: a map twice
as strong is drawn twice as bright, and a smoothed map that shrank looks fainter. Normalising
each map on its own (``scale="each"``, what most visualisers do) hides exactly those
differences. Maps of different methods are in different units (a Grad-CAM beside a gradient
map would be saturated or black on one scale), so each method gets its own scale
(``scale="method"``, the default; ``methods=`` says which column is which method, else maps
with a CAM's one channel and maps with the input's channels are told apart).

Two views: ``magnitude`` (default), ``sum_c |m_c|`` (:func:`~smoothstab.views.abs_sum`; CAMs
have one channel) from 0 up to ``vmax``; and ``signed``, ``sum_c m_c`` on a diverging colour map
from ``-vmax`` to ``vmax`` (where a gradient pushes the score up or down). ``vmax`` is the
``percentile``-th percentile (default 99.5) of the view's absolute values pooled over the maps
that share the scale, so that a few extreme pixels do not darken everything else; brighter
values are clipped to the ends of the colour map. ``colorbar=True`` draws each scale's bar.

matplotlib is imported inside the functions, so ``import smoothstab`` (and this module) load
none of it; the functions return matplotlib objects and never write files. ``smoothstab.plot``
is found on first use after ``import smoothstab``.
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

SCALES = ("method", "row", "all", "each")
VIEWS = ("magnitude", "signed")
CMAPS = {"magnitude": "inferno", "signed": "RdBu_r"}


def magnitude(maps: torch.Tensor) -> torch.Tensor:
    """The magnitude view: ``[B, C, H, W] -> [B, H, W]`` float64, ``sum_c |m_c|``."""
    return abs_sum(maps).double()


def signed(maps: torch.Tensor) -> torch.Tensor:
    """The signed view: ``[B, C, H, W] -> [B, H, W]`` float64, ``sum_c m_c``."""
    check_input(maps, name="maps", rank=4)
    return maps.detach().sum(dim=1).double()


def _view(maps: torch.Tensor, view: str) -> torch.Tensor:
    return magnitude(maps) if check_choice(view, "view", VIEWS) == "magnitude" else signed(maps)


def _limits(view: str, top: float) -> dict[str, float]:
    return {"vmin": 0, "vmax": top} if view == "magnitude" else {"vmin": -top, "vmax": top}


def limit(views: Sequence[torch.Tensor], q: float = 99.5) -> float:
    """The top of a shared colour scale: the ``q``-th percentile of the absolute values of
    ``views`` pooled (1.0 where they are all 0, so that an all-zero map is drawn black)."""
    check_number(q, "percentile", low=0, high=100, open_low=True)
    pooled = torch.cat([v.detach().flatten().double().cpu().abs() for v in views])[None]
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
    cmap: str | None = None,
    vmax: float | None = None,
    percentile: float = 99.5,
    image_range: tuple[float, float] | None = None,
    view: str = "magnitude",
    colorbar: bool = False,
) -> AxesImage:
    """One map ``[C, H, W]`` drawn over its ``image`` ``[C', H, W]`` (grey, or RGB from its
    first three channels); returns the map's ``AxesImage`` (``.get_array()`` is the view,
    ``.get_clim()`` its scale, ``(0, vmax)`` or for the signed view ``(-vmax, vmax)``; ``vmax``
    defaults to the map's own percentile). ``view``: ``magnitude`` or ``signed``; ``cmap``:
    ``inferno`` for magnitudes, ``RdBu_r`` for signed views unless given; ``colorbar``: draw
    the scale's bar. ``image_range``: the images' value range (e.g. ``(0, 1)``); ``None``
    scales each image by its own minimum and maximum."""
    import matplotlib.pyplot as plt

    check_number(alpha, "alpha", low=0, high=1)
    shown_view = _view(map_[None], view)[0]
    top = limit([shown_view], percentile) if vmax is None else check_number(vmax, "vmax", low=0)
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
        shown_view.numpy(),
        cmap=cmap or CMAPS[view],
        alpha=alpha if image is not None else 1,
        **_limits(view, top),
    )
    ax.axis("off")
    if colorbar:
        ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    return shown


def _groups(titles: list[str], maps: Mapping[str, torch.Tensor], methods: object) -> list[object]:
    """The method of each column: ``methods`` (a sequence in the columns' order, or a mapping
    from title), else the map's channel count (a CAM's one channel apart from gradients')."""
    if methods is None:
        return [maps[t].shape[1] for t in titles]
    if isinstance(methods, Mapping):
        missing = [t for t in titles if t not in methods]
        if missing:
            raise ValueError(f"methods: expected a method for every title, missing {missing[0]!r}")
        return [methods[t] for t in titles]
    if isinstance(methods, str) or len(methods) != len(titles):
        raise ValueError(
            f"methods: expected one method per entry of maps ({len(titles)}), got {methods!r}"
        )
    return list(methods)


def map_grid(
    maps: Mapping[str, torch.Tensor],
    images: torch.Tensor | None = None,
    *,
    scale: str = "method",
    methods: Sequence[str] | Mapping[str, str] | None = None,
    view: str = "magnitude",
    cmap: str | None = None,
    colorbar: bool = False,
    percentile: float = 99.5,
    image_range: tuple[float, float] | None = None,
    row_titles: Sequence[str] | None = None,
    panel_size: float = 1.6,
) -> Figure:
    """A grid: a row per image, a column per entry of ``maps`` (``{title: [B, C, H, W]}``, e.g.
    one per model, noise level or method, all for the same ``B`` images), and the images
    themselves in a first column when given (``[B, C, H, W]``).

    ``scale``: ``method`` (default) puts each row's maps of one method on one colour scale, so
    the maps of one image and method are comparable and a CAM beside a gradient map has its
    own; ``row`` one scale per row whatever the methods; ``all`` one scale for the whole grid;
    ``each`` every map on its own (hides differences of strength). ``methods``: the method of
    each column (a sequence in the order of ``maps``, or ``{title: method}``); ``None`` tells
    maps apart by their channel count only (a CAM's one channel, a gradient's C), so give it
    to keep, say, Integrated-Gradients apart from Simple-Grad. ``view``: ``magnitude``
    (``sum_c |m|``, from 0) or ``signed`` (``sum_c m``, a diverging map around 0); ``cmap``:
    ``inferno`` for magnitudes, ``RdBu_r`` for signed views unless given; ``colorbar``: a bar
    beside the last map of each scale. Each map panel's ``AxesImage`` carries its view and its
    scale (``get_array``, ``get_clim``); the figure is returned, not saved.
    """
    import matplotlib.pyplot as plt

    check_choice(scale, "scale", SCALES)
    check_choice(view, "view", VIEWS)
    if not maps:
        raise ValueError("maps: expected at least one {title: [B, C, H, W]} entry, got none")
    views = {title: _view(m, view) for title, m in maps.items()}
    shapes = {tuple(v.shape) for v in views.values()}
    if len(shapes) > 1:
        raise ValueError(
            f"maps: expected one shape [B, H, W] for all entries, got {sorted(shapes)}"
        )
    titles = list(views)
    group = _groups(titles, maps, methods) if scale == "method" else [0] * len(titles)
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
    last_of = {g: max(j for j, h in enumerate(group) if h == g) for g in group}
    for row in range(b):
        tops = {}  # this row's scale per group of columns
        for g in dict.fromkeys(group):
            members = [views[t][row] for t, h in zip(titles, group, strict=True) if h == g]
            tops[g] = every if scale == "all" else limit(members, percentile)
        if images is not None:
            axes[row][0].imshow(_image(images[row], image_range).numpy(), cmap="gray")
        for j, (title, g) in enumerate(zip(titles, group, strict=True)):
            top = tops[g] if scale != "each" else limit([views[title][row]], percentile)
            ax = axes[row][first + j]
            shown = ax.imshow(
                views[title][row].numpy(), cmap=cmap or CMAPS[view], **_limits(view, top)
            )
            if colorbar and (scale == "each" or (scale != "all" and j == last_of[g])):
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        if row_titles is not None:
            axes[row][0].set_ylabel(row_titles[row], fontsize=9)
    if colorbar and scale == "all":
        fig.colorbar(shown, ax=axes[:, first:].ravel().tolist(), fraction=0.046, pad=0.04)
    header = (["input"] if images is not None else []) + titles
    for j, title in enumerate(header):
        axes[0][j].set_title(title, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    return fig

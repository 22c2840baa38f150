"""How the result records print: a line for ``repr`` and a small table for notebooks
(``_repr_html_``) saying what the tensors hold -- shapes, means over images, intervals -- instead
of dumping them. :class:`~smoothstab.SmoothStats`, :class:`~smoothstab.DistanceEstimate` and the
agreement :class:`~smoothstab.metrics.Estimate` use these."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import torch

MAX_ROWS = 8  # images listed one per row in a notebook table; more are summarised


def number(x: float) -> str:
    """A number in 4 significant digits (``inf``, ``nan`` as such)."""
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def over_images(values: torch.Tensor) -> str:
    """``[B]`` values in words: the value itself for one image, else the mean and the range."""
    v = values.detach().double().cpu().flatten()
    if v.numel() == 1:
        return number(float(v[0]))
    finite = v[torch.isfinite(v)]
    if finite.numel() == 0:
        return f"not finite for all {v.numel()} images"
    spread = f" ({number(float(finite.min()))} to {number(float(finite.max()))})"
    left = v.numel() - finite.numel()
    note = f", {left} not finite" if left else ""
    return f"mean {number(float(finite.mean()))}{spread}{note}"


def shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], note: str) -> str:
    """A small HTML table with a caption and a line under it (every text escaped)."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f"<div><strong>{esc(title)}</strong><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table><small>{esc(note)}</small></div>"
    )


def image_rows(columns: Sequence[torch.Tensor | None]) -> list[list[str]]:
    """One row per image (``[B]`` columns; ``None``: blank), or with more than
    :data:`MAX_ROWS` images the mean, minimum and maximum over images."""
    cols = [None if c is None else c.detach().double().cpu().flatten() for c in columns]
    b = next(c.numel() for c in cols if c is not None)
    if b <= MAX_ROWS:
        return [
            [str(i)] + ["" if c is None else number(float(c[i])) for c in cols] for i in range(b)
        ]
    rows = []
    for label, fn in (("mean", torch.mean), ("min", torch.min), ("max", torch.max)):
        rows.append([f"{label} of {b}"] + ["" if c is None else number(float(fn(c))) for c in cols])
    return rows


def _dof(est: object) -> str:
    dof = getattr(est, "dof", None)
    return "normal quantile (halves)" if dof is None else f"Student t, {dof} degrees of freedom"


def estimate_line(est: object, what: str) -> str:
    """An estimate's line: ``value`` (debiased) and ``plain`` over the images, with the mean
    of its 95% intervals' ends."""
    lo, hi = est.interval(0.95)
    images = est.value.numel()
    return (
        f"{images} image{'s' * (images != 1)}: {what} {over_images(est.value)} debiased, "
        f"{over_images(est.plain)} plain; 95% interval {number(float(lo.double().mean()))} to "
        f"{number(float(hi.double().mean()))}{' (means over images)' * (images != 1)}; "
        f"{_dof(est)}"
    )


def estimate_table(est: object, title: str) -> str:
    lo, hi = est.interval(0.95)
    rows = image_rows([est.value, est.plain, est.stderr, lo, hi])
    header = ["image", "debiased", "plain", "standard error", "95% low", "95% high"]
    return table(title, header, rows, f"intervals: {_dof(est)}")

"""A generated RGB image set: the class is a shape or a texture at a random place.

Each 32x32 image has a random dark background colour with pixel noise, and one object of
random size (half-width 5 to 9 pixels) at a random position, in a random bright colour. Classes:

=====  ==========  =========================================
label  name        object (in the object's own square [-1, 1]²)
=====  ==========  =========================================
0      square      filled square
1      disk        filled disk
2      triangle    filled triangle, apex up
3      plus        plus sign
4      ring        annulus
5      stripes_h   square of horizontal stripes
6      stripes_v   square of vertical stripes
7      checker     square of a 4x4 checkerboard
8      stripes_d   square of diagonal stripes
9      x_cross     diagonal cross
=====  ==========  =========================================

Everything is drawn from ``numpy.random.default_rng`` seeded with ``(seed, part)``, so the same
seed gives the same images on every machine; train and test use different streams.
"""

from __future__ import annotations

import numpy as np

from smoothstab.experiments.config.datasets import SHAPE_CLASSES as CLASSES

SIZE = 32


def _masks(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean masks ``[N, H, W]`` of class ``label`` from object coordinates ``u, v``."""
    box = np.maximum(abs(u), abs(v)) <= 1
    rad = np.hypot(u, v)
    name = CLASSES[label]
    if name == "square":
        return box
    if name == "disk":
        return rad <= 1
    if name == "triangle":
        return (v <= 1) & (abs(u) <= (v + 1) / 2)  # image rows grow downwards: apex at v = -1
    if name == "plus":
        return box & ((abs(u) <= 0.3) | (abs(v) <= 0.3))
    if name == "ring":
        return (rad <= 1) & (rad >= 0.55)
    if name == "stripes_h":
        return box & (np.floor((v + 1) * 2.5) % 2 == 0)
    if name == "stripes_v":
        return box & (np.floor((u + 1) * 2.5) % 2 == 0)
    if name == "checker":
        return box & ((np.floor((u + 1) * 2) + np.floor((v + 1) * 2)) % 2 == 0)
    if name == "stripes_d":
        return box & (np.floor((u + v + 2) * 1.75) % 2 == 0)
    return box & ((abs(u - v) <= 0.35) | (abs(u + v) <= 0.35))  # x_cross


def generate_shapes(n: int, seed: int, part: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``[n, 3, 32, 32]`` (float32 in [0, 1]) and labels ``[n]`` (int64), balanced
    over the classes in a random order; ``part`` selects an independent stream (0 train, 1 test).
    """
    rng = np.random.default_rng([seed, part])
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    half = rng.uniform(5, 9, size=n)
    cy, cx = (rng.uniform(half + 1, SIZE - 1 - half) for _ in range(2))
    grid = np.arange(SIZE, dtype=np.float64) + 0.5
    u = (grid[None, None, :] - cx[:, None, None]) / half[:, None, None]
    v = (grid[None, :, None] - cy[:, None, None]) / half[:, None, None]
    mask = np.zeros((n, SIZE, SIZE), dtype=bool)
    for label in range(len(CLASSES)):
        rows = labels == label
        mask[rows] = _masks(label, u[rows], v[rows])
    # dark background, bright object, random hues: the object's edges always have one polarity
    bg = rng.uniform(0.0, 0.45, size=(n, 3, 1, 1))
    fg = rng.uniform(0.55, 1.0, size=(n, 3, 1, 1))
    images = np.where(mask[:, None], fg, bg) + rng.normal(0, 0.08, size=(n, 3, SIZE, SIZE))
    return np.clip(images, 0, 1).astype(np.float32), labels.astype(np.int64)

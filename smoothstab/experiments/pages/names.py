"""Display names shared by the figures and the report (importing this pulls in no plotting)."""

from __future__ import annotations

NAMES = {
    "grad": "Simple-Grad",
    "ig": "Integrated-Gradients",
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
}
SMOOTHED = {
    "grad": "Smooth-Grad",
    "ig": "smoothed IG",
    "gradcam": "smoothed Grad-CAM",
    "gradcampp": "smoothed Grad-CAM++",
}
BANDS = {  # evaluation.band: what the figures' bands are
    "interval": "95% intervals over retraining (from four models per n; with fewer, over the "
    "test images for these models), the test images and their Monte-Carlo draws",
    "t95": "the paper's band, a 95% Student-t interval over the pair (or model) means with K - 1 "
    "degrees of freedom: a replication of its figures, too narrow as an interval since pairs "
    "share models",
    "sd": "the paper's captions' band, +-1 sd over the pair (or model) means",
}
MEASURES = {  # evaluation.stability_measure
    "unit_distance": "unit-map distance",
    "l2": "raw L2 distance",
}


def over_phrase(scope: str, k: int, m: int) -> str:
    """What an interval is over, in a table cell: ``retraining (6 models), 24 images, draws``
    or ``24 images and draws; these 3 models``."""
    if scope == "retraining":
        return f"retraining ({k} models), {m} images, draws"
    who = "these two models" if k == 2 else f"these {k} models"
    return f"{m} images and draws; {who}"


def models_phrase(ks: list[int]) -> str:
    """``6 models`` or ``3-6 models``."""
    return f"{ks[0]} models" if ks[0] == ks[-1] else f"{ks[0]}-{ks[-1]} models"

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
BANDS = {"t95": "95% Student-t interval of the mean over pairs/models", "sd": "+-1 sd"}
MEASURES = {  # evaluation.stability_measure
    "unit_distance": "unit-map distance",
    "l2": "raw L2 distance",
}

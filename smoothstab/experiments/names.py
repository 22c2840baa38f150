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
SETTINGS = {
    "DT": "DT: same architecture trained on disjoint splits of the training set",
    "DR": "DR: same architecture, different training recipe or weights",
    "DA": "DA: different architectures",
    "FT": "FT: replicas of one given model made by a cheap proxy for retraining",
}
MEASURES = {  # evaluation.stability_measure
    "unit_distance": "unit-map distance",
    "l2": "raw L2 distance",
}

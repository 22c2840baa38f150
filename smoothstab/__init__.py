"""smoothstab: gradient saliency maps under Gaussian smoothing, and how stable and faithful
they are.

The core (this namespace) is pure tensor code: methods ``method(model, x, target) -> Tensor``,
the smoothing combinator, metrics and bounds. The experiment layer (``smoothstab.experiments``,
the ``smoothstab`` CLI) builds data, training, sweeps, figures and reports on top of it.
"""

from smoothstab import metrics
from smoothstab.cam import grad_cam, grad_cam_pp
from smoothstab.debias import DistanceEstimate, debiased_distance
from smoothstab.interop import from_captum
from smoothstab.methods import IG_RULES, grad, ig_rule, integrated_gradients
from smoothstab.smoothing import (
    SmoothStats,
    noise_draws,
    smooth,
    smooth_integrated_gradients,
)

METHODS = {
    "grad": grad,
    "ig": integrated_gradients,
    "gradcam": grad_cam,
    "gradcampp": grad_cam_pp,
}

__all__ = [
    "IG_RULES",
    "METHODS",
    "DistanceEstimate",
    "SmoothStats",
    "debiased_distance",
    "from_captum",
    "grad",
    "grad_cam",
    "grad_cam_pp",
    "ig_rule",
    "integrated_gradients",
    "metrics",
    "noise_draws",
    "smooth",
    "smooth_integrated_gradients",
]
__version__ = "0.1.0"

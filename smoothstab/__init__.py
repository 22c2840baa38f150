"""smoothstab: gradient saliency maps under Gaussian smoothing, and how stable and faithful
they are.

The core (this namespace) is pure tensor code: methods ``method(model, x, target) -> Tensor``,
the smoothing combinator and its Monte-Carlo engine, metrics, debiased distances and bounds.
The experiment layer (``smoothstab.experiments``, the ``smoothstab`` CLI) builds data, training,
sweeps, figures and reports on top of it; importing the core never imports it.

Two names are found on first use, not imported with the package (:data:`LAZY`):
``smoothstab.plot`` (pictures; matplotlib is loaded only when it draws) and
``smoothstab.load_run`` (a run directory's numbers as pandas DataFrames: file reading, which
lives in the experiment layer). ``import smoothstab`` loads neither.
"""

from smoothstab import (
    _startup,  # noqa: F401 - first: a Ctrl-C while torch imports
    disagreement,
    metrics,
)
from smoothstab import cam as _cam
from smoothstab.cam import grad_cam, grad_cam_pp, grad_cam_pp_weights, grad_cam_weights
from smoothstab.debias import DistanceEstimate, debiased_distance
from smoothstab.interop import from_captum, to_quantus
from smoothstab.methods import IG_RULES, grad, ig_rule, integrated_gradients
from smoothstab.montecarlo import default_groups, noise_draws
from smoothstab.randomize import Randomized, randomizable_layers, randomize
from smoothstab.sanity import SanityResult, edge_map, sanity
from smoothstab.smoothing import SAMPLERS, Smoothed, smooth, smoothed_ig
from smoothstab.stats import SmoothStats
from smoothstab.types import Method, Seed, Target
from smoothstab.weightsmooth import WeightSmoothed, weight_smooth

METHODS: dict[str, Method] = {
    "grad": grad,
    "ig": integrated_gradients,
    "gradcam": grad_cam,
    "gradcampp": grad_cam_pp,
}
"""The four methods by the names configs and the command line use."""

__all__ = [
    "IG_RULES",
    "METHODS",
    "SAMPLERS",
    "DistanceEstimate",
    "Method",
    "Randomized",
    "SanityResult",
    "Seed",
    "SmoothStats",
    "Smoothed",
    "Target",
    "WeightSmoothed",
    "debiased_distance",
    "edge_map",
    "from_captum",
    "grad",
    "grad_cam",
    "grad_cam_pp",
    "grad_cam_pp_weights",
    "grad_cam_weights",
    "ig_rule",
    "integrated_gradients",
    "metrics",
    "noise_draws",
    "randomizable_layers",
    "randomize",
    "sanity",
    "default_groups",
    "disagreement",
    "smooth",
    "smoothed_ig",
    "to_quantus",
    "weight_smooth",
]
__version__ = "0.1.0"  # the one place it is written: pyproject.toml and --version read it

LAZY = {
    "plot": ("smoothstab.plot", None),
    "load_run": ("smoothstab.experiments.rundir.frames", "load_run"),
}
"""Public names imported on first use: name -> (module, attribute of it; ``None``: the
module itself). The only way the package reaches outside the core (tests/test_lazy_names.py
holds the list)."""


def __getattr__(name: str) -> object:
    """Renamed public names (see :mod:`smoothstab.cam`): still found, with a warning; the
    names of :data:`LAZY`: imported now."""
    if name in _cam._RENAMED:
        return getattr(_cam, name)
    if name in LAZY:
        import importlib

        module, attribute = LAZY[name]
        found = importlib.import_module(module)
        return found if attribute is None else getattr(found, attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY})

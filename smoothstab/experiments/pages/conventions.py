"""The conventions paragraph of the report: what a run computed and how, in words, from its config
alone (the report stage puts it after the answer; :mod:`~smoothstab.experiments.stages.report`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smoothstab.experiments.config.setting import Setting
from smoothstab.experiments.pages.names import BANDS, MEASURES

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import AttributionConfig, ExperimentConfig

CONVENTIONS = [
    "Maps are computed in the model's input space (after normalisation), signed, full "
    "[B, C, H, W]; CAMs are [B, 1, H, W], upsampled bilinearly to the input size.",
    "The explained score is the logit of the target class ({target}); models are in eval mode.",
    "Noise level r = sigma / (x_max - x_min) with x_max - x_min = {x_range:.4f} for this "
    "dataset's normalisation; every table gives r and the absolute sigma.",
    "Stability error (Eq. 12): per image ||Sal_A(x) - Sal_B(x)||_2 on raw maps, mean over "
    "images, then mean over model pairs. Fidelity error (Eq. 13): per image "
    "||Smoothed(x) - Unsmoothed(x)||_2 for the same model, mean over images and models.",
    "Size and direction apart: the unit-map distance ||a/||a|| - b/||b|| || = sqrt(2 - 2 cos) "
    "of the raw maps (0: same direction, 1.41: unrelated, 2: opposite) does not change when a "
    "map is scaled, the map norm ||a|| is each model's own; ||a - b||^2 = (||a|| - ||b||)^2 + "
    "||a|| ||b|| u^2. Rank agreement: Spearman's rho of the |map| views. The stability measure "
    "the advice minimises: {measure}.",
    "Intervals in tables and verdicts: 95%, over retraining (from four models per training-set "
    "size; pairs share models, so the interval comes from the models, not the pairs), the test "
    "images and their Monte-Carlo draws (each image has its own); with fewer models, over the "
    "images and draws for these models only. Figure bands: {band_name}.",
    "SSIM: on 2-D views (sum of |values| over channels, scaled by min and 99th percentile, "
    "clipped), scikit-image settings of Wang et al. 2004. Top-k mIoU: k = {topk} most salient "
    "pixels of the abs-sum maps, IoU = |A n B| / |A u B|, ties broken by lower pixel index.",
    "Smoothing: {draws}{antithetic}, {crn}; IG: {ig_steps} points, rule "
    "'{ig_rule}', smoothed-IG sampler '{ig_sampler}', baseline 0 in input space.",
    "Estimates: curves and columns labelled 'paper' are the plain Monte-Carlo estimate, as the "
    "paper computes it; 'ours' (debiased) removes the Monte-Carlo noise from ||a - b|| with the "
    "split-half estimator and gives its Monte-Carlo standard error (MC s.e.). Debiased "
    "distances are {debiased}. {noise_note} {se_note}",
    "{sizes}",
    "CAMs are {cams}. Test images: the first {n_images} of {order}. Each model keeps {keep}.",
    "{ig_reference}",
]


def _se_text(a: AttributionConfig) -> str:
    """Which Monte-Carlo standard error the MC s.e. columns and metrics.csv's stderr are."""
    g = a.n_groups
    per_pair = (
        f"from the spread of {g} interleaved groups of draws (a jackknife with {g - 1} degrees "
        "of freedom, which accounts for the correlation between a map's elements)"
        if g > 2
        else "pooled per element from the two halves of the draws (it leaves out the "
        "correlation between a map's elements and so understates the error; set "
        "attribution.groups = 16 with at least 32 draws for standard errors that cover)"
    )
    return (
        f"The MC s.e. of one pair's or model's distance per image is {per_pair}; over images "
        "they combine as independent (each image has its own draws), and over pairs or models "
        "as the mean of their standard errors, an upper bound whatever their correlation "
        "(pairs share models)."
    )


def conventions(cfg: ExperimentConfig, x_range: float) -> list[str]:
    a, e = cfg.attribution, cfg.evaluation
    fields = dict(
        target="ground-truth label" if a.target == "label" else "predicted class",
        x_range=x_range,
        band_name=BANDS[e.band],
        measure=MEASURES[e.stability_measure],
        topk=e.topk,
        draws=f"{a.n_samples} noise draws"
        if a.tolerance is None
        else f"noise draws until each map's relative Monte-Carlo standard error is at most "
        f"{a.tolerance:g} (at least {a.min_samples}, at most {a.max_samples} draws per image)",
        antithetic=" in antithetic pairs" if a.antithetic else "",
        crn="common random numbers across models and noise levels"
        if a.common_random_numbers
        else "independent draws per model and noise level",
        ig_steps=a.ig_steps,
        ig_rule=a.ig_rule,
        ig_sampler=a.ig_sampler,
        debiased="reported beside the plain ones" if e.debiased else "off",
        noise_note="Noise is common to all models here, our variance reduction: the paper drew "
        "it independently for each network."
        if a.common_random_numbers
        else "Noise is drawn independently for each model and noise level, as in the paper.",
        se_note=_se_text(a),
        sizes=_sizes_text(cfg),
        cams="raw ReLU'd maps, not min-max normalised (attribution.cam_normalize = none)"
        if a.cam_normalize == "none"
        else "min-max normalised to [0, 1] per image as pytorch-grad-cam does, "
        "(cam - min) / (1e-7 + max), before smoothing averages them",
        n_images=a.n_images,
        order=f"NumPy's permutation seeded {a.image_seed}"
        if a.image_order == "numpy"
        else f"Python's random.Random({a.image_seed}).shuffle of the indices, the paper's "
        "code's order",
        keep="its last epoch's weights"
        if cfg.train.keep == "last"
        else f"the weights of its epoch with the best accuracy on {cfg.train.val_size} held-out "
        "training images, disjoint from every part and from the test images (val_split.json)",
        ig_reference=f"With the joint smoothed-IG sampler, the unsmoothed IG map (the fidelity "
        f"reference) uses {a.ig_reference_steps}-point Gauss-Legendre quadrature instead of the "
        f"run's {a.ig_steps}-point '{a.ig_rule}' rule, so the fidelity curve has no quadrature "
        "floor."
        if a.ig_sampler == "joint" and a.ig_reference_steps
        else "",
    )
    return [line for line in (t.format(**fields) for t in CONVENTIONS) if line]


def _sizes_text(cfg: ExperimentConfig) -> str:
    sizes = Setting.of(cfg).sizes
    if len(sizes) < 2:
        return ""
    return (
        f"Training-set sizes n = {', '.join(str(n) for n in sizes)}, {cfg.train.parts} models "
        "each: "
        "models are compared only with models of the same n; parts of one size are disjoint, "
        "and part p of a smaller size is the start of part p of a larger one. Table 1, the "
        "similarity curves and the advice use the largest n."
    )

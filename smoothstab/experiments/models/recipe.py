"""How a run makes one map: its test images (:func:`load_test_images`), each method with the
run's settings (:func:`smoothed_method`), what one draw costs (:func:`evals_per_sample`) and
the noise seed of each image block (:func:`block_seed`).

The attribute stage (:mod:`~smoothstab.experiments.stages.attribute`) writes the maps with these;
the sanity stage (:mod:`~smoothstab.experiments.stages.sanity_stage`) remakes them for the
randomised copies and the permuted-label twin with the same seeds (common random numbers), and
``plan`` counts their cost. Stages share code through helper modules like this one, not through each
other.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
from torch import nn

import smoothstab as ss
from smoothstab.experiments.config.datasets import check_image_count, dataset_info
from smoothstab.experiments.models.architectures import cam_layer
from smoothstab.experiments.models.data import derive_seed, load_dataset, test_indices
from smoothstab.experiments.rundir.layout import RunDir

if TYPE_CHECKING:
    from smoothstab.experiments.config.tables import AttributionConfig, ExperimentConfig


def load_test_images(cfg: ExperimentConfig, run: RunDir) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's test images ``[N, C, H, W]`` and labels, chosen once and kept in the run."""
    if run.test_images.is_file():
        return run.load_test_images()
    data = cfg.train
    # data_seed fixes the train/test split (digits): the same seed as training, not train.seed
    dataset = load_dataset(
        data.dataset,
        root=data.root,
        train=False,
        seed=data.data_seed,
        info=dataset_info(data),
        labels=data.labels,
    )
    a = cfg.attribution
    check_image_count(a, len(dataset), data.root or f"the {data.dataset} test set")
    idx = test_indices(len(dataset), a.n_images, a.image_seed, a.image_order)
    items = [dataset[i] for i in idx]
    x = torch.stack([item[0] for item in items])
    y = torch.tensor([int(item[1]) for item in items])
    if a.target == "label" and bool((y < 0).any()):
        raise ValueError(
            f"attribution.target: 'label' explains each image's label, and the images of "
            f"{data.root} have none (no train.labels file, no class folders); set "
            "attribution.target = 'predicted' or give train.labels"
        )
    run.save_test_images(x, y, idx)
    return x, y


def smoothed_method(
    name: str, model: nn.Module, attr: AttributionConfig, sigma: float, seed: ss.Seed
) -> ss.Smoothed:
    """The method ``name`` with the run's settings (IG quadrature and sampler, the model's CAM
    layer and normalisation), smoothed at ``sigma`` (at 0 it runs once, exactly).

    With the joint IG sampler the r = 0 IG map (the fidelity reference) uses
    :func:`ig_reference_quadrature`, not the run's quadrature."""
    options: dict = dict(seed=seed, antithetic=attr.antithetic, groups=attr.n_groups)
    count = attr.n_samples
    if attr.tolerance is not None:
        count = None
        options.update(
            tol=attr.tolerance, min_samples=attr.min_samples, max_samples=attr.max_samples
        )
    if name == "ig":
        steps, rule = ig_reference_quadrature(attr) if sigma == 0 else (attr.ig_steps, attr.ig_rule)
        return ss.smoothed_ig(
            sigma,
            count,
            sampler=attr.ig_sampler,
            steps=steps,
            rule=rule,
            batch_size=attr.batch_size,
            **options,
        )
    method = ss.METHODS[name]
    if name in ("gradcam", "gradcampp"):
        method = functools.partial(method, layer=cam_layer(model), normalize=attr.cam_normalize)
    return ss.smooth(method, sigma, count, batch_size=attr.batch_size, **options)


def evals_per_sample(name: str, attr: AttributionConfig, r: float) -> int:
    """Model evaluations (forward and backward passes) one draw of ``name`` costs at ``r``:
    one, or one per quadrature point for IG (nested, or the unsmoothed map)."""
    if name != "ig" or (r > 0 and attr.ig_sampler == "joint"):
        return 1
    return ig_reference_quadrature(attr)[0] if r == 0 else attr.ig_steps


def ig_reference_quadrature(attr: AttributionConfig) -> tuple[int, str]:
    """``(steps, rule)`` of the r = 0 IG map. The joint sampler integrates the path exactly in
    expectation, so against a coarse r = 0 map its fidelity error would keep the quadrature error
    as a floor; it gets ``ig_reference_steps`` Gauss-Legendre points (0: the run's quadrature).
    The nested sampler smooths the run's quadrature itself and keeps it at r = 0."""
    if attr.ig_sampler == "joint" and attr.ig_reference_steps > 0:
        return attr.ig_reference_steps, "gausslegendre"
    return attr.ig_steps, attr.ig_rule


def block_seed(attr: AttributionConfig, block: int, model: int, method: str, r: float) -> int:
    """The noise seed of image block ``block`` of ``model``'s ``method`` maps at ``r``.

    With ``common_random_numbers`` on, ``derive_seed(seed, block)`` for every model, method and
    r (the same standard-normal draws, scaled by each sigma); off, a seed that also mixes in the
    model, the method's place in ``methods`` and r (in millionths).
    """
    if attr.common_random_numbers:
        return derive_seed(attr.seed, block)
    return derive_seed(attr.seed, block, model, attr.methods.index(method), int(round(r * 1e6)))

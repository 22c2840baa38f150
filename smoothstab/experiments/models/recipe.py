"""How a run makes one map: its test images (:func:`load_test_images`) and the few the figures
draw (:func:`figure_images`), each method with the run's settings (:func:`smoothed_method`), what
one draw costs (:func:`evals_per_sample`), the noise seed of each image block (:func:`block_seed`)
and what a block file or kept map file of the run must be (:func:`block_identity`,
:func:`map_identity`, with the run's config digest :func:`run_digest`).

The attribute stage (:mod:`~smoothstab.experiments.stages.attribute`) makes and measures the maps
with these; the sanity stage (:mod:`~smoothstab.experiments.stages.sanity_stage`) remakes them for
the randomised copies and the permuted-label twin with the same seeds (common random numbers), the
evaluate and figures stages check the block files they read, and ``plan`` counts their cost. Stages
share code through helper modules like this one, not through each other.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

import smoothstab as ss
from smoothstab.experiments.config.datasets import check_image_count, dataset_info
from smoothstab.experiments.config.parse import free_keys
from smoothstab.experiments.config.setting import Setting
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


FLOOR_STREAM = 0x466C6F6F72  # keeps the floors' pairing apart from the noise seeds of a block


def floor_partner(
    attr: AttributionConfig, block: int, n: int, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Each image's partner for the chance floors in image block ``block`` of ``n`` images
    (:func:`smoothstab.disagreement.derangement`, seeded by the run's seed and the block; with
    ``labels``, ``evaluation.floor_pairs = "same_class"``, within each class): the same for every
    method, model pair and r, so floors at two levels compare the same pairs of images. Pairs
    stay within a block (the maps of one block are what is in memory): a block of one image,
    such as a last block of one, has no partner (its floors are NaN, left out of the floors'
    means)."""
    seed = derive_seed(attr.seed, block, FLOOR_STREAM)
    return ss.disagreement.derangement(n, seed, None if labels is None else labels.cpu())


def consensus_models(cfg: ExperimentConfig) -> list[int]:
    """The models whose maps are compared all together (disagreement maps): those of the largest
    training-set size (every model where there is one size)."""
    s = Setting.of(cfg)
    return [k for k in range(s.n_models) if s.size_index(k) == len(s.sizes) - 1]


def figure_images(labels: torch.Tensor, n: int) -> list[int]:
    """The test images the figures draw (``evaluation.grid_images`` of them), whose mean maps a
    run always keeps: up to ``n`` indices, the first image of each class first (in order), then
    the next images in order. Image 0 is always among them."""
    first: dict[int, int] = {}
    for i, y in enumerate(labels.tolist()):
        first.setdefault(y, i)
    picks = sorted(first.values())[:n]
    return picks + [i for i in range(len(labels)) if i not in picks][: n - len(picks)]


def run_digest(cfg: ExperimentConfig) -> str:
    """A digest of every key of ``cfg`` that changes a result (not the free ones): what a block
    file records, so that a block of another run is not taken for one of this run."""
    free = free_keys(type(cfg))

    def keep(table: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in table.items():
            name = prefix + key
            if isinstance(value, dict):
                out[key] = keep(value, name + ".")
            elif name not in free:
                out[key] = value
        return out

    text = json.dumps(keep(dataclasses.asdict(cfg)), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def block_range(attr: AttributionConfig, block: int, n_images: int) -> tuple[int, int]:
    """``(first, stop)``: the test images of image block ``block``."""
    first = block * attr.image_batch
    return first, min(first + attr.image_batch, n_images)


def block_identity(cfg: ExperimentConfig, method: str, block: int, n_images: int) -> dict[str, Any]:
    """What the block file of ``method``'s image block ``block`` must record
    (:meth:`~smoothstab.experiments.rundir.blockfile.BlockFile.identity`), from the config."""
    a, x_range = cfg.attribution, dataset_info(cfg.train).x_range
    rs, models = a.noise_grid(), Setting.of(cfg).n_models
    return {
        "method": method,
        "block": block,
        "images": list(block_range(a, block, n_images)),
        "rs": rs,
        "sigmas": [r * x_range for r in rs],
        "models": models,
        "seeds": [[block_seed(a, block, k, method, r) for r in rs] for k in range(models)],
        "run": run_digest(cfg),
        "view": cfg.maps.view,
        "precision": cfg.maps.precision,
    }


def map_identity(
    cfg: ExperimentConfig, model: int, method: str, r: float, block: int | None, n_images: int
) -> dict[str, Any]:
    """What a kept map file must record (:meth:`~smoothstab.experiments.rundir.mapfile.MapFile.
    identity`): of image block ``block``, or (``None``) the joined file of every block."""
    a, m = cfg.attribution, cfg.maps
    blocks = range(-(-n_images // a.image_batch)) if block is None else [block]
    first, stop = (0, n_images) if block is None else block_range(a, block, n_images)
    means = m.keep == "means"
    return {
        "method": method,
        "model": model,
        "r": r,
        "sigma": r * dataset_info(cfg.train).x_range,
        "images": [first, stop],
        "block": block,
        "seeds": [block_seed(a, b, model, method, r) for b in blocks],
        "view": m.view if means else "map",
        "precision": m.precision if means else None,
    }

"""The names of the metrics in ``metrics.csv`` and which of them is a run's stability measure.

Kept apart from :mod:`~smoothstab.experiments.rundir.metrics_table` (the file's columns and summary)
so that the list of measures reads in one place.
"""

from __future__ import annotations

from enum import StrEnum


class Metric(StrEnum):
    """The names of the metrics in ``metrics.csv``.

    ``stability`` (Eq. 12, plain, as the paper computes it) and ``fidelity`` (Eq. 13, a model's
    smoothed map against its unsmoothed one) with their split-half ``_debiased`` versions; ``ssim``
    and ``topk_iou`` between the two models of a pair. Size and direction apart
    (:mod:`smoothstab.agreement`): per pair ``unit_distance``, scale-free (the cosine is ``1 -
    unit_distance^2 / 2`` per image), with a cross-half ``_debiased`` version, and
    ``rank_agreement`` (Spearman's rho of the |map| views); per model ``map_norm``, the map's L2
    norm at each r (at r = 0 the unsmoothed map's: the scale of a relative fidelity budget), and
    ``map_norm_debiased``. Per model and image, the cost and the Monte-Carlo error of each map:
    ``rel_se``, its relative standard error (``SmoothStats.rel_se``) (0 for the unsmoothed maps),
    and ``model_evals``, the model evaluations (forward and backward passes) it took. In
    ``sanity.csv`` (:mod:`~smoothstab.experiments.stages.sanity_stage`), per model, randomised copy
    and image: ``sanity_ssim`` and ``sanity_rank``, the SSIM and rank agreement between the model's
    map and the copy's; ``sanity_label_ssim`` and ``sanity_label_rank``, the same against the
    model's twin trained on permuted labels (``sanity.labels``).

    What a similarity means (:mod:`smoothstab.disagreement`): per pair, each between-model
    measure's chance floor ``{measure}_floor`` (``stability``, ``ssim``, ``topk_iou``,
    ``rank_agreement``, ``unit_distance``: the same metric between model A's map of an image and
    model B's map of another image of its block, plain); of no pair or model, ``disagreement``
    (and ``disagreement_debiased``), the total disagreement of the models of the largest
    training-set size; per model at r = 0, ``predicted`` (the class) and ``correct`` (1 or 0,
    empty where the image has no label).
    """

    STABILITY = "stability"
    STABILITY_DEBIASED = "stability_debiased"
    FIDELITY = "fidelity"
    FIDELITY_DEBIASED = "fidelity_debiased"
    SSIM = "ssim"
    TOPK_IOU = "topk_iou"
    UNIT_DISTANCE = "unit_distance"
    UNIT_DISTANCE_DEBIASED = "unit_distance_debiased"
    RANK_AGREEMENT = "rank_agreement"
    MAP_NORM = "map_norm"
    MAP_NORM_DEBIASED = "map_norm_debiased"
    REL_SE = "rel_se"
    MODEL_EVALS = "model_evals"
    STABILITY_FLOOR = "stability_floor"
    SSIM_FLOOR = "ssim_floor"
    TOPK_IOU_FLOOR = "topk_iou_floor"
    RANK_AGREEMENT_FLOOR = "rank_agreement_floor"
    UNIT_DISTANCE_FLOOR = "unit_distance_floor"
    DISAGREEMENT = "disagreement"
    DISAGREEMENT_DEBIASED = "disagreement_debiased"
    PREDICTED = "predicted"
    CORRECT = "correct"
    SANITY_SSIM = "sanity_ssim"
    SANITY_RANK = "sanity_rank"
    SANITY_LABEL_SSIM = "sanity_label_ssim"
    SANITY_LABEL_RANK = "sanity_label_rank"

    @classmethod
    def stability(cls, debiased: bool) -> Metric:
        return cls.STABILITY_DEBIASED if debiased else cls.STABILITY

    @classmethod
    def fidelity(cls, debiased: bool) -> Metric:
        return cls.FIDELITY_DEBIASED if debiased else cls.FIDELITY

    @classmethod
    def of(cls, name: str, debiased: bool) -> Metric:
        """The plain or ``_debiased`` metric of a measure (``stability``, ``unit_distance``,
        ``map_norm``, ...)."""
        return cls(f"{name}_debiased" if debiased else name)

    @classmethod
    def measure(cls, name: str, debiased: bool) -> Metric:
        """The stability measure ``evaluation.stability_measure`` names: ``l2``, the paper's raw
        distance (Eq. 12), or ``unit_distance``, the scale-free one."""
        return cls.of("stability" if name == "l2" else name, debiased)

    @classmethod
    def floor(cls, measure: Metric | str) -> Metric:
        """The chance floor of a between-model measure (``ssim`` -> ``ssim_floor``)."""
        return cls(f"{cls(measure).value}_floor")

    @property
    def debiased(self) -> bool:
        return self.value.endswith("_debiased")

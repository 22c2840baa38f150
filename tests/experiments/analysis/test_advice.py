"""The sigma advice: the knee and the fidelity budget on curves with known answers."""

from __future__ import annotations

from smoothstab.experiments.analysis import advice as sigma_advice
from smoothstab.experiments.analysis.aggregate import band
from smoothstab.experiments.analysis.summary import Summary

# An L-shaped trade-off: stability error drops steeply up to r = 0.1, then barely moves while
# fidelity error keeps growing. (r, stability, fidelity).
L_CURVE = [(0.0, 10.0, 0.0), (0.1, 2.0, 0.5), (0.2, 1.5, 3.0), (0.3, 1.2, 6.0), (0.4, 1.0, 10.0)]


def test_knee_of_an_l_shaped_curve():
    assert sigma_advice.knee(L_CURVE) == 0.1
    # Kneedle scales both errors to [0, 1] first: units do not move the knee.
    scaled = [(r, 1000 * s, f / 1000) for r, s, f in L_CURVE]
    assert sigma_advice.knee(scaled) == 0.1
    # A curve that bends late: the knee moves with it.
    late = [(0.0, 10.0, 0.0), (0.1, 9.5, 0.1), (0.2, 9.0, 0.2), (0.3, 1.0, 0.5), (0.4, 0.9, 10.0)]
    assert sigma_advice.knee(late) == 0.3
    assert sigma_advice.knee(L_CURVE[:2]) is None  # two points have no knee


def test_most_stable_r_within_a_fidelity_budget():
    # norm 10: budget 0.2 allows fidelity <= 2, i.e. r <= 0.1; the most stable of those is 0.1.
    assert sigma_advice.within_budget(L_CURVE, norm=10.0, budget=0.2) == 0.1
    assert sigma_advice.within_budget(L_CURVE, norm=10.0, budget=0.6) == 0.3
    assert sigma_advice.within_budget(L_CURVE, norm=10.0, budget=1.0) == 0.4
    assert sigma_advice.within_budget(L_CURVE, norm=10.0, budget=0.0) == 0.0
    assert sigma_advice.within_budget(L_CURVE, norm=float("nan"), budget=0.2) is None
    assert sigma_advice.within_budget([(0.1, 1.0, 5.0)], norm=1.0, budget=0.2) is None
    # Equally stable: the smaller r, which costs less fidelity.
    flat = [(0.0, 2.0, 0.0), (0.1, 1.0, 0.1), (0.2, 1.0, 0.2)]
    assert sigma_advice.within_budget(flat, norm=1.0, budget=1.0) == 0.1


def test_recommend_reads_the_summary():
    """From a summary of bands: the debiased curve when asked for, knee and budget per method."""
    bands = {("grad", "map_norm", 0.0, None): band([10.0, 10.0])}
    for r, s, f in L_CURVE:
        bands[("grad", "stability_debiased", r, None)] = band([s, s])
        bands[("grad", "fidelity_debiased", r, None)] = band([f, f])
        # The plain curve is another one, so the test sees which is read.
        bands[("grad", "stability", r, None)] = band([s + 1, s + 1])
        bands[("grad", "fidelity", r, None)] = band([0.0, 0.0])
    summary = Summary(bands)
    rec = sigma_advice.recommend(summary, ["grad"], debiased=True, budget=0.2)["grad"]
    assert (rec["knee_r"], rec["budget_r"], rec["map_norm"]) == (0.1, 0.1, 10.0)
    assert [(c["r"], c["stability"], c["fidelity"]) for c in rec["curve"]] == L_CURVE
    plain = sigma_advice.recommend(summary, ["grad"], debiased=False, budget=0.2)["grad"]
    assert plain["budget_r"] == 0.4  # fidelity 0 everywhere: the most stable r of the grid

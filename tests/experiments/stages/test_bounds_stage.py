"""The bounds page (:mod:`smoothstab.experiments.stages.bounds_stage`) on synthetic constants and
summaries, no training: Theorem 6's sigma* against brute force, T and c in example and minibatch
steps against an explicit schedule, the trivial bounds and the vacuous flags, the Theorem 5 rows per
training-set size, and the page's sentences following its numbers (flat or bending curve, vacuous or
not)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from smoothstab import bounds as sb
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.config.load import load_config
from smoothstab.experiments.config.parse import ConfigError
from smoothstab.experiments.config.tables import EvaluationConfig, TrainConfig
from smoothstab.experiments.io.files import DamagedFile
from smoothstab.experiments.pages import bounds_page
from smoothstab.experiments.pages.blocks import render_markdown
from smoothstab.experiments.rundir.bounds_record import VERSION, Bounds, read_bounds
from smoothstab.experiments.rundir.layout import RunDir
from smoothstab.experiments.stages import bounds_stage as theory

QUICKSTART_NORMS = [8.84, 5.17, 6.11, 7.28, 3.49]  # a quickstart run's: q ~ 1e14, all vacuous
SMALL = [0.1, 0.1]  # q ~ 1e-3, sigma* = 10: bounds far below the trivial ones


def esym(values: list[float], degree: int) -> float:
    """The elementary symmetric polynomial of ``degree`` in ``values``, by brute force."""
    return sum(math.prod(c) for c in itertools.combinations(values, degree))


def brute_gamma(b: list[float], t: int, i: int) -> float:
    return esym(b[:t], t - i)


def summary_of(
    values: dict[tuple[str, str, float, int | None], float], sigmas: dict[float, float]
) -> Summary:
    """A summary whose every key is one value (one model, one image: no interval)."""
    rows = [
        {"method": method, "metric": metric, "r": r, "n": "" if n is None else n, "pair": "",
         "model": "0", "image": 0, "value": v, "sigma": sigmas.get(r, 0.0)}
        for (method, metric, r, n), v in values.items()
    ]  # fmt: skip
    summary = Summary.from_rows(rows)
    summary.sigmas = dict(sigmas)
    return summary


def page(res: Bounds | None) -> str:
    return render_markdown(bounds_page.blocks(res))


def build(
    norms: list[float] = SMALL,
    rs: tuple[float, ...] = (0.1, 0.5),
    *,
    C: float = 1.0,
    m: int = 4,
    x_range: float = 1.0,
    sizes: tuple[int, ...] = (10_000,),
    train: TrainConfig | None = None,
    unit: str = "examples",
    values: dict | None = None,
    stability: bool = True,
    sigmas: dict[float, float] | None = None,
) -> Bounds:
    """The page's numbers; each r's recorded sigma is ``r * x_range`` unless ``sigmas`` says."""
    train = train or TrainConfig(epochs=1, batch_size=10_000, lr=0.01, schedule="step")
    return theory.assemble(
        norms,
        C=C,
        m=m,
        x_range=x_range,
        rs=list(rs),
        summary=summary_of(values or {}, sigmas or {r: r * x_range for r in rs}),
        debiased=True,
        train=train if stability else None,
        sizes=list(sizes) if stability else [],
        unit=unit,
    )


# ---------------------------------------------------------------------------- sigma*


@pytest.mark.parametrize("norms", [[0.5, 2.0], [0.5, 2.0, 3.0], [1.3, 0.7, 2.2, 0.9]])
def test_sigma_star_against_brute_force(norms):
    k = len(norms)
    want = brute_gamma(norms, k, 1) / (
        2 * brute_gamma(norms, k, 0) * sum(brute_gamma(norms, i, 1) for i in range(1, k))
    )
    assert sb.smoothgrad_sigma_star(norms) == pytest.approx(want, rel=1e-12)
    assert sb.smoothgrad_sigma_star(norms, log10=True) == pytest.approx(math.log10(want), abs=1e-12)
    # Theorem 6's factor is 1 there: below sigma* the unclipped bound exceeds Theorem 5's,
    # above it is lower, and clipped it never exceeds it.
    args = dict(C=2.0, n=100, T=500, c=0.5, beta=0.3)
    five = sb.stability_bound_simplegrad(norms, **args)
    six = lambda s, clip=False: sb.stability_bound_smoothgrad(norms, sigma=s, clip=clip, **args)  # noqa: E731
    assert six(want) == pytest.approx(five, rel=1e-9)
    assert six(want / 2) > five and six(want * 2) < five
    assert six(want / 2, clip=True) == pytest.approx(five, rel=1e-12)


def test_sigma_star_in_log_space_and_bad_input():
    deep = [40.0] * 300  # the Gammas are ~1e480: past float range
    assert math.isinf(sb.gamma(deep, 300, 0))
    log_s = sb.smoothgrad_sigma_star(deep, log10=True)
    # Gamma_{k,1}/Gamma_{k,0} = k/B; sum_{i<k} Gamma_{i,1} is dominated by its last term
    # Gamma_{k-1,1} = (k-1) B^{k-2}, to within a factor 1 + O(1/B).
    approx = math.log10(300 / 40) - math.log10(2 * 299) - 298 * math.log10(40)
    assert math.isfinite(log_s) and abs(log_s - approx) < 0.05
    assert sb.smoothgrad_sigma_star(deep) == 0.0  # underflows as a plain float, not an error
    with pytest.raises(ValueError, match="k >= 2"):
        sb.smoothgrad_sigma_star([2.0])
    with pytest.raises(ValueError, match="norms"):
        sb.smoothgrad_sigma_star([2.0, 0.0])


# ---------------------------------------------------------------------------- trivial bounds


def test_trivial_bounds():
    norms = [0.5, 2.0, 3.0]
    assert sb.trivial_bound_grad(norms) == pytest.approx(2 * 3.0, rel=1e-12)
    assert sb.trivial_bound_grad(norms, log10=True) == pytest.approx(math.log10(6.0))
    got = sb.trivial_bound_smoothed_ig(norms, sigma=[0.1, 1.0], m=9, C=2.0)
    np.testing.assert_allclose(got, 3.0 * (4.0 + np.array([0.1, 1.0]) * 3), rtol=1e-12)


def test_trivial_bound_holds_for_a_chain():
    """A tanh chain's input gradients are at most Gamma_{k,0} long, so two maps differ by at
    most 2 Gamma_{k,0}."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5)).double()
    norms = [torch.linalg.matrix_norm(layer.weight, ord=2).item() for layer in net[::2]]
    x = torch.randn(64, 6, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x)[:, 0].sum(), x)
    assert grad.norm(dim=1).max().item() <= math.prod(norms) * (1 + 1e-12)
    assert sb.trivial_bound_grad(norms) == pytest.approx(2 * math.prod(norms))


# ---------------------------------------------------------------------------- T and c


def example_steps(train: TrainConfig, n: int) -> list[float]:
    """The per-example step size of every example step of a run, batch by batch."""
    etas = []
    for epoch in range(train.epochs):
        lr = theory.epoch_lr(train, epoch)
        for start in range(0, n, train.batch_size):
            size = min(train.batch_size, n - start)
            if size < train.batch_size and train.drop_last:
                continue  # never taken
            etas += [lr / size] * size
    return etas


@pytest.mark.parametrize(
    "train, n",
    [
        (TrainConfig(epochs=3, batch_size=4, lr=0.1, schedule="step", step_size=100), 10),
        (TrainConfig(epochs=3, batch_size=4, lr=0.1, schedule="step", step_size=100), 8),
        (TrainConfig(epochs=5, batch_size=3, lr=0.2, schedule="cosine"), 11),
        (TrainConfig(epochs=4, batch_size=5, lr=0.3, schedule="step", step_size=2, gamma=0.1), 7),
        (TrainConfig(epochs=5, batch_size=3, lr=0.2, schedule="cosine", drop_last=True), 11),
    ],
)
def test_step_constant_examples_and_minibatches(train, n):
    etas = example_steps(train, n)
    T, c = theory.step_constant(train, n, "examples")
    b = train.batch_size
    assert T == len(etas) == train.epochs * (n // b * b if train.drop_last else n)
    assert c == pytest.approx(max(eta * t for t, eta in enumerate(etas, start=1)), rel=1e-12)
    # minibatches: one step of lr per batch, t counting batches
    per_epoch = n // b if train.drop_last else math.ceil(n / b)
    lrs = [theory.epoch_lr(train, e) for e in range(train.epochs) for _ in range(per_epoch)]
    T_mb, c_mb = theory.step_constant(train, n, "minibatches")
    assert T_mb == len(lrs)
    assert c_mb == pytest.approx(max(lr * t for t, lr in enumerate(lrs, start=1)), rel=1e-12)
    # The same c when the batch size divides n; a smaller last batch has larger example steps.
    if n % train.batch_size == 0 or train.drop_last:
        assert c == pytest.approx(c_mb, rel=1e-12)
    else:
        assert c > c_mb


def test_bound_steps_config():
    assert EvaluationConfig().bound_steps == "examples"
    cfg = load_config("quickstart", ["evaluation.bound_steps=minibatches"])
    assert cfg.evaluation.bound_steps == "minibatches"
    with pytest.raises(ConfigError, match="bound_steps"):
        load_config("quickstart", ["evaluation.bound_steps=batches"])


def test_units_in_the_page():
    train = TrainConfig(epochs=2, batch_size=32, lr=0.05, momentum=0.9)
    ex = build(QUICKSTART_NORMS, (0.1,), C=75.0, m=3072, sizes=(1000,), train=train)
    mb = build(QUICKSTART_NORMS, (0.1,), C=75.0, m=3072, sizes=(1000,), train=train,
               unit="minibatches")  # fmt: skip
    s_ex, s_mb = ex.stability, mb.stability
    assert (s_ex.step_unit, s_ex.T) == ("examples", 2 * 1000)
    assert (s_mb.step_unit, s_mb.T) == ("minibatches", 2 * 32)
    assert s_ex.c == theory.step_constant(train, 1000, "examples")[1]
    assert s_mb.c == theory.step_constant(train, 1000, "minibatches")[1]
    # each page states its unit and the other one's numbers, and the two agree
    assert s_ex.other_unit.T == s_mb.T and s_mb.other_unit.T == s_ex.T
    assert s_ex.other_unit.simplegrad_log10 == pytest.approx(s_mb.simplegrad_log10)
    assert s_ex.simplegrad_log10 > s_mb.simplegrad_log10  # the minibatch count understates it
    text_ex, text_mb = page(ex), page(mb)
    assert "T = 2000 counts single-example SGD steps, epochs x n = 2 x 1000" in text_ex
    assert "its steps are lr / 8" in text_ex  # 1000 = 31 x 32 + 8
    assert f"Theorem 5 would give {bounds_page._sci(s_mb.simplegrad_log10)}" in text_ex
    assert "T = 64 counts minibatch steps of 32 examples" in text_mb
    assert "the minibatch count understates it" in text_mb
    for text in (text_ex, text_mb):
        assert "momentum 0.9" in text and "10 times larger" in text
    # drop_last: the last 8 examples of every epoch are never a step
    dropped = dataclasses.replace(train, drop_last=True)
    dl = build(QUICKSTART_NORMS, (0.1,), C=75.0, m=3072, sizes=(1000,), train=dropped)
    assert dl.stability.T == 2 * 992 and dl.stability.other_unit.T == 2 * 31
    text_dl = page(dl)
    assert "epochs x the 992 examples of n = 1000 an epoch takes" in text_dl
    assert "its steps are lr /" not in text_dl


# ---------------------------------------------------------------------------- vacuous flags


def test_every_bound_vacuous():
    res = build(QUICKSTART_NORMS, (0.01, 0.1, 0.4), C=75.0, m=3072, x_range=4.35, sizes=(1666,),
                train=TrainConfig(epochs=6, batch_size=32))  # fmt: skip
    assert res.stability.simplegrad_vacuous and all(row.vacuous for row in res.stability.by_n)
    for row in res.rows:
        assert row.stability_bound_vacuous and row.fidelity_bound_grad_vacuous
        assert row.fidelity_bound_ig_vacuous
        assert row.stability_bound_log10 > res.trivial_log10
    text = page(res)
    assert text.startswith("**Every bound on this page is vacuous**: each of the 10 bounds")
    assert "(vacuous)" in text and "No bound on this page is vacuous" not in text


def test_no_bound_vacuous():
    res = build(SMALL, (0.1, 0.5))
    flags = [res.stability.simplegrad_vacuous] + [
        flag
        for row in res.rows
        for flag in (row.stability_bound_vacuous, row.fidelity_bound_grad_vacuous,
                     row.fidelity_bound_ig_vacuous)
    ]  # fmt: skip
    assert not any(flags)
    text = page(res)
    assert text.startswith("No bound on this page is vacuous: each of the 7 bounds is below")
    assert "(vacuous)" not in text and "Every bound" not in text


def test_some_bounds_vacuous():
    """Prop. 7 for Smooth-Grad is kappa sigma sqrt(m) = 10 sigma here, against 2 Gamma_{k,0} = 2:
    vacuous for sigma > 0.2 only, and so marked in its cell."""
    res = build([1.0, 1.0], (0.1, 0.5), m=100, stability=False)
    assert [row.fidelity_bound_grad_vacuous for row in res.rows] == [False, True]
    assert [row.stability_bound_vacuous for row in res.rows] == [None, None]
    text = page(res)
    n_vacuous = sum(row.fidelity_bound_grad_vacuous + row.fidelity_bound_ig_vacuous
                    for row in res.rows)  # fmt: skip
    assert text.startswith(f"{n_vacuous} of the 4 bounds on this page are vacuous")
    lines = [line for line in text.splitlines() if line.startswith("| 0.")]
    assert "| 1.00e+0 |" in lines[0] and "| 5.00e+0 (vacuous) |" in lines[1]
    assert "No stability bounds" in text


# ---------------------------------------------------------------------------- Theorem 6 in sigma


def test_flat_because_the_cap_binds_everywhere():
    res = build(SMALL, (0.1, 1.0, 5.0))  # sigma* = 10, beyond the grid
    s = res.stability.theorem6
    assert s.sigma_star_log10 == pytest.approx(1.0) and not s.grid_reaches
    assert {row.stability_bound_log10 for row in res.rows} == {res.stability.simplegrad_log10}
    text = page(res)
    assert "Theorem 6's curve is flat in sigma" in text and "the cap binds everywhere" in text
    assert "sigma* = 1.00e+1 (r* = 1.00e+1)" in text and "bend only past r*" in text
    assert "trends in sigma" not in text and "curve bends" not in text


def test_bends_inside_the_grid():
    res = build(SMALL, (1.0, 20.0, 100.0))  # sigma* = 10, inside the grid; 1/(q+1) ~ 1
    s = res.stability.theorem6
    assert s.grid_reaches and s.clip_binds_in_grid and not s.flat
    stab = [row.stability_bound_log10 for row in res.rows]
    assert stab[0] == res.stability.simplegrad_log10 and stab[0] > stab[1] > stab[2]
    assert stab[0] - stab[2] == pytest.approx(s.drop_log10, rel=1e-9)
    text = page(res)
    assert "Theorem 6's curve bends" in text and "the cap binds for r < r*" in text
    assert "flat in sigma" not in text and "no trend in sigma" not in text


def test_flat_because_the_exponent_is_tiny():
    res = build(QUICKSTART_NORMS, (0.004, 0.1, 0.4), C=75.0, m=3072, x_range=4.35,
                sizes=(1666,), train=TrainConfig(epochs=6, batch_size=32))  # fmt: skip
    s = res.stability.theorem6
    # sigma* is far below the grid: the factor is < 1 everywhere, but to the power ~1e-15
    assert s.grid_reaches and not s.clip_binds_in_grid and s.flat
    assert res.stability.exponent < 1e-12 and s.drop_log10 < 1e-12
    assert s.r_half_log10 > 1e12  # where the factor would halve the bound: 10^(1e14)
    text = page(res)
    assert "Theorem 6's curve is flat in sigma although its factor is below 1" in text
    assert "the cap binds nowhere" in text and "The bound gives no trend in sigma here" in text
    assert f"only at r = 10^({s.r_half_log10:.3g})" in text
    assert "trends in sigma" not in text and "curve bends" not in text
    # what each stability number is, in the table header and in words
    assert "disjoint splits (debiased)" in text and "one changed example" in text
    assert "a different quantity, which Theorem 6 does not bound" in text


# ---------------------------------------------------------------------------- Theorem 5 in n


def test_rows_per_training_set_size():
    train = TrainConfig(epochs=3, batch_size=32, lr=0.05)
    values = {
        ("grad", "stability", 0.0, 100): 4.0,
        ("grad", "stability_debiased", 0.0, 100): 3.5,
        ("grad", "stability", 0.0, 400): 2.0,
        ("grad", "stability_debiased", 0.0, 400): 1.5,
        ("grad", "stability_debiased", 0.2, 400): 1.2,
        ("grad", "stability_debiased", 0.2, 100): 9.9,  # not the largest n: not in the rows
    }
    res = build(QUICKSTART_NORMS, (0.2,), C=75.0, m=3072, sizes=(400, 100), train=train,
                values=values)  # fmt: skip
    assert [row.n for row in res.stability.by_n] == [100, 400] and res.stability.n == 400
    assert res.rows[0].stability_grad == 1.2
    beta = sb.smoothness_vanilla(QUICKSTART_NORMS, 75.0)
    for row in res.stability.by_n:
        T, c = theory.step_constant(train, row.n, "examples")
        assert (row.T, row.c) == (3 * row.n, c)
        want = sb.stability_bound_simplegrad(
            QUICKSTART_NORMS, C=75.0, n=row.n, T=T, c=c, beta=beta, log10=True
        )
        assert row.simplegrad_log10 == pytest.approx(want, abs=1e-12)
    assert res.stability.by_n[-1].simplegrad_log10 == res.stability.simplegrad_log10
    assert [(r.stability_grad, r.stability_grad_debiased) for r in res.stability.by_n] == [
        (4.0, 3.5),
        (2.0, 1.5),
    ]
    # q is huge: T^{q/(q+1)} / (n - 1) with T = 3n is 3n / (n - 1), flat in n
    lo, hi = res.stability.by_n
    ratio = 10 ** (hi.simplegrad_log10 - lo.simplegrad_log10)
    assert ratio == pytest.approx((400 / 399) / (100 / 99), rel=1e-6)
    text = page(res)
    assert "roughly n^{-1/(q+1)}" in text and "so it is flat in n" in text
    assert f"From n = 100 to n = 400 the bound changes by a factor {ratio:.4g}" in text
    assert "the measured error (plain) by 0.5" in text
    assert "the measured error (debiased) by 0.4286" in text
    assert "| 100 | 300 |" in text and "| 400 | 1200 |" in text


def test_one_training_set_size():
    res = build(SMALL, (0.1,), sizes=(10_000,))
    assert len(res.stability.by_n) == 1 and res.stability.by_n[0].stability_grad is None
    text = page(res)
    assert "This run has one training-set size (n = 10000)" in text
    assert "so it is flat in n" not in text  # 1/(q+1) ~ 1 here: a tenfold n lowers it a lot


# ---------------------------------------------------------------------------- odds and ends


def test_sigma_is_the_recorded_one():
    """Each row's sigma, and the bounds at it, are those metrics.csv records for its r, not
    r x_range again: a run recorded at other sigmas gets its own bounds and table."""
    rs, x_range = (0.1, 0.5), 2.0
    recorded = {0.1: 0.3, 0.5: 0.7}
    res = build(SMALL, rs, x_range=x_range, sigmas=recorded)
    assert [row.sigma for row in res.rows] == [0.3, 0.7]
    plain = build(SMALL, (0.15, 0.35), x_range=x_range)  # r x_range = the recorded sigmas
    bounds = lambda row: (  # noqa: E731
        row.stability_bound_log10, row.fidelity_bound_grad_log10, row.fidelity_bound_ig_log10
    )  # fmt: skip
    assert [bounds(row) for row in res.rows] == [bounds(row) for row in plain.rows]
    assert "| 0.1 | 0.3 |" in page(res) and "| 0.5 | 0.7 |" in page(res)
    with pytest.raises(ValueError, match=r"r = 0\.2: no metrics row records its sigma"):
        build(SMALL, (0.2,), sigmas=recorded)


# ---------------------------------------------------------------------------- bounds.json

# The file's keys in the order it has always had them: the stability numbers flat after by_n.
KEYS = ["version", "C", "m", "norms", "x_range", "heuristic", "reasons", "measured",
        "trivial_log10", "rows", "by_n"]  # fmt: skip
STABILITY_KEYS = ["step_unit", "n", "T", "c", "beta", "q", "exponent", "simplegrad_log10",
                  "simplegrad_vacuous", "other_unit", "train", "theorem6"]  # fmt: skip


@pytest.mark.parametrize("stability", [True, False])
def test_bounds_json_reads_back_what_was_written(tmp_path, stability):
    """The record through the file comes back equal (every float to the last bit), and the file
    keeps its layout: the keys in their order, lists and plain values only."""
    train = TrainConfig(epochs=3, batch_size=32, lr=0.05, momentum=0.9)
    values = {("grad", "stability", 0.0, 100): 4.0, ("grad", "fidelity_debiased", 0.2, 400): 0.3}
    res = build(QUICKSTART_NORMS, (0.004, 0.2), C=75.0, m=3072, sizes=(400, 100), train=train,
                values=values, stability=stability)  # fmt: skip
    path = RunDir(tmp_path).write_json(tmp_path / "bounds.json", res.to_json())
    assert read_bounds(path) == res
    data = json.loads(path.read_text())
    assert list(data) == KEYS + (STABILITY_KEYS if stability else [])
    assert data["version"] == VERSION
    if not stability:
        assert data["by_n"] == []
    else:
        assert [row["n"] for row in data["by_n"]] == [100, 400]
        assert list(data["theorem6"])[:2] == ["sigma_star_log10", "r_star_log10"]
        assert data["other_unit"]["step_unit"] == "minibatches" and data["train"]["lr"] == 0.05
    assert list(data["rows"][0])[:3] == ["r", "sigma", "stability_grad"]


def test_an_older_bounds_json_is_not_rendered(tmp_path):
    for old in ({"C": 1.0, "rows": []}, {"version": VERSION - 1}):
        (tmp_path / "bounds.json").write_text(json.dumps(old))
        assert read_bounds(tmp_path / "bounds.json") is None
        assert "written by an older smoothstab" in page(None)


def test_a_damaged_bounds_json_is_one_line(tmp_path):
    data = build().to_json()
    del data["rows"][0]["sigma"]
    (tmp_path / "bounds.json").write_text(json.dumps(data))
    with pytest.raises(DamagedFile, match=r"bounds\.json: not a bounds\.json of this version") as e:
        read_bounds(tmp_path / "bounds.json")
    assert "sigma" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "log10, want",
    [(3.4339, "2.72e+3"), (3.999999, "1.00e+4"), (-4.49, "3.24e-5"), (1.02e14, "10^(1.02e+14)")],
)
def test_sci(log10, want):
    assert bounds_page._sci(log10) == want


def test_figure_draws(tmp_path):
    from smoothstab.experiments.stages.figures import bounds_figure

    for i, res in enumerate([build(SMALL, (1.0, 20.0, 100.0)), build(stability=False)]):
        path = bounds_figure(res, tmp_path / f"bounds{i}.png")
        assert path.is_file() and path.stat().st_size > 0

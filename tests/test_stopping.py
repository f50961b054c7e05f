"""The stopping rule (emlib.stopping) and what it promises for every model's default fit.

Default fits are compared with independent oracles (closed forms, the quadratic score
root, direct maximisation with SciPy) or, for the slow cases, with a fit run until its
steps are at rounding level, at the issue's tolerance: 1e-6 in every parameter (relative
to max(1, |θ|)) and 1e-9 in ℓ (relative to max(1, |ℓ|)).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from emlib import (
    ConvergenceWarning,
    _per_fit,
    convergence,
    linkage,
    moth,
    nb_mixture,
    normal_mixture,
    poisson_mixture,
    stopping,
    zero_inflated_poisson,
    zinb,
)
from emlib.em import EMModel, run

from .test_linkage import quadratic_root
from .test_moth import closed_form_mle

PARAM_TOL = 1e-6
LOGLIK_TOL = 1e-9


def flat(params) -> np.ndarray:
    parts = []
    for key in sorted(params):
        value = np.atleast_1d(np.asarray(params[key], dtype=float))
        parts.append(1.0 / value if key in ("theta", "thetas") else value)
    return np.concatenate(parts)


def assert_at_maximum(fit, reference_params, reference_loglik):
    a, b = flat(fit.params), flat(reference_params)
    error = np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))
    assert error <= PARAM_TOL, (error, fit.params, reference_params)
    gap = (reference_loglik - fit.loglik) / max(1.0, abs(reference_loglik))
    assert gap <= LOGLIK_TOL, gap
    assert fit.converged
    convergence.check_monotone(fit.loglik_history)


def tight(fit_function, data, **kwargs):
    return fit_function(data, tol=0, xtol=1e-13, max_iter=100_000, **kwargs)


# --------------------------------------------------------------------------------------
# The rule itself
# --------------------------------------------------------------------------------------


def test_batched_steps_equal_one_at_a_time():
    rng = np.random.default_rng(0)
    old, new = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    batched = stopping.step_sizes(old, new, scale=0.5)
    assert batched.shape == (5,)
    for i in range(5):
        assert batched[i] == stopping.step_size(old[i], new[i], 0.5)


def test_rule_is_batched_exactly_as_it_is_scalar():
    steps = np.array([1e-3, 1e-9, 1e-9, 0.0, 1e-15])
    rhos = np.array([0.5, 0.999, 0.5, 0.9, 2.0])
    batched = stopping.is_converged(steps, rhos, 1e-8)
    one = [
        stopping.is_converged(float(s), float(r), 1e-8) for s, r in zip(steps, rhos, strict=True)
    ]
    assert batched.tolist() == one == [False, False, True, True, True]


def test_first_rate_estimate_cannot_stop_a_run():
    rate, seen = stopping.slowest_rate(np.inf, 1e-6)
    assert rate == np.inf and seen == 1e-6
    rate, seen = stopping.slowest_rate(np.array([0.99, np.inf]), np.array([0.1, 0.3]))
    assert rate.tolist() == [0.99, np.inf] and seen.tolist() == [0.99, 0.3]


def test_one_long_step_then_a_short_one_cannot_stop_a_run():
    """Three iterates give one step ratio, which a long first step makes tiny at any rate."""
    rho = 0.99  # the true rate: 1e-9 / (1 - rho) = 1e-7 still to go after the short step
    path = [1.0, 1e-9, rho * 1e-9]
    assert not stopping.converged(path, 1e-8)
    assert stopping.converged([1.0, 0.5, 0.5], 1e-8)  # a zero step is at the fixed point
    path.append(rho * path[-1])  # two ratios, the second the true rate
    assert not stopping.converged(path, 1e-12) and stopping.converged(path, 1e-8)


def test_a_coordinate_resting_at_infinity_does_not_block_convergence():
    # A ZINB fit in the Poisson limit: theta stays at +inf while mu converges linearly.
    path = [np.array([2.0 + 0.5**t, np.inf]) for t in range(60)]
    finite = [p[:1] for p in path]
    first = next(t for t in range(3, 61) if stopping.converged(finite[:t], 1e-8))
    assert next(t for t in range(3, 61) if stopping.converged(path[:t], 1e-8)) == first
    # Reaching infinity, leaving it, or nan is not a bounded step.
    assert stopping.step_size([1.0, 5.0], [1.0, np.inf]) == np.inf
    assert stopping.step_size([1.0, np.inf], [1.0, 5.0]) == np.inf
    assert stopping.step_size([1.0, np.inf], [1.0, -np.inf]) == np.inf
    assert stopping.step_size([1.0, np.nan], [1.0, np.nan]) == np.inf
    assert not stopping.converged([np.array([2.0, np.nan])] * 5, 1e-8)


def _step_by_hand(old: float, new: float, floor: float) -> float:
    """One coordinate's relative step, by the documented rule, on Python floats."""
    if old == new:
        return 0.0  # also a coordinate resting at an infinity, or 0 against a floor of 0
    if not (math.isfinite(old) and math.isfinite(new)):
        return math.inf
    return abs(new - old) / max(floor, abs(new))


@pytest.mark.parametrize("floor", [1.0, 0.0, np.array([1.0, 0.0, 2.0])])
def test_step_sizes_of_awkward_rows_follow_the_rule(floor):
    """Rows that take the short way (finite sums) and the guarded way give the rule's steps,
    warning-free: infinities resting, reached or left, NaN, sums that overflow, zeros."""
    old = np.array(
        [
            [0.5, 1.0, -2.0],
            [1.5e308, 1.5e308, 1.0],  # finite coordinates whose sum overflows
            [np.inf, 1.0, 0.0],  # resting at an infinity
            [1.0, 5.0, 0.0],  # reaching one
            [np.nan, 1.0, 0.0],
            [0.0, 0.0, 0.0],  # still at zero
        ]
    )
    new = np.array(
        [
            [0.25, 1.5, -2.0],
            [1.5e308, 1.0e308, 2.0],
            [np.inf, 1.5, 0.0],
            [1.0, np.inf, 0.0],
            [np.nan, 1.0, 0.0],
            [0.0, 0.0, 1e-3],
        ]
    )
    floors = np.broadcast_to(floor, old.shape)
    expected = [
        max(_step_by_hand(o, n, f) for o, n, f in zip(*rows, strict=True))
        for rows in zip(old.tolist(), new.tolist(), floors.tolist(), strict=True)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batched = stopping.step_sizes(old, new, floor)
        alone = [stopping.step_size(o, n, floor) for o, n in zip(old, new, strict=True)]
        # One fit's step in the drivers (Python floats on a short point).
        one = [_per_fit.ONE.steps(o, n, floor) for o, n in zip(old, new, strict=True)]
    assert batched.tolist() == alone == one == expected


@pytest.mark.parametrize("d", [1, 3, stopping.SHORT_POINT, stopping.SHORT_POINT + 1, 80])
@pytest.mark.parametrize("floor", ["number", "per coordinate"])
def test_one_fits_step_is_its_row_of_the_batch(d, floor):
    """A fit alone (floats on a short point, numpy on a long one) takes its batch row's step,
    to the last bit."""
    rng = np.random.default_rng(d)
    old = rng.normal(size=(200, d)) * rng.lognormal(0, 3, size=(200, d))
    new = old + rng.normal(size=(200, d)) * rng.lognormal(-5, 3, size=(200, d))
    scale = 0.5 if floor == "number" else rng.lognormal(0, 1, size=d)
    batched = stopping.step_sizes(old, new, scale)
    alone = [_per_fit.ONE.steps(o, n, scale) for o, n in zip(old, new, strict=True)]
    assert all(isinstance(step, float) for step in alone)
    assert alone == batched.tolist()


@pytest.mark.parametrize("d", [1, 2, 3, _per_fit.IN_ORDER - 1, _per_fit.IN_ORDER, 9, 17, 40])
def test_one_fits_sums_are_its_row_of_the_batch(d):
    """A fit alone adds its squares (Python floats on a short vector, numpy on a long one)
    as its row of a batch does, to the last bit: the SQUAREM step length and the xtol test
    see the same numbers alone and in a batch (a numpy whose pairwise sum changed would
    fail here)."""
    rng = np.random.default_rng(100 + d)
    x = rng.normal(size=(2000, d)) * rng.lognormal(0, 3, size=(2000, d))
    x[:5] *= 1e160  # squares that overflow to inf
    x[5:10] *= 1e-170  # and squares that underflow
    with np.errstate(over="ignore"):
        sums, norms = _per_fit.BATCH.sum_of_squares(x), _per_fit.BATCH.norm(x)
    with np.errstate(over="ignore"):  # numpy's path (the long rows) warns of the overflow
        alone = [_per_fit.ONE.sum_of_squares(row) for row in x]
        norms_alone = [_per_fit.ONE.norm(row) for row in x]
    assert all(isinstance(value, float) for value in alone)
    assert alone == sums.tolist()
    assert norms_alone == norms.tolist()


@settings(max_examples=40, deadline=None)
@given(
    rho=st.floats(0.05, 0.999),
    start=st.floats(-50, 50).filter(lambda v: abs(v) > 1e-3),
    fixed=st.floats(-5, 5),
    tol=st.sampled_from([1e-4, 1e-6, 1e-8]),
)
def test_converged_is_never_early_on_a_linear_map(rho, start, fixed, tol):
    """On θ ↦ c + ρ(θ − c) Aitken's bound is exact: stopped means within tol (plus rounding)."""
    history = [fixed + start]
    while not stopping.converged(history, tol) and len(history) < 200_000:
        history.append(fixed + rho * (history[-1] - fixed))
    error = abs(history[-1] - fixed) / max(1.0, abs(fixed))
    assert error <= 1.01 * tol + 1e-12


def test_a_tiny_tol_still_ends_converged_at_rounding_level():
    # filterwarnings=error: a ConvergenceWarning here fails the test.
    for fit in (
        moth.fit(tol=1e-15, max_iter=200),
        linkage.fit(tol=1e-14),
        zero_inflated_poisson.fit(np.r_[np.zeros(40), np.arange(60) % 5], tol=0.0),
        moth.fit(tol=0.0, accelerate=None),
    ):
        assert fit.converged


# --------------------------------------------------------------------------------------
# Default fits at the maximum, slow cases included
# --------------------------------------------------------------------------------------


def test_default_moth_and_linkage_fits_match_the_closed_forms():
    fit = moth.fit()
    truth = closed_form_mle(np.array(moth.GIVENS_HOETING_COUNTS))
    got = np.array([fit.params[k] for k in moth.PARAM_NAMES])
    np.testing.assert_allclose(got, truth, rtol=0, atol=PARAM_TOL)
    assert linkage.fit().params["theta"] == pytest.approx(quadratic_root(), abs=PARAM_TOL)


def test_default_zip_fit_matches_direct_maximisation():
    rng = np.random.default_rng(3)
    y = np.where(rng.random(800) < 0.25, 0, rng.poisson(1.7, 800))
    fit = zero_inflated_poisson.fit(y)

    def negative(v):
        return -zero_inflated_poisson.loglik(y, {"lam": v[0], "pi": v[1]})

    opt = minimize(negative, [1.5, 0.2], method="Nelder-Mead", options={"xatol": 1e-11})
    opt = minimize(negative, opt.x, method="BFGS", options={"gtol": 1e-9})
    assert_at_maximum(fit, {"lam": opt.x[0], "pi": opt.x[1]}, -opt.fun)


def test_default_hasselblad_fit_is_at_the_maximum():
    """EM rate 0.996: the old default stopped 2e-3 short with converged=True."""
    y = poisson_mixture.hasselblad_data()
    fit = poisson_mixture.fit(y, k=2)
    ref = tight(poisson_mixture.fit, y, k=2, init=dict(fit.params))
    assert_at_maximum(fit, ref.params, ref.loglik)
    assert fit.n_iter_total >= fit.n_iter > 0


def mixture_rate_08() -> np.ndarray:
    rng = np.random.default_rng(7)
    z = rng.choice(3, 1000, p=[0.3, 0.4, 0.3])
    return rng.normal(np.array([0.0, 4.4, 8.8])[z], 1.0)


def test_default_normal_mixture_k3_with_rate_08_is_at_the_maximum():
    x = mixture_rate_08()
    fit = normal_mixture.fit(x, k=3)
    ref = tight(normal_mixture.fit, x, k=3, init=dict(fit.params))
    assert_at_maximum(fit, ref.params, ref.loglik)


def test_default_nb_mixture_fit_is_at_the_maximum():
    rng = np.random.default_rng(1)
    y = np.concatenate(
        [rng.negative_binomial(5, 5 / 15, 600), rng.negative_binomial(20, 20 / 120, 200)]
    )
    fit = nb_mixture.fit(y, k=2)
    ref = tight(nb_mixture.fit, y, k=2, init=dict(fit.params))
    assert_at_maximum(fit, ref.params, ref.loglik)


def boundary_counts() -> np.ndarray:
    """bioChemists-like article counts: NB(μ 1.69, θ 2.3), fewer zeros than NB: π̂ = 0."""
    rng = np.random.default_rng(1972)
    return rng.negative_binomial(2.3, 2.3 / (2.3 + 1.69), 915)


def test_default_zinb_fit_at_the_pi_boundary():
    y = boundary_counts()
    fit = zinb.fit(y)
    ref = tight(zinb.fit, y)
    assert fit.params["pi"] < 1e-6
    assert_at_maximum(fit, ref.params, ref.loglik)
    assert fit.n_iter < 100


def test_boundary_standard_errors_keep_the_interior_parameters():
    fit = zinb.fit(boundary_counts())
    with pytest.warns(RuntimeWarning, match="boundary"):
        se = fit.se
    assert np.isnan(se["pi"])
    mu, theta = fit.params["mu"], fit.params["theta"]
    # The negative binomial's own standard error of the mean, π held at 0.
    assert se["mu"] == pytest.approx(np.sqrt(mu * (1 + mu / theta) / 915), rel=1e-3)
    assert np.isfinite(se["theta"]) and se["theta"] > 0


def test_warnings_name_the_line_that_asked(recwarn):
    """A warning raised deep inside emlib (under a cached property, too) blames the caller."""
    from emlib import linkage, rate

    fit = zinb.fit(boundary_counts())
    _ = fit.se  # the boundary warning, through functools' cached_property
    _ = zinb.fit(boundary_counts()).summary()  # the same warning, one call deeper
    short = linkage.fit([125, 18, 20, 34], max_iter=2)  # a ConvergenceWarning from fit
    rate(short)  # and one from emlib.rate
    assert len(recwarn) >= 4
    for w in recwarn:
        assert w.filename == __file__, f"{w.message} blamed {w.filename}:{w.lineno}"


def zinb_matrix() -> np.ndarray:
    rng = np.random.default_rng(11)
    g = 12
    mu = np.exp(rng.normal(0, 1, g))
    theta = np.exp(rng.uniform(np.log(0.3), np.log(30), g))
    pi = rng.uniform(0, 0.4, g)
    nb = rng.negative_binomial(theta, theta / (theta + mu), size=(600, g))
    return np.where(rng.random((600, g)) < pi, 0, nb)


def test_default_zinb_matrix_fit_is_at_the_maximum_on_every_gene():
    counts = zinb_matrix()
    fit = zinb.fit(counts)
    assert fit.converged.all()
    assert fit.n_iter_total == fit.n_iter.sum()
    for g in range(counts.shape[1]):
        ref = tight(zinb.fit, counts[:, g])
        one = {k: fit.params[k][g] for k in zinb.PARAM_NAMES}
        gene = type("Gene", (), {})()
        gene.params, gene.loglik, gene.converged = one, fit.loglik[g], fit.converged[g]
        gene.loglik_history = fit.loglik_history[g]
        assert_at_maximum(gene, ref.params, ref.loglik)


def test_one_gene_fit_equals_the_matrix_fit():
    counts = zinb_matrix()
    matrix = zinb.fit(counts)
    assert np.any(matrix.n_iter > zinb.POLISH_AFTER)  # genes on the Newton-polish path too
    for g in range(counts.shape[1]):
        single = zinb.fit(counts[:, g])
        assert single.n_iter == matrix.n_iter[g]
        for name in zinb.PARAM_NAMES:
            assert single.params[name] == pytest.approx(matrix.params[name][g], rel=1e-12)


# --------------------------------------------------------------------------------------
# Honest converged
# --------------------------------------------------------------------------------------

FITS = [
    lambda **kw: moth.fit(**kw),
    lambda **kw: linkage.fit(**kw),
    lambda **kw: zero_inflated_poisson.fit(boundary_counts(), **kw),
    lambda **kw: poisson_mixture.fit(poisson_mixture.hasselblad_data(), k=2, n_init=1, **kw),
    lambda **kw: normal_mixture.fit(mixture_rate_08(), k=3, n_init=1, **kw),
    lambda **kw: nb_mixture.fit(boundary_counts(), k=2, n_init=1, **kw),
    lambda **kw: zinb.fit(boundary_counts(), **kw),
]


@pytest.mark.parametrize("fit", FITS)
@pytest.mark.parametrize("accelerate", ["squarem", None])
def test_a_fit_stopped_by_max_iter_says_so(fit, accelerate):
    with pytest.warns(ConvergenceWarning, match="max_iter=4") as record:
        result = fit(max_iter=4, accelerate=accelerate)
    assert not result.converged
    assert result.n_iter <= 4
    assert "distance to the maximum" in str(record[0].message)


def test_a_zinb_matrix_fit_stopped_by_max_iter_says_so_per_gene():
    with pytest.warns(ConvergenceWarning, match="genes stopped after max_iter=5"):
        fit = zinb.fit(zinb_matrix(), max_iter=5)
    assert not fit.converged.any()
    assert np.all(fit.n_iter <= 5)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(50, 400),
    lam=st.floats(0.5, 6.0),
    pi=st.floats(0.0, 0.6),
    lam0=st.floats(0.2, 8.0),
    pi0=st.floats(0.01, 0.9),
    tol=st.sampled_from([1e-5, 1e-7, 1e-9]),
    accelerate=st.sampled_from(["squarem", None]),
)
def test_converged_fits_agree_with_a_tight_fit_to_tol(
    seed, n, lam, pi, lam0, pi0, tol, accelerate
):
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < pi, 0, rng.poisson(lam, n))
    if y.sum() == 0:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = zero_inflated_poisson.fit(
            y, tol=tol, init={"lam": lam0, "pi": pi0}, accelerate=accelerate
        )
    if not fit.converged:
        return
    ref = tight(zero_inflated_poisson.fit, y, init={"lam": lam0, "pi": pi0})
    a, b = flat(fit.params), flat(ref.params)
    # Aitken's bound is an estimate: allow a factor 10.
    assert np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))) <= 10 * tol


# --------------------------------------------------------------------------------------
# Scale invariance
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("accelerate", ["squarem", None])
@pytest.mark.parametrize("factor", [64.0, 1 / 1024])
def test_rescaling_x_does_not_change_the_iterations(factor, accelerate):
    x = mixture_rate_08()
    init = {"weights": [0.3, 0.4, 0.3], "means": [1.0, 4.0, 7.0], "sds": [1.5, 1.5, 1.5]}
    scaled = {k: np.asarray(v) * (factor if k != "weights" else 1.0) for k, v in init.items()}
    base = normal_mixture.fit(x, k=3, init=init, accelerate=accelerate)
    other = normal_mixture.fit(x * factor, k=3, init=scaled, accelerate=accelerate)
    assert other.n_iter == base.n_iter
    np.testing.assert_allclose(other.params["means"] / factor, base.params["means"], rtol=1e-9)


@pytest.mark.parametrize("accelerate", ["squarem", None])
def test_a_constant_added_to_loglik_does_not_change_the_iterations(accelerate):
    shifted = EMModel(
        name="moth+constant",
        e_step=lambda d, p: (lambda out: (out[0], out[1] + 12_345.0))(moth.MODEL.e_step(d, p)),
        m_step=moth.MODEL.m_step,
        pack=moth.MODEL.pack,
        unpack=moth.MODEL.unpack,
        in_domain=moth.MODEL.in_domain,
    )
    prepared = moth._prepare(moth.GIVENS_HOETING_COUNTS)
    start = [dict.fromkeys(moth.PARAM_NAMES, 1 / 3)]
    base = run(moth.MODEL, prepared, start, accelerate=accelerate)
    other = run(shifted, prepared, start, accelerate=accelerate)
    assert other.n_iter == base.n_iter
    assert other.loglik == pytest.approx(base.loglik + 12_345.0, rel=1e-14)


def test_apply_rule_on_one_fit_is_its_row_of_a_batch():
    """A batch of one takes apply_rule's float path: the same rule, bit for bit, as that
    fit's row of a batch (finite, zero, infinite steps and unseen rates included)."""
    rng = np.random.default_rng(4)
    n = 400
    last = rng.choice([0.0, 1e-14, 1e-3, 1.0], n) * rng.random(n)
    last[::23] = np.inf
    step = np.where(np.isinf(last), 0.5, last) * rng.choice([0.0, 0.3, 0.99, 1.5], n)
    step[::37] = np.inf
    seen = np.where(rng.random(n) < 0.3, np.inf, rng.random(n))
    batch = stopping.apply_rule(last, step, seen, 1e-8)
    for i in range(n):
        alone = stopping.apply_rule(last[i : i + 1], step[i : i + 1], seen[i : i + 1], 1e-8)
        for whole, part in zip(batch, alone, strict=True):
            assert part.shape == (1,)
            assert np.array_equal(whole[i], part[0], equal_nan=True)

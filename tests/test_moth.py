"""Peppered moth (Givens & Hoeting, Example 4.2): emlib.moth against independent oracles.

The oracles: the published estimates, the closed-form MLE of the saturated model, a direct
maximisation with scipy.optimize, scipy.stats' multinomial log-pmf, the expected-count and
allele-counting formulas written out here, and the analytic (expected = observed at the
MLE) information matrix.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

import emlib
from emlib import moth

COUNTS = np.array([85, 196, 341])  # carbonaria, insularia, typica
NAMES = ("p_C", "p_I", "p_T")


def phenotype_probs(p_c, p_i, p_t):
    """Hardy–Weinberg phenotype probabilities, written out independently of emlib."""
    return np.array([p_c**2 + 2 * p_c * p_i + 2 * p_c * p_t, p_i**2 + 2 * p_i * p_t, p_t**2])


def closed_form_mle(counts):
    """The model has 2 free parameters and 3 cells, so at the MLE the phenotype
    probabilities equal the observed proportions: p_T² = x_T/N and (1 − p_C)² = 1 − x_C/N."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum()
    p_t = np.sqrt(counts[2] / n)
    p_c = 1 - np.sqrt(1 - counts[0] / n)
    return np.array([p_c, 1 - p_c - p_t, p_t])


def as_vector(params):
    return np.array([params[name] for name in NAMES])


@pytest.fixture(scope="module")
def fitted():
    return moth.fit(COUNTS, tol=1e-14, init={"p_C": 1 / 3, "p_I": 1 / 3, "p_T": 1 / 3})


# --------------------------------------------------------------------------------------
# The MLE
# --------------------------------------------------------------------------------------


def test_mle_matches_givens_and_hoeting(fitted):
    assert fitted.converged
    # Givens & Hoeting, Computational Statistics, Example 4.2.
    published = np.array([0.07084, 0.18874, 0.74043])
    np.testing.assert_allclose(as_vector(fitted.params), published, atol=5e-6)


def test_mle_matches_closed_form(fitted):
    np.testing.assert_allclose(as_vector(fitted.params), closed_form_mle(COUNTS), atol=1e-8)


def test_mle_matches_direct_maximisation(fitted):
    def negative_loglik(v):
        p_c, p_i = v
        probs = phenotype_probs(p_c, p_i, 1 - p_c - p_i)
        if np.any(probs <= 0):
            return np.inf
        return -np.sum(COUNTS * np.log(probs))

    opt = optimize.minimize(
        negative_loglik,
        x0=[0.3, 0.3],
        method="Nelder-Mead",
        options={"xatol": 1e-11, "fatol": 1e-13, "maxiter": 10_000},
    )
    assert opt.success, opt.message
    p_c, p_i = opt.x
    np.testing.assert_allclose(as_vector(fitted.params), [p_c, p_i, 1 - p_c - p_i], atol=1e-7)
    # emlib's maximum is at least as high as the optimiser's.
    assert -negative_loglik(as_vector(fitted.params)[:2]) >= -opt.fun - 1e-9


def test_squarem_reaches_the_same_fixed_point(fitted):
    fast = moth.fit(COUNTS, tol=1e-14, accelerate="squarem")
    assert fast.converged
    np.testing.assert_allclose(as_vector(fast.params), closed_form_mle(COUNTS), atol=1e-8)
    assert fast.loglik == pytest.approx(fitted.loglik, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(1, 2000), min_size=3, max_size=3),
    start=st.lists(st.floats(0.05, 1.0), min_size=3, max_size=3),
)
def test_random_counts_and_starts_reach_the_closed_form_mle(counts, start):
    start = np.array(start) / np.sum(start)
    init = dict(zip(NAMES, start.tolist(), strict=True))
    init["p_T"] = 1.0 - init["p_C"] - init["p_I"]  # sum exactly 1 after rounding
    # tol is kept well above the precision of ℓ: ℓ is the log multinomial coefficient
    # (~1e3 here) plus Σ x log π (~−1e3), so it carries absolute rounding of ~1e-13 and
    # only ~1e-14 relative; below that, SQUAREM can jitter by one ulp forever.
    plain = moth.fit(counts, tol=1e-12, init=init, max_iter=20_000, accelerate=None)
    assert plain.converged
    expected = closed_form_mle(counts)
    np.testing.assert_allclose(as_vector(plain.params), expected, atol=1e-6)

    # Never decreasing, whether read from the history or recomputed with scipy.stats.
    history = plain.loglik_history
    assert np.all(np.diff(history) >= -1e-10 * np.abs(history[:-1]))
    recomputed = np.array(
        [
            stats.multinomial.logpmf(counts, sum(counts), phenotype_probs(*as_vector(p)))
            for p in plain.param_history
        ]
    )
    np.testing.assert_allclose(recomputed, history, rtol=1e-10)

    fast = moth.fit(counts, tol=1e-12, init=init, max_iter=20_000, accelerate="squarem")
    assert fast.converged
    np.testing.assert_allclose(as_vector(fast.params), expected, atol=1e-6)
    assert np.all(np.diff(fast.loglik_history) >= -1e-10 * np.abs(fast.loglik_history[:-1]))


# --------------------------------------------------------------------------------------
# Log-likelihood, E-step, M-step
# --------------------------------------------------------------------------------------


def test_loglik_equals_scipy_multinomial():
    rng = np.random.default_rng(5)
    for _ in range(20):
        p = rng.dirichlet([1, 1, 1])
        params = dict(zip(NAMES, p.tolist(), strict=True))
        params["p_T"] = 1.0 - params["p_C"] - params["p_I"]
        expected = stats.multinomial.logpmf(COUNTS, COUNTS.sum(), phenotype_probs(*p))
        assert moth.loglik(COUNTS, params) == pytest.approx(expected, rel=1e-10, abs=0)


def test_fit_loglik_is_the_full_multinomial_loglik(fitted):
    expected = stats.multinomial.logpmf(
        COUNTS, COUNTS.sum(), phenotype_probs(*as_vector(fitted.params))
    )
    assert fitted.loglik == pytest.approx(expected, rel=1e-10, abs=0)


def test_e_step_splits_phenotypes_among_genotypes():
    x_c, x_i, x_t = COUNTS
    for p_c, p_i, p_t in [(0.2, 0.3, 0.5), (0.6, 0.1, 0.3), (1 / 3, 1 / 3, 1 / 3)]:
        got = moth.e_step(COUNTS, {"p_C": p_c, "p_I": p_i, "p_T": p_t})
        carb = p_c**2 + 2 * p_c * p_i + 2 * p_c * p_t
        insu = p_i**2 + 2 * p_i * p_t
        expected = [
            x_c * p_c**2 / carb,  # CC
            x_c * 2 * p_c * p_i / carb,  # CI
            x_c * 2 * p_c * p_t / carb,  # CT
            x_i * p_i**2 / insu,  # II
            x_i * 2 * p_i * p_t / insu,  # IT
            x_t,  # TT: typica is only TT
        ]
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        np.testing.assert_allclose([got[:3].sum(), got[3:5].sum(), got[5]], COUNTS, rtol=1e-12)


def test_m_step_counts_alleles():
    rng = np.random.default_rng(6)
    for _ in range(10):
        g = rng.uniform(0, 100, 6)
        cc, ci, ct, ii, it, tt = g
        n_alleles = 2 * (cc + ci + ct + ii + it + tt)
        got = moth.m_step(COUNTS, g)
        assert got["p_C"] == pytest.approx((2 * cc + ci + ct) / n_alleles, rel=1e-13, abs=0)
        assert got["p_I"] == pytest.approx((2 * ii + ci + it) / n_alleles, rel=1e-13, abs=0)
        assert got["p_T"] == pytest.approx((2 * tt + ct + it) / n_alleles, rel=1e-13, abs=0)


def test_one_em_step_from_uniform_matches_hand_computation():
    # From (1/3, 1/3, 1/3): carbonaria splits 1:2:2, insularia 1:2, typica is all TT.
    x_c, x_i, x_t = COUNTS
    cc, ci, ct = x_c / 5, 2 * x_c / 5, 2 * x_c / 5
    ii, it = x_i / 3, 2 * x_i / 3
    n2 = 2 * COUNTS.sum()
    expected = [(2 * cc + ci + ct) / n2, (2 * ii + ci + it) / n2, (2 * x_t + ct + it) / n2]
    result = moth.fit(COUNTS, max_iter=1, tol=0.0, xtol=1.0)  # one EM step, then stop
    assert result.n_iter == 1
    np.testing.assert_allclose(as_vector(result.param_history[1]), expected, rtol=1e-12)


# --------------------------------------------------------------------------------------
# Standard errors and rate
# --------------------------------------------------------------------------------------


def test_standard_errors_match_analytic_information(fitted):
    p_c, p_i, p_t = closed_form_mle(COUNTS)
    n = COUNTS.sum()
    probs = phenotype_probs(p_c, p_i, p_t)
    # Gradients in (p_C, p_I) with p_T = 1 − p_C − p_I:
    # π_C = 1 − (1 − p_C)², π_T = p_T², π_I = 1 − π_C − π_T.
    grad_c = np.array([2 * (1 - p_c), 0.0])
    grad_t = np.array([-2 * p_t, -2 * p_t])
    grad_i = -grad_c - grad_t
    info = n * sum(
        np.outer(g, g) / pr for g, pr in zip([grad_c, grad_i, grad_t], probs, strict=True)
    )
    cov = np.linalg.inv(info)
    se_c, se_i = np.sqrt(np.diag(cov))
    d_t = np.array([-1.0, -1.0])
    se_t = np.sqrt(d_t @ cov @ d_t)
    se = fitted.se
    np.testing.assert_allclose([se["p_C"], se["p_I"], se["p_T"]], [se_c, se_i, se_t], rtol=1e-3)


def test_rate_matches_reference_value(fitted):
    assert emlib.rate(fitted) == pytest.approx(0.176, abs=5e-4)


def test_rate_matches_empirical_error_ratio(fitted):
    """Along a plain EM run the error shrinks by the rate each step."""
    truth = closed_form_mle(COUNTS)
    run = moth.fit(COUNTS, tol=1e-15, max_iter=200, accelerate=None)
    errors = np.array([np.linalg.norm(as_vector(p) - truth) for p in run.param_history])
    ratios = errors[1:] / errors[:-1]
    # Late enough that the map is linear, early enough that rounding does not dominate.
    usable = ratios[(errors[:-1] < 1e-3) & (errors[:-1] > 1e-9)]
    assert usable.size >= 4
    empirical = np.median(usable)
    assert empirical == pytest.approx(emlib.rate(fitted), abs=2e-3)
    assert np.ptp(usable) < 2e-3  # the ratio has settled


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([85, 196], r"shape \(3,\)"),
        ([85, 196, 341, 4], r"shape \(3,\)"),
        ([85, -196, 341], r"counts \(>= 0\)"),
        ([85, 19.6, 341], "whole-number counts"),
        ([0, 0, 0], "all zero"),
        ([85, np.nan, 341], "NaN or infinite"),
        ([[85, 196, 341]], "1-D"),
    ],
)
def test_bad_counts_are_rejected(data, message):
    with pytest.raises(ValueError, match=message):
        moth.fit(data)


@pytest.mark.parametrize(
    ("init", "message"),
    [
        ({"p_C": 0.3, "p_I": 0.3, "p_T": 0.3}, "must sum to 1"),
        ({"p_C": 0.5, "p_I": 0.6, "p_T": -0.1}, r"probabilities in \[0, 1\]"),
        ({"p_C": 0.5, "p_I": 0.5}, r"missing \['p_T'\]"),
        ({"C": 0.2, "p_I": 0.3, "p_T": 0.5}, r"unexpected \['C'\]"),
    ],
)
def test_bad_init_is_rejected(init, message):
    with pytest.raises(ValueError, match=message):
        moth.fit(COUNTS, init=init)


def test_impossible_start_is_rejected():
    # p_C = 0 gives carbonaria probability 0, but 85 were seen.
    with pytest.raises(ValueError, match="impossible"):
        moth.fit(COUNTS, init={"p_C": 0.0, "p_I": 0.5, "p_T": 0.5})


def test_bad_genotype_counts_are_rejected():
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        moth.m_step(COUNTS, [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        moth.m_step(COUNTS, [1, 2, 3, -4, 5, 6])

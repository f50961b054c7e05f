"""Zero-inflated negative binomial: emlib.zinb against statsmodels, scipy.stats and scipy.optimize.

Every expected value comes from outside emlib: statsmodels' ``ZeroInflatedNegativeBinomialP``
(intercepts only, ``p=2`` so that its ``alpha`` is 1/θ), scipy.stats' ``nbinom`` and
``poisson`` log-pmfs (``nbinom`` with n = θ, p = θ/(θ + μ)), Bayes' rule written out in the
test, and direct maximisation with scipy.optimize.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import optimize, stats
from scipy.special import expit, gammaln, logit
from statsmodels.discrete.count_model import ZeroInflatedNegativeBinomialP

import emlib
from emlib import zero_inflated_poisson, zinb


def simulate(n, mu, theta, pi, seed, size_factors=None):
    """ZINB draws: a dropout with probability pi, otherwise NB(mean s·mu, size theta)."""
    rng = np.random.default_rng(seed)
    mean = mu if size_factors is None else size_factors * mu
    counts = (
        rng.poisson(mean, n)
        if np.isinf(theta)
        else rng.negative_binomial(theta, theta / (theta + mean), n)
    )
    return np.where(rng.random(n) < pi, 0, counts)


def nb_logpmf(y, mu, theta):
    """NB log-pmf (mean μ, size θ): scipy.stats for θ ≤ 1e4, exact product form beyond.

    scipy.stats.nbinom (n = θ, p = θ/(θ + μ)) loses digits as θ grows; beyond 1e4,
    log Γ(y + θ)/Γ(θ) − y log θ = Σ_{j<y} log(1 + j/θ) is summed term by term. θ = ∞ is
    the Poisson.
    """
    y = np.asarray(y)
    if np.isinf(theta):
        return stats.poisson.logpmf(y, mu)
    if theta <= 1e4:
        return stats.nbinom.logpmf(y, theta, theta / (theta + mu))
    partial = np.concatenate([[0.0], np.cumsum(np.log1p(np.arange(y.max()) / theta))])
    return partial[y] + y * np.log(mu) - (y + theta) * np.log1p(mu / theta) - gammaln(y + 1.0)


def ref_loglik(y, mu, theta, pi, size_factors=None):
    """Observed-data ZINB log-likelihood from scipy.stats (−log y! included)."""
    y = np.asarray(y)
    mean = mu if size_factors is None else size_factors * mu
    log_nb = nb_logpmf(y, mean, theta)
    with np.errstate(divide="ignore"):
        zero = np.logaddexp(np.log(pi), np.log1p(-pi) + log_nb)
        positive = np.log1p(-pi) + log_nb
    return float(np.where(y == 0, zero, positive).sum())


def direct_fit(y, start, size_factors=None):
    """Maximise ref_loglik over (log μ, log θ, logit π) with scipy.optimize, θ ≤ 1e4.

    The bound matters: beyond θ ≈ 1e5 scipy.stats.nbinom's log-pmf is off by ~1e-8 per
    count (gammaln(y + θ) − gammaln(θ) cancels), enough for a direct search to "find" a
    spurious maximum ~1e-5 above the true one at θ ≈ 1e6 on near-Poisson data.
    """

    def negative(z):
        return -ref_loglik(y, np.exp(z[0]), np.exp(z[1]), expit(z[2]), size_factors)

    z0 = [np.log(start["mu"]), np.log(min(start["theta"], 1e4)), logit(start["pi"])]
    res = optimize.minimize(
        negative, z0, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-11}
    )
    bounds = [(None, None), (np.log(1e-3), np.log(1e4)), (-30, 30)]
    x0 = np.clip(res.x, [-np.inf, np.log(1e-3), -30], [np.inf, np.log(1e4), 30])
    res = optimize.minimize(
        negative, x0, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-9}
    )
    return -res.fun, {"mu": np.exp(res.x[0]), "theta": np.exp(res.x[1]), "pi": expit(res.x[2])}


# --------------------------------------------------------------------------------------
# A small "cells × genes" matrix and statsmodels on each gene
# --------------------------------------------------------------------------------------

N_CELLS = 1500
#: (μ, θ, π) per gene. The last three sit on or near a boundary of the parameter space:
#: almost Poisson (θ large), no zero inflation (π = 0), and both.
GENES = [
    (2.0, 1.5, 0.3),
    (0.8, 0.7, 0.2),
    (5.0, 4.0, 0.4),
    (1.2, 2.5, 0.1),
    (8.0, 0.9, 0.25),
    (3.0, 200.0, 0.3),
    (1.5, 1.0, 0.0),
    (2.5, np.inf, 0.0),
]


@pytest.fixture(scope="module")
def counts():
    return np.column_stack(
        [simulate(N_CELLS, mu, th, pi, seed=100 + g) for g, (mu, th, pi) in enumerate(GENES)]
    )


@pytest.fixture(scope="module")
def matrix_fit(counts):
    return zinb.fit(counts, tol=1e-13, accelerate="squarem")


def statsmodels_fit(y):
    """statsmodels' intercept-only ZINB (p=2) from its own default start, driven hard."""
    ones = np.ones((y.size, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ZeroInflatedNegativeBinomialP(y, ones, exog_infl=ones, p=2)
        assert model.exog_names == ["inflate_const", "const", "alpha"]
        res = model.fit(method="bfgs", maxiter=5000, gtol=1e-7, disp=0)
        p, llf = res.params, float(res.llf)  # llf is lazy: it warns (NaN) when alpha < 0
    converged = bool(res.mle_retvals["converged"]) and np.isfinite(llf) and p[2] > 0
    return converged, {"pi": expit(p[0]), "mu": np.exp(p[1]), "theta": 1 / p[2]}, llf


@pytest.fixture(scope="module")
def statsmodels_fits(counts):
    return [statsmodels_fit(counts[:, g]) for g in range(counts.shape[1])]


def test_statsmodels_fails_only_at_the_boundaries(statsmodels_fits, matrix_fit):
    """statsmodels fails on the near-Poisson genes, where the MLE is at or near α = 1/θ = 0.

    Gene 5 (θ = 200, π = 0.3): the MLE is θ̂ = ∞ (α̂ = 0). Gene 7 (Poisson, π = 0): π̂ → 0
    and θ̂ is large. On both, statsmodels' BFGS steps push α below 0, where its
    log-likelihood is NaN (the log of a negative number), and it stops unconverged. emlib
    reaches those boundaries: θ̂ = ∞ exactly when the weighted counts are not
    overdispersed, and π̂ → 0.
    """
    failed = [g for g, (ok, _, _) in enumerate(statsmodels_fits) if not ok]
    assert set(failed) <= {5, 7}, failed
    for g in failed:
        p = {k: matrix_fit.params[k][g] for k in ("theta", "pi")}
        assert p["theta"] > 1e3 or p["pi"] < 1e-3, (g, p)


def test_matrix_fit_matches_statsmodels_where_it_converges(statsmodels_fits, matrix_fit):
    assert matrix_fit.converged.all()
    compared = 0
    for g, (ok, params, llf) in enumerate(statsmodels_fits):
        if not ok:
            continue
        compared += 1
        # emlib at least as high, and the same maximum.
        assert matrix_fit.loglik[g] >= llf - 1e-6, g
        assert matrix_fit.loglik[g] == pytest.approx(llf, abs=1e-4), g
        for name in ("mu", "theta", "pi"):
            np.testing.assert_allclose(
                matrix_fit.params[name][g], params[name], rtol=2e-3, err_msg=f"{name}, gene {g}"
            )
    assert compared >= 5


def test_boundary_genes_match_direct_maximisation(counts, matrix_fit):
    """Where statsmodels may fail, scipy.optimize on the scipy.stats likelihood is the oracle."""
    for g in (5, 6, 7):
        y = counts[:, g]  # Poisson-like (5, 7) or without zero inflation (6, 7)
        p = {k: matrix_fit.params[k][g] for k in ("mu", "theta", "pi")}
        start = {"mu": p["mu"], "theta": min(p["theta"], 1e4), "pi": max(p["pi"], 1e-3)}
        best, _ = direct_fit(y, start)
        assert matrix_fit.loglik[g] >= best - 1e-6, (g, matrix_fit.loglik[g], best)


def test_loglik_is_the_scipy_loglik(counts, matrix_fit):
    for g in range(counts.shape[1]):
        p = {k: matrix_fit.params[k][g] for k in ("mu", "theta", "pi")}
        assert matrix_fit.loglik[g] == pytest.approx(
            ref_loglik(counts[:, g], p["mu"], p["theta"], p["pi"]), rel=1e-11
        )


def quietly(func, *args, **kwargs):
    """Call ``func`` with ConvergenceWarnings silenced (runs capped by max_iter on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emlib.ConvergenceWarning)
        return func(*args, **kwargs)


def test_matrix_fit_equals_per_gene_fits(counts):
    """The vectorised loop takes, gene by gene, the very steps of the generic driver."""
    matrix = quietly(zinb.fit, counts, tol=1e-11, max_iter=400)
    assert matrix.converged.sum() >= 5
    for g in range(counts.shape[1]):
        single = quietly(zinb.fit, counts[:, g], tol=1e-11, max_iter=400)
        assert single.n_iter == matrix.n_iter[g]
        assert single.converged == matrix.converged[g]
        assert single.loglik == pytest.approx(matrix.loglik[g], rel=1e-13)
        np.testing.assert_allclose(single.loglik_history, matrix.loglik_history[g], rtol=1e-13)
        for name in ("mu", "theta", "pi"):
            assert single.params[name] == pytest.approx(matrix.params[name][g], rel=1e-12)


def test_squarem_and_plain_em_reach_the_same_maximum(counts, matrix_fit):
    plain = zinb.fit(counts[:, :5], tol=1e-13, max_iter=50_000, accelerate=None)
    np.testing.assert_allclose(plain.loglik, matrix_fit.loglik[:5], rtol=0, atol=1e-6)
    assert np.all(matrix_fit.n_iter[:5] < plain.n_iter)


def test_single_gene_fit_matches_statsmodels(counts, statsmodels_fits):
    ok, params, llf = statsmodels_fits[0]
    assert ok
    result = zinb.fit(counts[:, 0], tol=1e-13, accelerate="squarem")
    assert result.loglik >= llf - 1e-6
    for name in ("mu", "theta", "pi"):
        assert result.params[name] == pytest.approx(params[name], rel=2e-3)
    # Standard errors exist in the interior and are positive.
    assert all(result.se[name] > 0 for name in ("mu", "theta", "pi"))


# --------------------------------------------------------------------------------------
# Size factors
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def size_factor_data():
    rng = np.random.default_rng(5)
    s = rng.lognormal(0.0, 0.5, 500)
    y = np.column_stack(
        [
            simulate(500, mu, th, pi, seed=200 + g, size_factors=s)
            for g, (mu, th, pi) in enumerate([(2.0, 2.0, 0.3), (0.7, 1.0, 0.15), (4.0, 8.0, 0.2)])
        ]
    )
    return y, s


def test_size_factor_fit_matches_direct_maximisation(size_factor_data):
    y, s = size_factor_data
    result = zinb.fit(y, size_factors=s, tol=1e-13, accelerate="squarem")
    assert result.converged.all()
    for g in range(y.shape[1]):
        p = {k: result.params[k][g] for k in ("mu", "theta", "pi")}
        assert result.loglik[g] == pytest.approx(
            ref_loglik(y[:, g], p["mu"], p["theta"], p["pi"], s), rel=1e-11
        )
        best, best_p = direct_fit(y[:, g], p, s)
        assert result.loglik[g] >= best - 1e-6
        for name in ("mu", "theta", "pi"):
            assert p[name] == pytest.approx(best_p[name], rel=2e-3)


def test_size_factor_matrix_fit_equals_per_gene_fits(size_factor_data):
    y, s = size_factor_data
    matrix = quietly(zinb.fit, y, size_factors=s, tol=1e-10, max_iter=60)
    for g in range(y.shape[1]):
        single = quietly(zinb.fit, y[:, g], size_factors=s, tol=1e-10, max_iter=60)
        assert single.n_iter == matrix.n_iter[g]
        assert single.loglik == pytest.approx(matrix.loglik[g], rel=1e-13)


def test_unit_size_factors_change_nothing(counts):
    a = zinb.fit(counts[:300, :3], tol=1e-12, accelerate="squarem")
    b = zinb.fit(counts[:300, :3], tol=1e-12, accelerate="squarem", size_factors=np.ones(300))
    np.testing.assert_allclose(a.loglik, b.loglik, rtol=1e-10)
    # The maximum is flat along π here; the two paths stop at slightly different points.
    for name in ("mu", "theta", "pi"):
        np.testing.assert_allclose(a.params[name], b.params[name], rtol=1e-3, atol=1e-6)


# --------------------------------------------------------------------------------------
# The pieces: log-likelihood, large θ, E-step, M-step
# --------------------------------------------------------------------------------------


def test_loglik_equals_scipy_stats_at_random_params():
    rng = np.random.default_rng(7)
    y = simulate(400, 3.0, 1.2, 0.3, seed=8)
    for _ in range(20):
        mu, theta, pi = rng.uniform(0.1, 20), rng.uniform(0.05, 50), rng.uniform(0, 0.95)
        got = zinb.loglik(y, {"mu": mu, "theta": theta, "pi": pi})
        assert got == pytest.approx(ref_loglik(y, mu, theta, pi), rel=1e-12)


def test_matrix_loglik_is_one_entry_per_gene(counts):
    params = {"mu": 2.0, "theta": 1.5, "pi": np.linspace(0.1, 0.5, counts.shape[1])}
    got = zinb.loglik(counts, params)
    assert got.shape == (counts.shape[1],)
    for g in range(counts.shape[1]):
        assert got[g] == pytest.approx(ref_loglik(counts[:, g], 2.0, 1.5, params["pi"][g]))


@pytest.mark.parametrize(
    ("mu", "theta", "y_max"), [(0.3, 1e12, 40), (7.3, 1e12, 40), (150.0, 1e15, 300)]
)
def test_huge_theta_is_the_poisson(mu, theta, y_max):
    """At θ = 1e12 the NB log-pmf equals the Poisson's to 1e-9 (they differ by ~y²/2θ).

    scipy.stats.nbinom itself loses digits here (gammaln(y + θ) − gammaln(θ) cancels: it
    is off by ~1e-10 already at θ = 1e5), so the oracle is the Poisson log-pmf.
    """
    y = np.arange(y_max + 1)
    expected = stats.poisson.logpmf(y, mu)
    for t in (theta, np.inf):
        got = np.array([zinb.loglik([v], {"mu": mu, "theta": t, "pi": 0.0}) for v in y])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert zinb.loglik(y, {"mu": mu, "theta": theta, "pi": 0.0}) == pytest.approx(
        expected.sum(), rel=0, abs=1e-9 * y.size
    )


def test_moderate_theta_agrees_with_scipy_nbinom_across_the_stirling_switch():
    y = np.arange(60)
    # Beyond θ ≈ 1e4 scipy's own error exceeds this tolerance.
    for theta in (0.01, 1.0, 99.0, 100.0, 101.0, 1e3):
        got = np.array([zinb.loglik([v], {"mu": 9.0, "theta": theta, "pi": 0.0}) for v in y])
        np.testing.assert_allclose(got, nb_logpmf(y, 9.0, theta), rtol=1e-11, atol=1e-11)


def test_e_step_is_bayes_rule():
    rng = np.random.default_rng(11)
    y = simulate(300, 2.0, 1.3, 0.4, seed=3)
    s = rng.uniform(0.5, 2.0, y.size)
    for _ in range(5):
        mu, theta, pi = rng.uniform(0.2, 6), rng.uniform(0.2, 20), rng.uniform(0.01, 0.99)
        for sf in (None, s):
            mean = mu if sf is None else sf * mu
            prior_nb = (1 - pi) * np.exp(nb_logpmf(y, mean, theta))
            prior_dropout = pi * (y == 0)
            expected = prior_dropout / (prior_dropout + prior_nb)
            got = zinb.e_step(y, {"mu": mu, "theta": theta, "pi": pi}, size_factors=sf)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_m_step_maximises_expected_complete_loglik():
    """The M-step's (μ, θ, π) is the argmax of Q, found independently by scipy.optimize."""
    rng = np.random.default_rng(13)
    y = simulate(500, 3.0, 1.7, 0.35, seed=5)
    resp = np.where(y == 0, rng.uniform(0.2, 0.9, y.size), 0.0)

    def negative_q(z):
        mu, theta, pi = np.exp(z[0]), np.exp(z[1]), expit(z[2])
        return -np.sum(resp * np.log(pi) + (1 - resp) * (np.log1p(-pi) + nb_logpmf(y, mu, theta)))

    opt = optimize.minimize(
        negative_q, [0.0, 0.0, 0.0], method="BFGS", options={"gtol": 1e-10, "maxiter": 10_000}
    )
    got = zinb.m_step(y, resp)
    assert got["mu"] == pytest.approx(np.sum((1 - resp) * y) / np.sum(1 - resp), rel=1e-13)
    assert got["pi"] == pytest.approx(resp.mean(), rel=1e-13)
    np.testing.assert_allclose(
        [np.log(got["mu"]), np.log(got["theta"]), logit(got["pi"])], opt.x, atol=1e-5
    )
    z = [np.log(got["mu"]), np.log(got["theta"]), logit(got["pi"])]
    assert -negative_q(z) >= -opt.fun - 1e-9


def test_m_step_gives_infinite_theta_when_not_overdispersed():
    """Weighted variance ≤ weighted mean: the NB likelihood increases all the way to Poisson."""
    y = np.array([0, 1, 1, 2, 2, 2, 3, 3, 4])  # variance 1.11 < mean 2.0 (population)
    got = zinb.m_step(y, np.zeros(y.size))
    assert np.isinf(got["theta"])
    assert got["mu"] == pytest.approx(y.mean())
    # And the Poisson value is the supremum: any finite θ is worse.
    for theta in (1.0, 100.0, 1e6):
        assert stats.poisson.logpmf(y, y.mean()).sum() > nb_logpmf(y, y.mean(), theta).sum()


def test_poisson_data_fit_theta_infinite_and_equal_zip():
    """Underdispersed-after-inflation data: θ̂ = ∞, and the fit is the ZIP fit."""
    y = simulate(3000, 2.5, np.inf, 0.3, seed=9)
    result = zinb.fit(y, tol=1e-13, accelerate="squarem")
    zip_fit = zero_inflated_poisson.fit(y, tol=1e-13)
    if np.isinf(result.params["theta"]):
        assert result.params["mu"] == pytest.approx(zip_fit.params["lam"], rel=1e-6)
        assert result.params["pi"] == pytest.approx(zip_fit.params["pi"], rel=1e-5)
    assert result.loglik >= zip_fit.loglik - 1e-7


# --------------------------------------------------------------------------------------
# Properties: EM never lowers the likelihood, for each gene
# --------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(50, 600),
    mu=st.floats(0.2, 15.0),
    theta=st.floats(0.2, 100.0),
    pi=st.floats(0.0, 0.7),
    mu0=st.floats(0.1, 30.0),
    theta0=st.floats(0.05, 1e4),
    pi0=st.floats(0.01, 0.95),
    accelerate=st.sampled_from([None, "squarem"]),
)
def test_em_is_monotone(seed, n, mu, theta, pi, mu0, theta0, pi0, accelerate):
    y = simulate(n, mu, theta, pi, seed)
    if y.sum() == 0:
        y[0] = 1
    init = {"mu": mu0, "theta": theta0, "pi": pi0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emlib.ConvergenceWarning)
        result = zinb.fit(y, init=init, max_iter=60, accelerate=accelerate)
    history = result.loglik_history
    scale = np.maximum(np.abs(history[:-1]), 1.0)
    assert np.all(np.diff(history) >= -1e-10 * scale)
    recomputed = np.array(
        [ref_loglik(y, p["mu"], p["theta"], p["pi"]) for p in result.param_history]
    )
    np.testing.assert_allclose(recomputed, history, rtol=1e-10)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), accelerate=st.sampled_from([None, "squarem"]))
def test_matrix_em_is_monotone_per_gene(seed, accelerate):
    rng = np.random.default_rng(seed)
    g = 6
    y = np.column_stack(
        [
            simulate(300, rng.uniform(0.2, 8), rng.uniform(0.3, 50), rng.uniform(0, 0.6), seed + j)
            for j in range(g)
        ]
    )
    y[0, y.sum(axis=0) == 0] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emlib.ConvergenceWarning)
        result = zinb.fit(y, max_iter=80, accelerate=accelerate)
    assert len(result.loglik_history) == g
    for j, history in enumerate(result.loglik_history):
        assert history[-1] == result.loglik[j]
        assert np.all(np.diff(history) >= -1e-10 * np.maximum(np.abs(history[:-1]), 1.0))


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------

GOOD = [0, 0, 1, 2, 3, 0, 4, 7]
GOOD_PARAMS = {"mu": 2.0, "theta": 1.0, "pi": 0.2}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([0, 1, -2, 3], r"counts \(>= 0\); found -2"),
        ([0, 1, 2.5, 3], r"whole-number counts; found 2.5"),
        ([0, 1, np.nan, 3], "NaN or infinite"),
        ([0, 1, np.inf, 3], "NaN or infinite"),
        ([], "empty"),
        (np.zeros((0, 3)), "empty"),
        (np.zeros((2, 2, 2)), "1-D array of counts or a 2-D"),
        (["a", "b"], "numeric"),
        (np.array([0, 1, -2, 3]), r"counts \(>= 0\); found -2 at index 2"),
        (np.array([[0, 1], [2, -3]]), r"found -3 at cell 1, gene 1"),
        (np.array([[0.0, 1.0], [0.5, 3.0]]), r"whole-number counts; found 0.5 at cell 1, gene 0"),
        (np.zeros(5, dtype=int), "every count is zero"),
    ],
)
def test_bad_data_is_rejected(data, message):
    with pytest.raises(ValueError, match=message):
        zinb.fit(data)


@pytest.mark.parametrize(
    ("init", "message"),
    [
        ({**GOOD_PARAMS, "pi": -0.1}, r"pi must be a probability in \[0, 1\]"),
        ({**GOOD_PARAMS, "pi": 1.5}, r"pi must be a probability in \[0, 1\]"),
        ({**GOOD_PARAMS, "mu": 0.0}, "mu must be positive"),
        ({**GOOD_PARAMS, "mu": np.inf}, "mu must be positive and finite"),
        ({**GOOD_PARAMS, "theta": -1.0}, "theta must be positive"),
        ({**GOOD_PARAMS, "theta": np.nan}, "theta must not be NaN"),
        ({**GOOD_PARAMS, "mu": [1.0, 2.0]}, r"mu must be a scalar or have one entry per gene"),
        ({"mu": 1.0, "theta": 1.0}, r"missing \['pi'\]"),
        ({**GOOD_PARAMS, "lam": 1.0}, r"unexpected \['lam'\]"),
        ([1.0, 1.0, 0.2], "init must be a dict"),
    ],
)
def test_bad_init_is_rejected(init, message):
    with pytest.raises(ValueError, match=message):
        zinb.fit(GOOD, init=init)


def test_impossible_start_is_rejected():
    with pytest.raises(ValueError, match="impossible"):
        zinb.fit(GOOD, init={**GOOD_PARAMS, "pi": 1.0})
    with pytest.raises(ValueError, match=r"impossible.*pi < 1"):
        zinb.fit(np.column_stack([GOOD, GOOD]), init={**GOOD_PARAMS, "pi": [0.2, 1.0]})


@pytest.mark.parametrize(
    ("size_factors", "message"),
    [
        (np.ones(7), r"one entry per cell, shape \(8,\); got \(7,\)"),
        (np.ones((8, 1)), r"shape \(8,\)"),
        (np.r_[np.ones(7), 0.0], r"positive and finite; found 0.0 at cell 7"),
        (np.r_[-1.0, np.ones(7)], r"positive and finite; found -1.0 at cell 0"),
        (np.r_[np.nan, np.ones(7)], r"positive and finite; found nan"),
        (["a"] * 8, "size_factors must be numeric"),
    ],
)
def test_bad_size_factors_are_rejected(size_factors, message):
    with pytest.raises(ValueError, match=message):
        zinb.fit(GOOD, size_factors=size_factors)
    with pytest.raises(ValueError, match=message):
        zinb.loglik(GOOD, GOOD_PARAMS, size_factors=size_factors)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tol": -1.0}, "tol must be a non-negative number"),
        ({"xtol": np.nan}, "xtol must be a non-negative number"),
        ({"max_iter": 0}, "max_iter must be a positive whole number"),
        ({"accelerate": "aitken"}, "accelerate must be None or 'squarem'"),
    ],
)
def test_bad_options_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zinb.fit(GOOD, **kwargs)
    with pytest.raises(ValueError, match=message):
        zinb.fit(np.column_stack([GOOD, GOOD]), **kwargs)


def test_bad_resp_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        zinb.m_step(GOOD, [0.5, 0.5])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        zinb.m_step(GOOD, [1.5, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="only zeros can be dropouts"):
        zinb.m_step(GOOD, [0.5, 0.5, 0.5, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("max_iter", [25, 31])
def test_genes_cut_short_by_max_iter_take_the_path_they_take_alone(max_iter):
    """Each gene's budget is its own: a gene with evaluations left keeps cycling while
    another, short of its budget, takes plain steps (fails if one gene's budget decides
    the step of all, as zinb's own matrix loop did for these genes at these cuts)."""
    rng = np.random.default_rng(0)
    g, n = 30, 800
    mu, theta, pi = rng.uniform(0.05, 3, g), rng.uniform(0.1, 10, g), rng.uniform(0, 0.9, g)
    dropout = rng.random((n, g)) < pi
    y = np.where(dropout, 0, rng.negative_binomial(theta, theta / (theta + mu), (n, g)))
    matrix = quietly(zinb.fit, y, max_iter=max_iter)
    assert len(set(matrix.n_iter.tolist())) > 2
    for j in range(g):
        single = quietly(zinb.fit, y[:, j], max_iter=max_iter)
        assert (single.n_iter, single.converged) == (matrix.n_iter[j], matrix.converged[j])
        np.testing.assert_array_equal(single.loglik_history, matrix.loglik_history[j])


def test_too_few_iterations_warn_per_gene(counts):
    with pytest.warns(emlib.ConvergenceWarning, match=r"genes stopped after max_iter=3"):
        result = zinb.fit(counts, max_iter=3)
    assert not result.converged.any()
    assert np.all(result.n_iter == 3)
    with pytest.raises(TypeError, match="standard errors are computed for one gene"):
        _ = result.se


# --------------------------------------------------------------------------------------
# The Newton polish of slow genes
# --------------------------------------------------------------------------------------


def weak_gene(seed):
    """A weakly identified gene: mean 0.15 with 30 % dropouts and 90 % zeros in all.

    Seed 38 needed more than 5,000 SQUAREM evaluations without the polish, seed 28 about 2,000.
    """
    return simulate(2000, 0.15, 5.0, 0.3, seed=seed)


def direct_from(y, params):
    """direct_fit started near ``params`` but inside the domain (π ≥ 0.05, θ ≤ 1e4)."""
    return direct_fit(y, {**params, "pi": max(params["pi"], 0.05)})


@pytest.mark.parametrize("seed", [38, 28])
def test_slow_genes_are_polished_to_the_scipy_maximum(seed):
    y = weak_gene(seed)
    fit = zinb.fit(y)
    assert fit.converged
    assert zinb.POLISH_AFTER < fit.n_iter < 100  # the polish ran, and took a few steps
    assert fit.error_bound <= 1e-8
    ref_ll, ref = direct_from(y, fit.params)
    assert fit.loglik >= ref_ll - 1e-9 * abs(ref_ll)
    assert fit.loglik == pytest.approx(ref_loglik(y, **fit.params), rel=1e-12)
    # Both slow genes have their maximum at θ = ∞ (the zero-inflated Poisson), which scipy
    # (θ ≤ 1e4) only approaches: compare with scipy's maximum on that face.
    assert np.isinf(fit.params["theta"]) and ref["theta"] > 1e3
    zip_fit = optimize.minimize(
        lambda z: -ref_loglik(y, np.exp(z[0]), np.inf, expit(z[1])),
        [np.log(fit.params["mu"]) + 0.1, logit(fit.params["pi"]) - 0.2],
        method="Nelder-Mead",
        options={"xatol": 1e-11, "fatol": 1e-13, "maxiter": 5000},
    )
    assert fit.loglik >= -zip_fit.fun - 1e-9 * abs(zip_fit.fun)
    assert fit.params["mu"] == pytest.approx(np.exp(zip_fit.x[0]), rel=1e-6)
    assert fit.params["pi"] == pytest.approx(expit(zip_fit.x[1]), rel=1e-6)
    # Its history is EM's and then the accepted Newton steps: never lower.
    emlib.convergence.check_monotone(fit.loglik_history)


def test_polish_never_lowers_loglik_from_any_start(counts):
    """Newton from poor random starts (far from the top) may fail, but never loses ℓ."""
    data = np.column_stack([counts, weak_gene(38)[:N_CELLS], weak_gene(28)[:N_CELLS]])
    d = zinb._prepare(data)
    rng = np.random.default_rng(5)
    g = d.n_genes
    for _ in range(4):
        v = zinb._pack(
            np.exp(rng.normal(0, 1, g)),
            np.where(rng.random(g) < 0.2, np.inf, np.exp(rng.normal(0, 2, g))),
            np.where(rng.random(g) < 0.2, 0.0, rng.uniform(0, 0.8, g)),
        )
        ll = zinb._objective(d, v)
        v_new, ll_new, steps, certified, bound, moves = zinb._polish(d, v, ll, 1e-8, 30)
        last = ll.copy()
        for genes, value, point in moves:
            allowance = zinb._LL_ROUNDING * np.maximum(np.abs(last[genes]), 1.0)
            assert np.all(value >= last[genes] - allowance)
            assert np.array_equal(value, zinb._objective(zinb._subset(d, genes), point))
            last[genes] = value
        assert np.array_equal(last, ll_new)
        assert np.array_equal(zinb._objective(d, v_new), ll_new)
        assert np.all(steps <= 30) and np.all(bound[certified] <= 1e-8)


def test_polished_fits_are_at_the_maximum_or_say_they_are_not(counts):
    """converged is honest on the polish path too, also when max_iter cuts the polish short."""
    data = np.column_stack([counts, weak_gene(38)[:N_CELLS], weak_gene(28)[:N_CELLS]])
    tight = [direct_from(data[:, g], zinb.fit(data[:, g]).params) for g in range(data.shape[1])]
    for max_iter in (zinb.POLISH_AFTER + 2, zinb.MAX_ITER):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", emlib.ConvergenceWarning)
            fit = zinb.fit(data, max_iter=max_iter)
        assert np.all(fit.n_iter <= max_iter)
        assert fit.converged.all() or max_iter < zinb.MAX_ITER
        for g in np.flatnonzero(fit.converged):
            ref_ll, ref = tight[g]
            assert fit.loglik[g] >= ref_ll - 1e-9 * abs(ref_ll)
            if fit.params["theta"][g] < 1e3 and ref["pi"] > 1e-3:  # scipy: θ ≤ 1e4, logit π
                assert fit.params["mu"][g] == pytest.approx(ref["mu"], rel=1e-5)
                assert fit.params["pi"][g] == pytest.approx(ref["pi"], abs=1e-5)


def test_polish_lands_on_the_boundaries_exactly(counts):
    """π̂ = 0 and θ̂ = ∞ genes end on the boundary itself, with the sign tests met there."""
    data = np.column_stack([counts, weak_gene(38)[:N_CELLS]])
    fit = zinb.fit(data)
    assert fit.converged.all()
    mu, theta, pi = fit.params["mu"], fit.params["theta"], fit.params["pi"]
    assert np.isinf(theta).any() and (pi == 0.0).any()
    grad, _, dphi = zinb._newton_terms(zinb._prepare(data), mu, theta, pi)
    assert np.all(grad[pi == 0.0, 2] <= 0)  # ∂ℓ/∂π ≤ 0 at π = 0
    assert np.all(dphi[np.isinf(theta)] <= 0)  # ∂ℓ/∂(1/θ) ≤ 0 at θ = ∞


def test_plain_em_is_not_polished(counts, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("plain EM (accelerate=None) must not be polished")

    monkeypatch.setattr(zinb, "_polish", refuse)
    fit = zinb.fit(counts[:, [2, 4]], accelerate=None)
    assert fit.converged.all()
    assert np.all(fit.n_iter > zinb.POLISH_AFTER)


# --------------------------------------------------------------------------------------
# Sparse input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("with_sf", [False, True])
def test_sparse_matrix_fits_as_its_dense_form(counts, fmt, with_sf):
    """The same estimates, iterations and log-likelihoods, bit for bit."""
    y = counts[:600].copy()
    y[3, 2] = 150  # beyond the frequency table's width
    s = np.random.default_rng(2).lognormal(0.0, 0.4, y.shape[0]) if with_sf else None
    sparse = getattr(scipy.sparse, f"{fmt}_matrix")(y)
    dense_fit = zinb.fit(y, size_factors=s)
    sparse_fit = zinb.fit(sparse, size_factors=s)
    for name in ("mu", "theta", "pi"):
        assert np.array_equal(sparse_fit.params[name], dense_fit.params[name])
    assert np.array_equal(sparse_fit.n_iter, dense_fit.n_iter)
    assert np.array_equal(sparse_fit.loglik, dense_fit.loglik)
    params = {k: dense_fit.params[k] for k in ("mu", "theta", "pi")}
    np.testing.assert_allclose(zinb.loglik(sparse, params, size_factors=s), dense_fit.loglik)
    np.testing.assert_array_equal(
        zinb.e_step(sparse, params, size_factors=s), zinb.e_step(y, params, size_factors=s)
    )


def test_sparse_explicit_zeros_are_zeros(counts):
    y = counts[:400, :3]
    sparse = scipy.sparse.csc_matrix(y)
    sparse.data[::7] = 0  # stored zeros
    dense = sparse.toarray()
    a, b = zinb.fit(sparse), zinb.fit(dense)
    assert np.array_equal(a.loglik, b.loglik)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-2.0, r"counts \(>= 0\); found -2.0 at cell 1, gene 2"),
        (2.5, r"whole-number counts; found 2.5 at cell 1, gene 2"),
        (np.nan, "NaN or infinite values; found nan at cell 1, gene 2"),
    ],
)
def test_bad_sparse_counts_are_rejected(value, message):
    y = np.ones((4, 3))
    y[1, 2] = value
    with pytest.raises(ValueError, match=message):
        zinb.fit(scipy.sparse.csr_matrix(y))

"""emlib.zero_inflated_poisson against statsmodels, scipy.stats and direct maximisation.

Every expected value here comes from outside emlib: statsmodels' ``ZeroInflatedPoisson``
(a Newton/BFGS fit on the logit/log scale), scipy.stats' Poisson log-pmf, Bayes' rule and
the weighted M-step formulas written out in the test, or scipy.optimize.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats
from scipy.special import expit, logit, xlogy
from statsmodels.discrete.count_model import ZeroInflatedPoisson
from statsmodels.tools.numdiff import approx_hess3

from emlib import zero_inflated_poisson


def simulate(n, lam, pi, seed):
    """ZIP draws: a structural zero with probability pi, otherwise Poisson(lam)."""
    rng = np.random.default_rng(seed)
    structural = rng.random(n) < pi
    return np.where(structural, 0, rng.poisson(lam, n))


def scipy_loglik(y, lam, pi):
    """Observed-data ZIP log-likelihood from scipy.stats' Poisson log-pmf (−log y! included)."""
    y = np.asarray(y)
    log_poisson = stats.poisson.logpmf(y, lam)
    zero = np.log(pi + (1 - pi) * np.exp(log_poisson[y == 0]))
    positive = np.log1p(-pi) + log_poisson[y > 0] if pi < 1 else np.full((y > 0).sum(), -np.inf)
    return float(zero.sum() + positive.sum())


def analytic_covariance(y, lam, pi):
    """Inverse of the observed information −∇²ℓ(λ, π), derivatives written out by hand.

    ℓ = n0 log q + (n − n0)(log(1 − π) − λ) + Σy log λ − Σ log y!,  q = π + (1 − π)e^{−λ}.
    """
    y = np.asarray(y)
    n, n0, total = y.size, np.sum(y == 0), y.sum()
    e = np.exp(-lam)
    q = pi + (1 - pi) * e
    q_l, q_p, q_ll, q_lp = -(1 - pi) * e, 1 - e, (1 - pi) * e, e
    h_ll = n0 * (q_ll / q - q_l**2 / q**2) - total / lam**2
    h_pp = -n0 * q_p**2 / q**2 - (n - n0) / (1 - pi) ** 2
    h_lp = n0 * (q_lp / q - q_l * q_p / q**2)
    return np.linalg.inv(-np.array([[h_ll, h_lp], [h_lp, h_pp]]))


@pytest.fixture(scope="module")
def zip_data():
    return simulate(2000, lam=2.5, pi=0.3, seed=20240611)


@pytest.fixture(scope="module")
def statsmodels_fit(zip_data):
    """statsmodels' ZIP with intercepts only, driven to a tight gradient tolerance."""
    y = zip_data
    n = y.size
    model = ZeroInflatedPoisson(
        y, exog=np.ones((n, 1)), exog_infl=np.ones((n, 1)), inflation="logit"
    )
    start = np.array([logit(0.3), np.log(2.5)])  # order: inflate_const, const
    res = model.fit(start_params=start, method="bfgs", maxiter=10_000, gtol=1e-10, disp=0)
    assert res.mle_retvals["converged"], res.mle_retvals
    names = model.exog_names
    assert names == ["inflate_const", "const"], names
    # statsmodels 0.15's analytic ZIP Hessian (ZeroInflatedPoisson.hessian) drops the
    # cross-derivative between the inflation and count parameters: it fills the upper
    # triangle from the all-zero lower one, so ``res.bse`` is off by about 3 % here. Its
    # own numerical Hessian of its own log-likelihood is a sound, independent oracle.
    info = -approx_hess3(res.params, model.loglike)
    bse = np.sqrt(np.diag(np.linalg.inv(info)))
    return {
        "log_lam": res.params[1],
        "logit_pi": res.params[0],
        "bse_log_lam": bse[1],
        "bse_logit_pi": bse[0],
        "llf": res.llf,
    }


@pytest.fixture(scope="module")
def emlib_fit(zip_data):
    return zero_inflated_poisson.fit(zip_data, tol=1e-14)


# --------------------------------------------------------------------------------------
# Maximum likelihood against statsmodels
# --------------------------------------------------------------------------------------


def test_fit_matches_statsmodels(emlib_fit, statsmodels_fit):
    assert emlib_fit.converged
    lam_sm = np.exp(statsmodels_fit["log_lam"])
    pi_sm = expit(statsmodels_fit["logit_pi"])
    np.testing.assert_allclose(emlib_fit.params["lam"], lam_sm, rtol=1e-5)
    np.testing.assert_allclose(emlib_fit.params["pi"], pi_sm, rtol=1e-5)


def test_loglik_matches_statsmodels_llf(emlib_fit, statsmodels_fit):
    # statsmodels' llf includes the −log y! terms, so the two are on the same scale.
    llf = statsmodels_fit["llf"]
    assert emlib_fit.loglik >= llf - 1e-6
    assert emlib_fit.loglik == pytest.approx(llf, abs=1e-6)


def test_standard_errors_match_statsmodels_by_delta_method(emlib_fit, statsmodels_fit):
    lam = np.exp(statsmodels_fit["log_lam"])
    pi = expit(statsmodels_fit["logit_pi"])
    se_lam = lam * statsmodels_fit["bse_log_lam"]  # d exp(a)/da = exp(a)
    se_pi = pi * (1 - pi) * statsmodels_fit["bse_logit_pi"]  # d expit(b)/db = pi(1 - pi)
    np.testing.assert_allclose(emlib_fit.se["lam"], se_lam, rtol=1e-3)
    np.testing.assert_allclose(emlib_fit.se["pi"], se_pi, rtol=1e-3)


def test_standard_errors_match_analytic_observed_information(emlib_fit, zip_data):
    """se from the inverse of −∇²ℓ(λ, π), the second derivatives written out by hand."""
    cov = analytic_covariance(zip_data, emlib_fit.params["lam"], emlib_fit.params["pi"])
    np.testing.assert_allclose(emlib_fit.se["lam"], np.sqrt(cov[0, 0]), rtol=1e-4)
    np.testing.assert_allclose(emlib_fit.se["pi"], np.sqrt(cov[1, 1]), rtol=1e-4)


def test_squarem_matches_statsmodels(zip_data, statsmodels_fit):
    result = zero_inflated_poisson.fit(zip_data, tol=1e-14, accelerate="squarem")
    np.testing.assert_allclose(result.params["lam"], np.exp(statsmodels_fit["log_lam"]), rtol=1e-5)
    np.testing.assert_allclose(result.params["pi"], expit(statsmodels_fit["logit_pi"]), rtol=1e-5)


# --------------------------------------------------------------------------------------
# The pieces: log-likelihood, E-step, M-step
# --------------------------------------------------------------------------------------


def test_loglik_equals_scipy_stats_at_random_params(zip_data):
    rng = np.random.default_rng(7)
    for _ in range(20):
        lam = rng.uniform(0.05, 15.0)
        pi = rng.uniform(0.0, 0.99)
        expected = scipy_loglik(zip_data, lam, pi)
        assert zero_inflated_poisson.loglik(zip_data, {"lam": lam, "pi": pi}) == pytest.approx(
            expected, rel=1e-12, abs=1e-9
        )


def test_xlogy_on_numbers_is_scipys_to_the_last_bit():
    # The E-step's x log y on Python numbers must be scipy's, edge cases included (numpy's
    # own log differs from the C library's in the last bit for about 1 number in 1,000).
    rng = np.random.default_rng(11)
    ys = np.concatenate(
        [
            [0.0, 5e-324, 1e-300, 1.0, 1e300, np.inf, np.nan, -1.0],
            rng.uniform(0, 1, 3000),
            rng.uniform(0, 50, 3000),
            np.exp(rng.uniform(-700, 700, 3000)),
        ]
    )
    for x in (0, 1, 3, 999_999, 2.5):
        got = np.array([zero_inflated_poisson._xlogy(x, y) for y in ys.tolist()])
        np.testing.assert_array_equal(got, xlogy(x, ys), strict=True)


def test_loglik_at_pi_zero_is_the_poisson_loglik():
    y = np.array([0, 1, 1, 2, 3, 5, 8])
    expected = stats.poisson.logpmf(y, 2.2).sum()
    assert zero_inflated_poisson.loglik(y, {"lam": 2.2, "pi": 0.0}) == pytest.approx(
        expected, rel=1e-13, abs=0
    )


def test_fit_loglik_is_the_full_loglik(emlib_fit, zip_data):
    p = emlib_fit.params
    assert emlib_fit.loglik == pytest.approx(
        scipy_loglik(zip_data, p["lam"], p["pi"]), rel=1e-12, abs=0
    )
    assert emlib_fit.loglik_history[-1] == emlib_fit.loglik


def test_e_step_is_bayes_rule():
    rng = np.random.default_rng(11)
    y = simulate(300, lam=1.7, pi=0.4, seed=3)
    for _ in range(10):
        lam, pi = rng.uniform(0.1, 6.0), rng.uniform(0.01, 0.99)
        # P(structural | Y = y) = P(structural) P(y | structural) / P(y)
        prior_poisson = (1 - pi) * stats.poisson.pmf(y, lam)
        prior_structural = pi * (y == 0)
        expected = prior_structural / (prior_structural + prior_poisson)
        got = zero_inflated_poisson.e_step(y, {"lam": lam, "pi": pi})
        assert got.shape == y.shape
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
        assert np.all(got[y > 0] == 0)


def test_m_step_is_the_weighted_formulas():
    rng = np.random.default_rng(12)
    y = simulate(200, lam=3.1, pi=0.25, seed=4)
    resp = np.where(y == 0, rng.random(y.size), 0.0)
    got = zero_inflated_poisson.m_step(y, resp)
    assert got["pi"] == pytest.approx(sum(resp) / len(resp), rel=1e-13, abs=0)
    expected_lam = sum((1 - r) * v for r, v in zip(resp, y, strict=True)) / sum(1 - resp)
    assert got["lam"] == pytest.approx(expected_lam, rel=1e-13, abs=0)


def test_m_step_maximises_expected_complete_loglik():
    """The M-step's (λ, π) is the argmax of Q, found independently by scipy.optimize."""
    rng = np.random.default_rng(13)
    y = simulate(400, lam=2.0, pi=0.35, seed=5)
    resp = np.where(y == 0, rng.uniform(0.2, 0.9, y.size), 0.0)

    def negative_q(v):
        lam, pi = v
        return -np.sum(
            resp * np.log(pi) + (1 - resp) * (np.log1p(-pi) + stats.poisson.logpmf(y, lam))
        )

    opt = optimize.minimize(
        negative_q,
        x0=[1.0, 0.5],
        method="L-BFGS-B",
        bounds=[(1e-6, 50.0), (1e-9, 1 - 1e-9)],
        options={"ftol": 1e-15, "gtol": 1e-10},
    )
    got = zero_inflated_poisson.m_step(y, resp)
    np.testing.assert_allclose([got["lam"], got["pi"]], opt.x, rtol=1e-5)
    assert -negative_q([got["lam"], got["pi"]]) >= -opt.fun - 1e-9


# --------------------------------------------------------------------------------------
# Degenerate data
# --------------------------------------------------------------------------------------


def test_no_zeros_sends_pi_to_zero():
    rng = np.random.default_rng(21)
    y = rng.poisson(3.0, 500)
    y = y[y > 0]
    result = zero_inflated_poisson.fit(y)
    assert result.converged
    assert result.params["pi"] < 1e-6
    assert result.params["lam"] == pytest.approx(y.mean(), rel=1e-8)
    assert result.loglik == pytest.approx(stats.poisson.logpmf(y, y.mean()).sum(), rel=1e-10)


def test_only_zeros_is_rejected():
    with pytest.raises(ValueError, match="every count is zero"):
        zero_inflated_poisson.fit(np.zeros(50, dtype=int))


def test_fewer_zeros_than_poisson_goes_to_the_boundary():
    """Underdispersed data: the maximum is at π = 0, λ = ȳ (found here by direct search)."""
    rng = np.random.default_rng(22)
    y = rng.binomial(10, 0.3, 500)
    assert np.mean(y == 0) < np.exp(-y.mean())  # fewer zeros than a Poisson would give
    result = zero_inflated_poisson.fit(y)
    assert result.params["pi"] < 1e-4
    assert result.params["lam"] == pytest.approx(y.mean(), rel=1e-4)

    opt = optimize.minimize(
        lambda v: -scipy_loglik(y, v[0], v[1]),
        x0=[2.0, 0.2],
        method="L-BFGS-B",
        bounds=[(1e-6, 50.0), (0.0, 1 - 1e-9)],
        options={"ftol": 1e-15, "gtol": 1e-10},
    )
    assert opt.x[1] < 1e-4
    assert result.loglik >= -opt.fun - 1e-6


# --------------------------------------------------------------------------------------
# Properties over random data and random starts
# --------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(200, 1500),
    lam=st.floats(1.0, 6.0),
    pi=st.floats(0.25, 0.6),  # enough excess zeros that the MLE is inside (π̂ > 0)
    lam0=st.floats(0.1, 20.0),
    pi0=st.floats(0.01, 0.95),
)
def test_em_is_monotone_and_squarem_finds_the_same_fixed_point(seed, n, lam, pi, lam0, pi0):
    y = simulate(n, lam, pi, seed)
    init = {"lam": lam0, "pi": pi0}
    plain = zero_inflated_poisson.fit(y, init=init, tol=1e-14, max_iter=100_000)
    assert plain.converged

    history = plain.loglik_history
    assert np.all(np.diff(history) >= -1e-10 * np.abs(history[:-1]))

    # The same history, recomputed from the parameters with scipy.stats.
    recomputed = np.array([scipy_loglik(y, p["lam"], p["pi"]) for p in plain.param_history])
    np.testing.assert_allclose(recomputed, history, rtol=1e-10)
    assert np.all(np.diff(recomputed) >= -1e-9 * np.abs(recomputed[:-1]))

    fast = zero_inflated_poisson.fit(
        y, init=init, tol=1e-14, max_iter=100_000, accelerate="squarem"
    )
    assert fast.converged
    assert fast.loglik == pytest.approx(plain.loglik, abs=1e-8)
    # Plain EM stops on the log-likelihood, which is flat at the maximum, so when it
    # converges slowly (small λ) its estimate can be ~1e-6 off. Compare on the scale
    # that matters: the two estimates agree to 1e-3 of a standard error.
    se = np.sqrt(np.diag(analytic_covariance(y, plain.params["lam"], plain.params["pi"])))
    difference = np.array(
        [fast.params["lam"] - plain.params["lam"], fast.params["pi"] - plain.params["pi"]]
    )
    assert np.all(np.abs(difference) <= 1e-3 * se), (difference, se)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------

GOOD = [0, 0, 1, 2, 3, 0, 4]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([0, 1, -2, 3], r"counts \(>= 0\).*-2"),
        ([0, 1, 2.5, 3], r"whole-number counts.*2\.5"),
        ([0, 1, np.nan, 3], "NaN or infinite"),
        ([0, 1, np.inf, 3], "NaN or infinite"),
        ([], "empty"),
        ([[0, 1], [2, 3]], "1-D"),
        (["a", "b"], "numeric"),
        # Integer arrays take a separate fast path through the validation.
        (np.array([0, 1, -2, 3]), r"counts \(>= 0\).*-2 at index 2"),
        (np.array([], dtype=np.int64), "empty"),
        (np.array([[0, 1], [2, 3]]), "1-D"),
    ],
)
def test_bad_data_is_rejected(data, message):
    with pytest.raises(ValueError, match=message):
        zero_inflated_poisson.fit(data)
    with pytest.raises(ValueError, match=message):
        zero_inflated_poisson.loglik(data, {"lam": 1.0, "pi": 0.2})


@pytest.mark.parametrize(
    ("init", "message"),
    [
        ({"lam": 1.0, "pi": -0.1}, r"pi must be a probability in \[0, 1\]"),
        ({"lam": 1.0, "pi": 1.5}, r"pi must be a probability in \[0, 1\]"),
        ({"lam": 0.0, "pi": 0.3}, "lam must be positive"),
        ({"lam": -2.0, "pi": 0.3}, "lam must be positive"),
        ({"lam": np.nan, "pi": 0.3}, "lam must be finite"),
        ({"lambda": 1.0, "pi": 0.3}, r"exactly the keys.*missing \['lam'\].*\['lambda'\]"),
        ({"lam": 1.0}, r"missing \['pi'\]"),
        ({"lam": 1.0, "pi": 0.3, "mu": 2.0}, r"unexpected \['mu'\]"),
        ([1.0, 0.3], "init must be a dict"),
    ],
)
def test_bad_init_is_rejected(init, message):
    with pytest.raises(ValueError, match=message):
        zero_inflated_poisson.fit(GOOD, init=init)


def test_impossible_start_is_rejected():
    # π = 1 puts all mass on zero, so the positive counts have probability zero.
    with pytest.raises(ValueError, match="impossible"):
        zero_inflated_poisson.fit(GOOD, init={"lam": 1.0, "pi": 1.0})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tol": -1.0}, "tol must be a non-negative number"),
        ({"max_iter": 0}, "max_iter must be a positive whole number"),
        ({"max_iter": 2.5}, "max_iter must be a positive whole number"),
        ({"accelerate": "aitken"}, "accelerate must be None or 'squarem'"),
    ],
)
def test_bad_options_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zero_inflated_poisson.fit(GOOD, **kwargs)


def test_bad_resp_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        zero_inflated_poisson.m_step(GOOD, [0.5, 0.5])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        zero_inflated_poisson.m_step(GOOD, [1.5, 0, 0, 0, 0, 0, 0])


def test_e_step_with_no_inflation_and_huge_lambda():
    # With π = 0 there are no structural zeros: Bayes' rule gives posterior 0 for every y,
    # even when e^{−λ} underflows and the naive ratio would be 0/0 (a bug fixed in 34a6443).
    got = zero_inflated_poisson.e_step([0, 3], {"lam": 800.0, "pi": 0.0})
    np.testing.assert_array_equal(got, [0.0, 0.0])

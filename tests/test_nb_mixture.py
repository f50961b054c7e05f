"""Tests of emlib.nb_mixture against oracles that share no code with emlib.

The oracles are scipy.stats.nbinom log-probabilities (n = θ, p = θ/(θ + μ)) with
scipy.special.logsumexp, direct maximisation with scipy.optimize, and the sanity cases of
the source notebook: one-component Poisson data, one-component NB data, and a two-component
fit to one-component data.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import optimize, stats
from scipy.special import expit, gammaln, logsumexp

import emlib
from emlib import nb_mixture as nm


def nb_logpmf(y, mu, theta):
    """NB log-pmf: scipy.stats for θ ≤ 1e4, an exact product form beyond, Poisson at ∞.

    scipy.stats.nbinom loses digits as θ grows (off by ~1e-10 at θ = 1e5 and by whole
    units at θ = 1e18, which SQUAREM can visit); there
    log Γ(y + θ)/Γ(θ) − y log θ = Σ_{j<y} log(1 + j/θ) is summed term by term.
    """
    y = np.asarray(y)
    if np.isinf(theta):
        return stats.poisson.logpmf(y, mu)
    if theta <= 1e4:
        return stats.nbinom.logpmf(y, theta, theta / (theta + mu))
    partial = np.concatenate([[0.0], np.cumsum(np.log1p(np.arange(y.max()) / theta))])
    return partial[y] + y * np.log(mu) - (y + theta) * np.log1p(mu / theta) - gammaln(y + 1.0)


def ref_log_joint(y, params):
    y = np.asarray(y)
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(params["weights"], dtype=float))
    return np.column_stack(
        [
            log_w[j] + nb_logpmf(y, mu, theta)
            for j, (mu, theta) in enumerate(zip(params["means"], params["thetas"], strict=True))
        ]
    )


def ref_loglik(y, params):
    return float(logsumexp(ref_log_joint(y, params), axis=1).sum())


def ref_resp(y, params):
    log_joint = ref_log_joint(y, params)
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))


def simulate(rng, weights, means, thetas, n):
    z = rng.choice(len(weights), size=n, p=weights)
    mu, th = np.asarray(means, float)[z], np.asarray(thetas, float)[z]
    return rng.negative_binomial(th, th / (th + mu))


def direct_nb_fit(y, weights=None):
    """Weighted NB maximum likelihood over (log μ, log θ) with scipy.optimize."""
    w = np.ones(len(y)) if weights is None else weights

    def negative(z):
        return -np.sum(w * nb_logpmf(y, np.exp(z[0]), np.exp(z[1])))

    z0 = [np.log(np.average(y, weights=w)), 0.0]
    res = optimize.minimize(negative, z0, method="BFGS", options={"gtol": 1e-9})
    return -res.fun, np.exp(res.x)


# ---------------------------------------------------------------------------------------
# The source notebook's sanity cases
# ---------------------------------------------------------------------------------------


def test_one_component_poisson_data_gives_a_poisson_component():
    """Poisson(100) data are not overdispersed: θ̂ = ∞, μ̂ = ȳ, ℓ = the Poisson ℓ."""
    rng = np.random.default_rng(1)
    y = rng.poisson(100, 1000)
    assert y.var() <= y.mean()
    result = nm.fit(y, k=1)
    assert result.converged
    assert np.isinf(result.params["thetas"][0])
    assert result.params["means"][0] == pytest.approx(y.mean(), rel=1e-12)
    assert result.loglik == pytest.approx(stats.poisson.logpmf(y, y.mean()).sum(), rel=1e-12)


def test_one_component_nb_data_matches_direct_maximisation():
    """The notebook's NB(n=3, p=1e-3) case: mean 2997, variance 3.0e6."""
    rng = np.random.default_rng(2)
    y = rng.negative_binomial(3, 1e-3, 1000)
    result = nm.fit(y, k=1)
    best, (mu, theta) = direct_nb_fit(y)
    assert result.loglik >= best - 1e-6
    assert result.params["means"][0] == pytest.approx(mu, rel=1e-5)
    assert result.params["thetas"][0] == pytest.approx(theta, rel=1e-3)
    assert result.params["thetas"][0] == pytest.approx(3.0, rel=0.15)


def test_two_components_on_one_component_data():
    """Over-specified: ℓ at least the one-component maximum; both components fit the data."""
    rng = np.random.default_rng(3)
    y = rng.negative_binomial(3, 1e-3, 1000)
    one = nm.fit(y, k=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emlib.ConvergenceWarning)
        two = nm.fit(y, k=2, accelerate="squarem", n_init=2, tol=1e-9, max_iter=2000)
    assert two.loglik >= one.loglik - 1e-8
    # Not a real improvement: far less than the ~1.5 per extra parameter AIC would ask for.
    assert two.loglik - one.loglik < 4.5
    assert two.params["weights"].sum() == pytest.approx(1.0)
    assert two.loglik == pytest.approx(ref_loglik(y, two.params), rel=1e-11)
    mixture_mean = two.params["weights"] @ two.params["means"]
    assert mixture_mean == pytest.approx(y.mean(), rel=1e-6)


def test_two_separated_components_are_recovered():
    rng = np.random.default_rng(4)
    y = simulate(rng, [0.7, 0.3], [5.0, 80.0], [2.0, 10.0], 4000)
    result = nm.fit(y, k=2, accelerate="squarem", tol=1e-12)
    p = result.params
    np.testing.assert_allclose(p["weights"], [0.7, 0.3], atol=0.03)
    np.testing.assert_allclose(p["means"], [5.0, 80.0], rtol=0.05)
    np.testing.assert_allclose(p["thetas"], [2.0, 10.0], rtol=0.25)
    # No nearby point found by direct maximisation is better.
    start = np.r_[
        np.log(p["weights"][0] / p["weights"][1]), np.log(p["means"]), np.log(p["thetas"])
    ]

    def negative(z):
        w1 = expit(z[0])
        params = {"weights": [w1, 1 - w1], "means": np.exp(z[1:3]), "thetas": np.exp(z[3:])}
        return -ref_loglik(y, params)

    res = optimize.minimize(negative, start, method="BFGS", options={"gtol": 1e-8})
    assert result.loglik >= -res.fun - 1e-6
    assert result.loglik == pytest.approx(ref_loglik(y, p), rel=1e-12)


# ---------------------------------------------------------------------------------------
# loglik, e_step, m_step
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3])
def test_loglik_matches_scipy(k):
    rng = np.random.default_rng(10 + k)
    y = rng.negative_binomial(2, 0.2, 200)
    for _ in range(5):
        params = {
            "weights": rng.dirichlet(np.ones(k)),
            "means": rng.uniform(0.5, 30, k),
            "thetas": rng.uniform(0.2, 50, k),
        }
        assert nm.loglik(y, params) == pytest.approx(ref_loglik(y, params), rel=1e-12)


def test_poisson_components_are_allowed():
    y = np.array([0, 1, 2, 5, 9, 12])
    params = {"weights": [0.4, 0.6], "means": [1.0, 8.0], "thetas": [np.inf, 3.0]}
    assert nm.loglik(y, params) == pytest.approx(ref_loglik(y, params), rel=1e-13)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_e_step_is_bayes_rule_with_the_mixing_weights(k):
    rng = np.random.default_rng(30 + k)
    y = rng.negative_binomial(3, 0.3, 80)
    params = {
        "weights": rng.dirichlet(np.ones(k)),
        "means": rng.uniform(1, 20, k),
        "thetas": rng.uniform(0.5, 20, k),
    }
    resp = nm.e_step(y, params)
    assert resp.shape == (y.size, k)
    np.testing.assert_allclose(resp, ref_resp(y, params), rtol=1e-9, atol=1e-13)


def test_m_step_is_the_weighted_nb_fit():
    """Weights are mean responsibilities; each (μ, θ) maximises Σ r log f (not Σ log r + log f)."""
    rng = np.random.default_rng(41)
    y = rng.negative_binomial(2, 0.15, 300)
    resp = rng.dirichlet(np.ones(2), size=y.size)
    got = nm.m_step(y, resp)
    np.testing.assert_allclose(got["weights"], resp.mean(axis=0), rtol=1e-12)
    for j in range(2):
        best, (_, theta) = direct_nb_fit(y, resp[:, j])
        assert got["means"][j] == pytest.approx(np.average(y, weights=resp[:, j]), rel=1e-12)
        assert got["thetas"][j] == pytest.approx(theta, rel=1e-4)
        mine = np.sum(resp[:, j] * nb_logpmf(y, got["means"][j], got["thetas"][j]))
        assert mine >= best - 1e-8


# ---------------------------------------------------------------------------------------
# Property: EM never lowers the likelihood
# ---------------------------------------------------------------------------------------


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(30, 300),
    k_true=st.integers(1, 2),
    k=st.integers(1, 3),
    accelerate=st.sampled_from([None, "squarem"]),
)
def test_history_never_decreases(seed, n, k_true, k, accelerate):
    rng = np.random.default_rng(seed)
    y = simulate(
        rng,
        rng.dirichlet(np.ones(k_true)),
        rng.uniform(0.5, 40, k_true),
        rng.uniform(0.5, 30, k_true),
        n,
    )
    assume(np.unique(y).size >= k)
    init = {
        "weights": rng.dirichlet(np.ones(k)),
        "means": rng.uniform(0.2, 50, k),
        "thetas": rng.uniform(0.1, 100, k),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emlib.ConvergenceWarning)
        result = nm.fit(y, k, init=init, max_iter=40, accelerate=accelerate)
    history = result.loglik_history
    scale = max(abs(history[-1]), 1.0)
    assert np.all(np.diff(history) >= -1e-10 * scale)
    independent = np.array([ref_loglik(y, p) for p in result.param_history])
    np.testing.assert_allclose(history, independent, rtol=1e-10, atol=1e-9)


# ---------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------

Y = np.array([0, 1, 1, 2, 3, 5, 2, 0, 9])
GOOD_INIT = {"weights": [0.5, 0.5], "means": [1.0, 5.0], "thetas": [2.0, 2.0]}

BAD_FIT_CALLS = {
    "negative-count": (([0, 1, -2, 3],), {}, r"counts \(>= 0\); found -2"),
    "non-integer": (([0, 1, 2.5, 3],), {}, r"whole-number counts; found 2.5"),
    "nan": ((np.array([0.0, 1.0, np.nan]),), {}, r"NaN or infinite"),
    "empty": (([],), {}, r"empty"),
    "2-D": ((Y[:8].reshape(2, 4),), {}, r"1-D"),
    "k=0": ((Y,), {"k": 0}, r"k must be at least 1"),
    "k>distinct": (([0, 0, 1, 1],), {"k": 3}, r"k=3 .*2 distinct"),
    "negative-mean": ((Y,), {"init": {**GOOD_INIT, "means": [-1.0, 3.0]}}, r"means must be non"),
    "theta<=0": ((Y,), {"init": {**GOOD_INIT, "thetas": [0.0, 1.0]}}, r"thetas must be positive"),
    "theta-nan": ((Y,), {"init": {**GOOD_INIT, "thetas": [np.nan, 1.0]}}, r"thetas must be pos"),
    "theta-length": ((Y,), {"init": {**GOOD_INIT, "thetas": [1.0]}}, r"thetas must have 2"),
    "weights-sum": ((Y,), {"init": {**GOOD_INIT, "weights": [0.5, 0.4]}}, r"sum to 1"),
    "missing-key": ((Y,), {"init": {"weights": [0.5, 0.5], "means": [1, 2]}}, r"missing"),
    "accelerate": ((Y,), {"accelerate": "fast"}, r"accelerate must be None or 'squarem'"),
    "n_init=0": ((Y,), {"n_init": 0}, r"n_init must be a positive"),
}


@pytest.mark.parametrize("case", BAD_FIT_CALLS)
def test_fit_rejects_bad_input(case):
    args, kwargs, match = BAD_FIT_CALLS[case]
    with pytest.raises(ValueError, match=match):
        nm.fit(*args, **kwargs)


@pytest.mark.parametrize(
    ("func", "args", "match"),
    [
        (nm.loglik, ([0, -1], GOOD_INIT), r"counts \(>= 0\)"),
        (nm.e_step, ([0.5, 1], GOOD_INIT), r"whole-number counts"),
        (nm.m_step, (Y, np.full((Y.size, 2), 0.4)), r"each row of resp must sum to 1"),
        (nm.m_step, (Y, np.full((Y.size + 1, 2), 0.5)), r"resp must have shape"),
    ],
)
def test_steps_reject_bad_input(func, args, match):
    with pytest.raises(ValueError, match=match):
        func(*args)

"""Tests of emlib.poisson_mixture against oracles that share no code with emlib.

The oracles are scipy.stats.poisson log-probabilities with scipy.special.logsumexp,
numpy.average, direct maximisation with scipy.optimize, the published SQUAREM result on
Hasselblad's data, and the empirical rate of convergence read off a plain EM run.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import optimize, stats
from scipy.special import expit, logsumexp

import emlib
from emlib import poisson_mixture as pm

#: Result of the SQUAREM R package's Poisson-mixture example (Varadhan & Roland 2008) on
#: Hasselblad's (1969) deaths data: p, mu1, mu2.
PUBLISHED_WEIGHTS = np.array([0.3598854, 1 - 0.3598854])
PUBLISHED_MEANS = np.array([1.2560951, 2.6634044])
#: The starting value of that example: p = 0.3, mu = (1, 2.5).
SQUAREM_START = {"weights": [0.3, 0.7], "means": [1.0, 2.5]}


# ---------------------------------------------------------------------------------------
# Independent reference computations
# ---------------------------------------------------------------------------------------


def ref_log_joint(y, params):
    """log w_j + log Poisson(y_i; λ_j), shape (n, k), from scipy.stats."""
    y = np.asarray(y)
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(params["weights"], dtype=float))
    return stats.poisson.logpmf(y[:, None], np.asarray(params["means"], dtype=float)) + log_w


def ref_loglik(y, params):
    return float(logsumexp(ref_log_joint(y, params), axis=1).sum())


def ref_resp(y, params):
    log_joint = ref_log_joint(y, params)
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))


def random_params(rng, k):
    return {"weights": rng.dirichlet(np.full(k, 2.0)), "means": rng.uniform(0.2, 12.0, size=k)}


def simulate(rng, weights, means, n):
    z = rng.choice(len(weights), size=n, p=weights)
    return rng.poisson(np.asarray(means)[z])


def free(params):
    """Packed free coordinates (w_1, λ_1, λ_2) of a two-component fit."""
    return np.array([params["weights"][0], *params["means"]], dtype=float)


def direct_maximum_k2(y, start):
    """Maximise the scipy.stats log-likelihood over (logit w_1, log λ_1, log λ_2)."""

    def unpack(z):
        w1 = expit(z[0])
        return {"weights": np.array([w1, 1 - w1]), "means": np.exp(z[1:])}

    w1 = start["weights"][0]
    z0 = np.array([np.log(w1 / (1 - w1)), *np.log(start["means"])])
    res = optimize.minimize(
        lambda z: -ref_loglik(y, unpack(z)),
        z0,
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000, "maxfev": 20_000},
    )
    return -res.fun, unpack(res.x)


# ---------------------------------------------------------------------------------------
# Hasselblad's data: published result, SQUAREM vs plain EM, rate
# ---------------------------------------------------------------------------------------


def test_hasselblad_fit_matches_the_published_squarem_result():
    y = pm.hasselblad_data()
    assert y.size == 1096
    result = pm.fit(y, 2, accelerate="squarem", tol=1e-14)
    assert result.converged
    np.testing.assert_allclose(result.params["weights"], PUBLISHED_WEIGHTS, rtol=0, atol=1e-5)
    np.testing.assert_allclose(result.params["means"], PUBLISHED_MEANS, rtol=0, atol=1e-5)
    # No direct maximiser started nearby does better.
    start = {"weights": [0.4, 0.6], "means": [1.1, 2.8]}
    best_ll, best_params = direct_maximum_k2(y, start)
    assert best_ll <= result.loglik + 1e-6
    np.testing.assert_allclose(free(best_params), free(result.params), atol=1e-4)
    assert result.loglik == pytest.approx(ref_loglik(y, result.params), rel=1e-12)


def test_plain_em_and_squarem_reach_the_same_fixed_point():
    y = pm.hasselblad_data()
    plain = pm.fit(y, 2, init=SQUAREM_START, tol=0, xtol=1e-9, max_iter=20_000, accelerate=None)
    fast = pm.fit(y, 2, init=SQUAREM_START, tol=0, xtol=1e-9, accelerate="squarem")
    assert plain.converged and fast.converged
    assert fast.n_iter <= 150
    assert plain.n_iter > 1000
    np.testing.assert_allclose(free(plain.params), free(fast.params), rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        free(fast.params),
        free({"weights": PUBLISHED_WEIGHTS, "means": PUBLISHED_MEANS}),
        rtol=0,
        atol=1e-6,
    )
    assert plain.loglik == pytest.approx(fast.loglik, rel=1e-12)


def test_rate_matches_the_empirical_ratio_of_successive_errors():
    y = pm.hasselblad_data()
    plain = pm.fit(y, 2, init=SQUAREM_START, tol=0, xtol=1e-12, max_iter=20_000, accelerate=None)
    # param_history is in the run's own component order; the fixed point θ̂ is taken from
    # a tightly converged fit and put in the same order as the end of the run.
    tight = pm.fit(y, 2, init=SQUAREM_START, tol=1e-15, xtol=1e-14, accelerate="squarem")
    last = plain.param_history[-1]
    order = np.argsort(np.argsort(last["means"]))
    theta_hat = np.array(
        [tight.params["weights"][order][0], *tight.params["means"][order]], dtype=float
    )
    path = np.array([free(p) for p in plain.param_history])
    errors = np.linalg.norm(path - theta_hat, axis=1)
    # Far enough along for the slowest direction to dominate, and far enough from θ̂ for
    # its rounding not to matter.
    window = np.flatnonzero((errors[:-1] < 1e-2) & (errors[:-1] > 1e-5))
    assert window.size > 500
    ratios = errors[window + 1] / errors[window]
    empirical = float(np.exp(np.mean(np.log(ratios))))
    assert emlib.rate(tight) == pytest.approx(empirical, abs=1e-3)
    assert emlib.rate(plain) == pytest.approx(empirical, abs=1e-3)
    assert 0.9 < empirical < 1  # the slow case this model is known for


# ---------------------------------------------------------------------------------------
# loglik, e_step, m_step
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_loglik_matches_scipy(k, seed):
    rng = np.random.default_rng(10 * k + seed)
    y = rng.poisson(rng.uniform(0.5, 15.0, size=70))
    params = random_params(rng, k)
    assert pm.loglik(y, params) == pytest.approx(ref_loglik(y, params), rel=1e-12)


def test_loglik_includes_the_factorials():
    # One Poisson(2): ℓ = Σ (y log 2 - 2 - log y!), written out by hand.
    y = np.array([0, 1, 3, 3])
    expected = (0 + 1 + 3 + 3) * np.log(2.0) - 4 * 2.0 - (0 + 0 + np.log(6) + np.log(6))
    assert pm.loglik(y, {"weights": [1.0], "means": [2.0]}) == pytest.approx(expected, rel=1e-14)


def test_frequency_table_gives_the_sum_over_observations():
    rng = np.random.default_rng(5)
    y = rng.permutation(np.concatenate([rng.poisson(2.0, 200), rng.poisson(9.0, 100), [40]]))
    params = {"weights": [0.2, 0.5, 0.3], "means": [1.5, 3.0, 8.0]}
    per_observation = [
        logsumexp(
            [
                np.log(w) + stats.poisson.logpmf(yi, lam)
                for w, lam in zip(params["weights"], params["means"], strict=True)
            ]
        )
        for yi in y
    ]
    # A single observation is its own one-row table.
    singles = sum(pm.loglik([yi], params) for yi in y[:25])
    assert singles == pytest.approx(float(np.sum(per_observation[:25])), rel=1e-12)
    # The table of all the data weights each distinct count by how often it occurs.
    total = pm.loglik(y, params)
    assert total == pytest.approx(float(np.sum(per_observation)), rel=1e-12)


def test_zero_weight_and_zero_mean_are_handled():
    y = np.array([0, 0, 1, 4, 7])
    params = {"weights": [0.0, 0.4, 0.6], "means": [3.0, 0.0, 5.0]}
    assert pm.loglik(y, params) == pytest.approx(ref_loglik(y, params), rel=1e-12)
    np.testing.assert_allclose(pm.e_step(y, params), ref_resp(y, params), atol=1e-14)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_e_step_is_bayes_rule(k):
    rng = np.random.default_rng(30 + k)
    y = rng.poisson(4.0, size=60)
    params = random_params(rng, k)
    resp = pm.e_step(y, params)
    assert resp.shape == (y.size, k)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(resp, ref_resp(y, params), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_m_step_is_weighted_mean(k):
    rng = np.random.default_rng(40 + k)
    y = rng.poisson(6.0, size=90)
    resp = rng.dirichlet(np.ones(k), size=y.size)
    params = pm.m_step(y, resp)
    np.testing.assert_allclose(params["weights"], resp.mean(axis=0), rtol=1e-12)
    means = [np.average(y, weights=resp[:, j]) for j in range(k)]
    np.testing.assert_allclose(params["means"], means, rtol=1e-12)


# ---------------------------------------------------------------------------------------
# Property: EM never lowers the likelihood
# ---------------------------------------------------------------------------------------


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(30, 300),
    k_true=st.integers(1, 3),
    k=st.integers(1, 3),
    accelerate=st.sampled_from([None, "squarem"]),
)
def test_history_never_decreases_on_random_mixtures(seed, n, k_true, k, accelerate):
    rng = np.random.default_rng(seed)
    y = simulate(rng, rng.dirichlet(np.ones(k_true)), rng.uniform(0.3, 15.0, k_true), n)
    assume(np.unique(y).size >= k)
    init = {"weights": rng.dirichlet(np.ones(k)), "means": rng.uniform(0.1, 20.0, k)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pm.fit(y, k, init=init, tol=1e-10, max_iter=300, accelerate=accelerate)
    # The only warning allowed is the one that says the run stopped early.
    categories = {w.category for w in caught}
    assert categories <= {emlib.ConvergenceWarning}
    assert (emlib.ConvergenceWarning in categories) == (not result.converged)

    history = result.loglik_history
    scale = max(abs(history[-1]), 1.0)
    assert len(result.param_history) == history.size
    assert history[-1] == result.loglik
    assert np.all(np.diff(history) >= -1e-10 * scale)
    # The independent check: the true log-likelihood along the reported path never drops,
    # and it is what the history says it is.
    independent = np.array([ref_loglik(y, p) for p in result.param_history])
    assert np.all(np.diff(independent) >= -1e-9 * scale)
    np.testing.assert_allclose(history, independent, rtol=1e-10, atol=1e-9)
    assert result.loglik == pytest.approx(ref_loglik(y, result.params), rel=1e-11)


# ---------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------

Y = np.array([0, 1, 1, 2, 3, 5, 2, 0])
GOOD_INIT = {"weights": [0.5, 0.5], "means": [1.0, 3.0]}

BAD_FIT_CALLS = {
    "negative-count": (([0, 1, -2, 3],), {}, r"counts \(>= 0\); found -2"),
    "non-integer": (([0, 1, 2.5, 3],), {}, r"whole-number counts; found 2.5"),
    "nan": ((np.array([0.0, 1.0, np.nan]),), {}, r"NaN or infinite"),
    "inf": ((np.array([0.0, 1.0, np.inf]),), {}, r"NaN or infinite"),
    "empty": (([],), {}, r"empty"),
    "2-D": ((Y.reshape(2, 4),), {}, r"1-D"),
    "strings": ((["a", "b"],), {}, r"numeric"),
    "k=0": ((Y,), {"k": 0}, r"k must be at least 1"),
    "k=2.0": ((Y,), {"k": 2.0}, r"k must be a whole number"),
    "k>distinct": (([0, 0, 1, 1],), {"k": 3}, r"k=3 .*2 distinct"),
    "negative-mean": ((Y,), {"init": {**GOOD_INIT, "means": [-1.0, 3.0]}}, r"means must be non"),
    "weights-sum": ((Y,), {"init": {**GOOD_INIT, "weights": [0.5, 0.4]}}, r"sum to 1"),
    "weight<0": ((Y,), {"init": {**GOOD_INIT, "weights": [-0.1, 1.1]}}, r"probabilities in"),
    "wrong-key": (
        (Y,),
        {"init": {**GOOD_INIT, "sds": [1.0, 1.0]}},
        r"unexpected \['sds'\]",
    ),
    "missing-key": ((Y,), {"init": {"weights": [0.5, 0.5]}}, r"missing \['means'\]"),
    "wrong-length": ((Y,), {"init": {**GOOD_INIT, "means": [1.0]}}, r"means must have 2"),
    "accelerate": ((Y,), {"accelerate": "SQUAREM"}, r"accelerate must be None or 'squarem'"),
    "tol<0": ((Y,), {"tol": -1.0}, r"tol must be a non-negative"),
    "max_iter=0": ((Y,), {"max_iter": 0}, r"max_iter must be a positive"),
    "n_init=0": ((Y,), {"n_init": 0}, r"n_init must be a positive"),
}


@pytest.mark.parametrize("case", BAD_FIT_CALLS)
def test_fit_rejects_bad_input(case):
    args, kwargs, match = BAD_FIT_CALLS[case]
    with pytest.raises(ValueError, match=match):
        pm.fit(*args, **kwargs)


def test_fit_rejects_a_start_that_makes_the_data_impossible():
    init = {"weights": [0.5, 0.5], "means": [0.0, 0.0]}
    with pytest.raises(ValueError, match=r"probability zero under every component"):
        pm.fit(Y, 2, init=init)


@pytest.mark.parametrize(
    ("func", "args", "match"),
    [
        (pm.loglik, ([0, -1], GOOD_INIT), r"counts \(>= 0\)"),
        (pm.loglik, (Y, {**GOOD_INIT, "means": [1.0, -3.0]}), r"means must be non-negative"),
        (pm.e_step, ([0.5, 1], GOOD_INIT), r"whole-number counts"),
        (pm.e_step, (Y, {**GOOD_INIT, "weights": [0.9, 0.9]}), r"sum to 1"),
        (pm.m_step, (Y, np.full((Y.size, 2), 0.4)), r"each row of resp must sum to 1"),
        (pm.m_step, (Y, np.full((Y.size + 1, 2), 0.5)), r"resp must have shape"),
        (pm.m_step, (Y, np.full((Y.size, 2), np.nan)), r"finite, non-negative"),
        (pm.m_step, (Y, np.column_stack([np.ones(Y.size), np.zeros(Y.size)])), r"no resp"),
    ],
)
def test_steps_reject_bad_input(func, args, match):
    with pytest.raises(ValueError, match=match):
        func(*args)


def test_too_few_iterations_warns_and_reports_not_converged():
    with pytest.warns(emlib.ConvergenceWarning, match="max_iter"):
        result = pm.fit(pm.hasselblad_data(), 2, init=SQUAREM_START, max_iter=2)
    assert result.converged is False
    assert result.n_iter == 2

"""Tests of emlib.normal_mixture against oracles that share no code with emlib.

The oracles are scipy.stats log-densities with scipy.special.logsumexp, numpy.average,
scikit-learn's GaussianMixture, direct maximisation with scipy.optimize, and a Hessian
from scipy.differentiate.
"""

import warnings

import numpy as np
import pytest
from scipy import differentiate, optimize, stats
from scipy.special import logsumexp, softmax
from sklearn.mixture import GaussianMixture

import emlib
from emlib import normal_mixture as nm

# ---------------------------------------------------------------------------------------
# Independent reference computations
# ---------------------------------------------------------------------------------------


def ref_log_joint(x, params):
    """log w_j + log φ(x_i; μ_j, σ_j), shape (n, k), from scipy.stats."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(params["weights"], dtype=float))
    return stats.norm.logpdf(x[:, None], params["means"], params["sds"]) + log_w


def ref_loglik(x, params):
    return float(logsumexp(ref_log_joint(x, params), axis=1).sum())


def ref_resp(x, params):
    log_joint = ref_log_joint(x, params)
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))


def random_params(rng, k):
    return {
        "weights": rng.dirichlet(np.full(k, 2.0)),
        "means": rng.normal(0.0, 3.0, size=k),
        "sds": rng.uniform(0.3, 3.0, size=k),
    }


def simulate(rng, weights, means, sds, n):
    z = rng.choice(len(weights), size=n, p=weights)
    return rng.normal(np.asarray(means)[z], np.asarray(sds)[z])


def separated_data(k, n=400, seed=1):
    rng = np.random.default_rng(seed)
    truth = {
        2: ([0.4, 0.6], [-2.0, 3.0], [0.8, 1.2]),
        3: ([0.3, 0.3, 0.4], [-6.0, 0.0, 7.0], [1.0, 0.7, 1.5]),
    }[k]
    return simulate(rng, *truth, n), truth


def to_unconstrained(params):
    """(log-weights relative to the last, means, log sds): an unconstrained parametrisation."""
    w = np.asarray(params["weights"])
    return np.concatenate([np.log(w[:-1] / w[-1]), params["means"], np.log(params["sds"])])


def from_unconstrained(z, k):
    weights = softmax(np.append(z[: k - 1], 0.0))
    return {"weights": weights, "means": z[k - 1 : 2 * k - 1], "sds": np.exp(z[2 * k - 1 :])}


def direct_maximum(x, starts):
    """Best log-likelihood found by L-BFGS-B on unconstrained coordinates from each start."""
    k = len(starts[0]["weights"])
    best = None
    for start in starts:
        res = optimize.minimize(
            lambda z: -ref_loglik(x, from_unconstrained(z, k)),
            to_unconstrained(start),
            method="L-BFGS-B",
            options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-9},
        )
        if best is None or -res.fun > best[0]:
            best = (-res.fun, from_unconstrained(res.x, k))
    return best


# ---------------------------------------------------------------------------------------
# loglik, e_step, m_step
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loglik_matches_scipy(k, seed):
    rng = np.random.default_rng(100 * k + seed)
    x = rng.normal(1.0, 4.0, size=60)
    params = random_params(rng, k)
    assert nm.loglik(x, params) == pytest.approx(ref_loglik(x, params), rel=1e-11, abs=1e-9)


def test_loglik_includes_every_constant():
    # One standard normal: ℓ = -n/2 log(2π) - Σx²/2, written out by hand.
    x = np.array([-1.0, 0.5, 2.0])
    params = {"weights": [1.0], "means": [0.0], "sds": [1.0]}
    expected = -1.5 * np.log(2 * np.pi) - 0.5 * (1.0 + 0.25 + 4.0)
    assert nm.loglik(x, params) == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_e_step_is_bayes_rule(k):
    rng = np.random.default_rng(7 + k)
    x = rng.normal(0.0, 3.0, size=50)
    params = random_params(rng, k)
    resp = nm.e_step(x, params)
    assert resp.shape == (x.size, k)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(resp, ref_resp(x, params), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_m_step_is_weighted_mean_and_sd(k):
    rng = np.random.default_rng(11 + k)
    x = rng.normal(5.0, 2.0, size=80)
    resp = rng.dirichlet(np.ones(k), size=x.size)
    params = nm.m_step(x, resp)
    means = np.array([np.average(x, weights=resp[:, j]) for j in range(k)])
    sds = np.sqrt([np.average((x - means[j]) ** 2, weights=resp[:, j]) for j in range(k)])
    np.testing.assert_allclose(params["weights"], resp.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(params["means"], means, rtol=1e-11)
    np.testing.assert_allclose(params["sds"], sds, rtol=1e-10)


# ---------------------------------------------------------------------------------------
# fit: against scikit-learn and against direct maximisation
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3])
def test_fit_matches_sklearn_from_the_same_start(k):
    x, (_, true_means, _) = separated_data(k)
    init = {
        "weights": np.full(k, 1 / k),
        "means": np.asarray(true_means) + 0.7,
        "sds": np.full(k, 2.0),
    }
    result = nm.fit(x, k, init=init, tol=1e-14, max_iter=10_000)
    gm = GaussianMixture(
        n_components=k,
        covariance_type="full",
        tol=1e-12,
        max_iter=10_000,
        reg_covar=0.0,
        weights_init=init["weights"],
        means_init=init["means"][:, None],
        precisions_init=(1 / init["sds"] ** 2)[:, None, None],
        init_params="random_from_data",
        random_state=0,
    ).fit(x[:, None])
    assert gm.converged_
    order = np.argsort(gm.means_.ravel())
    np.testing.assert_allclose(result.params["weights"], gm.weights_[order], rtol=1e-5)
    np.testing.assert_allclose(result.params["means"], gm.means_.ravel()[order], rtol=1e-5)
    np.testing.assert_allclose(
        result.params["sds"], np.sqrt(gm.covariances_.ravel()[order]), rtol=1e-5
    )
    assert result.converged
    assert result.loglik >= gm.score(x[:, None]) * x.size - 1e-6
    # The reported log-likelihood is the true one at the reported parameters.
    assert result.loglik == pytest.approx(ref_loglik(x, result.params), rel=1e-11)


@pytest.mark.parametrize("k", [2, 3])
def test_default_fit_reaches_the_global_maximum(k):
    x, (weights, means, sds) = separated_data(k, n=300, seed=5)
    result = nm.fit(x, k)
    assert result.converged
    assert np.all(np.diff(result.params["means"]) > 0), "components must be sorted by mean"
    rng = np.random.default_rng(3)
    starts = [
        {
            "weights": np.asarray(weights),
            "means": np.asarray(means) + rng.normal(0, 0.3, size=k),
            "sds": np.asarray(sds) * rng.uniform(0.7, 1.4, size=k),
        }
        for _ in range(3)
    ]
    best_ll, best_params = direct_maximum(x, starts)
    assert result.loglik >= best_ll - 1e-6
    assert result.loglik == pytest.approx(ref_loglik(x, result.params), rel=1e-11)
    for name in ("weights", "means", "sds"):
        np.testing.assert_allclose(result.params[name], best_params[name], rtol=1e-3)


# ---------------------------------------------------------------------------------------
# Monotonicity and acceleration
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("accelerate", [None, "squarem"])
def test_history_never_decreases_independently_checked(accelerate):
    rng = np.random.default_rng(21)
    # Overlapping components and a poor start: many iterations, each of which must not
    # lower the likelihood.
    x = simulate(rng, [0.5, 0.3, 0.2], [0.0, 1.5, 4.0], [1.0, 0.8, 1.5], 250)
    init = {"weights": [0.2, 0.3, 0.5], "means": [-1.0, 2.5, 3.0], "sds": [3.0, 0.5, 2.0]}
    result = nm.fit(x, 3, init=init, tol=1e-12, accelerate=accelerate)
    history = result.loglik_history
    assert len(result.param_history) == history.size > 5
    scale = abs(history[-1])
    assert np.all(np.diff(history) >= -1e-9 * scale)
    # The independent check: the true log-likelihood along the reported path never drops,
    # and it is what the history says it is.
    independent = np.array([ref_loglik(x, p) for p in result.param_history])
    assert np.all(np.diff(independent) >= -1e-9 * scale)
    np.testing.assert_allclose(history, independent, rtol=1e-10)
    assert independent[-1] > independent[0] + 1.0  # the run went somewhere


def test_squarem_reaches_the_same_optimum_as_plain_em():
    rng = np.random.default_rng(4)
    x = simulate(rng, [0.5, 0.5], [0.0, 3.0], [1.0, 1.0], 300)
    init = {"weights": [0.5, 0.5], "means": [-1.0, 4.0], "sds": [1.5, 1.5]}
    plain = nm.fit(x, 2, init=init, tol=0, xtol=1e-12, max_iter=20_000, accelerate=None)
    fast = nm.fit(x, 2, init=init, tol=0, xtol=1e-12, accelerate="squarem")
    assert plain.converged and fast.converged
    for name in ("weights", "means", "sds"):
        # Plain EM (rate ~0.94 here) stops once the log-likelihood stagnates in floating
        # point, which leaves its parameters ~1e-7 from the fixed point.
        np.testing.assert_allclose(fast.params[name], plain.params[name], rtol=1e-5)
    assert fast.loglik == pytest.approx(plain.loglik, rel=1e-12)
    assert fast.loglik == pytest.approx(ref_loglik(x, fast.params), rel=1e-11)
    assert fast.n_iter < plain.n_iter


# ---------------------------------------------------------------------------------------
# Degenerate fits
# ---------------------------------------------------------------------------------------


def _spike_at_mean():
    # A spike exactly at the data mean plus spread data: one component collapses on it.
    spread = np.random.default_rng(0).normal(0, 1, 100)
    spread -= spread.mean()
    return np.concatenate([np.zeros(30), spread])


def _one_point():
    return np.random.default_rng(3).normal(0, 1, 50)


COLLAPSES = {
    "spike-k2": (_spike_at_mean, 2, None),
    "spike-k3": (_spike_at_mean, 3, None),
    "tiny-sd-on-one-point": (
        _one_point,
        2,
        lambda x: {"weights": [0.1, 0.9], "means": [x.max(), 0.0], "sds": [1e-4, 1.0]},
    ),
}


@pytest.mark.parametrize("case", COLLAPSES)
def test_collapse_warns_and_stays_finite(case):
    make, k, make_init = COLLAPSES[case]
    x = make()
    init = make_init(x) if make_init else None
    with pytest.warns(RuntimeWarning, match=r"collapsed.*floor"):
        result = nm.fit(x, k, init=init)
    for value in result.params.values():
        assert np.all(np.isfinite(value))
    assert np.isfinite(result.loglik)
    # The documented floor is 1e-3 times the (population) standard deviation of the data.
    floor = 1e-3 * np.std(x)
    assert np.all(result.params["sds"] >= floor * (1 - 1e-9))
    assert result.params["sds"].min() == pytest.approx(floor, rel=1e-6)
    assert result.params["weights"].sum() == pytest.approx(1.0, abs=1e-12)
    assert result.loglik == pytest.approx(ref_loglik(x, result.params), rel=1e-9)


def test_collapse_away_from_the_data_mean_warns():
    x = np.concatenate([np.full(30, 2.0), np.random.default_rng(0).normal(0, 1, 100)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = nm.fit(x, 2)
    assert any("collapsed" in str(w.message) for w in caught)
    assert np.all(np.isfinite(result.params["sds"]))


# ---------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------

X = np.array([0.1, 1.3, -0.4, 2.2, 0.9, 3.1, -1.0, 0.0])
GOOD_INIT = {"weights": [0.5, 0.5], "means": [0.0, 2.0], "sds": [1.0, 1.0]}


def _init(**changes):
    return {**GOOD_INIT, **changes}


BAD_FIT_CALLS = {
    "nan": ((np.append(X, np.nan),), {}, r"NaN or infinite"),
    "inf": ((np.append(X, np.inf),), {}, r"NaN or infinite"),
    "empty": (([],), {}, r"empty"),
    "2-D": ((X.reshape(2, 4),), {}, r"1-D"),
    "strings": ((["a", "b", "c"],), {}, r"numeric"),
    "all-equal": ((np.ones(5),), {"k": 1}, r"all observations are equal"),
    "k=0": ((X,), {"k": 0}, r"k must be at least 1"),
    "k=1.5": ((X,), {"k": 1.5}, r"k must be a whole number"),
    "k=True": ((X,), {"k": True}, r"k must be a whole number"),
    "k>distinct": (([1.0, 1.0, 2.0, 2.0],), {"k": 3}, r"k=3 .*2 distinct"),
    "weights-sum": ((X,), {"init": _init(weights=[0.5, 0.6])}, r"weights must sum to 1"),
    "weight<0": ((X,), {"init": _init(weights=[-0.5, 1.5])}, r"weights must be probab"),
    "weight>1": ((X,), {"init": _init(weights=[1.2, -0.2])}, r"weights must be probab"),
    "negative-sd": ((X,), {"init": _init(sds=[1.0, -1.0])}, r"sds must be positive"),
    "zero-sd": ((X,), {"init": _init(sds=[0.0, 1.0])}, r"sds must be positive"),
    "nan-mean": ((X,), {"init": _init(means=[np.nan, 1.0])}, r"means must be finite"),
    "missing-key": (
        (X,),
        {"init": {"weights": [0.5, 0.5], "means": [0.0, 1.0]}},
        r"missing \['sds'\]",
    ),
    "extra-key": ((X,), {"init": _init(rates=[1.0, 1.0])}, r"unexpected \['rates'\]"),
    "init-not-dict": ((X,), {"init": [0.5, 0.5]}, r"init must be a dict"),
    "wrong-length": ((X,), {"init": _init(means=[0.0, 1.0, 2.0])}, r"means must have 2"),
    "weights-length": ((X,), {"k": 3, "init": GOOD_INIT}, r"weights must have 3"),
    "accelerate": ((X,), {"accelerate": "aitken"}, r"accelerate must be None or 'squarem'"),
    "tol<0": ((X,), {"tol": -1e-8}, r"tol must be a non-negative"),
    "tol-nan": ((X,), {"tol": np.nan}, r"tol must be a non-negative"),
    "xtol<0": ((X,), {"xtol": -1.0}, r"xtol must be a non-negative"),
    "max_iter=0": ((X,), {"max_iter": 0}, r"max_iter must be a positive"),
    "max_iter=2.5": ((X,), {"max_iter": 2.5}, r"max_iter must be a positive"),
    "n_init=0": ((X,), {"n_init": 0}, r"n_init must be a positive"),
}


@pytest.mark.parametrize("case", BAD_FIT_CALLS)
def test_fit_rejects_bad_input(case):
    args, kwargs, match = BAD_FIT_CALLS[case]
    with pytest.raises(ValueError, match=match):
        nm.fit(*args, **kwargs)


@pytest.mark.parametrize(
    ("func", "args", "match"),
    [
        (nm.loglik, (np.append(X, np.nan), GOOD_INIT), r"NaN or infinite"),
        (nm.loglik, (X, _init(sds=[1.0, -2.0])), r"sds must be positive"),
        (nm.e_step, (X, _init(weights=[0.3, 0.3])), r"weights must sum to 1"),
        (nm.e_step, (X, {"weights": [1.0], "means": [0.0]}), r"missing \['sds'\]"),
        (nm.m_step, (X, np.full((X.size - 1, 2), 0.5)), r"resp must have shape"),
        (nm.m_step, (X, np.full(X.size, 1.0)), r"resp must have shape"),
        (nm.m_step, (X, np.full((X.size, 2), -0.5)), r"non-negative"),
        (nm.m_step, (X, np.column_stack([np.ones(X.size), np.zeros(X.size)])), r"no resp"),
    ],
)
def test_steps_reject_bad_input(func, args, match):
    with pytest.raises(ValueError, match=match):
        func(*args)


def test_too_few_iterations_warns_and_reports_not_converged():
    x, _ = separated_data(2, n=200)
    with pytest.warns(emlib.ConvergenceWarning, match="max_iter"):
        result = nm.fit(x, 2, max_iter=2, init=GOOD_INIT)
    assert result.converged is False
    assert result.n_iter == 2
    assert result.loglik_history.size == 3


# ---------------------------------------------------------------------------------------
# Standard errors
# ---------------------------------------------------------------------------------------


def _independent_se(x, params):
    """Standard errors from the inverse of a Hessian of the scipy.stats log-likelihood.

    Free coordinates as documented: (w_1, μ_1, μ_2, σ_1, σ_2), with w_2 = 1 - w_1, so
    se(w_2) = se(w_1).
    """
    x = np.asarray(x)

    def f(theta):
        w1, m1, m2, s1, s2 = theta
        xx = x.reshape((-1,) + (1,) * np.ndim(w1))
        a = np.log(w1) + stats.norm.logpdf(xx, m1, s1)
        b = np.log1p(-w1) + stats.norm.logpdf(xx, m2, s2)
        return np.logaddexp(a, b).sum(axis=0)

    theta = np.array([params["weights"][0], *params["means"], *params["sds"]], dtype=float)
    res = differentiate.hessian(f, theta, initial_step=0.05, tolerances={"rtol": 1e-6})
    assert np.all(res.success)
    se = np.sqrt(np.diag(np.linalg.inv(-res.ddf)))
    return {"weights": se[[0, 0]], "means": se[1:3], "sds": se[3:5]}


def test_standard_errors_match_an_independent_hessian_and_scale_with_n():
    rng = np.random.default_rng(8)
    truth = ([0.4, 0.6], [-2.0, 2.0], [1.0, 1.0])
    small = simulate(rng, *truth, 400)
    large = simulate(rng, *truth, 1600)
    fits = [nm.fit(x, 2, tol=1e-13) for x in (small, large)]
    for x, result in zip((small, large), fits, strict=True):
        independent = _independent_se(x, result.params)
        for name in ("weights", "means", "sds"):
            se = result.se[name]
            assert np.all(np.isfinite(se)) and np.all(se > 0)
            np.testing.assert_allclose(se, independent[name], rtol=1e-4)
    for name in ("weights", "means", "sds"):
        ratio = fits[0].se[name] / fits[1].se[name]
        np.testing.assert_allclose(ratio, 2.0, rtol=0.25)

"""Tests of emlib.gaussian_mixture against oracles that share no code with emlib.

The oracles are scipy.stats.multivariate_normal log-densities with scipy.special.logsumexp,
numpy's weighted averages, scikit-learn's GaussianMixture from the same start, direct
maximisation with scipy.optimize, and the closed-form standard errors of one normal.
"""

import warnings

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import logsumexp, softmax
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

import emlib
from emlib import gaussian_mixture as gmm
from emlib import normal_mixture

# ---------------------------------------------------------------------------------------
# Independent reference computations
# ---------------------------------------------------------------------------------------


def ref_log_joint(X, params):
    """log w_j + log φ_d(x_i; μ_j, Σ_j), shape (n, k), from scipy.stats."""
    return np.column_stack(
        [
            np.log(w) + stats.multivariate_normal(m, c).logpdf(X).reshape(-1)
            for w, m, c in zip(
                params["weights"], params["means"], params["covariances"], strict=True
            )
        ]
    )


def ref_loglik(X, params):
    return float(logsumexp(ref_log_joint(X, params), axis=1).sum())


def ref_resp(X, params):
    log_joint = ref_log_joint(X, params)
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))


def random_cov(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.2 * np.eye(d))


def random_params(rng, k, d, scale=1.0):
    return {
        "weights": rng.dirichlet(np.full(k, 2.0)),
        "means": rng.normal(0.0, 3.0 * scale, size=(k, d)),
        "covariances": np.array([random_cov(rng, d, scale**2) for _ in range(k)]),
    }


def simulate(rng, params, n):
    z = rng.choice(len(params["weights"]), size=n, p=params["weights"])
    out = np.empty((n, params["means"].shape[1]))
    for j in range(len(params["weights"])):
        idx = z == j
        out[idx] = rng.multivariate_normal(params["means"][j], params["covariances"][j], idx.sum())
    return out


TRUTH_2D = {
    "weights": np.array([0.4, 0.6]),
    "means": np.array([[0.0, 0.0], [3.0, 1.5]]),
    "covariances": np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.6, -0.2], [-0.2, 0.4]]]),
}


def data_2d(n=300, seed=1):
    return simulate(np.random.default_rng(seed), TRUTH_2D, n)


def poor_start(k, d, offset=0.8):
    return {
        "weights": np.full(k, 1 / k),
        "means": np.tile(np.linspace(-1, 1, k)[:, None], (1, d)) + offset,
        "covariances": np.array([np.eye(d) * 2.0] * k),
    }


def match_components(params, ref_means):
    """Order of ``params``' components that best matches ``ref_means`` (label switching)."""
    cost = ((params["means"][:, None, :] - ref_means[None]) ** 2).sum(axis=2)
    _, cols = optimize.linear_sum_assignment(cost.T)
    return cols


# ---------------------------------------------------------------------------------------
# loglik, e_step, m_step
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "d"), [(1, 1), (2, 2), (3, 3), (2, 5)])
def test_loglik_matches_scipy(k, d):
    rng = np.random.default_rng(10 * k + d)
    # Columns of very different units: the whitening must not change ℓ.
    units = np.logspace(-1, 2, d)
    X = rng.normal(size=(80, d)) * 3 * units + 7 * units
    params = random_params(rng, k, d)
    params["means"] = params["means"] * units + 7 * units
    params["covariances"] = params["covariances"] * np.outer(units, units)
    assert gmm.loglik(X, params) == pytest.approx(ref_loglik(X, params), rel=1e-11)


def test_loglik_with_a_narrow_component_far_from_the_centre():
    # A tiny covariance far from the data's centre takes the direct (triangular solve)
    # route: the expanded quadratic would lose ~|μ|²/σ² of precision there.
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(size=(100, 2)), 40 + 1e-4 * rng.normal(size=(20, 2))])
    params = {
        "weights": np.array([0.8, 0.2]),
        "means": np.array([[0.0, 0.0], [40.0, 40.0]]),
        "covariances": np.array([np.eye(2), 1e-8 * np.array([[1.0, 0.3], [0.3, 1.0]])]),
    }
    assert gmm.loglik(X, params) == pytest.approx(ref_loglik(X, params), rel=1e-12)
    np.testing.assert_allclose(gmm.e_step(X, params), ref_resp(X, params), atol=1e-12)


def test_loglik_includes_every_constant():
    # One standard bivariate normal: ℓ = -n log(2π) - Σ|x|²/2, by hand.
    X = np.array([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    params = {"weights": [1.0], "means": [[0.0, 0.0]], "covariances": [np.eye(2)]}
    expected = -3 * np.log(2 * np.pi) - 0.5 * (1 + 5 + 0.5)
    assert gmm.loglik(X, params) == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize(("k", "d"), [(1, 2), (3, 2), (2, 4)])
def test_e_step_is_bayes_rule(k, d):
    rng = np.random.default_rng(7 + k + d)
    X = rng.normal(0.0, 3.0, size=(60, d))
    params = random_params(rng, k, d)
    resp = gmm.e_step(X, params)
    assert resp.shape == (60, k)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(resp, ref_resp(X, params), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize(("k", "d"), [(1, 3), (3, 2)])
def test_m_step_is_weighted_mean_and_covariance(k, d):
    rng = np.random.default_rng(11 + k)
    X = rng.normal(5.0, 2.0, size=(90, d)) * [1.0, 10.0, 0.1][:d]
    resp = rng.dirichlet(np.ones(k), size=90)
    params = gmm.m_step(X, resp)
    np.testing.assert_allclose(params["weights"], resp.mean(axis=0), rtol=1e-12)
    for j in range(k):
        mean = np.average(X, axis=0, weights=resp[:, j])
        cov = np.cov(X.T, aweights=resp[:, j], bias=True).reshape(d, d)
        np.testing.assert_allclose(params["means"][j], mean, rtol=1e-11)
        np.testing.assert_allclose(params["covariances"][j], cov, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------
# fit: against scikit-learn and against direct maximisation
# ---------------------------------------------------------------------------------------


def sklearn_fit(X, init):
    # One BLAS thread: on a busy machine OpenBLAS's threaded trsm, which scikit-learn calls
    # for every precision matrix, takes ~10 ms a call.
    with threadpool_limits(1, user_api="blas"):
        return _sklearn_fit(X, init)


def _sklearn_fit(X, init):
    return GaussianMixture(
        n_components=len(init["weights"]),
        covariance_type="full",
        tol=1e-12,
        max_iter=10_000,
        reg_covar=0.0,
        weights_init=init["weights"],
        means_init=init["means"],
        precisions_init=np.linalg.inv(init["covariances"]),
        init_params="random_from_data",
        random_state=0,
    ).fit(X)


@pytest.mark.parametrize("case", ["d2-k2", "d3-k3"])
def test_fit_matches_sklearn_from_the_same_start(case):
    if case == "d2-k2":
        X, k = data_2d(), 2
    else:
        rng = np.random.default_rng(5)
        truth = random_params(rng, 3, 3)
        truth["means"] *= 1.5
        X, k = simulate(rng, truth, 400), 3
    init = poor_start(k, X.shape[1])
    result = gmm.fit(X, k, init=init, tol=1e-13)
    gm = sklearn_fit(X, init)
    assert gm.converged_ and result.converged
    sk_ll = gm.score(X) * X.shape[0]
    assert result.loglik >= sk_ll - 1e-9 * abs(sk_ll)
    order = match_components({"means": gm.means_}, result.params["means"])
    # scikit-learn stops on a change of 1e-12 in the mean ℓ, ~1e-6 from its fixed point.
    np.testing.assert_allclose(result.params["weights"], gm.weights_[order], atol=2e-5)
    np.testing.assert_allclose(result.params["means"], gm.means_[order], atol=2e-5)
    np.testing.assert_allclose(result.params["covariances"], gm.covariances_[order], atol=2e-5)
    # The reported log-likelihood is the true one at the reported parameters.
    assert result.loglik == pytest.approx(ref_loglik(X, result.params), rel=1e-12)


def to_unconstrained(params):
    """(log w_j / w_k, means, Cholesky factors with log-diagonal): unconstrained."""
    w = np.asarray(params["weights"])
    chol = np.linalg.cholesky(params["covariances"])
    d = chol.shape[1]
    il = np.tril_indices(d)
    entries = chol[:, il[0], il[1]].copy()
    entries[:, il[0] == il[1]] = np.log(entries[:, il[0] == il[1]])
    return np.concatenate([np.log(w[:-1] / w[-1]), np.ravel(params["means"]), entries.ravel()])


def from_unconstrained(z, k, d):
    il = np.tril_indices(d)
    weights = softmax(np.append(z[: k - 1], 0.0))
    means = z[k - 1 : k - 1 + k * d].reshape(k, d)
    entries = z[k - 1 + k * d :].reshape(k, -1).copy()
    entries[:, il[0] == il[1]] = np.exp(entries[:, il[0] == il[1]])
    chol = np.zeros((k, d, d))
    chol[:, il[0], il[1]] = entries
    return {"weights": weights, "means": means, "covariances": chol @ chol.transpose(0, 2, 1)}


def test_fit_reaches_the_direct_maximum():
    X = data_2d(n=200, seed=4)
    result = gmm.fit(X, 2, tol=1e-12)
    assert result.converged
    res = optimize.minimize(
        lambda z: -ref_loglik(X, from_unconstrained(z, 2, 2)),
        to_unconstrained(poor_start(2, 2)),
        method="BFGS",
        options={"gtol": 1e-7, "maxiter": 2000},
    )
    best = from_unconstrained(res.x, 2, 2)
    assert result.loglik >= -res.fun - 1e-7
    assert result.loglik == pytest.approx(-res.fun, abs=1e-6)
    order = match_components(best, result.params["means"])
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(result.params[name], best[name][order], atol=1e-4)


def test_default_fit_recovers_separated_clusters():
    X = data_2d(n=600, seed=2)
    result = gmm.fit(X, 2)
    assert result.converged
    assert result.params["means"][0, 0] < result.params["means"][1, 0], "sorted by means"
    np.testing.assert_allclose(result.params["means"], TRUTH_2D["means"], atol=0.2)
    np.testing.assert_allclose(result.params["covariances"], TRUTH_2D["covariances"], atol=0.2)
    assert result.collapsed == ()


# ---------------------------------------------------------------------------------------
# Monotonicity and acceleration
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("accelerate", [None, "squarem"])
def test_history_never_decreases_independently_checked(accelerate):
    rng = np.random.default_rng(21)
    truth = random_params(rng, 3, 2, scale=0.6)
    X = simulate(rng, truth, 250)
    result = gmm.fit(X, 3, init=poor_start(3, 2, offset=0.0), tol=1e-10, accelerate=accelerate)
    history = result.loglik_history
    assert len(result.param_history) == history.size > 5
    scale = abs(history[-1])
    assert np.all(np.diff(history) >= -1e-10 * scale)
    independent = np.array([ref_loglik(X, p) for p in result.param_history])
    assert np.all(np.diff(independent) >= -1e-10 * scale)
    np.testing.assert_allclose(history, independent, rtol=1e-11)
    assert independent[-1] > independent[0] + 1.0


def test_squarem_reaches_the_same_optimum_as_plain_em_in_fewer_iterations():
    X = data_2d(n=300, seed=6)
    init = poor_start(2, 2)
    plain = gmm.fit(X, 2, init=init, tol=1e-11, accelerate=None, max_iter=20_000)
    fast = gmm.fit(X, 2, init=init, tol=1e-11)
    assert plain.converged and fast.converged
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(fast.params[name], plain.params[name], atol=1e-7)
    assert fast.loglik >= plain.loglik - 1e-9
    assert fast.n_iter < plain.n_iter


def test_packing_keeps_every_extrapolated_point_a_valid_mixture():
    # SQUAREM extrapolates in packed coordinates: any finite vector must unpack to weights
    # on the simplex and positive definite covariances, and packing must invert unpacking.
    rng = np.random.default_rng(0)
    k, d = 3, 3
    model = gmm._make_model(k, d)
    size = k - 1 + k * d + k * d * (d + 1) // 2
    for scale in (1.0, 3.0):
        for _ in range(10):
            theta = rng.normal(0, scale, size=size)
            assert model.in_domain(theta)
            params = model.unpack(theta)
            assert params["weights"].sum() == pytest.approx(1.0, abs=1e-14)
            assert np.all(params["weights"] > 0)
            assert np.all(np.linalg.eigvalsh(params["covariances"]) > 0)
            if scale == 1.0:  # (at scale 3 the covariances are too ill-conditioned)
                np.testing.assert_allclose(model.pack(params), theta, atol=1e-9)


# ---------------------------------------------------------------------------------------
# Collapse onto a point or a subspace
# ---------------------------------------------------------------------------------------


def _duplicated_point():
    spread = np.random.default_rng(0).normal(size=(120, 2))
    return np.vstack([spread, np.tile([[1.5, -0.5]], (25, 1))])


def _points_on_a_line():
    rng = np.random.default_rng(1)
    t = rng.normal(size=40)
    line = np.column_stack([t, 2 * t + 1])
    return np.vstack([rng.normal(size=(100, 2)) * 2, line])


@pytest.mark.parametrize(
    ("make", "n_floored"), [(_duplicated_point, 2), (_points_on_a_line, 1)], ids=["point", "line"]
)
def test_collapse_warns_names_the_component_and_flags_the_result(make, n_floored):
    X = make()
    with pytest.warns(RuntimeWarning, match=r"component \d \(\d of 2 eigenvalue.*floor"):
        result = gmm.fit(X, 2, seed=1)
    assert len(result.collapsed) == 1
    j = result.collapsed[0]
    for value in result.params.values():
        assert np.all(np.isfinite(value))
    # The floor is COV_FLOOR times the data's variance in each direction: in whitened
    # coordinates the eigenvalues are at least COV_FLOOR, `n_floored` of them on it.
    data_cov = np.cov(X.T, bias=True)
    a_inv = np.linalg.inv(np.linalg.cholesky(data_cov))
    lam = np.linalg.eigvalsh(a_inv @ result.params["covariances"][j] @ a_inv.T)
    assert np.all(lam >= gmm.COV_FLOOR * (1 - 1e-9))
    assert np.sum(lam < gmm.COV_FLOOR * (1 + 1e-6)) == n_floored
    assert result.loglik == pytest.approx(ref_loglik(X, result.params), rel=1e-10)
    assert np.all(np.diff(result.loglik_history) >= -1e-10 * abs(result.loglik))


def test_init_narrower_than_the_floor_is_raised_with_a_warning():
    X = _duplicated_point()
    init = {
        "weights": np.array([0.8, 0.2]),
        "means": np.array([[0.0, 0.0], [1.5, -0.5]]),
        "covariances": np.array([np.eye(2), 1e-12 * np.eye(2)]),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = gmm.fit(X, 2, init=init)
    messages = [str(w.message) for w in caught]
    assert any("init covariance(s) of component(s) [1]" in m for m in messages)
    assert any("collapsed" in m for m in messages)
    assert result.collapsed == (1,)


# ---------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------

X_SMALL = np.random.default_rng(9).normal(size=(12, 2))
GOOD_INIT = {
    "weights": [0.5, 0.5],
    "means": [[0.0, 0.0], [1.0, 1.0]],
    "covariances": [np.eye(2), np.eye(2)],
}


def _init(**changes):
    return {**GOOD_INIT, **changes}


def _with(value, row, col):
    X = X_SMALL.copy()
    X[row, col] = value
    return X


BAD_FIT_CALLS = {
    "1-D": ((X_SMALL[:, 0],), {}, r"2-D array of shape \(n, d\).*reshape\(-1, 1\)"),
    "3-D": ((X_SMALL.reshape(2, 6, 2),), {}, r"2-D array of shape \(n, d\)"),
    "nan": ((_with(np.nan, 3, 1),), {}, r"1 NaN or infinite value\(s\).*row 3, column 1"),
    "inf": ((_with(-np.inf, 0, 0),), {}, r"NaN or infinite.*row 0, column 0"),
    "empty": ((np.empty((0, 2)),), {}, r"empty"),
    "strings": (([["a", "b"], ["c", "d"]],), {}, r"numeric"),
    "constant-column": ((np.column_stack([X_SMALL[:, 0], np.ones(12)]),), {}, r"rank 1 < d"),
    "collinear": ((np.column_stack([X_SMALL[:, 0], 2 * X_SMALL[:, 0]]),), {}, r"rank 1 < d"),
    "k=0": ((X_SMALL,), {"k": 0}, r"k must be at least 1"),
    "k=1.5": ((X_SMALL,), {"k": 1.5}, r"k must be a whole number"),
    "k=True": ((X_SMALL,), {"k": True}, r"k must be a whole number"),
    "k>n": ((X_SMALL,), {"k": 13}, r"k=13 .*at least 13 observations; got n = 12"),
    "weights-sum": ((X_SMALL,), {"init": _init(weights=[0.5, 0.6])}, r"weights must sum to 1"),
    "weight<0": ((X_SMALL,), {"init": _init(weights=[-0.5, 1.5])}, r"weights must be positive"),
    "weight=0": ((X_SMALL,), {"init": _init(weights=[0.0, 1.0])}, r"weight 0 is empty"),
    "weights-length": ((X_SMALL,), {"k": 3, "init": GOOD_INIT}, r"weights .* 3 entries"),
    "means-shape": (
        (X_SMALL,),
        {"init": _init(means=[0.0, 1.0])},
        r"means must have shape \(2, 2\)",
    ),
    "means-d": (
        (X_SMALL,),
        {"init": _init(means=np.zeros((2, 3)))},
        r"means must have shape \(2, 2\)",
    ),
    "cov-shape": (
        (X_SMALL,),
        {"init": _init(covariances=np.eye(2))},
        r"covariances must have shape \(2, 2, 2\)",
    ),
    "cov-not-pd": (
        (X_SMALL,),
        {"init": _init(covariances=[np.eye(2), [[1.0, 2.0], [2.0, 1.0]]])},
        r"covariances\[1\] is not positive definite",
    ),
    "cov-singular": (
        (X_SMALL,),
        {"init": _init(covariances=[np.zeros((2, 2)), np.eye(2)])},
        r"covariances\[0\] is not positive definite",
    ),
    "cov-asymmetric": (
        (X_SMALL,),
        {"init": _init(covariances=[np.eye(2), [[1.0, 0.5], [0.0, 1.0]]])},
        r"covariances\[1\] is not symmetric",
    ),
    "nan-mean": (
        (X_SMALL,),
        {"init": _init(means=[[np.nan, 0.0], [1.0, 1.0]])},
        r"means must be finite",
    ),
    "missing-key": (
        (X_SMALL,),
        {"init": {"weights": [1.0], "means": [[0.0, 0.0]]}},
        r"missing \['covariances'\]",
    ),
    "init-not-dict": ((X_SMALL,), {"init": [0.5, 0.5]}, r"init must be a dict"),
    "accelerate": ((X_SMALL,), {"accelerate": "aitken"}, r"accelerate must be None"),
    "tol<0": ((X_SMALL,), {"tol": -1.0}, r"tol must be a non-negative"),
    "max_iter=0": ((X_SMALL,), {"max_iter": 0}, r"max_iter must be a positive"),
    "n_init=0": ((X_SMALL,), {"n_init": 0}, r"n_init must be a positive"),
}


@pytest.mark.parametrize("case", BAD_FIT_CALLS)
def test_fit_rejects_bad_input(case):
    args, kwargs, match = BAD_FIT_CALLS[case]
    with pytest.raises(ValueError, match=match):
        gmm.fit(*args, **kwargs)


@pytest.mark.parametrize(
    ("func", "args", "match"),
    [
        (gmm.loglik, (_with(np.nan, 1, 1), GOOD_INIT), r"NaN or infinite"),
        (gmm.loglik, (X_SMALL, _init(means=np.zeros((2, 3)))), r"means must have shape"),
        (gmm.e_step, (X_SMALL, _init(weights=[0.3, 0.3])), r"weights must sum to 1"),
        (gmm.e_step, (X_SMALL[:, 0], GOOD_INIT), r"2-D array"),
        (gmm.m_step, (X_SMALL, np.full((11, 2), 0.5)), r"resp must have shape"),
        (gmm.m_step, (X_SMALL, np.full((12, 2), -0.5)), r"non-negative"),
        (gmm.default_init, (X_SMALL, 0), r"k must be at least 1"),
    ],
)
def test_steps_reject_bad_input(func, args, match):
    with pytest.raises(ValueError, match=match):
        func(*args)


def test_too_few_iterations_warns_and_reports_not_converged():
    with pytest.warns(emlib.ConvergenceWarning, match="max_iter"):
        result = gmm.fit(data_2d(), 2, max_iter=2, init=poor_start(2, 2))
    assert result.converged is False
    assert result.n_iter == 2
    assert result.loglik_history.size == 3


# ---------------------------------------------------------------------------------------
# Standard errors
# ---------------------------------------------------------------------------------------


def test_standard_errors_of_one_normal_match_the_closed_form():
    # k = 1: the MLE is the sample mean and covariance, with se(μ_a) = sqrt(Σ_aa / n) and
    # se(Σ_ab) = sqrt((Σ_aa Σ_bb + Σ_ab²) / n).
    X = data_2d(n=500, seed=8)[:, ::-1] * [1.0, 3.0]
    n = X.shape[0]
    result = gmm.fit(X, 1, tol=1e-13)
    cov = result.params["covariances"][0]
    np.testing.assert_allclose(cov, np.cov(X.T, bias=True), rtol=1e-10)
    se = result.se
    assert se["means"].shape == (1, 2) and se["covariances"].shape == (1, 2, 2)
    np.testing.assert_allclose(se["means"][0], np.sqrt(np.diag(cov) / n), rtol=1e-4)
    expected = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    np.testing.assert_allclose(se["covariances"][0], expected, rtol=1e-4)
    assert "covariances[0,1,1]" in result.summary()


def test_one_dimension_agrees_with_the_univariate_model():
    # d = 1 is emlib.normal_mixture (itself tested against scikit-learn): same maximum,
    # parameters and standard errors.
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(2, 0.5, 400), rng.normal(5, 1, 600)])
    multi = gmm.fit(x[:, None], 2, tol=1e-12)
    uni = normal_mixture.fit(x, 2, tol=1e-12)
    assert multi.loglik == pytest.approx(uni.loglik, rel=1e-13)
    np.testing.assert_allclose(multi.params["means"][:, 0], uni.params["means"], rtol=1e-9)
    np.testing.assert_allclose(
        np.sqrt(multi.params["covariances"][:, 0, 0]), uni.params["sds"], rtol=1e-9
    )
    np.testing.assert_allclose(multi.se["means"][:, 0], uni.se["means"], rtol=1e-4)

"""Multivariate normal with missing values (emlib.mvn_missing) against independent oracles.

The oracles: the observed-data log-likelihood written here with scipy.stats (each row's
observed coordinates under their marginal normal), its direct maximisation with
scipy.optimize through a Cholesky factor, the sample mean and MLE covariance when nothing
is missing, the conditional-normal formulas applied row by row, the truth of a large
simulated sample (against which complete-case analysis and mean imputation fail in the
directions theory predicts), and a finite-difference Hessian computed here.
"""

import numpy as np
import pytest
from scipy import optimize, stats

import emlib
from emlib import convergence, mvn_missing

MEAN = np.array([1.0, -2.0, 0.5])
COV = np.array([[2.0, 0.8, -0.6], [0.8, 1.0, 0.3], [-0.6, 0.3, 1.5]])


def simulate(n=200, missing=0.25, seed=0, mean=MEAN, cov=COV):
    """MCAR cells, never a whole row."""
    rng = np.random.default_rng(seed)
    x = rng.multivariate_normal(mean, cov, size=n)
    drop = rng.random(x.shape) < missing
    drop[drop.all(axis=1), 0] = False
    x[drop] = np.nan
    return x


def observed_loglik(x, mean, cov):
    """Σ_i log φ(x_{i,o}; μ_o, Σ_oo) with scipy.stats, one call per missingness pattern."""
    observed = ~np.isnan(x)
    total = 0.0
    for mask in np.unique(observed, axis=0):
        rows = x[(observed == mask).all(axis=1)][:, mask]
        total += stats.multivariate_normal.logpdf(rows, mean[mask], cov[np.ix_(mask, mask)]).sum()
    return float(total)


def cholesky_to_params(v, d):
    factor = np.zeros((d, d))
    factor[np.tril_indices(d)] = v[d:]
    factor[np.diag_indices(d)] = np.exp(factor[np.diag_indices(d)])
    return v[:d], factor @ factor.T


@pytest.fixture(scope="module")
def data():
    return simulate()


@pytest.fixture(scope="module")
def fitted(data):
    return mvn_missing.fit(data, tol=1e-12)


# --------------------------------------------------------------------------------------
# The MLE
# --------------------------------------------------------------------------------------


def test_missing_fraction_is_as_designed(data):
    assert 0.2 < np.isnan(data).mean() < 0.3
    assert np.isnan(data).any(axis=1).mean() > 0.5


def test_loglik_equals_scipy_marginal_densities(data):
    rng = np.random.default_rng(3)
    for _ in range(10):
        a = rng.normal(size=(3, 3))
        cov = a @ a.T + 0.3 * np.eye(3)
        mean = rng.normal(size=3)
        got = mvn_missing.loglik(data, {"mean": mean, "cov": cov})
        assert got == pytest.approx(observed_loglik(data, mean, cov), rel=1e-12)


def test_mle_matches_direct_maximisation(data, fitted):
    d = data.shape[1]

    def negative(v):
        mean, cov = cholesky_to_params(v, d)
        return -observed_loglik(data, mean, cov)

    v0 = np.concatenate([np.zeros(d), np.eye(d)[np.tril_indices(d)]])  # μ = 0, Σ = I
    opt = optimize.minimize(negative, v0, method="BFGS", options={"gtol": 1e-7})
    mean, cov = cholesky_to_params(opt.x, d)
    assert fitted.converged
    np.testing.assert_allclose(fitted.params["mean"], mean, atol=1e-6)
    np.testing.assert_allclose(fitted.params["cov"], cov, atol=1e-6)
    assert fitted.loglik >= -opt.fun - 1e-9
    assert fitted.loglik == pytest.approx(-opt.fun, abs=1e-6)
    # And the answer is not the complete-case or available-case one.
    complete = data[~np.isnan(data).any(axis=1)]
    assert np.max(np.abs(complete.mean(axis=0) - mean)) > 1e-2


def test_no_missing_values_gives_sample_mean_and_mle_covariance():
    x = np.random.default_rng(4).multivariate_normal(MEAN, COV, size=150)
    result = mvn_missing.fit(x)
    assert result.converged
    np.testing.assert_allclose(result.params["mean"], x.mean(axis=0), rtol=0, atol=1e-13)
    np.testing.assert_allclose(result.params["cov"], np.cov(x.T, bias=True), rtol=0, atol=1e-13)
    assert result.n_iter <= 3  # the E-step has nothing to fill in
    assert result.loglik == pytest.approx(
        stats.multivariate_normal.logpdf(x, x.mean(axis=0), np.cov(x.T, bias=True)).sum(),
        rel=1e-12,
    )


def test_plain_em_and_squarem_reach_the_same_maximum(data, fitted):
    plain = mvn_missing.fit(data, tol=1e-12, accelerate=None)
    assert plain.converged
    np.testing.assert_allclose(plain.params["mean"], fitted.params["mean"], atol=1e-9)
    np.testing.assert_allclose(plain.params["cov"], fitted.params["cov"], atol=1e-9)
    assert fitted.n_iter < plain.n_iter


@pytest.mark.parametrize("accelerate", [None, "squarem"])
def test_loglik_never_decreases(data, accelerate):
    rng = np.random.default_rng(5)
    for _ in range(3):  # from the default and from far-off starts
        a = rng.normal(size=(3, 3))
        init = {"mean": rng.normal(0, 5, 3), "cov": 5 * (a @ a.T) + np.eye(3)}
        result = mvn_missing.fit(data, init=init, accelerate=accelerate, tol=1e-12)
        history = result.loglik_history
        assert history.size > 3
        assert np.all(np.diff(history) >= -1e-12 * np.abs(history[:-1]))
        convergence.check_monotone(history)
        recomputed = [observed_loglik(data, p["mean"], p["cov"]) for p in result.param_history]
        np.testing.assert_allclose(recomputed, history, rtol=1e-11)
        for p in result.param_history:
            assert np.all(np.linalg.eigvalsh(p["cov"]) > 0)


def test_fit_does_not_depend_on_units_or_row_order(data, fitted):
    scale = np.array([1000.0, 1e-3, 1.0])
    shift = np.array([5e4, 0.0, -7.0])
    rescaled = mvn_missing.fit(data * scale + shift, tol=1e-12)
    np.testing.assert_allclose(
        rescaled.params["mean"], fitted.params["mean"] * scale + shift, rtol=1e-9
    )
    np.testing.assert_allclose(
        rescaled.params["cov"], fitted.params["cov"] * np.outer(scale, scale), rtol=1e-8
    )
    assert rescaled.n_iter == fitted.n_iter
    np.testing.assert_allclose(rescaled.se["mean"], fitted.se["mean"] * scale, rtol=1e-3)
    order = np.random.default_rng(6).permutation(data.shape[0])
    shuffled = mvn_missing.fit(data[order], tol=1e-12)
    np.testing.assert_allclose(shuffled.params["cov"], fitted.params["cov"], rtol=1e-10)


# --------------------------------------------------------------------------------------
# Missing at random: what EM gets right and the ad hoc methods get wrong
# --------------------------------------------------------------------------------------


def test_mar_em_recovers_truth_where_complete_case_and_mean_imputation_fail():
    rng = np.random.default_rng(7)
    n = 20_000
    x = rng.multivariate_normal(MEAN, COV, size=n)
    # x1 and x2 go missing far more often when the (always observed) x0 is high: MAR.
    high = x[:, 0] > MEAN[0]
    x[high & (rng.random(n) < 0.8), 1] = np.nan
    x[high & (rng.random(n) < 0.5), 2] = np.nan
    result = mvn_missing.fit(x)
    est_mean, est_cov = result.params["mean"], result.params["cov"]
    se = result.se["mean"]

    # EM: within a few standard errors of the truth, variances within 5 %.
    assert np.all(np.abs(est_mean - MEAN) < 4 * se)
    np.testing.assert_allclose(np.diag(est_cov), np.diag(COV), rtol=0.05)
    np.testing.assert_allclose(est_cov, COV, atol=0.06)

    # Complete cases: x0 is high less often among them, and x1 (correlation +) shifts
    # down, x2 (correlation −) up, x0 down: biased by many standard errors.
    complete = x[~np.isnan(x).any(axis=1)]
    bias = complete.mean(axis=0) - MEAN
    assert bias[0] < -10 * se[0] and bias[1] < -10 * se[1] and bias[2] > 10 * se[2]

    # Mean imputation: the same biased means for x1, x2, and variances shrunk by about
    # the fraction missing (plus the lost spread of the biased complete values).
    imputed = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    imputed_var = imputed.var(axis=0)
    fraction = np.isnan(x).mean(axis=0)
    for j in (1, 2):
        assert imputed_var[j] < (1 - 0.8 * fraction[j]) * COV[j, j]
        assert est_cov[j, j] > 0.95 * COV[j, j]
    assert abs(imputed.mean(axis=0)[1] - MEAN[1]) > 10 * se[1]


# --------------------------------------------------------------------------------------
# E-step and M-step
# --------------------------------------------------------------------------------------


def test_e_step_matches_row_by_row_conditional_normal(data):
    params = {"mean": np.array([0.5, -1.0, 0.0]), "cov": COV + 0.2 * np.eye(3)}
    mean, cov = params["mean"], params["cov"]
    sum_x = np.zeros(3)
    sum_xx = np.zeros((3, 3))
    for row in data:
        m = np.isnan(row)
        o = ~m
        filled = row.copy()
        extra = np.zeros((3, 3))
        if m.any():
            gain = cov[np.ix_(m, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
            filled[m] = mean[m] + gain @ (row[o] - mean[o])
            extra[np.ix_(m, m)] = cov[np.ix_(m, m)] - gain @ cov[np.ix_(o, m)]
        sum_x += filled
        sum_xx += np.outer(filled, filled) + extra
    got = mvn_missing.e_step(data, params)
    assert got["n"] == data.shape[0]
    np.testing.assert_allclose(got["sum_x"], sum_x, rtol=1e-11)
    np.testing.assert_allclose(got["sum_xx"], sum_xx, rtol=1e-11)


def test_m_step_of_e_step_is_one_em_step(data):
    start = mvn_missing.default_init(data)
    expected = mvn_missing.e_step(data, start)
    step = mvn_missing.m_step(data, expected)
    mean = expected["sum_x"] / expected["n"]
    np.testing.assert_allclose(step["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(
        step["cov"], expected["sum_xx"] / expected["n"] - np.outer(mean, mean), atol=1e-12
    )
    one = mvn_missing.fit(data, accelerate=None, max_iter=1, tol=0, xtol=1e3)
    np.testing.assert_allclose(one.param_history[1]["mean"], step["mean"], rtol=1e-12)
    np.testing.assert_allclose(one.param_history[1]["cov"], step["cov"], atol=1e-12)


def test_default_init_is_observed_means_and_variances(data):
    start = mvn_missing.default_init(data)
    np.testing.assert_allclose(start["mean"], np.nanmean(data, axis=0), rtol=1e-14)
    np.testing.assert_allclose(start["cov"], np.diag(np.nanvar(data, axis=0)), rtol=1e-14)


# --------------------------------------------------------------------------------------
# Standard errors
# --------------------------------------------------------------------------------------


def test_standard_errors_of_mean_match_independent_hessian(data, fitted):
    """Inverse of a finite-difference Hessian of ℓ in (μ, vech Σ), computed here."""
    d = 3
    rows, cols = np.tril_indices(d)

    def ll(v):
        cov = np.zeros((d, d))
        cov[rows, cols] = v[d:]
        cov[cols, rows] = v[d:]
        return observed_loglik(data, v[:d], cov)

    v0 = np.concatenate([fitted.params["mean"], fitted.params["cov"][rows, cols]])
    h = 1e-3 * np.sqrt(np.concatenate([np.diag(fitted.params["cov"]), np.ones(v0.size - d)]))
    k = v0.size
    hess = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            hess[i, j] = hess[j, i] = (
                ll(v0 + ei + ej) - ll(v0 + ei - ej) - ll(v0 - ei + ej) + ll(v0 - ei - ej)
            ) / (4 * h[i] * h[j])
    cov_theta = np.linalg.inv(-hess)
    np.testing.assert_allclose(fitted.se["mean"], np.sqrt(np.diag(cov_theta)[:d]), rtol=2e-3)
    se_cov = fitted.se["cov"]
    np.testing.assert_allclose(se_cov[rows, cols], np.sqrt(np.diag(cov_theta)[d:]), rtol=5e-3)
    np.testing.assert_allclose(se_cov, se_cov.T)
    # Missing data cost precision: larger than the complete-data sd/sqrt(n).
    assert np.all(fitted.se["mean"] > np.sqrt(np.diag(fitted.params["cov"]) / data.shape[0]))


def test_standard_errors_without_missing_values_are_sd_over_root_n():
    x = np.random.default_rng(8).multivariate_normal(MEAN, COV, size=300)
    result = mvn_missing.fit(x)
    np.testing.assert_allclose(
        result.se["mean"], np.sqrt(np.diag(np.cov(x.T, bias=True)) / 300), rtol=1e-3
    )
    # Var(σ̂_jj) = 2 σ_jj² / n for the MLE of a variance.
    np.testing.assert_allclose(
        np.diag(result.se["cov"]), np.sqrt(2 / 300) * np.diag(result.params["cov"]), rtol=1e-3
    )


def test_summary_and_rate(fitted):
    text = fitted.summary()
    assert "mean[2]" in text and "cov[2,1]" in text and "cov[1,2]" not in text
    assert len(text.splitlines()) == 2 + 3 + 6
    rho = emlib.rate(fitted)
    assert 0 < rho < 1


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def _with(x, **cells):
    x = np.array(x, dtype=float)
    for key, value in cells.items():
        i, j = map(int, key[1:].split("_"))
        x[i, j] = value
    return x


GOOD = np.random.default_rng(9).normal(size=(12, 3))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (GOOD[:, 0], "2-D"),
        (GOOD[None], "2-D"),
        (np.zeros((0, 3)), "empty"),
        ([["a", "b"], ["c", "d"]], "numeric"),
        (_with(GOOD, c4_1=np.inf), r"infinite value\(s\), the first at row 4, column 1"),
        (_with(GOOD, c2_0=np.nan, c2_1=np.nan, c2_2=np.nan), r"rows \[2\]"),
        (np.where(np.arange(3) == 1, np.nan, GOOD), r"column\(s\) \[1\]"),
        (GOOD[:3], "at least d \\+ 1 = 4"),
        (np.column_stack([GOOD[:, :2], np.ones(12)]), "column 2 has fewer than two distinct"),
        (
            np.column_stack(
                [GOOD[:, 0], np.r_[GOOD[:6, 1], [np.nan] * 6], np.r_[[np.nan] * 6, GOOD[6:, 2]]]
            ),
            "columns 1 and 2 are never observed in the same row",
        ),
    ],
)
def test_bad_data_is_rejected(data, message):
    with pytest.raises(ValueError, match=message):
        mvn_missing.fit(data)


def test_all_missing_rows_are_all_named():
    x = GOOD.copy()
    x[[1, 5, 7]] = np.nan
    with pytest.raises(ValueError, match=r"3 row\(s\) with every value missing, rows \[1, 5, 7\]"):
        mvn_missing.fit(x)


def test_collinear_columns_are_rejected_as_singular():
    x = np.column_stack([GOOD[:, :2], GOOD[:, 0] + 2 * GOOD[:, 1]])
    with pytest.raises(ValueError, match="not positive definite"):
        mvn_missing.fit(x)


@pytest.mark.parametrize(
    ("init", "message"),
    [
        ({"mean": np.zeros(2), "cov": np.eye(3)}, r"mean must have shape \(3,\)"),
        ({"mean": np.zeros(3), "cov": np.eye(2)}, r"cov must have shape \(3, 3\)"),
        ({"mean": np.zeros(3), "cov": np.diag([1.0, -1.0, 1.0])}, "positive definite"),
        ({"mean": np.zeros(3), "cov": np.ones((3, 3))}, "positive definite"),
        ({"mean": np.zeros(3), "cov": np.triu(np.ones((3, 3)))}, "symmetric"),
        ({"mean": [0, np.nan, 0], "cov": np.eye(3)}, "finite"),
        ({"mean": np.zeros(3)}, r"missing \['cov'\]"),
        ([0, 0, 0], "must be a dict"),
    ],
)
def test_bad_init_is_rejected(init, message):
    with pytest.raises(ValueError, match=message):
        mvn_missing.fit(GOOD, init=init)


def test_bad_statistics_are_rejected():
    with pytest.raises(ValueError, match="sum_xx shape"):
        mvn_missing.m_step(GOOD, {"n": 12, "sum_x": np.zeros(3), "sum_xx": np.eye(2)})
    with pytest.raises(ValueError, match="keys"):
        mvn_missing.m_step(GOOD, {"n": 12})


def test_unbounded_likelihood_is_rejected_as_singular():
    """Three complete rows on a line: Var(x1 | x0) -> 0 and ℓ -> ∞; no MLE exists."""
    rng = np.random.default_rng(10)
    x = np.array(
        [[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]]
        + [[v, np.nan] for v in rng.normal(size=20)]
        + [[np.nan, v] for v in rng.normal(size=5)]
    )
    with pytest.raises(ValueError, match="too few complete-enough rows"):
        mvn_missing.fit(x)


@pytest.mark.parametrize("accelerate", [None, "squarem"])
def test_nearly_collinear_columns_still_ascend(accelerate):
    """1 - R² ≈ 1e-8: ℓ is computed row by row, so its rounding does not trip the guard."""
    rng = np.random.default_rng(11)
    z = rng.normal(size=(500, 2))
    x = np.column_stack([z, z[:, 0] + z[:, 1] + 1e-4 * rng.normal(size=500)])
    x[rng.random(x.shape) < 0.2] = np.nan
    x = x[~np.isnan(x).all(axis=1)]
    result = mvn_missing.fit(x, accelerate=accelerate)
    assert result.converged
    convergence.check_monotone(result.loglik_history)
    assert result.loglik == pytest.approx(
        observed_loglik(x, result.params["mean"], result.params["cov"]), rel=1e-10
    )

"""The driver's standard errors and summary for matrix-valued parameters (emlib.em).

The oracles are closed forms: for independent Poisson counts the observed information of
each rate is n / λ, so se(λ̂_ij) = sqrt(λ̂_ij / n); for complete multivariate normal data
the MLE covariance has asymptotic variance (σ_ii σ_jj + σ_ij²) / n entry by entry (the
Wishart second moments; Anderson, *An Introduction to Multivariate Statistical
Analysis*, §3.4), and a finite-difference Hessian of a log-likelihood written here with
scipy.stats in coordinates of our own choosing (the entries of the mean and the lower
triangle of the covariance), inverted, gives the standard errors directly.
"""

import re

import numpy as np
import pytest
from scipy import special, stats

from emlib import em, mvn_missing

RATES = np.array([[0.5, 2.0, 4.0], [1.0, 3.0, 8.0]])


def _poisson_model():
    """Independent Poisson counts y_tij with a (2, 3) rate matrix; the MLE is the mean."""

    def e_step(y, params):
        rate = params["rate"]
        ll = float(np.sum(y * np.log(rate) - rate - special.gammaln(y + 1)))
        return y.mean(axis=0), ll

    return em.EMModel(
        name="poisson_matrix",
        e_step=e_step,
        m_step=lambda y, mean: {"rate": mean.copy()},
        pack=lambda params: np.log(params["rate"]).ravel(),
        unpack=lambda theta: {"rate": np.exp(theta).reshape(RATES.shape)},
        in_domain=lambda theta: bool(np.all(np.isfinite(theta))),
    )


@pytest.fixture(scope="module")
def poisson_fit():
    y = np.random.default_rng(3).poisson(RATES, size=(400, *RATES.shape)).astype(float)
    return y, em.run(_poisson_model(), y, [{"rate": np.ones(RATES.shape)}])


def test_matrix_parameter_se_has_its_shape_and_the_closed_form(poisson_fit):
    y, result = poisson_fit
    np.testing.assert_allclose(result.params["rate"], y.mean(axis=0), rtol=1e-12)
    assert result.se["rate"].shape == RATES.shape
    np.testing.assert_allclose(result.se["rate"], np.sqrt(y.mean(axis=0) / y.shape[0]), rtol=1e-3)


def test_summary_labels_every_matrix_entry_with_its_values(poisson_fit):
    _, result = poisson_fit
    lines = result.summary().splitlines()
    assert len(lines) == 2 + RATES.size
    for i, j in np.ndindex(RATES.shape):
        (line,) = [row for row in lines if row.startswith(f"rate[{i},{j}] ")]
        estimate, error = map(float, line.split()[1:])
        assert estimate == pytest.approx(result.params["rate"][i, j], rel=1e-5)
        assert error == pytest.approx(result.se["rate"][i, j], rel=1e-3)


def _normal_loglik(x, eta, d):
    """ℓ of complete normal data in η = (μ, lower triangle of Σ), with scipy.stats."""
    mean = eta[:d]
    cov = np.zeros((d, d))
    cov[np.tril_indices(d)] = eta[d:]
    cov = cov + np.tril(cov, -1).T
    return float(stats.multivariate_normal.logpdf(x, mean, cov).sum())


def _hessian(f, x, h):
    """Central second differences, step h_i in coordinate i."""
    p = x.size
    out = np.empty((p, p))
    eye = np.eye(p)
    for a in range(p):
        for b in range(a, p):
            ea, eb = h[a] * eye[a], h[b] * eye[b]
            value = (f(x + ea + eb) - f(x + ea - eb) - f(x - ea + eb) + f(x - ea - eb)) / (
                4 * h[a] * h[b]
            )
            out[a, b] = out[b, a] = value
    return out


def test_covariance_se_against_closed_form_and_an_independent_hessian():
    d, n = 3, 400
    cov_true = np.array([[2.0, 0.8, -0.6], [0.8, 1.0, 0.3], [-0.6, 0.3, 1.5]])
    x = np.random.default_rng(11).multivariate_normal([1.0, -2.0, 0.5], cov_true, size=n)
    result = mvn_missing.fit(x)
    mean, cov = result.params["mean"], result.params["cov"]
    np.testing.assert_allclose(cov, np.cov(x.T, bias=True), rtol=1e-7)
    se = result.se
    assert se["cov"].shape == (d, d)
    closed = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    np.testing.assert_allclose(se["cov"], closed, rtol=1e-3)

    eta = np.concatenate([mean, cov[np.tril_indices(d)]])
    info = -_hessian(lambda e: _normal_loglik(x, e, d), eta, 1e-3 * np.maximum(1, np.abs(eta)))
    direct = np.sqrt(np.diag(np.linalg.inv(info)))
    np.testing.assert_allclose(se["mean"], direct[:d], rtol=1e-3)
    np.testing.assert_allclose(se["cov"][np.tril_indices(d)], direct[d:], rtol=1e-3)


def test_summary_of_a_symmetric_matrix_lists_its_lower_triangle():
    x = np.random.default_rng(12).normal(size=(50, 2)) @ np.array([[1.0, 0.5], [0.0, 1.0]])
    result = mvn_missing.fit(x)
    text = result.summary()
    labels = re.findall(r"^(\S+\[[\d,]+\])", text, flags=re.MULTILINE)
    assert labels == ["mean[0]", "mean[1]", "cov[0,0]", "cov[1,0]", "cov[1,1]"]
    row = next(line for line in text.splitlines() if line.startswith("cov[1,0]"))
    assert float(row.split()[2]) == pytest.approx(result.se["cov"][1, 0], rel=1e-3)

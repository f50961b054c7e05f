"""Tests of emlib._negbin's log-scale root finder and its log-θ chain rule.

Oracles that share no code with emlib: scipy.optimize.brentq on the same equations (the
negative-binomial profile score, written here from scipy.special's ψ and ψ', and
equations whose roots are known in closed form), and central finite differences of
scipy.stats.nbinom's log-likelihood for the chain rule.
"""

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import digamma, polygamma

from emlib import _negbin

LOWER, UPPER = np.log(1e-8), np.log(1e10)


def profile_score(y, theta):
    """∂/∂θ of the NB profile log-likelihood (μ at the sample mean) and its θ-derivative.

    G'(θ) = Σ [ψ(y + θ) − ψ(θ)] − n log(1 + ȳ/θ),
    G''(θ) = Σ [ψ'(y + θ) − ψ'(θ)] + n ȳ / (θ (θ + ȳ)).
    """
    n, mean = y.size, y.mean()
    first = np.sum(digamma(y + theta) - digamma(theta)) - n * np.log1p(mean / theta)
    second = np.sum(polygamma(1, y + theta) - polygamma(1, theta)) + n * mean / (
        theta * (theta + mean)
    )
    return first, second


@pytest.fixture(scope="module")
def overdispersed_groups():
    rng = np.random.default_rng(20261203)
    groups = []
    for mu, theta, n in [(3.0, 0.5, 400), (10.0, 5.0, 800), (50.0, 20.0, 2000), (1.0, 8.0, 5000)]:
        y = rng.negative_binomial(theta, theta / (theta + mu), n).astype(float)
        # Only overdispersed samples have a finite root (Levin & Reeds 1977).
        assert y.var() > y.mean()
        groups.append(y)
    return groups


def test_profile_roots_match_brentq(overdispersed_groups):
    def func(x, live):
        g, dg = np.zeros(x.size), np.zeros(x.size)
        for j, y in enumerate(overdispersed_groups):
            t = np.exp(x[j])
            first, second = profile_score(y, t)
            g[j], dg[j] = t * first, t * first + t * t * second
        return g, dg

    def score_in_log_theta(x, y):
        return np.exp(x) * profile_score(y, np.exp(x))[0]

    # Bracket the roots where the score is computed to several digits: towards θ = 1e10
    # the ψ differences are rounding noise whose sign flips give brentq spurious roots.
    a, b = np.log(1e-4), np.log(1e4)
    for y in overdispersed_groups:
        assert score_in_log_theta(a, y) > 0 > score_in_log_theta(b, y)
    expected = [
        optimize.brentq(score_in_log_theta, a, b, args=(y,), xtol=1e-14, rtol=1e-15)
        for y in overdispersed_groups
    ]
    got = _negbin.log_scale_root(func, np.zeros(len(overdispersed_groups)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8)
    # A second start on the far side, and a start far away, reach the same roots.
    got_alt = _negbin.log_scale_root(
        func, np.full(len(expected), 15.0), x_alt=np.asarray(expected) - 3.0
    )
    np.testing.assert_allclose(got_alt, expected, rtol=0, atol=1e-8)


@pytest.mark.parametrize("centre", [-5.0, 0.3, 12.0])
def test_newton_safeguards_on_arctan(centre):
    """−arctan(x − c): plain Newton diverges from |x − c| > 1.39; the bracket must hold."""

    def func(x, live):
        return -np.arctan(x - centre), -1.0 / (1.0 + (x - centre) ** 2)

    expected = optimize.brentq(lambda x: -np.arctan(x - centre), LOWER, UPPER, xtol=1e-14)
    for start in (centre - 9.0, centre + 7.0):
        got = _negbin.log_scale_root(func, np.array([start]), lower=-50.0, upper=50.0)
        assert got[0] == pytest.approx(expected, abs=1e-8)


def test_closed_form_roots_bounds_and_inactive_groups():
    """g_j(x) = a_j − eˣ has its root at log a_j; outside [lower, upper] it is clipped."""
    a = np.array([1e-3, 2.0, 7e4, 1e12, 1e-12, 5.0])
    active = np.array([True, True, True, True, True, False])

    def func(x, live):
        return a - np.exp(x), -np.exp(x)

    x0 = np.full(a.size, 1.0)
    got = _negbin.log_scale_root(func, x0, active=active)
    for j in range(3):
        brent = optimize.brentq(lambda x, j=j: a[j] - np.exp(x), LOWER, UPPER, xtol=1e-14)
        assert got[j] == pytest.approx(brent, abs=1e-8)
        assert got[j] == pytest.approx(np.log(a[j]), abs=1e-8)
    assert got[3] == UPPER  # root log 1e12 beyond the upper bound
    assert got[4] == LOWER  # root log 1e-12 below the lower bound
    assert got[5] == x0[5]  # inactive: kept


def nb_loglik(y, mu, theta):
    return float(np.sum(stats.nbinom.logpmf(y, theta, theta / (theta + mu))))


def nb_theta_derivatives(y, mu, theta):
    """∂/∂θ and ∂²/∂θ² of Σ log f(y; μ, θ), from ψ and ψ' (scipy.special)."""
    first = np.sum(
        digamma(y + theta)
        - digamma(theta)
        + np.log(theta / (theta + mu))
        + (mu - y) / (theta + mu)
    )
    second = np.sum(
        polygamma(1, y + theta)
        - polygamma(1, theta)
        + 1.0 / theta
        - 1.0 / (theta + mu)
        - (mu - y) / (theta + mu) ** 2
    )
    return first, second


@pytest.mark.parametrize("theta", [0.3, 2.0, 15.0, 400.0])
def test_chain_rule_matches_finite_differences_in_log_theta(theta):
    rng = np.random.default_rng(7)
    mu = 6.0
    y = rng.negative_binomial(3.0, 3.0 / 9.0, 300).astype(float)
    x = np.log(theta)
    first, second = nb_theta_derivatives(y, mu, theta)
    d1, d2 = _negbin.log_scale_derivatives(
        np.array([theta]), np.array([first]), np.array([second])
    )

    def g(u):  # the log-likelihood as a function of x = log θ
        return nb_loglik(y, mu, np.exp(u))

    # Steps large enough that scipy's rounding in ℓ (about 1e-12 a term at θ = 400) stays
    # below the O(h²) truncation error.
    h1, h2 = 1e-3, 1e-2
    fd1 = (g(x + h1) - g(x - h1)) / (2 * h1)
    fd2 = (g(x + h2) - 2 * g(x) + g(x - h2)) / h2**2
    scale = max(abs(fd1), 1.0)
    assert d1[0] == pytest.approx(fd1, abs=1e-6 * scale)
    assert d2[0] == pytest.approx(fd2, rel=1e-4, abs=1e-4 * scale)

    # d2 is also the x-derivative of d1 (a finite difference of first derivatives, more
    # accurate than the second difference of ℓ).
    def dg(u):
        t = np.exp(u)
        return t * nb_theta_derivatives(y, mu, t)[0]

    h = 1e-3
    fd2_from_d1 = (dg(x + h) - dg(x - h)) / (2 * h)
    assert d2[0] == pytest.approx(fd2_from_d1, rel=1e-5, abs=1e-6 * scale)

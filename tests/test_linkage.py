"""DLR (1977) genetic linkage: emlib.linkage against the quadratic root, the analytic
information, the published rate and scipy.stats' multinomial log-pmf."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

import emlib
from emlib import linkage

X1, X2, X3, X4 = COUNTS = (125, 18, 20, 34)


def cell_probs(theta):
    return np.array([0.5 + theta / 4, (1 - theta) / 4, (1 - theta) / 4, theta / 4])


def quadratic_root():
    """Score x1/(2+θ) − (x2+x3)/(1−θ) + x4/θ = 0  ⇔  197θ² − 15θ − 68 = 0."""
    roots = np.roots([197.0, -15.0, -68.0])
    inside = roots[(roots > 0) & (roots < 1)]
    assert inside.size == 1
    return float(inside[0])


def observed_information(theta):
    return X1 / (2 + theta) ** 2 + (X2 + X3) / (1 - theta) ** 2 + X4 / theta**2


@pytest.fixture(scope="module")
def fitted():
    return linkage.fit(COUNTS, tol=1e-14)


def test_quadratic_is_the_score_equation():
    # Guard on the oracle itself: the root found above zeroes the score written directly.
    t = quadratic_root()
    assert X1 / (2 + t) - (X2 + X3) / (1 - t) + X4 / t == pytest.approx(0, abs=1e-10)
    assert t == pytest.approx((15 + np.sqrt(15**2 + 4 * 197 * 68)) / (2 * 197), abs=1e-15)


def test_root_is_a_fixed_point_of_the_em_map():
    t = quadratic_root()
    complete = linkage.e_step(COUNTS, {"theta": t})
    assert linkage.m_step(COUNTS, complete)["theta"] == pytest.approx(t, abs=1e-12)


def test_theta_is_the_root_of_the_quadratic(fitted):
    assert fitted.converged
    # Plain EM stops when the log-likelihood stops changing. Near θ̂ a step changes ℓ by
    # about I(θ̂) e² / 2 ≈ 190 e², which falls below the rounding of ℓ ≈ −7.5 (~1e-15)
    # once the error e is ~2e-9: no stopping rule on ℓ can get plain EM closer than that.
    assert fitted.params["theta"] == pytest.approx(quadratic_root(), abs=5e-9)


def test_squarem_gives_the_same_root():
    fast = linkage.fit(COUNTS, tol=1e-14, accelerate="squarem")
    assert fast.converged
    assert fast.params["theta"] == pytest.approx(quadratic_root(), abs=1e-9)


def test_rate_matches_dlr(fitted):
    assert emlib.rate(fitted) == pytest.approx(0.1328, abs=5e-4)


def test_rate_is_fraction_of_missing_information(fitted):
    t = quadratic_root()
    expected_x12 = X1 * t / (2 + t)  # E[x12 | x1, θ̂]: the θ/4 part of the first cell
    complete_info = (expected_x12 + X4) / t**2 + (X2 + X3) / (1 - t) ** 2
    theoretical = 1 - observed_information(t) / complete_info
    assert emlib.rate(fitted) == pytest.approx(theoretical, rel=1e-5)


def test_rate_matches_empirical_error_ratio():
    t = quadratic_root()
    run = linkage.fit(COUNTS, tol=1e-15, max_iter=200, init={"theta": 0.05}, accelerate=None)
    errors = np.abs(np.array([p["theta"] for p in run.param_history]) - t)
    ratios = errors[1:] / errors[:-1]
    usable = ratios[(errors[:-1] < 1e-3) & (errors[:-1] > 1e-10)]
    assert usable.size >= 4
    assert np.median(usable) == pytest.approx(0.1328, abs=5e-4)


def test_standard_error_is_inverse_root_observed_information(fitted):
    expected = 1 / np.sqrt(observed_information(quadratic_root()))
    assert expected == pytest.approx(0.0515, abs=5e-5)
    assert fitted.se["theta"] == pytest.approx(expected, rel=1e-4)


def test_loglik_equals_scipy_multinomial(fitted):
    n = sum(COUNTS)
    for theta in [0.01, 0.2, 0.5, 0.9, 0.999]:
        expected = stats.multinomial.logpmf(COUNTS, n, cell_probs(theta))
        assert linkage.loglik(COUNTS, {"theta": theta}) == pytest.approx(
            expected, rel=1e-12, abs=0
        )
    t = fitted.params["theta"]
    assert fitted.loglik == pytest.approx(
        stats.multinomial.logpmf(COUNTS, n, cell_probs(t)), rel=1e-12
    )


def test_e_and_m_step_formulas():
    theta = 0.4
    got = linkage.e_step(COUNTS, {"theta": theta})
    x12 = X1 * (theta / 4) / (0.5 + theta / 4)
    np.testing.assert_allclose(got, [X1 - x12, x12, X2, X3, X4], rtol=1e-13)
    complete = [70.0, 55.0, 18.0, 20.0, 34.0]
    expected = (55 + 34) / (55 + 18 + 20 + 34)
    assert linkage.m_step(COUNTS, complete)["theta"] == pytest.approx(expected, rel=1e-13, abs=0)


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(1, 500), min_size=4, max_size=4),
    theta0=st.floats(0.01, 0.99),
)
def test_random_counts_match_direct_maximisation(counts, theta0):
    n = sum(counts)
    result = linkage.fit(counts, tol=1e-14, init={"theta": theta0})
    assert result.converged
    assert np.all(np.diff(result.loglik_history) >= -1e-10 * np.abs(result.loglik_history[:-1]))
    opt = optimize.minimize_scalar(
        lambda t: -stats.multinomial.logpmf(counts, n, cell_probs(t)),
        bounds=(1e-12, 1 - 1e-12),
        method="bounded",
        options={"xatol": 1e-12},
    )
    assert result.params["theta"] == pytest.approx(opt.x, abs=1e-6)
    assert result.loglik >= -opt.fun - 1e-9


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([125, 18, 20], r"shape \(4,\)"),
        ([125, -18, 20, 34], r"counts \(>= 0\)"),
        ([125, 18.5, 20, 34], "whole-number counts"),
        ([0, 0, 0, 0], "all zero"),
        ([125, 0, 0, 34], "boundary"),
        ([0, 18, 20, 0], "boundary"),
        ([125, np.inf, 20, 34], "NaN or infinite"),
    ],
)
def test_bad_counts_are_rejected(data, message):
    with pytest.raises(ValueError, match=message):
        linkage.fit(data)


@pytest.mark.parametrize(
    ("init", "message"),
    [
        ({"theta": 1.5}, r"theta must be a probability in \[0, 1\]"),
        ({"theta": -0.1}, r"theta must be a probability in \[0, 1\]"),
        ({"theta": np.nan}, "theta must be finite"),
        ({"t": 0.5}, r"missing \['theta'\]"),
        ({"theta": [0.2, 0.3]}, "theta must have 1 entries"),
    ],
)
def test_bad_init_is_rejected(init, message):
    with pytest.raises(ValueError, match=message):
        linkage.fit(COUNTS, init=init)

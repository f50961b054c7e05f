"""ZINB with per-cell size factors (mean s_c μ_g): emlib.zinb against outside oracles.

The expected values come from statsmodels' ``ZeroInflatedNegativeBinomialP`` with
``exposure=s`` (intercepts only, ``p=2``: its ``alpha`` is 1/θ), scipy.stats' log-pmfs and
direct maximisation with scipy.optimize of the per-gene likelihood with its offset
(helpers from :mod:`tests.test_zinb`), and finite differences of the scipy log-likelihood.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse
from scipy import optimize
from scipy.special import expit, logit
from statsmodels.discrete.count_model import ZeroInflatedNegativeBinomialP

import emlib
from emlib import _zinb_scaled, zinb

from .test_zinb import direct_fit, ref_loglik, simulate

N = 1200
#: (μ, θ, π) per gene: ordinary genes, a weakly identified one (small mean, many zeros),
#: a Poisson one (θ = ∞) with dropouts, and one without dropouts (π = 0).
GENES = [
    (2.0, 1.5, 0.3),
    (6.0, 4.0, 0.15),
    (0.8, 0.6, 0.25),
    (0.3, 3.0, 0.4),
    (3.0, np.inf, 0.2),
    (2.5, 2.0, 0.0),
]
POISSON, NO_DROPOUTS = 4, 5
#: One seed per gene; the last is one whose sample has its maximum at π = 0 (about half
#: of the seeds do: the others' samples hold a few excess zeros by chance).
SEEDS = (300, 301, 302, 303, 304, 307)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    s = rng.lognormal(0.0, 0.5, N)
    y = np.column_stack(
        [
            simulate(N, mu, th, pi, seed=seed, size_factors=s)
            for seed, (mu, th, pi) in zip(SEEDS, GENES, strict=True)
        ]
    )
    return y, s


@pytest.fixture(scope="module")
def fit(data):
    y, s = data
    return zinb.fit(y, size_factors=s)  # the defaults: the speed path under test


def params_of(result, g):
    return {k: float(result.params[k][g]) for k in ("mu", "theta", "pi")}


def statsmodels_fit(y, s, start):
    """statsmodels' ZINB with exposure s, started near ``start`` and driven hard."""
    ones = np.ones((y.size, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ZeroInflatedNegativeBinomialP(y, ones, exog_infl=ones, exposure=s, p=2)
        assert model.exog_names == ["inflate_const", "const", "alpha"]
        x0 = [logit(start["pi"]) + 0.3, np.log(start["mu"]) - 0.2, 1.5 / start["theta"]]
        res = model.fit(start_params=x0, method="bfgs", maxiter=5000, gtol=1e-8, disp=0)
        p, llf = res.params, float(res.llf)
    return {"pi": expit(p[0]), "mu": np.exp(p[1]), "theta": 1 / p[2]}, llf, model


def test_every_gene_converges_and_loglik_is_scipys(data, fit):
    y, s = data
    assert fit.converged.all()
    assert np.all(fit.error_bound <= 1e-8)
    for g in range(y.shape[1]):
        p = params_of(fit, g)
        assert fit.loglik[g] == pytest.approx(ref_loglik(y[:, g], **p, size_factors=s), rel=1e-12)


@pytest.mark.parametrize("g", [0, 1, 2, 3])
def test_interior_genes_match_statsmodels_with_exposure(data, fit, g):
    y, s = data
    p = params_of(fit, g)
    sm_params, sm_llf, model = statsmodels_fit(y[:, g], s, p)
    # statsmodels' own likelihood at emlib's estimate is emlib's (an independent formula).
    at_ours = model.loglike(np.array([logit(p["pi"]), np.log(p["mu"]), 1 / p["theta"]]))
    assert at_ours == pytest.approx(fit.loglik[g], rel=1e-12)
    assert fit.loglik[g] >= sm_llf - 1e-9 * abs(sm_llf)
    for name in ("mu", "theta", "pi"):
        assert p[name] == pytest.approx(sm_params[name], rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("g", [0, 2, 3])
def test_interior_genes_match_direct_maximisation(data, fit, g):
    y, s = data
    p = params_of(fit, g)
    best, best_p = direct_fit(y[:, g], {**p, "pi": max(p["pi"], 0.05)}, s)
    assert fit.loglik[g] >= best - 1e-9 * abs(best)
    for name in ("mu", "theta", "pi"):
        assert p[name] == pytest.approx(best_p[name], rel=1e-4, abs=1e-5)


def test_poisson_gene_ends_on_the_poisson_face(data, fit):
    """θ̂ = ∞, with ∂ℓ/∂(1/θ) ≤ 0 there, at the maximum of the zero-inflated Poisson."""
    y, s = data
    yg = y[:, POISSON]
    p = params_of(fit, POISSON)
    assert np.isinf(p["theta"])
    _, _, dphi = zinb._newton_terms(
        zinb._prepare(yg, s), np.array([p["mu"]]), np.array([np.inf]), np.array([p["pi"]])
    )
    assert dphi[0] <= 0
    zip_fit = optimize.minimize(
        lambda z: -ref_loglik(yg, np.exp(z[0]), np.inf, expit(z[1]), s),
        [np.log(p["mu"]) + 0.1, logit(p["pi"]) - 0.2],
        method="Nelder-Mead",
        options={"xatol": 1e-11, "fatol": 1e-13, "maxiter": 5000},
    )
    assert fit.loglik[POISSON] >= -zip_fit.fun - 1e-10 * abs(zip_fit.fun)
    assert p["mu"] == pytest.approx(np.exp(zip_fit.x[0]), rel=1e-6)
    assert p["pi"] == pytest.approx(expit(zip_fit.x[1]), rel=1e-6)
    # No finite θ does better (scipy's θ ≤ 1e4 only approaches the face).
    best, _ = direct_fit(yg, {**p, "theta": 100.0, "pi": max(p["pi"], 0.05)}, s)
    assert fit.loglik[POISSON] >= best - 1e-9 * abs(best)


def test_gene_without_dropouts_ends_at_pi_zero(data, fit):
    """π̂ = 0 exactly, with ∂ℓ/∂π ≤ 0 there, at the maximum of the NB with offsets."""
    y, s = data
    yg = y[:, NO_DROPOUTS]
    p = params_of(fit, NO_DROPOUTS)
    assert p["pi"] == 0.0
    grad, _, _ = zinb._newton_terms(
        zinb._prepare(yg, s), np.array([p["mu"]]), np.array([p["theta"]]), np.array([0.0])
    )
    assert grad[0, 2] <= 0
    nb_fit = optimize.minimize(
        lambda z: -ref_loglik(yg, np.exp(z[0]), np.exp(z[1]), 0.0, s),
        [np.log(p["mu"]) + 0.1, np.log(p["theta"]) - 0.2],
        method="Nelder-Mead",
        options={"xatol": 1e-11, "fatol": 1e-13, "maxiter": 5000},
    )
    assert fit.loglik[NO_DROPOUTS] >= -nb_fit.fun - 1e-10 * abs(nb_fit.fun)
    assert p["mu"] == pytest.approx(np.exp(nb_fit.x[0]), rel=1e-6)
    assert p["theta"] == pytest.approx(np.exp(nb_fit.x[1]), rel=1e-5)


def test_newton_terms_are_the_derivatives_of_scipys_loglik(data):
    """Gradient and Hessian in (log μ, log θ, π) against central differences of scipy's ℓ."""
    y, s = data
    yg = y[:400, 0]
    d = zinb._prepare(yg, s[:400])
    z0 = np.array([np.log(1.7), np.log(1.2), 0.35])

    def ell(z):
        return ref_loglik(yg, np.exp(z[0]), np.exp(z[1]), z[2], s[:400])

    grad, hess, _ = zinb._newton_terms(d, np.exp(z0[:1]), np.exp(z0[1:2]), z0[2:])
    h = 1e-5
    eye = np.eye(3)
    fd_grad = [(ell(z0 + h * e) - ell(z0 - h * e)) / (2 * h) for e in eye]
    np.testing.assert_allclose(grad[0], fd_grad, rtol=1e-6, atol=1e-6)
    h = 1e-4
    fd_hess = [
        [
            (
                ell(z0 + h * a + h * b)
                - ell(z0 + h * a - h * b)
                - ell(z0 - h * a + h * b)
                + ell(z0 - h * a - h * b)
            )
            / (4 * h * h)
            for b in eye
        ]
        for a in eye
    ]
    np.testing.assert_allclose(hess[0], fd_hess, rtol=1e-4, atol=1e-3)


def test_one_gene_fit_equals_its_column_of_the_matrix_fit(data, fit):
    y, s = data
    for g in (0, 3, POISSON):
        single = zinb.fit(y[:, g], size_factors=s)
        assert single.n_iter == fit.n_iter[g]
        assert single.loglik == pytest.approx(fit.loglik[g], rel=1e-13)


@pytest.mark.parametrize("accelerate", ["squarem", None])
def test_em_is_monotone_from_poor_starts(data, accelerate):
    """Every fit's ℓ history is non-decreasing (EM, ECM and the Newton polish alike)."""
    y, s = data
    rng = np.random.default_rng(3)
    g = y.shape[1]
    for _ in range(2):
        init = {
            "mu": np.exp(rng.normal(0.5, 1.0, g)),
            "theta": np.exp(rng.normal(0.0, 2.0, g)),
            "pi": rng.uniform(0.01, 0.9, g),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", emlib.ConvergenceWarning)
            result = zinb.fit(
                y[:400], size_factors=s[:400], init=init, max_iter=40, accelerate=accelerate
            )
        for j, history in enumerate(result.loglik_history):
            assert history[-1] == result.loglik[j]
            assert np.all(np.diff(history) >= -1e-10 * np.maximum(np.abs(history[:-1]), 1.0))


def test_plain_em_reaches_the_same_maximum(data, fit):
    """ECM without acceleration or polish, stopped by Aitken's bound, agrees with the default."""
    y, s = data
    genes = [0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emlib.ConvergenceWarning)
        plain = zinb.fit(y[:, genes], size_factors=s, accelerate=None, tol=1e-10)
    assert plain.converged.all()
    for j, g in enumerate(genes):
        assert plain.loglik[j] == pytest.approx(fit.loglik[g], rel=1e-10)


def test_max_iter_cut_says_not_converged(data):
    y, s = data
    with pytest.warns(emlib.ConvergenceWarning, match="max_iter=2"):
        result = zinb.fit(y, size_factors=s, max_iter=2)
    assert np.all(result.n_iter <= 2)
    assert not result.converged.all()
    # Whatever says converged is at the maximum of the full fit.
    full = zinb.fit(y, size_factors=s)
    done = result.converged
    np.testing.assert_allclose(result.loglik[done], full.loglik[done], rtol=1e-10)


def test_loglik_matches_scipy_at_random_params(data):
    y, s = data
    rng = np.random.default_rng(8)
    for _ in range(5):
        p = {
            "mu": rng.uniform(0.1, 10),
            "theta": float(rng.choice([rng.uniform(0.05, 50), 1e7, np.inf])),
            "pi": float(rng.choice([rng.uniform(0, 0.9), 0.0])),
        }
        for g in (0, 3):
            got = zinb.loglik(y[:, g], p, size_factors=s)
            assert got == pytest.approx(ref_loglik(y[:, g], **p, size_factors=s), rel=1e-11)


def test_huge_means_with_zeros_keep_an_exact_loglik():
    """A zero where s μ is huge (e^{-A} underflows) still gets log P(0) = log(π + ...)."""
    s = np.array([1.0, 2.0, 50.0, 80.0])
    y = np.array([30, 0, 0, 2000])
    for pi in (0.0, 0.3):
        p = {"mu": 40.0, "theta": 5e3, "pi": pi}
        got = zinb.loglik(y, p, size_factors=s)
        assert np.isfinite(got)
        assert got == pytest.approx(ref_loglik(y, **p, size_factors=s), rel=1e-12)


def _factors_one_per_bin(n, seed=12):
    """Size factors with six distinct values, each in a bin of its own (log s equally
    spaced over the range, so at bins 0, 12, 25, 38, 51 and 63 of ``_COARSE_BINS``)."""
    assert _zinb_scaled._COARSE_BINS == 64
    values = np.exp(np.linspace(-1.0, 1.0, 6))
    return np.random.default_rng(seed).choice(values, n)


@pytest.mark.parametrize("layout", ["dense", "csc"])
def test_coarse_data_are_exact_when_each_bin_holds_one_factor(layout):
    """Binned factors lose nothing when a bin's factors are equal: the coarse data's ℓ,
    gradient, Hessian and ∂ℓ/∂(1/θ) at θ = ∞ are the exact ones (which the tests above
    check against scipy and finite differences), at finite θ and on the Poisson face.
    Fails if an entry's weight, or the spread of a bin's counts at θ = ∞, is dropped."""
    n = 900
    s = _factors_one_per_bin(n)
    y = np.column_stack(
        [
            simulate(n, 2.0, 1.5, 0.3, seed=40, size_factors=s),
            simulate(n, 0.4, 0.8, 0.1, seed=41, size_factors=s),
            simulate(n, 3.0, np.inf, 0.2, seed=42, size_factors=s),
        ]
    )
    counts = scipy.sparse.csc_matrix(y) if layout == "csc" else y
    d = zinb._prepare(counts, s)
    coarse = zinb._coarse(d)
    assert coarse.pos_start[-1] + coarse.zero_start[-1] <= 3 * 2 * 6  # 6 bins used
    mu, pi = np.array([1.7, 0.5, 2.5]), np.array([0.25, 0.05, 0.3])
    for theta in (np.array([1.2, 0.6, 4.0]), np.array([2.0, np.inf, np.inf])):
        np.testing.assert_allclose(
            zinb._loglik_only(coarse, mu, theta, pi),
            zinb._loglik_only(d, mu, theta, pi),
            rtol=1e-12,
        )
        for got, want in zip(
            zinb._newton_terms(coarse, mu, theta, pi),
            zinb._newton_terms(d, mu, theta, pi),
            strict=True,
        ):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9)


def test_coarse_start_lands_next_to_the_maximum(data, fit):
    """The default start with size factors (the moment start, then Newton on binned
    factors) is within 2e-3 of each gene's maximum in ℓ, where the moment start alone is
    0.3 to 56 below it; from there the exact polish needs a few Newton steps per gene."""
    y, s = data
    d = zinb._prepare(y, s)
    moment = zinb._loglik_only(d, *zinb._fit_start(d)) - fit.loglik
    coarse = zinb._loglik_only(d, *zinb._start(d, zinb.DEFAULT_TOL, "squarem")) - fit.loglik
    assert np.all(moment < -0.3)
    assert np.all((coarse <= 0) & (coarse > -2e-3))
    assert np.all(fit.n_iter <= 5)

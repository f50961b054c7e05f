"""Finite mixture of k Poisson distributions.

.. math:: P(Y = y) = \\sum_{j=1}^k w_j \\frac{e^{-\\lambda_j}\\lambda_j^y}{y!}

The latent variable is each count's component. EM for this model is the classic slow
case: on Hasselblad's (1969) deaths-per-day data two heavily overlapping components leave
most of the information missing, and plain EM needs thousands of iterations.

Every computation runs on the frequency table of the counts (distinct values and how
often each occurs), so the cost per iteration does not grow with the sample size.

Parameters: ``weights``, ``means`` (components sorted by increasing mean). Data: a 1-D
array of counts.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, xlogy

from emlib import _mixture
from emlib._validation import as_counts
from emlib.em import DEFAULT_ACCELERATE, DEFAULT_MAX_ITER, DEFAULT_TOL, EMModel, EMResult

PARAM_NAMES = ("weights", "means")
#: Hasselblad (1969): number of days (1910–1912) with 0, 1, ..., 9 deaths of women aged
#: 80 or over in the London Times; the example of the SQUAREM R package.
HASSELBLAD_DEATHS = np.arange(10)
HASSELBLAD_DAYS = np.array([162, 267, 271, 185, 111, 61, 27, 8, 3, 1])


def hasselblad_data() -> np.ndarray:
    """Hasselblad's 1,096 daily death counts, one entry per day."""
    return np.repeat(HASSELBLAD_DEATHS, HASSELBLAD_DAYS)


_DATA_NAME = "Poisson mixture counts"
_Table = _mixture.CountTable


def _prepare(data) -> _Table:
    return _mixture.count_table(data, _DATA_NAME)


def _check_params(params, k=None) -> dict:
    params = _mixture.check_params(params, PARAM_NAMES, k)
    if np.any(params["means"] < 0):
        raise ValueError(f"means must be non-negative; got {params['means']}")
    return params


def _log_joint(values, log_factorials, params) -> np.ndarray:
    lam = params["means"][:, None]
    with np.errstate(divide="ignore"):  # a weight of 0, or a mean of 0 at a positive count
        return np.log(params["weights"])[:, None] + xlogy(values, lam) - lam - log_factorials


def _e_step(t: _Table, params):
    resp, log_marginal = _mixture.normalise_log_rows(
        _log_joint(t.values, t.log_factorials, params)
    )
    # Expected complete-data statistics: responsibility-weighted frequencies per value.
    return resp * t.freqs, float(t.freqs @ log_marginal)


def _m_step(t: _Table, weighted):
    size = np.maximum(weighted.sum(axis=1), _mixture.TINY)
    return {"weights": size / t.n, "means": (weighted @ t.values) / size}


MODEL = EMModel(
    name="poisson_mixture",
    e_step=_e_step,
    m_step=_m_step,
    pack=_mixture.pack,
    unpack=lambda v: _mixture.unpack(v, PARAM_NAMES),
    in_domain=lambda v: (
        _mixture.weights_in_domain(v, (v.size + 1) // 2)
        and bool((v[(v.size + 1) // 2 - 1 :] >= 0).all())
    ),
    finalize=_mixture.sort_by_means,
)


def e_step(data, params) -> np.ndarray:
    """Responsibilities: the posterior probability of each component for each count.

    Returns
    -------
    ndarray of shape (n, k)
        :math:`r_{ij} = w_j f(y_i; \\lambda_j) / \\sum_l w_l f(y_i; \\lambda_l)`.
    """
    y = as_counts(data, name=_DATA_NAME)
    params = _check_params(params)
    log_factorials = gammaln(y + 1.0)
    resp, _ = _mixture.normalise_log_rows(_log_joint(y.astype(float), log_factorials, params))
    return resp.T


def m_step(data, resp) -> dict:
    """Weights and means from responsibilities of shape (n, k).

    :math:`w_j = \\frac1n\\sum_i r_{ij}`, :math:`\\lambda_j = \\sum_i r_{ij} y_i / \\sum_i r_{ij}`.
    """
    y = as_counts(data, name=_DATA_NAME).astype(float)
    resp = _mixture.check_resp(resp, y.size)
    size = resp.sum(axis=0)
    return {"weights": size / y.size, "means": (y @ resp) / size}


def loglik(data, params) -> float:
    """Observed-data log-likelihood, the :math:`-\\log y!` terms included."""
    return _e_step(_prepare(data), _check_params(params))[1]


def _starts(y: np.ndarray, k: int, n_init: int, seed) -> list[dict]:
    """A quantile start plus ``n_init - 1`` random ones (means drawn from the data)."""
    return _mixture.count_starts(y, k, n_init, seed)


_SPEC = _mixture.Spec(
    MODEL, lambda data: as_counts(data, name=_DATA_NAME), _prepare, _check_params, _starts
)


def fit(
    data,
    k: int = 2,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    accelerate: str | None = DEFAULT_ACCELERATE,
    init: dict | None = None,
    n_init: int = _mixture.DEFAULT_N_INIT,
    seed=_mixture.DEFAULT_SEED,
    xtol: float | None = None,
) -> EMResult:
    """Fit a mixture of k Poissons by EM, keeping the best of several starts.

    Parameters
    ----------
    data : array_like of counts
    k : int
        Number of components.
    tol, max_iter, accelerate, xtol
        See :func:`emlib.em.run`.
    init : dict, optional
        ``{"weights": ..., "means": ...}``; when given, the only start.
    n_init : int
        Number of starts when ``init`` is not given: one at the quantiles of the data,
        the rest random (seeded by ``seed``).
    seed : int or numpy Generator
        Seed for the random starts.

    Notes
    -----
    .. math:: \\ell(w, \\lambda) = \\sum_i \\log \\sum_j w_j \\frac{e^{-\\lambda_j}
              \\lambda_j^{y_i}}{y_i!}

    Examples
    --------
    >>> result = fit(hasselblad_data(), k=2, accelerate="squarem", tol=1e-13)
    >>> [round(float(w), 4) for w in result.params["weights"]]
    [0.3599, 0.6401]
    """
    options = dict(tol=tol, max_iter=max_iter, accelerate=accelerate, xtol=xtol)
    result, _ = _mixture.fit(_SPEC, data, k, init=init, n_init=n_init, seed=seed, **options)
    return result

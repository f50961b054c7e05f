"""Finite mixture of k negative binomial distributions.

.. math:: P(Y = y) = \\sum_{j=1}^k w_j f(y; \\mu_j, \\theta_j), \\qquad
          f(y; \\mu, \\theta) = \\frac{\\Gamma(y + \\theta)}{y!\\,\\Gamma(\\theta)}
          \\left(\\frac{\\mu}{\\mu + \\theta}\\right)^{y}
          \\left(\\frac{\\theta}{\\mu + \\theta}\\right)^{\\theta},

each component with mean μ_j and size θ_j (variance μ_j + μ_j²/θ_j; θ_j = ``inf`` is a
Poisson component). The latent variable is each count's component. The E-step gives
responsibilities :math:`r_{ij} \\propto w_j f(y_i; \\mu_j, \\theta_j)` from the log-densities
*plus the log mixing weights*; the M-step sets :math:`w_j` to the mean responsibility and
fits each component's (μ_j, θ_j) by the negative-binomial likelihood *weighted* by
:math:`r_{ij}` (see :func:`emlib._negbin.weighted_fit`). (The source notebook added
:math:`\\log r_{ij}` to the log-likelihood instead of weighting by it, left the mixing
weights out of the E-step and never estimated them, and its loop could not run.)

Every computation runs on the frequency table of the counts. Parameters: ``weights``,
``means``, ``thetas`` (components sorted by increasing mean). Data: a 1-D array of counts.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from emlib import _mixture, _negbin
from emlib._validation import as_counts, check_init_keys, check_weights, param_array
from emlib.em import DEFAULT_ACCELERATE, DEFAULT_MAX_ITER, DEFAULT_TOL, EMModel, EMResult

PARAM_NAMES = ("weights", "means", "thetas")


_DATA_NAME = "NB mixture counts"
_Table = _mixture.CountTable


def _prepare(data) -> _Table:
    return _mixture.count_table(data, _DATA_NAME)


def _check_params(params, k=None) -> dict:
    check_init_keys(params, PARAM_NAMES)
    weights = check_weights(param_array(params["weights"], "weights", size=k))
    k = weights.size
    means = param_array(params["means"], "means", size=k)
    if np.any(means < 0):
        raise ValueError(f"means must be non-negative; got {means}")
    try:
        thetas = np.atleast_1d(np.asarray(params["thetas"], dtype=float))
    except (TypeError, ValueError) as err:
        raise ValueError(f"thetas must be numeric; got {params['thetas']!r}") from err
    if thetas.shape != (k,):
        raise ValueError(f"thetas must have {k} entries; got {thetas.size}")
    if np.any(np.isnan(thetas) | (thetas <= 0)):
        raise ValueError(f"thetas must be positive (inf means Poisson); got {thetas}")
    return {"weights": weights, "means": means, "thetas": thetas}


def _log_joint(values, log_factorials, params) -> np.ndarray:
    return (
        _mixture.log_weights(params["weights"])[:, None]
        + _negbin.logpmf_unnormalised(
            values[None, :], params["means"][:, None], params["thetas"][:, None]
        )
        - log_factorials[None, :]
    )


def _e_step(t: _Table, params):
    resp, log_marginal = _mixture.normalise_log_rows(
        _log_joint(t.values, t.log_factorials, params)
    )
    # Responsibility-weighted frequencies, with the current θ as the M-step's warm start.
    return (resp * t.freqs, params["thetas"]), float(t.freqs @ log_marginal)


def _m_step(t: _Table, expected):
    weighted, thetas = expected
    k = weighted.shape[0]
    size = np.maximum(weighted.sum(axis=1), _mixture.TINY)
    means, new_thetas = _negbin.weighted_fit(
        np.tile(t.values, k),
        weighted.ravel(),
        np.repeat(np.arange(k), t.values.size),
        k,
        theta_start=thetas,
    )
    return {"weights": size / t.n, "means": means, "thetas": new_thetas}


def _pack(params) -> np.ndarray:
    # Free coordinates: weights but the last, means, and 1/θ (0 for a Poisson component).
    return np.concatenate([params["weights"][:-1], params["means"], 1.0 / params["thetas"]])


def _unpack(v: np.ndarray) -> dict:
    k = (v.size + 1) // 3
    phi = v[2 * k - 1 :]
    with np.errstate(divide="ignore"):
        thetas = np.where(phi > 0, 1.0 / phi, np.inf)
    return {
        "weights": _mixture.free_weights(v, k),
        "means": v[k - 1 : 2 * k - 1].copy(),
        "thetas": thetas,
    }


def _in_domain(v: np.ndarray) -> bool:
    k = (v.size + 1) // 3
    return bool(
        np.isfinite(v).all() and _mixture.weights_in_domain(v, k) and (v[k - 1 :] >= 0).all()
    )


MODEL = EMModel(
    name="nb_mixture",
    e_step=_e_step,
    m_step=_m_step,
    pack=_pack,
    unpack=_unpack,
    in_domain=_in_domain,
    finalize=_mixture.sort_by_means,
)


def e_step(data, params) -> np.ndarray:
    """Responsibilities: the posterior probability of each component for each count.

    Returns
    -------
    ndarray of shape (n, k)
        :math:`r_{ij} = w_j f(y_i; \\mu_j, \\theta_j) / \\sum_l w_l f(y_i; \\mu_l, \\theta_l)`.
    """
    y = as_counts(data, name=_DATA_NAME).astype(float)
    params = _check_params(params)
    resp, _ = _mixture.normalise_log_rows(_log_joint(y, gammaln(y + 1.0), params))
    return resp.T


def m_step(data, resp) -> dict:
    """Weights, means and sizes from responsibilities of shape (n, k).

    :math:`w_j = \\frac1n\\sum_i r_{ij}`, :math:`\\mu_j = \\sum_i r_{ij} y_i / \\sum_i r_{ij}`,
    and θ_j maximises :math:`\\sum_i r_{ij} \\log f(y_i; \\mu_j, \\theta)` (∞ when the
    weighted counts are not overdispersed).
    """
    y = as_counts(data, name=_DATA_NAME).astype(float)
    resp = _mixture.check_resp(resp, y.size)
    k = resp.shape[1]
    means, thetas = _negbin.weighted_fit(
        np.tile(y, k), resp.T.ravel(), np.repeat(np.arange(k), y.size), k
    )
    return {"weights": resp.mean(axis=0), "means": means, "thetas": thetas}


def loglik(data, params) -> float:
    """Observed-data log-likelihood, the :math:`-\\log y!` terms included."""
    return _e_step(_prepare(data), _check_params(params))[1]


def _starts(y: np.ndarray, k: int, n_init: int, seed) -> list[dict]:
    """A quantile start plus ``n_init - 1`` random ones (means drawn from the data).

    Every start gives each component θ = 10 (a moderate overdispersion): the first M-step
    replaces it with the weighted fit.
    """
    return _mixture.count_starts(y, k, n_init, seed, thetas=np.full(k, 10.0))


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
    """Fit a mixture of k negative binomials by EM, keeping the best of several starts.

    Parameters
    ----------
    data : array_like of counts
    k : int
        Number of components.
    tol, max_iter, accelerate, xtol
        See :func:`emlib.em.run`.
    init : dict, optional
        ``{"weights": ..., "means": ..., "thetas": ...}``; when given, the only start.
    n_init : int
        Number of starts when ``init`` is not given: one at the quantiles of the data,
        the rest random (seeded by ``seed``); θ starts at 10 in each.
    seed : int or numpy Generator
        Seed for the random starts.

    Notes
    -----
    .. math:: \\ell(w, \\mu, \\theta) = \\sum_i \\log \\sum_j w_j f(y_i; \\mu_j, \\theta_j)

    A component whose weighted counts are not overdispersed gets θ_j = ∞ (a Poisson
    component). With more components than the data need, the extra ones may overlap or
    shrink towards weight 0; the likelihood still never decreases.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> y = np.concatenate([rng.negative_binomial(5, 5 / 15, 3000),    # μ = 10, θ = 5
    ...                     rng.negative_binomial(20, 20 / 120, 1000)])  # μ = 100, θ = 20
    >>> p = fit(y, k=2, accelerate="squarem").params
    >>> [round(float(w), 2) for w in p["weights"]], [round(float(m)) for m in p["means"]]
    ([0.75, 0.25], [10, 100])
    """
    options = dict(tol=tol, max_iter=max_iter, accelerate=accelerate, xtol=xtol)
    result, _ = _mixture.fit(_SPEC, data, k, init=init, n_init=n_init, seed=seed, **options)
    return result

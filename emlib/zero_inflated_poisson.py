"""Zero-inflated Poisson (ZIP): a point mass at zero mixed with a Poisson.

Each count is a *structural* zero with probability π, and otherwise Poisson(λ):

.. math::

    P(Y = 0) = \\pi + (1 - \\pi) e^{-\\lambda}, \\qquad
    P(Y = y) = (1 - \\pi) \\frac{e^{-\\lambda} \\lambda^y}{y!}, \\quad y \\ge 1.

π is the probability of a structural zero, as in statsmodels' ``ZeroInflatedPoisson``
and R's pscl. (The lecture notes this course draws on write ψ = 1 − π, the probability
of the Poisson component.)

The latent variable is the indicator of a structural zero; only observed zeros can be
one, with posterior probability :math:`\\gamma = \\pi / (\\pi + (1 - \\pi)e^{-\\lambda})`.
EM therefore needs only three numbers from the data, the sample size :math:`n`, the
number of zeros :math:`n_0` and the total :math:`\\sum y_i`: each iteration costs
O(1) whatever the sample size.

Parameters: ``lam``, ``pi``. Data: a 1-D array of counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from emlib._multinomial import frequency_table
from emlib._validation import (
    as_counts,
    check_init_keys,
    check_positive,
    check_probability,
    param_scalar,
)
from emlib.em import DEFAULT_ACCELERATE, DEFAULT_MAX_ITER, DEFAULT_TOL, EMModel, EMResult, run

PARAM_NAMES = ("lam", "pi")


@dataclass(frozen=True)
class _Counts:
    """The sufficient statistics of ZIP data."""

    n: int
    n_zero: int
    total: float
    log_factorial_sum: float


def _prepare(data) -> _Counts:
    y = as_counts(data, name="ZIP counts")
    values, freqs = frequency_table(y)
    total = float(values @ freqs)
    if total == 0:
        raise ValueError(
            "every count is zero: λ → 0 and π → 1 explain the data equally well, so the ZIP "
            "parameters have no finite maximum-likelihood estimate"
        )
    return _Counts(
        n=y.size,
        n_zero=int(freqs[values == 0].sum()),
        total=total,
        log_factorial_sum=float(gammaln(values + 1.0) @ freqs),
    )


def _check_params(params) -> dict:
    check_init_keys(params, PARAM_NAMES)
    lam = param_scalar(params["lam"], "lam")
    check_positive(np.array([lam]), "lam")
    pi = check_probability(param_scalar(params["pi"], "pi"), "pi")
    return {"lam": lam, "pi": pi}


def _structural_share(lam: float, pi: float) -> float:
    """P(structural zero | y = 0) = π / (π + (1 − π)e^{−λ}), without 0/0 when both vanish."""
    return _zero_terms(lam, pi)[1]


def _zero_terms(lam: float, pi: float) -> tuple[float, float]:
    """P(y = 0) and P(structural zero | y = 0), on numbers."""
    # numpy's exp on a number, not math's: the two differ in the last bit now and then.
    p_zero = pi + (1 - pi) * float(np.exp(-lam))
    return p_zero, (pi / p_zero if pi else 0.0)


def _xlogy(x, y: float) -> float:
    """``scipy.special.xlogy`` on numbers: ``x log y``, 0 where ``x`` is 0 (and ``y`` not NaN).

    The same value to the last bit (scipy takes the C library's log, as ``math.log`` does),
    without a ufunc's cost per call: the E-step is a few such terms.
    """
    if x == 0 and not math.isnan(y):
        return 0.0
    return x * math.log(y) if y > 0 else -math.inf if y == 0 else math.nan


def _e_step(c: _Counts, params):
    lam, pi = params["lam"], params["pi"]
    p_zero, gamma = _zero_terms(lam, pi)
    ll = (
        _xlogy(c.n_zero, p_zero)
        + _xlogy(c.n - c.n_zero, 1 - pi)
        + c.total * float(np.log(lam))
        - (c.n - c.n_zero) * lam
        - c.log_factorial_sum
    )
    # The expected number of structural zeros.
    return c.n_zero * gamma, float(ll)


def _m_step(c: _Counts, structural_zeros: float):
    return {"lam": float(c.total / (c.n - structural_zeros)), "pi": float(structural_zeros / c.n)}


MODEL = EMModel(
    name="zero_inflated_poisson",
    e_step=_e_step,
    m_step=_m_step,
    pack=lambda p: np.array([p["lam"], p["pi"]]),
    unpack=lambda v: {"lam": float(v[0]), "pi": float(v[1])},
    in_domain=lambda v: bool(v[0] > 0 and 0 <= v[1] < 1),
)


def e_step(data, params) -> np.ndarray:
    """Posterior probability that each observation is a structural zero.

    Returns
    -------
    ndarray of shape (n,)
        :math:`\\pi / (\\pi + (1-\\pi)e^{-\\lambda})` where the count is zero, 0 elsewhere.
    """
    y = as_counts(data, name="ZIP counts")
    params = _check_params(params)
    return np.where(y == 0, _structural_share(params["lam"], params["pi"]), 0.0)


def m_step(data, resp) -> dict:
    """Parameters maximising the expected complete-data log-likelihood.

    With responsibilities :math:`r_i` (probability of a structural zero),
    :math:`\\pi = \\frac1n\\sum_i r_i` and
    :math:`\\lambda = \\sum_i (1 - r_i) y_i / \\sum_i (1 - r_i)`.
    """
    y = as_counts(data, name="ZIP counts")
    resp = np.asarray(resp, dtype=float)
    if resp.shape != y.shape:
        raise ValueError(f"resp must have the shape of the data {y.shape}; got {resp.shape}")
    if np.any((resp < 0) | (resp > 1)) or not np.all(np.isfinite(resp)):
        raise ValueError("resp must hold probabilities in [0, 1]")
    keep = 1 - resp
    return {"lam": float(keep @ y / keep.sum()), "pi": float(resp.mean())}


def loglik(data, params) -> float:
    """Observed-data log-likelihood, the :math:`-\\log y!` terms included."""
    return _e_step(_prepare(data), _check_params(params))[1]


def default_init(data) -> dict:
    """Moment-style start: π from the zeros in excess of a Poisson with the sample mean.

    .. math:: \\pi_0 = \\max\\left(\\frac{n_0/n - e^{-\\bar y}}{1 - e^{-\\bar y}}, 0.01\\right),
              \\qquad \\lambda_0 = \\bar y / (1 - \\pi_0).
    """
    return _default_init(_prepare(data))


def _default_init(c: _Counts) -> dict:
    mean = c.total / c.n
    excess = (c.n_zero / c.n - np.exp(-mean)) / (1 - np.exp(-mean))
    pi0 = float(min(max(excess, 0.01), 0.99))
    return {"lam": mean / (1 - pi0), "pi": pi0}


def fit(
    data,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    accelerate: str | None = DEFAULT_ACCELERATE,
    init: dict | None = None,
    xtol: float | None = None,
) -> EMResult:
    """Maximum-likelihood (λ, π) by EM.

    Parameters
    ----------
    data : array_like of counts
    tol, max_iter, accelerate, xtol
        See :func:`emlib.em.run`.
    init : dict, optional
        ``{"lam": λ0, "pi": π0}``; default :func:`default_init`.

    Notes
    -----
    With :math:`n_0` zeros among :math:`n` counts,

    .. math:: \\ell(\\lambda, \\pi) = n_0 \\log\\left(\\pi + (1-\\pi)e^{-\\lambda}\\right)
              + (n - n_0)\\left(\\log(1-\\pi) - \\lambda\\right)
              + \\sum_i y_i \\log\\lambda - \\sum_i \\log y_i!

    When the data hold no more zeros than a Poisson with their mean would give, the
    maximum is on the boundary π = 0 and EM approaches it slowly; standard errors are
    not defined there.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.where(rng.random(5000) < 0.3, 0, rng.poisson(2.5, 5000))
    >>> result = fit(y)
    >>> round(result.params["pi"], 2), round(result.params["lam"], 1)
    (0.3, 2.5)
    """
    prepared = _prepare(data)
    start = _check_params(init) if init is not None else _default_init(prepared)
    return run(
        MODEL, prepared, [start], tol=tol, max_iter=max_iter, accelerate=accelerate, xtol=xtol
    )

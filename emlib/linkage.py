"""Dempster, Laird & Rubin's genetic linkage example: a multinomial with one parameter.

Four cells with counts :math:`x = (x_1, x_2, x_3, x_4)` (in the paper, 197 animals:
125, 18, 20, 34) have probabilities

.. math::

    \\left(\\tfrac12 + \\tfrac{\\theta}{4},\\; \\tfrac{1-\\theta}{4},\\;
    \\tfrac{1-\\theta}{4},\\; \\tfrac{\\theta}{4}\\right), \\qquad 0 \\le \\theta \\le 1.

EM splits the first cell into a part of probability 1/2 and a part of probability
θ/4 (counts :math:`x_{11} + x_{12} = x_1`), after which θ is a binomial proportion.

Parameters: ``theta``. Data: the four counts.
"""

from __future__ import annotations

import numpy as np

from emlib import _multinomial
from emlib._validation import as_counts, check_init_keys, check_probability, param_scalar
from emlib.em import DEFAULT_ACCELERATE, DEFAULT_MAX_ITER, DEFAULT_TOL, EMModel, EMResult, run

PARAM_NAMES = ("theta",)
#: The counts of Dempster, Laird & Rubin (1977), section 1.
DLR_COUNTS = (125, 18, 20, 34)


def _prepare(data) -> tuple[np.ndarray, float]:
    counts = as_counts(data, name="linkage counts", shape=(4,))
    if counts.sum() == 0:
        raise ValueError("linkage counts are all zero: there is nothing to estimate from")
    if counts[0] + counts[3] == 0 or counts[1] + counts[2] == 0:
        raise ValueError(
            f"linkage counts {counts.tolist()} put θ on the boundary (0 or 1); EM needs counts "
            "on both sides"
        )
    return counts, _multinomial.log_coefficient(counts)


def _check_params(params) -> dict:
    check_init_keys(params, PARAM_NAMES)
    theta = param_scalar(params["theta"], "theta")
    return {"theta": check_probability(theta, "theta")}


def _cell_probs(theta: float) -> np.ndarray:
    return np.array([0.5 + theta / 4, (1 - theta) / 4, (1 - theta) / 4, theta / 4])


def _e_step(prepared, params):
    counts, coefficient = prepared
    theta = params["theta"]
    x12 = counts[0] * theta / (2 + theta)
    complete = np.array([counts[0] - x12, x12, counts[1], counts[2], counts[3]], dtype=float)
    return complete, _multinomial.loglik(counts, _cell_probs(theta), coefficient)


def _m_step(prepared, complete):
    _, x12, x2, x3, x4 = complete
    return {"theta": float((x12 + x4) / (x12 + x2 + x3 + x4))}


MODEL = EMModel(
    name="linkage",
    e_step=_e_step,
    m_step=_m_step,
    pack=lambda p: np.array([p["theta"]]),
    unpack=lambda v: {"theta": float(v[0])},
    in_domain=lambda v: bool(0.0 <= v[0] <= 1.0),
)


def e_step(data, params) -> np.ndarray:
    """Expected complete-data counts given the observed counts and θ.

    Returns
    -------
    ndarray of shape (5,)
        :math:`(x_{11}, x_{12}, x_2, x_3, x_4)` where
        :math:`x_{12} = x_1 \\frac{\\theta/4}{1/2 + \\theta/4}` and :math:`x_{11} = x_1 - x_{12}`.
    """
    return _e_step(_prepare(data), _check_params(params))[0]


def m_step(data, complete) -> dict:
    """θ maximising the complete-data likelihood.

    .. math:: \\theta = \\frac{x_{12} + x_4}{x_{12} + x_2 + x_3 + x_4}
    """
    _prepare(data)
    complete = np.asarray(complete, dtype=float)
    if complete.shape != (5,):
        raise ValueError(f"complete counts must have shape (5,); got {complete.shape}")
    return _m_step(None, complete)


def loglik(data, params) -> float:
    """Observed-data log-likelihood, multinomial coefficient included."""
    return _e_step(_prepare(data), _check_params(params))[1]


def fit(
    data=DLR_COUNTS,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    accelerate: str | None = DEFAULT_ACCELERATE,
    init: dict | None = None,
    xtol: float | None = None,
) -> EMResult:
    """Maximum-likelihood θ by EM.

    Parameters
    ----------
    data : array_like of 4 counts
        Defaults to Dempster, Laird & Rubin's (125, 18, 20, 34).
    tol, max_iter, accelerate, xtol
        See :func:`emlib.em.run`.
    init : dict, optional
        ``{"theta": θ0}``; default θ0 = 0.5.

    Notes
    -----
    The log-likelihood is

    .. math:: \\ell(\\theta) = \\log\\frac{n!}{\\prod_j x_j!}
              + x_1 \\log(\\tfrac12 + \\tfrac\\theta4) + (x_2 + x_3)\\log\\tfrac{1-\\theta}{4}
              + x_4 \\log\\tfrac\\theta4,

    and for the DLR counts the maximum is the root in (0, 1) of
    :math:`197\\theta^2 - 15\\theta - 68 = 0`, θ̂ ≈ 0.62682, reached with linear rate ≈ 0.1328.

    Examples
    --------
    >>> result = fit()
    >>> round(result.params["theta"], 5)
    0.62682
    """
    prepared = _prepare(data)
    start = _check_params(init) if init is not None else {"theta": 0.5}
    return run(
        MODEL, prepared, [start], tol=tol, max_iter=max_iter, accelerate=accelerate, xtol=xtol
    )

"""Peppered-moth allele frequencies from phenotype counts (Givens & Hoeting, Example 4.2).

Wing colour of *Biston betularia* is set by one gene with alleles C, I and T, where C is
dominant to I and T, and I is dominant to T. Under Hardy–Weinberg equilibrium the six
genotypes have frequencies

==========  ===========  =============
genotype    frequency    phenotype
==========  ===========  =============
CC          p_C²         carbonaria
CI          2 p_C p_I    carbonaria
CT          2 p_C p_T    carbonaria
II          p_I²         insularia
IT          2 p_I p_T    insularia
TT          p_T²         typica
==========  ===========  =============

Only phenotypes are counted, :math:`(x_C, x_I, x_T)`. The genotype counts are the
missing data: the E-step splits each phenotype count among its genotypes in proportion
to their frequencies, and the M-step counts alleles.

Parameters: ``p_C``, ``p_I``, ``p_T`` (summing to one). Data: ``(x_C, x_I, x_T)``.
"""

from __future__ import annotations

import numpy as np

from emlib import _multinomial
from emlib._validation import as_counts, check_init_keys, check_weights, param_scalar
from emlib.em import DEFAULT_ACCELERATE, DEFAULT_MAX_ITER, DEFAULT_TOL, EMModel, EMResult, run

PARAM_NAMES = ("p_C", "p_I", "p_T")
GENOTYPES = ("CC", "CI", "CT", "II", "IT", "TT")
#: Phenotype counts (carbonaria, insularia, typica) of Givens & Hoeting's Example 4.2.
GIVENS_HOETING_COUNTS = (85, 196, 341)


def _prepare(data) -> tuple[np.ndarray, float]:
    counts = as_counts(data, name="phenotype counts (x_C, x_I, x_T)", shape=(3,))
    if counts.sum() == 0:
        raise ValueError("phenotype counts are all zero: there is nothing to estimate from")
    return counts, _multinomial.log_coefficient(counts)


def _check_params(params) -> dict:
    check_init_keys(params, PARAM_NAMES)
    p = np.array([param_scalar(params[name], name) for name in PARAM_NAMES])
    p = check_weights(p, "allele frequencies (p_C, p_I, p_T)")
    return dict(zip(PARAM_NAMES, map(float, p), strict=True))


def phenotype_probs(params) -> np.ndarray:
    """Phenotype probabilities (carbonaria, insularia, typica) under Hardy–Weinberg."""
    p_c, p_i, p_t = (params[name] for name in PARAM_NAMES)
    return np.array([p_c**2 + 2 * p_c * p_i + 2 * p_c * p_t, p_i**2 + 2 * p_i * p_t, p_t**2])


def _e_step(prepared, params):
    counts, coefficient = prepared
    x_c, x_i, x_t = counts
    p_c, p_i, p_t = (params[name] for name in PARAM_NAMES)
    carbonaria, insularia, typica = probs = phenotype_probs(params)
    with np.errstate(invalid="ignore", divide="ignore"):
        genotypes = np.array(
            [
                x_c * p_c**2 / carbonaria,
                x_c * 2 * p_c * p_i / carbonaria,
                x_c * 2 * p_c * p_t / carbonaria,
                x_i * p_i**2 / insularia,
                x_i * 2 * p_i * p_t / insularia,
                x_t * p_t**2 / typica,
            ]
        )
    # A phenotype of probability zero has a count of zero (else the likelihood is -inf).
    genotypes = np.nan_to_num(genotypes, nan=0.0)
    return genotypes, _multinomial.loglik(counts, probs, coefficient)


def _m_step(prepared, genotypes):
    cc, ci, ct, ii, it, tt = genotypes
    n_alleles = 2 * genotypes.sum()
    return {
        "p_C": float((2 * cc + ci + ct) / n_alleles),
        "p_I": float((2 * ii + ci + it) / n_alleles),
        "p_T": float((2 * tt + ct + it) / n_alleles),
    }


def _unpack(v: np.ndarray) -> dict:
    return {"p_C": float(v[0]), "p_I": float(v[1]), "p_T": float(1.0 - v[0] - v[1])}


MODEL = EMModel(
    name="moth",
    e_step=_e_step,
    m_step=_m_step,
    pack=lambda p: np.array([p["p_C"], p["p_I"]]),
    unpack=_unpack,
    in_domain=lambda v: bool(v[0] >= 0 and v[1] >= 0 and v[0] + v[1] <= 1),
)


def e_step(data, params) -> np.ndarray:
    """Expected genotype counts given the phenotype counts and allele frequencies.

    Returns
    -------
    ndarray of shape (6,)
        Expected counts of CC, CI, CT, II, IT, TT (see :data:`GENOTYPES`); e.g.
        :math:`E[X_{CC}] = x_C \\, p_C^2 / (p_C^2 + 2 p_C p_I + 2 p_C p_T)`.
    """
    return _e_step(_prepare(data), _check_params(params))[0]


def m_step(data, genotypes) -> dict:
    """Allele frequencies from (expected) genotype counts, by counting alleles.

    .. math:: p_C = \\frac{2 x_{CC} + x_{CI} + x_{CT}}{2n}, \\quad
              p_I = \\frac{2 x_{II} + x_{CI} + x_{IT}}{2n}, \\quad
              p_T = \\frac{2 x_{TT} + x_{CT} + x_{IT}}{2n}.
    """
    _prepare(data)
    genotypes = np.asarray(genotypes, dtype=float)
    if genotypes.shape != (6,):
        raise ValueError(f"genotype counts must have shape (6,); got {genotypes.shape}")
    if np.any(genotypes < 0) or not np.all(np.isfinite(genotypes)):
        raise ValueError(f"genotype counts must be finite and non-negative; got {genotypes}")
    return _m_step(None, genotypes)


def loglik(data, params) -> float:
    """Observed-data (phenotype) log-likelihood, multinomial coefficient included."""
    return _e_step(_prepare(data), _check_params(params))[1]


def fit(
    data=GIVENS_HOETING_COUNTS,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    accelerate: str | None = DEFAULT_ACCELERATE,
    init: dict | None = None,
    xtol: float | None = None,
) -> EMResult:
    """Maximum-likelihood allele frequencies by EM.

    Parameters
    ----------
    data : array_like of 3 counts
        Phenotype counts :math:`(x_C, x_I, x_T)`; default Givens & Hoeting's (85, 196, 341).
    tol, max_iter, accelerate, xtol
        See :func:`emlib.em.run`.
    init : dict, optional
        Starting allele frequencies; default (1/3, 1/3, 1/3).

    Notes
    -----
    .. math:: \\ell(p) = \\log\\frac{n!}{x_C!\\,x_I!\\,x_T!}
              + x_C \\log(p_C^2 + 2p_Cp_I + 2p_Cp_T) + x_I \\log(p_I^2 + 2p_Ip_T)
              + x_T \\log p_T^2

    Examples
    --------
    >>> result = fit()
    >>> [round(result.params[name], 5) for name in ("p_C", "p_I", "p_T")]
    [0.07084, 0.18874, 0.74043]
    """
    prepared = _prepare(data)
    start = _check_params(init) if init is not None else dict.fromkeys(PARAM_NAMES, 1 / 3)
    return run(
        MODEL, prepared, [start], tol=tol, max_iter=max_iter, accelerate=accelerate, xtol=xtol
    )

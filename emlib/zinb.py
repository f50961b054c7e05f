"""Zero-inflated negative binomial (ZINB), for one vector of counts or a cells × genes matrix.

Each count is a *structural* zero (a dropout) with probability π, and otherwise negative
binomial with mean μ and size θ (variance μ + μ²/θ):

.. math::

    P(Y = 0) = \\pi + (1 - \\pi) \\left(\\frac{\\theta}{\\theta + \\mu}\\right)^{\\theta}, \\qquad
    P(Y = y) = (1 - \\pi) \\frac{\\Gamma(y + \\theta)}{y!\\,\\Gamma(\\theta)}
        \\left(\\frac{\\mu}{\\mu + \\theta}\\right)^{y}
        \\left(\\frac{\\theta}{\\mu + \\theta}\\right)^{\\theta}, \\quad y \\ge 1.

π is the probability of a structural zero, as in statsmodels'
``ZeroInflatedNegativeBinomialP`` (whose ``alpha`` is 1/θ with ``p=2``). θ = ``inf`` is
allowed and means the Poisson: the model is then the zero-inflated Poisson.

The latent variable is the dropout indicator. Only zeros can be dropouts; the E-step gives
each zero the posterior probability :math:`\\gamma = \\pi / (\\pi + (1 - \\pi) f(0))`, and
the M-step sets π to the mean of the γ's and fits the negative binomial to the counts with
weights :math:`1 - \\gamma` on the zeros and 1 on the rest: μ is the weighted mean and θ the
root of the profile score (see :func:`emlib._negbin.weighted_fit`), θ = ∞ when the
weighted counts are not overdispersed. (The source post checked convergence on π alone
and left this weighted fit as a placeholder.)

**Matrices.** ``fit`` also takes a cells × genes matrix and fits every gene at once, each
with its own (μ, θ, π), as one batch of the library's EM driver
(:func:`emlib.em.run_batch`, each gene's E- and M-steps vectorised over the genes still
iterating); optionally with per-cell size factors
:math:`s_c`, so that the mean of cell c for gene g is :math:`s_c \\mu_g`. Without size
factors each gene is reduced once to its frequency table, so an iteration costs time in
proportion to the number of distinct (gene, count) pairs, not cells × genes.

**Size factors.** With an offset, μ given θ has no closed form, so the M-step is one ECM
cycle (Meng & Rubin 1993): π, then μ given θ (a concave root in log μ, by safeguarded
Newton), then θ given μ (the profile root, or ∞), each an exact conditional maximum, so EM
stays monotone. Each gene's positive counts and its zeros are held apart, cell by cell,
and processed a block of genes at a time; the log Γ, ψ and ψ' terms are summed over each
gene's table of distinct positive counts, so a positive count costs a ``log1p`` and a few
products per pass, a zero a ``log1p``, an ``exp`` and a ``log``. Since one EM-map
evaluation then costs several Newton steps, every gene starts with the Newton polish below
(:data:`SCALED_POLISH_AFTER`), whose steps where the Hessian is not negative definite are
those of the modified Newton method; EM is the fallback. From the default start the polish
first runs with the factors binned (:func:`emlib._zinb_scaled._coarse`), where a pass
costs a few percent of one over every cell, and the exact polish takes it from there.

**Slow genes: a Newton polish.** A gene whose EM rate is within 1e-4 of 1 (a small mean
with most counts zero, where dropouts and negative-binomial zeros explain the data almost
equally well) needed ~10,000 SQUAREM evaluations before Aitken's bound could vouch for it,
and such genes dominated the time of a matrix fit. EM's strength is global: it climbs from
poor starts without ever lowering ℓ. Near the maximum Newton's method on ℓ itself is the
better tool: it converges quadratically whatever the EM rate, and the Newton step is a
sharper estimate of the distance still to go than the geometric tail. So a gene still
iterating after :data:`POLISH_AFTER` EM-map evaluations (five SQUAREM cycles) is handed to
a safeguarded Newton polish; see :func:`fit`'s Notes.

Parameters: ``mu``, ``theta``, ``pi``. Data: a 1-D array of counts, or a 2-D array
(cells × genes).
"""

from __future__ import annotations

import contextlib
import operator
import sys
import warnings
from dataclasses import replace

import numpy as np
import scipy.sparse
from scipy.special import gammaln, lambertw

from emlib import _negbin, convergence, em, stopping
from emlib._validation import check_init_keys
from emlib._zinb_counts import (
    _THETA_FLOOR,
    _as_count_matrix,
    _check_size_factors,
    _check_totals,
    _Data,
    _SparseCounts,
    _tables,
)
from emlib._zinb_scaled import (
    _coarse,
    _prepare_scaled,
    _Scaled,
    _scaled_default_init,
    _scaled_em_map,
    _scaled_fused,
    _scaled_loglik,
    _scaled_m_step,
    _scaled_newton_terms,
    _subset_scaled,
)
from emlib.em import (
    DEFAULT_ACCELERATE,
    DEFAULT_TOL,
    EMModel,
    EMResult,
    check_options,
    non_convergence_message,
)

PARAM_NAMES = ("mu", "theta", "pi")
#: The default max_iter of ``fit`` (EM-map evaluations plus Newton steps per gene): larger
#: than the other models', because plain EM (``accelerate=None``, which has no Newton
#: polish) needs tens of thousands of evaluations on weakly identified genes (EM rate within
#: 1e-4 of 1).
MAX_ITER = 50_000
#: The monotonicity guard's message in the matrix loop (see
#: :func:`emlib.convergence.guard_batch`): it names the gene.
_GUARD_MESSAGE = (
    "zinb: the log-likelihood of gene {label} went from {old!r} to {new!r} at iteration "
    "{iteration}: EM cannot lower the likelihood, so the E-step and M-step disagree"
)
#: A gene still iterating after this many EM-map evaluations is handed to the Newton
#: polish (again after 4, 16, ... times as many if the polish could not certify it).
POLISH_AFTER = 10
#: The same with size factors: there an EM-map evaluation (an E-step and two conditional
#: maximisations, each a root found by Newton over every cell) costs several Newton steps,
#: so every gene starts with the polish (whose steps, where the Hessian is not negative
#: definite, are those of the modified Newton method) and goes to SQUAREM only if the
#: polish cannot certify it.
SCALED_POLISH_AFTER = 0
#: Most Newton steps per polish, and most halvings of one Newton step.
_NEWTON_STEPS = 30
_NEWTON_HALVINGS = 30
#: The rounding level of ℓ, relative to max(|ℓ|, 1): a Newton step whose predicted gain is
#: below it cannot be checked by evaluating ℓ, and is accepted if ℓ falls by at most this.
_LL_ROUNDING = 1e-13
#: A Newton step beyond this θ also tries θ = ∞ (the zero-inflated Poisson) directly.
_LOG_THETA_FACE = float(np.log(1e6))
#: With size factors, a Newton step raising log θ by more than this also tries θ = ∞.
_FACE_CLIMB = 0.5
#: The largest π a Newton step may reach (the domain is π < 1).
_PI_MAX = 1.0 - 1e-10


# --------------------------------------------------------------------------------------
# Data: count tables (emlib._zinb_counts) or, with size factors, cells (emlib._zinb_scaled)
# --------------------------------------------------------------------------------------


def _prepare(data, size_factors=None, *, for_fit: bool = True, empty_genes: bool = False) -> _Data:
    """Validated data; ``empty_genes`` lets a matrix keep genes of zeros only (fit flags them)."""
    if scipy.sparse.issparse(data):
        counts, matrix = _SparseCounts.of(data), True
    else:
        counts, matrix = _as_count_matrix(data)
    n, g = counts.shape
    if size_factors is not None:
        sf = _check_size_factors(size_factors, n)
        scaled = _prepare_scaled(counts, sf, matrix)
        _check_totals(scaled.total, matrix, for_fit and not (matrix and empty_genes))
        return scaled
    gene, y, mult = counts.tables() if isinstance(counts, _SparseCounts) else _tables(counts)
    total = np.bincount(gene, weights=mult * y, minlength=g)
    _check_totals(total, matrix, for_fit and not (matrix and empty_genes))
    return _Data(
        y=y,
        mult=mult,
        gene=gene,
        s=None,
        zero=np.flatnonzero(y == 0),
        n_genes=g,
        n_cells=n,
        log_factorial=np.bincount(gene, weights=mult * gammaln(y + 1.0), minlength=g),
        matrix=matrix,
    )


def _subset(d: _Data, genes: np.ndarray) -> _Data:
    """The data of some genes only, renumbered 0, 1, ... in the given (increasing) order."""
    if isinstance(d, _Scaled):
        return _subset_scaled(d, genes)
    keep = np.zeros(d.n_genes, dtype=bool)
    keep[genes] = True
    number = np.cumsum(keep) - 1
    entries = keep[d.gene]
    y = d.y[entries]
    return replace(
        d,
        y=y,
        mult=d.mult[entries],
        gene=number[d.gene[entries]],
        s=None if d.s is None else d.s[entries],
        zero=np.flatnonzero(y == 0),
        n_genes=genes.size,
        log_factorial=d.log_factorial[genes],
    )


def _coarse_start(d: _Scaled, start, tol: float):
    """The start moved to the maximum of ℓ with binned size factors (:func:`_coarse`).

    Why: with size factors every evaluation of ℓ and its derivatives is a pass over every
    cell of every gene, and from the moment start the polish needs about seven of them per
    gene; on the binned data a pass costs a few percent of that, and from its maximum
    (within ~1e-3 of the exact one) the exact polish needs two or three. A gene whose
    binned polish does not certify a maximum keeps its start.
    """
    c = _coarse(d)
    v = _pack(*start)
    ll, *terms = _scaled_fused(c, *start)
    moved, _, _, certified, _, _ = _polish(c, v, ll, tol, _NEWTON_STEPS, terms)
    return _unpack(np.where(certified[:, None], moved, v))


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------


def _param(value, name: str, n_genes: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric; got {value!r}") from err
    if arr.ndim == 0 or arr.size == 1:
        arr = np.full(n_genes, float(arr.reshape(-1)[0]))
    if arr.shape != (n_genes,):
        raise ValueError(
            f"{name} must be a scalar or have one entry per gene ({n_genes}); got shape "
            f"{arr.shape}"
        )
    if np.any(np.isnan(arr)):
        where = (
            f" (genes {np.flatnonzero(np.isnan(arr))[:10].tolist()}: genes of zeros only have "
            "no estimate; leave their columns out)"
            if n_genes > 1
            else ""
        )
        raise ValueError(f"{name} must not be NaN{where}; got {arr}")
    return arr


def _check_params(params, n_genes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    check_init_keys(params, PARAM_NAMES)
    mu = _param(params["mu"], "mu", n_genes)
    theta = _param(params["theta"], "theta", n_genes)
    pi = _param(params["pi"], "pi", n_genes)
    if np.any(~np.isfinite(mu) | (mu <= 0)):
        raise ValueError(f"mu must be positive and finite; got {mu}")
    if np.any(theta <= 0):
        raise ValueError(f"theta must be positive (inf means Poisson); got {theta}")
    if np.any((pi < 0) | (pi > 1)):
        raise ValueError(f"pi must be a probability in [0, 1]; got {pi}")
    return mu, theta, pi


def _as_output(d: _Data, mu, theta, pi) -> dict:
    if d.matrix:
        return {"mu": mu, "theta": theta, "pi": pi}
    return {"mu": float(mu[0]), "theta": float(theta[0]), "pi": float(pi[0])}


# --------------------------------------------------------------------------------------
# E-step, M-step, log-likelihood on all genes at once
# --------------------------------------------------------------------------------------


def _loglik_and_share(d: _Data, mu, theta, pi):
    """Per-gene log-likelihood, and the posterior dropout probability of each zero entry."""
    if isinstance(d, _Scaled):
        return _scaled_loglik(d, mu, theta, pi)
    mean = mu[d.gene] if d.s is None else d.s * mu[d.gene]
    with np.errstate(divide="ignore"):
        log_pi = np.log(pi)
        log_keep = np.log1p(-pi)
    entry = log_keep[d.gene] + _negbin.logpmf_unnormalised(d.y, mean, theta[d.gene])
    zero_gene = d.gene[d.zero]
    log_p_zero = np.logaddexp(log_pi[zero_gene], entry[d.zero])
    with np.errstate(invalid="ignore"):
        share = np.exp(log_pi[zero_gene] - log_p_zero)
    share = np.where(np.isfinite(share), share, 0.0)
    entry[d.zero] = log_p_zero
    ll = np.bincount(d.gene, weights=d.mult * entry, minlength=d.n_genes) - d.log_factorial
    return ll, share


def _m_step_arrays(d: _Data, share, mu_old=None, theta_old=None):
    if isinstance(d, _Scaled):
        return _scaled_m_step(d, share, mu_old, theta_old)
    weights = d.mult.copy()
    weights[d.zero] *= 1.0 - share
    dropouts = np.bincount(d.gene[d.zero], weights=d.mult[d.zero] * share, minlength=d.n_genes)
    pi = dropouts / d.n_cells
    # Warm-started inside EM, one conditional-maximisation cycle is an ECM step.
    mu, theta = _negbin.weighted_fit(
        d.y,
        weights,
        d.gene,
        d.n_genes,
        s=d.s,
        theta_start=theta_old,
        mu_start=mu_old,
        cycles=1 if mu_old is not None else None,
    )
    return mu, theta, pi


def _pack(mu, theta, pi) -> np.ndarray:
    """Free coordinates (μ, 1/θ, π) per gene: 1/θ = 0 is the Poisson, inside the domain."""
    return np.column_stack([mu, 1.0 / theta, pi])


def _unpack(v: np.ndarray):
    v = np.atleast_2d(v)
    with np.errstate(divide="ignore"):
        theta = np.where(v[:, 1] > 0, 1.0 / v[:, 1], np.inf)
    return v[:, 0].copy(), theta, v[:, 2].copy()


def _in_domain(v: np.ndarray) -> np.ndarray:
    v = np.atleast_2d(v)
    return (
        np.all(np.isfinite(v), axis=1)
        & (v[:, 0] > 0)
        & (v[:, 1] >= 0)
        & (v[:, 2] >= 0)
        & (v[:, 2] < 1)
    )


# The single-gene model on the generic driver.


def _e_step(d: _Data, params):
    mu, theta, pi = (np.array([params[k]], dtype=float) for k in PARAM_NAMES)
    ll, share = _loglik_and_share(d, mu, theta, pi)
    return (share, mu, theta), float(ll[0])


def _m_step(d: _Data, expected):
    share, mu_old, theta_old = expected
    mu, theta, pi = _m_step_arrays(d, share, mu_old, theta_old)
    return {"mu": float(mu[0]), "theta": float(theta[0]), "pi": float(pi[0])}


MODEL = EMModel(
    name="zinb",
    e_step=_e_step,
    m_step=_m_step,
    pack=lambda p: _pack(p["mu"], p["theta"], p["pi"])[0],
    unpack=lambda v: dict(zip(PARAM_NAMES, (float(a[0]) for a in _unpack(v)), strict=True)),
    in_domain=lambda v: bool(_in_domain(v)[0]),
)


# --------------------------------------------------------------------------------------
# Public steps
# --------------------------------------------------------------------------------------


def e_step(data, params, *, size_factors=None) -> np.ndarray:
    """Posterior probability that each count is a dropout (structural zero).

    Returns
    -------
    ndarray of the shape of ``data``
        :math:`\\pi / (\\pi + (1-\\pi) f(0; s\\mu, \\theta))` where the count is zero,
        0 elsewhere.
    """
    counts, matrix = _as_count_matrix(data)
    n, g = counts.shape
    mu, theta, pi = _check_params(params, g)
    s = np.ones(n) if size_factors is None else _check_size_factors(size_factors, n)
    log_f0 = _negbin.log_zero_probability(s[:, None] * mu[None, :], theta[None, :])
    with np.errstate(divide="ignore"):
        log_pi = np.log(pi)[None, :]
        log_zero = np.logaddexp(log_pi, np.log1p(-pi)[None, :] + log_f0)
    with np.errstate(invalid="ignore"):
        share = np.exp(log_pi - log_zero)
    share = np.where((counts == 0) & np.isfinite(share), share, 0.0)
    return share if matrix else share[:, 0]


def m_step(data, resp, *, size_factors=None) -> dict:
    """(μ, θ, π) maximising the expected complete-data log-likelihood.

    With dropout probabilities :math:`r_i` (zero where the count is positive),
    :math:`\\pi = \\frac1n\\sum_i r_i` and (μ, θ) maximise
    :math:`\\sum_i (1 - r_i) \\log f(y_i; s_i\\mu, \\theta)`: μ is the weighted mean
    :math:`\\sum_i (1 - r_i) y_i / \\sum_i (1 - r_i)` when there are no size factors, θ the
    root of the weighted profile score, or ∞ when the weighted counts are not overdispersed.
    """
    counts, matrix = _as_count_matrix(data)
    n, g = counts.shape
    resp = np.asarray(resp, dtype=float)
    if not matrix and resp.ndim == 1:
        resp = resp[:, None]
    if resp.shape != counts.shape:
        shape = counts.shape if matrix else (n,)
        raise ValueError(f"resp must have the shape of the data {shape}; got {resp.shape}")
    if not np.all(np.isfinite(resp)) or np.any((resp < 0) | (resp > 1)):
        raise ValueError("resp must hold probabilities in [0, 1]")
    if np.any((resp > 0) & (counts > 0)):
        raise ValueError("resp must be 0 where the count is positive: only zeros can be dropouts")
    s = None if size_factors is None else np.tile(_check_size_factors(size_factors, n), g)
    y = np.asarray(counts, dtype=float).T.ravel()
    gene = np.repeat(np.arange(g, dtype=np.intp), n)
    mu, theta = _negbin.weighted_fit(y, (1.0 - resp).T.ravel(), gene, g, s=s)
    pi = resp.mean(axis=0)
    if matrix:
        return {"mu": mu, "theta": theta, "pi": pi}
    return {"mu": float(mu[0]), "theta": float(theta[0]), "pi": float(pi[0])}


def loglik(data, params, *, size_factors=None):
    """Observed-data log-likelihood, the :math:`-\\log y!` terms included.

    A float for a vector of counts; for a matrix, an array with one entry per gene.
    """
    d = _prepare(data, size_factors, for_fit=False)
    ll = _loglik_only(d, *_check_params(params, d.n_genes))
    return ll if d.matrix else float(ll[0])


def default_init(data, *, size_factors=None) -> dict:
    """Moment-style start per gene, π from the zeros in excess of a moment-fitted NB.

    With the mean :math:`\\bar y` and variance :math:`v` of the counts,
    :math:`\\theta_0 = \\bar y^2 / (v - \\bar y)` clipped to [0.01, 1e4] (1e4 when
    :math:`v \\le \\bar y`),

    .. math:: \\pi_0 = \\min\\left(\\max\\left(\\frac{n_0/n - f_0}{1 - f_0}, 0.01\\right),
              0.9\\right), \\quad f_0 = f(0; \\bar y, \\theta_0), \\qquad
              \\mu_0 = \\bar y / (1 - \\pi_0).

    π0 is kept at or above 0.01 because EM cannot leave π = 0.

    With size factors the moments are those of the model with offsets: for a given π,
    :math:`\\mu(\\pi) = \\sum_c y_c / ((1 - \\pi) \\sum_c s_c)` and
    :math:`1/\\theta(\\pi) = \\sum_c y_c(y_c - 1) / ((1 - \\pi)\\mu^2 \\sum_c s_c^2) - 1`
    (θ clipped as above); π0 is the excess-zero estimate above with
    :math:`f_0 = \\frac1n \\sum_c f(0; s_c\\mu(0), \\theta(0))`, and
    :math:`(\\mu_0, \\theta_0) = (\\mu(\\pi_0), \\theta(\\pi_0))`.
    """
    d = _prepare(data, size_factors)
    return _as_output(d, *_default_init(d))


def _default_init(d: _Data):
    if isinstance(d, _Scaled):
        return _scaled_default_init(d)
    g = d.n_genes
    n = d.n_cells
    scaled = d.y if d.s is None else d.y / d.s
    mean = np.bincount(d.gene, weights=d.mult * scaled, minlength=g) / n
    second = np.bincount(d.gene, weights=d.mult * scaled**2, minlength=g) / n
    excess_var = second - mean**2 - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(excess_var > 0, mean**2 / excess_var, 1e4)
    theta = np.clip(theta, _THETA_FLOOR, 1e4)
    zeros = np.bincount(d.gene[d.zero], weights=d.mult[d.zero], minlength=g) / n
    f0 = np.exp(_negbin.log_zero_probability(mean, theta))
    pi = np.clip((zeros - f0) / (1 - f0), 0.01, 0.9)
    return mean / (1 - pi), theta, pi


#: A gene with at most this many positive counts also gets the hurdle starts of
#: :func:`_fit_start` (the default start is kept for every other gene).
SPARSE_NONZEROS = 50
#: The θ of the hurdle starts.
_HURDLE_THETAS = (0.1, 1.0, 10.0, 1e4)


def _positive_summary(d: _Data):
    """Per gene: the number of positive counts, their sum, and the sum of their factors."""
    if isinstance(d, _Scaled):
        return d.n_pos, d.total, d.pos_s_sum
    positive = d.y > 0
    weights = d.mult * positive
    n_pos = np.bincount(d.gene, weights=weights, minlength=d.n_genes)
    total = np.bincount(d.gene, weights=weights * d.y, minlength=d.n_genes)
    return n_pos, total, n_pos


def _truncated_poisson_mean(mean_positive: np.ndarray) -> np.ndarray:
    """The μ > 0 with μ / (1 − e^{−μ}) = ``mean_positive`` = m (> 1): the zero-truncated Poisson.

    With w = μ − m the equation reads w e^{w} = −m e^{−m}, so μ = m + W₀(−m e^{−m}), W₀ the
    principal branch of Lambert's W (the other real branch gives the root μ = 0).
    """
    m = np.asarray(mean_positive, dtype=float)
    return m + lambertw(-m * np.exp(-m)).real


def _hurdle_pi(mu, theta, share):
    """The π that gives a share ``share`` of positive counts, 1 − share / (1 − f(0; μ, θ)).

    Clipped to [0.01, 1 − 1e-9]: a start inside the domain, off the face π = 0 that EM
    cannot leave.
    """
    positive = -np.expm1(_negbin.log_zero_probability(mu, theta))
    return np.clip(1.0 - share / positive, 0.01, 1.0 - 1e-9)


def _fit_start(d: _Data):
    """The start of ``fit`` without ``init``: :func:`default_init`, or for a very sparse gene
    the best of it and the hurdle starts (by ℓ).

    Why: for a gene with a handful of positive counts among many cells the moment start
    has θ at its floor (0.01) and a moderate π, on the far end of a ridge of nearly equal
    ℓ along which the negative binomial approaches the log-series limit (θ → 0 with μ/θ
    and (1 − π)θ fixed, which keep the distribution of the positives and their number);
    its curvature there is not that of a maximum, so the Newton polish cannot start, and
    EM crawls along the ridge, taking up to ~17,000 evaluations (minutes on 50,000 cells
    with size factors) to reach the maximum at the other end (π near 1, θ moderate or
    infinite).

    The ZINB splits into a hurdle: with :math:`p_0 = \\pi + (1-\\pi) f(0)`,

    .. math:: \\ell = n_0 \\log p_0 + k \\log(1 - p_0)
              + \\sum_{y_i > 0} \\log\\frac{f(y_i; \\mu, \\theta)}{1 - f(0; \\mu, \\theta)}

    (without size factors; k positives, n_0 zeros), maximised in :math:`p_0` at
    :math:`n_0/n` wherever that is at least f(0), i.e. π ≥ 0. So near the maximum μ and θ
    fit the zero-truncated counts and π = 1 − (k/n)/(1 − f(0)). The hurdle starts are
    μ₀ the zero-truncated Poisson mean of the positives (:func:`_truncated_poisson_mean`,
    divided by the mean factor of the positive cells), θ₀ in :data:`_HURDLE_THETAS`, and
    π₀ = 1 − (k/n)/(1 − f(0; μ₀, θ₀)) clipped to [0.01, 1 − 1e-9]. Genes with more than
    :data:`SPARSE_NONZEROS` positive counts, or whose positives are all 1 (no truncated
    fit: that maximum is at π = 0, reached from the default start), or whose default θ₀
    is above its floor 0.01 (not on the ridge), keep the default.
    """
    mu, theta, pi = (np.array(a, dtype=float) for a in _default_init(d))
    n_pos, total, pos_s = _positive_summary(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_positive = total / n_pos
    # The moment θ below its floor marks the ridge start: E y² of a few positives among
    # many cells dwarfs ȳ², so the moment equation puts θ near 0.
    sparse = np.flatnonzero(
        (n_pos <= SPARSE_NONZEROS) & (mean_positive > 1.0) & (theta <= _THETA_FLOOR)
    )
    if sparse.size == 0:
        return mu, theta, pi
    sub = _subset(d, sparse) if sparse.size < d.n_genes else d
    best = (mu[sparse], theta[sparse], pi[sparse])
    best_ll = _loglik_only(sub, *best)
    hurdle_mu = _truncated_poisson_mean(mean_positive[sparse]) * n_pos[sparse] / pos_s[sparse]
    share = n_pos[sparse] / d.n_cells
    for value in _HURDLE_THETAS:
        th = np.full(sparse.size, value)
        cand = (hurdle_mu, th, _hurdle_pi(hurdle_mu, th, share))
        ll = _loglik_only(sub, *cand)
        better = ll > best_ll
        best = tuple(np.where(better, c, b) for c, b in zip(cand, best, strict=True))
        best_ll = np.where(better, ll, best_ll)
    for whole, part in zip((mu, theta, pi), best, strict=True):
        whole[sparse] = part
    return mu, theta, pi


# --------------------------------------------------------------------------------------
# The vectorised EM loop for a matrix
# --------------------------------------------------------------------------------------


#: ``status`` of a gene in a matrix fit: the stopping rule (or the polish's certificate) was
#: met; ``max_iter`` ran out first; the stopping rule was met where ℓ still rises (a saddle
#: or a ridge: see :func:`_rising`) and no restart found a maximum; the gene has
#: only zero counts (no finite estimate).
STATUS_CONVERGED = "converged"
STATUS_MAX_ITER = "max_iter"
STATUS_NOT_A_MAXIMUM = "not a maximum"
STATUS_ALL_ZEROS = "all zeros"

_INDEX_A_GENE = (
    "a matrix fit holds one fit per gene, not one EMResult: index a gene, result[g] (its "
    "EMResult: emlib.rate(result[g]), result[g].se), or use result.table() for every gene"
)


class ZeroGenesWarning(UserWarning):
    """Genes of a matrix with only zero counts: no finite estimate, flagged per gene."""


class PerGene(np.ndarray):
    """One value per gene of a matrix fit: an ordinary ndarray that is never one number.

    Reductions (``.sum()``, ``.all()``, ``np.median``) give plain numpy scalars and indexing
    one gene gives that gene's value, but ``bool()``, ``float()`` and ``int()`` of the whole
    array raise a :class:`TypeError` that says to index a gene: code written for an
    :class:`~emlib.em.EMResult` (``if not result.converged``, as in :func:`emlib.rate`)
    stops with that message instead of numpy's "truth value ... is ambiguous".
    """

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        if return_scalar or arr.ndim == 0:
            return arr[()]
        return super().__array_wrap__(arr, context, return_scalar)

    def _refuse(self, *_):
        if self.ndim == 0:
            return self.item()
        raise TypeError(
            f"this array has one entry per gene (shape {self.shape}), not one value: "
            + _INDEX_A_GENE
        )

    def __bool__(self):
        return bool(self._refuse())

    def __float__(self):
        return float(self._refuse())

    def __int__(self):
        return int(self._refuse())

    def __repr__(self):
        return repr(self.view(np.ndarray))


def _per_gene(values) -> PerGene:
    return np.asarray(values).view(PerGene)


class ZINBMatrixResult:
    """The fits of every gene of a cells × genes matrix (not an :class:`~emlib.em.EMResult`).

    Attributes
    ----------
    params : dict
        ``{"mu", "theta", "pi"}``, one entry per gene (NaN for a gene of zeros only).
    loglik, n_iter, converged, error_bound : PerGene arrays
        Per gene, as in :class:`~emlib.em.EMResult` (``n_iter``: EM-map evaluations plus
        Newton steps). A gene of zeros only has ``loglik`` 0 (the supremum, approached as
        π → 1 or μ → 0), ``n_iter`` 0, ``converged`` False and ``error_bound`` NaN.
    status : ndarray of str
        :data:`STATUS_CONVERGED`, :data:`STATUS_MAX_ITER`, :data:`STATUS_NOT_A_MAXIMUM` or
        :data:`STATUS_ALL_ZEROS`.
    loglik_history : list of ndarray
        Per gene, non-decreasing, ending at that gene's ``loglik``.
    n_iter_total : int
        The sum of ``n_iter``.

    ``result[g]`` is gene g's :class:`~emlib.em.EMResult` (``emlib.rate(result[g])``,
    ``result[g].se``, ``result[g].summary()``; its ``param_history`` is not recorded: fit
    the gene's column alone for it). ``result.table()`` is a pandas DataFrame with one row
    per gene. Functions that take one fit (``emlib.rate``) raise a :class:`TypeError` on
    the whole matrix result.
    """

    def __init__(self, params, loglik, n_iter, converged, loglik_history, error_bound, status):
        self.params = params
        self.loglik = _per_gene(loglik)
        self.n_iter = _per_gene(n_iter)
        self.converged = _per_gene(converged)
        self.error_bound = _per_gene(error_bound)
        self.status = np.asarray(status)
        self.loglik_history = loglik_history
        self.n_iter_total = int(np.sum(n_iter))
        self._data = None  # the prepared data of every gene (in-memory fits)
        self._gene_data = None  # or a function g -> the prepared data of gene g
        self._se = None  # (standard errors, notes), computed on first use

    @property
    def n_genes(self) -> int:
        return int(self.loglik.size)

    def __len__(self) -> int:
        return self.n_genes

    def _gene(self, g) -> int:
        try:
            index = operator.index(g)
        except TypeError:
            raise TypeError(
                f"genes are indexed by an integer position (0 to {self.n_genes - 1}); got {g!r}"
            ) from None
        if not -self.n_genes <= index < self.n_genes:
            raise IndexError(f"gene {index} is out of range for {self.n_genes} genes")
        return index % self.n_genes

    def __getitem__(self, g) -> EMResult:
        g = self._gene(g)
        if self.status[g] == STATUS_ALL_ZEROS:
            raise ValueError(
                f"gene {g} has only zero counts: its ZINB parameters have no finite "
                f"maximum-likelihood estimate (status {STATUS_ALL_ZEROS!r} in result.table())"
            )
        prepared = self._gene_data(g) if self._data is None else _one_gene(self._data, g)
        return EMResult(
            params={k: float(self.params[k][g]) for k in PARAM_NAMES},
            loglik=float(self.loglik[g]),
            n_iter=int(self.n_iter[g]),
            converged=bool(self.converged[g]),
            loglik_history=np.asarray(self.loglik_history[g]),
            param_history=[],
            _model=MODEL,
            _prepared=prepared,
            error_bound=float(self.error_bound[g]),
        )

    def __iter__(self):
        raise TypeError(
            "a matrix fit is not a sequence of fits: use result[g] for gene g, or "
            "result.table() for every gene"
        )

    def __getattr__(self, name):
        # The one-fit parts of EMResult: a clear TypeError, not an AttributeError.
        if name in ("param_history", "packed_params", "em_map", "_model", "_prepared"):
            raise TypeError(f"{name!r} is defined for one fit: " + _INDEX_A_GENE)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def se(self):
        raise TypeError(
            "standard errors are computed for one gene at a time: result[g].se for gene g, "
            "or the se_* columns of result.table() for every gene"
        )

    def standard_errors(self):
        """Per-gene standard errors and notes: ``({"mu", "theta", "pi"}: arrays, notes)``.

        From the analytic observed information of each gene (the Hessian of ℓ in
        (log μ, log θ, π) of the Newton polish, by the delta method for μ and θ). A
        parameter on its boundary (π̂ = 0, θ̂ = ∞) has none, and the others hold it fixed
        (as :attr:`emlib.em.EMResult.se`); genes not converged, of zeros only, or whose
        information is not positive definite have none. The note says why (empty where
        all three are defined).
        """
        if self._se is None:
            if self._data is None:
                raise ValueError("this result holds no data to compute standard errors from")
            mu, theta, pi = (np.asarray(self.params[k], dtype=float) for k in PARAM_NAMES)
            self._se = _standard_errors_per_gene(
                self._data, mu, theta, pi, np.asarray(self.converged), self.status
            )
        return self._se

    def table(self):
        """One row per gene (index ``gene``): estimates, fit, standard errors, flags.

        Columns ``mu, theta, pi, loglik, converged, n_iter, error_bound, status, se_mu,
        se_theta, se_pi, se_note`` (see :meth:`standard_errors` for the last four; NaN
        standard errors always come with a ``se_note`` saying why).
        """
        import pandas as pd

        se, note = self.standard_errors()
        columns = {k: np.asarray(self.params[k], dtype=float) for k in PARAM_NAMES}
        columns.update(
            loglik=np.asarray(self.loglik, dtype=float),
            converged=np.asarray(self.converged, dtype=bool),
            n_iter=np.asarray(self.n_iter, dtype=np.int64),
            error_bound=np.asarray(self.error_bound, dtype=float),
            status=self.status,
        )
        columns.update({f"se_{k}": se[k] for k in PARAM_NAMES})
        columns["se_note"] = note
        return pd.DataFrame(columns, index=pd.RangeIndex(self.n_genes, name="gene"))

    def summary(self) -> str:
        n_conv = int(np.sum(self.converged))
        empty = int(np.sum(self.status == STATUS_ALL_ZEROS))
        fitted = self.n_iter[self.status != STATUS_ALL_ZEROS]
        spread = f"{int(fitted.min())}–{int(fitted.max())}" if fitted.size else "none"
        return (
            f"EM fit of zinb on {self.n_genes} genes: total log-likelihood "
            f"{float(np.sum(np.asarray(self.loglik))):.6f}, {n_conv} converged, "
            f"{self.n_genes - n_conv - empty} NOT converged"
            + (f", {empty} of zeros only (no estimate)" if empty else "")
            + f", EM-map evaluations per gene {spread}"
        )

    def __repr__(self):
        return f"<ZINBMatrixResult: {self.summary()}>"


def _one_gene(d, g: int):
    """Gene g of a matrix's prepared data, as the data of a one-gene (1-D) fit."""
    return replace(_subset(d, np.array([g])), matrix=False)


def _standard_errors_per_gene(d, mu, theta, pi, converged, status):
    """See :meth:`ZINBMatrixResult.standard_errors`; all genes at once."""
    g = mu.size
    se = {k: np.full(g, np.nan) for k in PARAM_NAMES}
    note = np.full(g, "", dtype=object)
    note[status == STATUS_MAX_ITER] = "not converged"
    note[status == STATUS_NOT_A_MAXIMUM] = "not a maximum"
    note[status == STATUS_ALL_ZEROS] = "all zeros: no estimate"
    genes = np.flatnonzero(converged)
    if genes.size == 0:
        return se, note
    sub = d if genes.size == d.n_genes else _subset(d, genes)
    m, t, p = mu[genes], theta[genes], pi[genes]
    _, hess, _ = _newton_terms(sub, m, t, p)
    free = np.column_stack([np.ones(genes.size, dtype=bool), np.isfinite(t), p > 0])
    both = free[:, :, None] & free[:, None, :]
    eye = np.broadcast_to(np.eye(3), hess.shape)
    info = np.where(both, -hess, eye)
    with np.errstate(invalid="ignore"):
        ok = np.all(np.isfinite(info), axis=(1, 2))
        info = np.where(ok[:, None, None], info, eye)
        ok &= np.linalg.eigvalsh(info)[:, 0] > 0
    cov = np.linalg.inv(np.where(ok[:, None, None], info, eye))
    var = np.where(free & ok[:, None], np.diagonal(cov, axis1=1, axis2=2), np.nan)
    with np.errstate(invalid="ignore"):
        sd = np.sqrt(var)
        se["mu"][genes] = m * sd[:, 0]
        se["theta"][genes] = np.where(np.isfinite(t), t, np.nan) * sd[:, 1]
        se["pi"][genes] = sd[:, 2]
    parts = [
        (~ok, "information not positive definite"),
        (ok & np.isinf(t), "theta = inf (Poisson boundary): no se_theta"),
        (ok & (p == 0), "pi = 0 (boundary): no se_pi"),
    ]
    for mask, text in parts:
        where = genes[mask]
        note[where] = [f"{a}; {text}" if a else text for a in note[where]]
    return se, note


def _em_map(d: _Data, v: np.ndarray):
    """The EM map on packed coordinates for every gene of ``d``, and ℓ at ``v``."""
    mu, theta, pi = _unpack(v)
    if isinstance(d, _Scaled):
        *new, ll = _scaled_em_map(d, mu, theta, pi)
        return _pack(*new), ll
    ll, share = _loglik_and_share(d, mu, theta, pi)
    return _pack(*_m_step_arrays(d, share, mu, theta)), ll


def _objective(d: _Data, v: np.ndarray) -> np.ndarray:
    ok = _in_domain(v)
    safe = np.where(ok[:, None], v, np.array([1.0, 0.0, 0.5]))
    ll = _loglik_only(d, *_unpack(safe))
    return np.where(ok, ll, -np.inf)


def _objective_where(d: _Data, trial, base, mask) -> np.ndarray:
    """ℓ at ``trial`` where ``mask`` holds (the other entries are not to be used).

    With size factors only the masked genes are evaluated (each gene's ℓ is computed
    the same way whichever genes share the call); without, every gene, at ``base``
    where not masked.
    """
    if isinstance(d, _Scaled) and 0 < mask.sum() < d.n_genes:
        which = np.flatnonzero(mask)
        value = np.full(d.n_genes, -np.inf)
        value[which] = _objective(_subset(d, which), trial[which])
        return value
    return _objective(d, np.where(mask[:, None], trial, base))


def _of_genes(d: _Scaled, genes: np.ndarray) -> _Scaled:
    return d if genes.size == d.n_genes else _subset(d, genes)


#: Above this share of a matrix's genes, an evaluation with size factors computes on all
#: genes rather than on a copy of the cells of those it needs.
_SUBSET_SHARE = 0.75


def _fused_where(d: _Scaled, trial, mask, genes):
    """ℓ and the Newton terms at ``trial`` where ``mask`` holds (ℓ = −inf elsewhere).

    Row i of ``trial`` is a point of gene ``genes[i]`` of ``d`` (increasing).
    """
    k = trial.shape[0]
    value = np.full(k, -np.inf)
    terms = [np.zeros((k, 3)), np.zeros((k, 3, 3)), np.full(k, np.nan)]
    which = np.flatnonzero(mask & _in_domain(trial))
    if which.size > _SUBSET_SHARE * d.n_genes:
        # Most genes: evaluate them all (the others at a point of their own domain, the
        # results dropped), which is cheaper than copying their cells out.
        point = np.tile([1.0, 1.0, 0.5], (d.n_genes, 1))  # θ = 1: finite on purpose
        point[genes[which]] = trial[which]
        every, *parts = _scaled_fused(d, *_unpack(point))
        value[which] = every[genes[which]]
        for whole, part in zip(terms, parts, strict=True):
            whole[which] = part[genes[which]]
    elif which.size:
        sub = _of_genes(d, genes[which])
        value[which], *parts = _scaled_fused(sub, *_unpack(trial[which]))
        for whole, part in zip(terms, parts, strict=True):
            whole[which] = part
    return value, terms


def _loglik_only(d: _Data, mu, theta, pi) -> np.ndarray:
    if isinstance(d, _Scaled):
        return _scaled_loglik(d, mu, theta, pi, want_share=False)[0]
    return _loglik_and_share(d, mu, theta, pi)[0]


class _LiveGenes:
    """The EM map and ℓ of some genes of ``d`` in :func:`emlib.em.run_batch`'s row form.

    They are computed on a copy of the data of the genes still iterating, all of ``d`` at
    first and cut down (:meth:`keep`) once at most three quarters of the copy's genes are
    left: the rows asked for are among them, and the copy's other genes are computed at
    the run's current points and dropped. Each gene's result is the same whichever genes
    share the call (its sums are its own).
    """

    def __init__(self, d: _Data, points: np.ndarray):
        self.d, self.points = d, points  # the run's points, updated in place by run_batch
        self.genes = np.arange(d.n_genes)
        self.sub = d

    def keep(self, active: np.ndarray) -> None:
        """Cut the copy down to the ``active`` genes once they are at most 3/4 of it."""
        live = active[self.genes]
        if live.sum() <= 0.75 * live.size:
            self.genes = self.genes[live]
            self.sub = _subset(self.d, self.genes)

    def _rows(self, rows, v):
        x = self.points[self.genes]
        at = np.searchsorted(self.genes, rows)
        x[at] = v
        return x, at

    def em_map(self, rows, v):
        x, at = self._rows(rows, v)
        mapped, ll = _em_map(self.sub, x)
        return mapped[at], ll[at]

    def objective(self, rows, v):
        x, at = self._rows(rows, v)
        return _objective(self.sub, x)[at]


def _run_matrix(d: _Data, start, tol, max_iter, accelerate, xtol, record=False, progress=None):
    """Every gene's EM at once, by :func:`emlib.em.run_batch` with zinb's two hooks;
    returns the arrays of a :class:`ZINBMatrixResult`.

    ``progress``, if given, is called after every step with the number of genes done.

    The hooks: where the stopping rule stops a gene, Newton's second-order check of the
    point may veto the stop (:func:`_second_order`), and between steps the genes that have
    run long enough are polished (:func:`_polish`; with size factors, every gene before
    the first step). Genes that stop leave the batch; once a quarter of them have, the data
    are cut down to the live genes (:class:`_LiveGenes`). With ``record`` (one gene), the
    packed parameters after every step are kept too. The last array says, per gene that
    EM's rule stopped, whether that point is not a maximum (:func:`_second_order`).
    """
    g = d.n_genes
    v = _pack(*start)
    polish = accelerate == "squarem"
    first_polish = SCALED_POLISH_AFTER if isinstance(d, _Scaled) else POLISH_AFTER
    # With size factors the polish comes first and needs the Newton terms at the start:
    # they come in the same pass over the cells as ℓ.
    start_terms = None
    if polish and first_polish == 0 and isinstance(d, _Scaled):
        ll, *start_terms = _scaled_fused(d, *start)
    else:
        ll = _loglik_only(d, *start)
    if not np.all(np.isfinite(ll)):
        bad = np.flatnonzero(~np.isfinite(ll))
        raise ValueError(
            f"zinb: the log-likelihood at the starting values is -inf for gene(s) "
            f"{bad[:10].tolist()}; the data are impossible under them (choose starting "
            "values that give every count positive probability, e.g. pi < 1)"
        )
    # Where EM's rule stopped a gene: whether that point is not a maximum (the polish
    # certifies only at a negative definite Hessian, so its genes stay False).
    rising = np.zeros(g, dtype=bool)
    next_polish = np.full(g, first_polish, dtype=np.int64)
    path = [v[0].copy()] if record else None
    genes = None  # the _LiveGenes of the run, on its own points array

    def vet_stop(state, rows, done, bound):
        if xtol is not None or not done.any():
            return done, bound
        # The rule's rate estimate can be far too fast on a flat ridge: Newton vetoes,
        # and a vetoed gene goes to the polish now.
        stopped = rows[done]
        far, distance, rise = _second_order(_subset(d, stopped), state.points[stopped], tol)
        rising[stopped[~far]] = rise[~far]
        if far.any():
            which = np.flatnonzero(done)[far]
            done, bound = done.copy(), bound.copy()
            done[which], bound[which] = False, distance[far]
            next_polish[stopped[far]] = state.n_iter[stopped[far]]
        return done, bound

    def between(state):
        nonlocal genes, start_terms
        if genes is None:
            genes = _LiveGenes(d, state.points)
        slow = state.active & (state.n_iter >= next_polish) if polish else None
        if polish and slow.any():
            cand = np.flatnonzero(slow)
            v_p, ll_p, steps, certified, p_bound, moves = _polish(
                d if cand.size == g else _subset(d, cand),
                state.points[cand],
                state.loglik[cand],
                tol,
                np.minimum(_NEWTON_STEPS, max_iter - state.n_iter[cand]),
                terms=start_terms,
            )
            for moved, value, point in moves:
                for gene, value_g in zip(cand[moved], value, strict=True):
                    state.loglik_history[gene].append(value_g)
                if record:
                    path.append(point[0].copy())
            state.points[cand], state.loglik[cand] = v_p, ll_p
            state.n_iter[cand] += steps
            state.converged[cand[certified]] = True
            state.error_bound[cand[certified]] = p_bound[certified]
            next_polish[cand] = np.maximum(4 * next_polish[cand], 4)
            state.active[cand] = ~certified & (state.n_iter[cand] < max_iter)
        start_terms = None  # the start's terms serve the first polish only
        if progress is not None:
            progress(g - int(state.active.sum()))
        genes.keep(state.active)

    def on_step(rows, points):
        if record and rows.size and rows[0] == 0:
            path.append(points[0].copy())

    run = em.run_batch(
        lambda rows, x: genes.em_map(rows, x),
        lambda rows, x: genes.objective(rows, x),
        _in_domain,
        v,
        tol=tol,
        max_iter=max_iter,
        accelerate=accelerate,
        xtol=xtol,
        message=_GUARD_MESSAGE,
        labels=np.arange(g),
        loglik=ll,
        vet_stop=vet_stop,
        between=between,
        on_step=on_step if record else None,
    )
    return (
        run.points,
        run.loglik,
        run.n_iter,
        run.converged,
        run.loglik_history,
        run.error_bound,
        path,
        rising,
    )


#: A free Hessian block whose largest eigenvalue exceeds this times its largest absolute
#: eigenvalue has a direction along which ℓ rises (above the rounding of the sums).
_RISING_RTOL = 1e-10


def _rising(v, hess, dphi) -> np.ndarray:
    """Which genes, at the points ``v`` (with their Hessians and ∂ℓ/∂(1/θ) there), are not
    at a maximum by second-order signs.

    A maximum has a negative semi-definite Hessian on the free coordinates and the
    Karush-Kuhn-Tucker sign at θ = ∞ (see :func:`_newton_check`). A point where the
    stopping rule was met but the free block has a clearly positive eigenvalue (a single
    count of 1 among 20,000 cells with size factors, on the log-series ridge at π = 0.68,
    its maximum at the other end, π = 0.9991 and θ = ∞) is a saddle or a rising ridge,
    where EM crawls with steps the rule cannot tell from the last ones.
    """
    _, theta, pi = _unpack(v)
    free = _free_coordinates(theta, pi, grad=None)
    both = free[:, :, None] & free[:, None, :]
    block = np.where(both, hess, 0.0)
    ok = np.all(np.isfinite(block), axis=(1, 2))
    lam = np.linalg.eigvalsh(np.where(ok[:, None, None], block, 0.0))
    size = np.max(np.abs(lam), axis=1)
    rising = ok & (lam[:, -1] > _RISING_RTOL * size)
    return rising | (np.isinf(theta) & (dphi > 0.0))


def _restart_starts(d: _Data):
    """Starts at both ends of the log-series ridge, for genes whose fit is not a maximum.

    The zero-inflated end: μ the mean of the positive counts per unit size factor, θ each
    of :data:`_HURDLE_THETAS`, π from the share of positive cells; the negative-binomial
    end: μ the overall mean, θ at its floor and π = 0.01.
    """
    n_pos, total, pos_s = _positive_summary(d)
    share = n_pos / d.n_cells
    mu = total / pos_s
    starts = []
    for value in _HURDLE_THETAS:
        th = np.full(d.n_genes, value)
        starts.append((mu, th, _hurdle_pi(mu, th, share)))
    mean, _, _ = _default_init(d)
    starts.append((mean, np.full(d.n_genes, _THETA_FLOOR), np.full(d.n_genes, 0.01)))
    return starts


def _run_checked(d: _Data, start, tol, max_iter, accelerate, xtol, record=False, progress=None):
    """:func:`_run_matrix`, then restarts for genes the stopping rule left at no maximum.

    Genes reported converged where :func:`_rising` holds (at EM's stop, see
    :func:`_second_order`) are fitted again from
    each of :func:`_restart_starts` (their evaluations count in ``n_iter``) and take the
    best converged run that ends at a maximum above the first run's ℓ (a maximum below a
    point where ℓ still rises is not the one that point leads to); a gene without one is
    reported not converged. Returns the arrays of :func:`_run_matrix` and which genes are left so.
    """
    v, ll, n_iter, converged, history, bound, path, rising = _run_matrix(
        d, start, tol, max_iter, accelerate, xtol, record=record, progress=progress
    )
    genes = np.flatnonzero(rising)
    if genes.size == 0:
        return v, ll, n_iter, converged, history, bound, path, rising
    sub = _subset(d, genes)
    for cand in _restart_starts(sub):
        budget = int(max(max_iter - n_iter[genes].max(), 1))
        rv, rll, rn, rc, rh, rb, rp, r_rising = _run_matrix(
            sub, cand, tol, budget, accelerate, xtol, record
        )
        n_iter[genes] += rn
        good = rc & ~r_rising
        better = good & (rll > ll[genes])
        for i in np.flatnonzero(better):
            g = genes[i]
            v[g], ll[g], bound[g], history[g] = rv[i], rll[i], rb[i], rh[i]
            rising[g] = False
            if record:
                path = rp
    converged[rising] = False
    return v, ll, n_iter, converged, history, bound, path, rising


def _matrix_arrays(keep, n_genes, v, ll, n_iter, converged, history, bound, rising=None):
    """The per-gene arrays of a run on the genes ``keep``, spread over all ``n_genes``.

    The other genes (of zeros only) get NaN parameters, ℓ = 0 (the supremum), no
    iterations and the status :data:`STATUS_ALL_ZEROS`.
    """
    mu, theta, pi = _unpack(v) if len(keep) else (np.empty(0),) * 3
    out = {
        "mu": np.full(n_genes, np.nan),
        "theta": np.full(n_genes, np.nan),
        "pi": np.full(n_genes, np.nan),
        "loglik": np.zeros(n_genes),
        "n_iter": np.zeros(n_genes, dtype=np.int64),
        "converged": np.zeros(n_genes, dtype=bool),
        "error_bound": np.full(n_genes, np.nan),
        "status": np.full(n_genes, STATUS_ALL_ZEROS, dtype=object),
    }
    for name, part in zip(
        ("mu", "theta", "pi", "loglik", "n_iter", "converged", "error_bound"),
        (mu, theta, pi, ll, n_iter, converged, bound),
        strict=True,
    ):
        out[name][keep] = part
    stopped = (
        STATUS_MAX_ITER
        if rising is None
        else np.where(rising, STATUS_NOT_A_MAXIMUM, STATUS_MAX_ITER)
    )
    out["status"][keep] = np.where(converged, STATUS_CONVERGED, stopped)
    histories = [np.zeros(1)] * n_genes
    for i, g in enumerate(keep):
        histories[g] = history[i]
    out["loglik_history"] = histories
    return out


def _matrix_result(arrays) -> ZINBMatrixResult:
    return ZINBMatrixResult(
        params={k: arrays[k] for k in PARAM_NAMES},
        loglik=arrays["loglik"],
        n_iter=arrays["n_iter"],
        converged=arrays["converged"],
        loglik_history=arrays["loglik_history"],
        error_bound=arrays["error_bound"],
        status=arrays["status"].astype(str),
    )


def _gene_result(d, v, ll, n_iter, converged, history, bound, path) -> EMResult:
    """One gene's run of the matrix loop as the usual :class:`~emlib.em.EMResult`."""
    return EMResult(
        params=MODEL.unpack(v[0]),
        loglik=float(ll[0]),
        n_iter=int(n_iter[0]),
        converged=bool(converged[0]),
        loglik_history=np.asarray(history[0]),
        param_history=[MODEL.unpack(p) for p in path],
        _model=MODEL,
        _prepared=d,
        error_bound=float(bound[0]),
    )


# --------------------------------------------------------------------------------------
# The Newton polish of slow genes
# --------------------------------------------------------------------------------------


def _newton_terms(d: _Data, mu, theta, pi):
    """Gradient and Hessian of every gene's ℓ in (log μ, log θ, π), and ∂ℓ/∂(1/θ) at θ = ∞.

    Analytic, summed over the entries of each gene with ``bincount``. For a gene with θ = ∞
    (the zero-inflated Poisson) the log θ row and column are zero, and the last output is
    the one-sided derivative of ℓ in φ = 1/θ at φ = 0 (NaN for the other genes), whose sign
    says whether the Poisson face is a maximum (≤ 0) or not.
    """
    if isinstance(d, _Scaled):
        return _scaled_newton_terms(d, mu, theta, pi)
    k = d.n_genes
    gene, y, m = d.gene, d.y, d.mult
    mean = mu[gene] if d.s is None else d.s * mu[gene]
    inf = np.isinf(theta)
    t = np.where(inf, 1.0, theta)[gene]
    poisson = inf[gene]
    r = mean / (t + mean)
    tp = t / (t + mean)
    da = np.where(poisson, y - mean, tp * (y - mean))
    daa = np.where(poisson, -mean, -r * tp * (t + y))
    big = _negbin.digamma_ratio(y, t) - np.log1p(mean / t) + (mean - y) / (t + mean)
    curv = _negbin.trigamma_ratio(y, t) + mean / (t * (t + mean)) - (mean - y) / (t + mean) ** 2
    db = np.where(poisson, 0.0, t * big)
    dbb = np.where(poisson, 0.0, t * big + t * t * curv)
    dab = np.where(poisson, 0.0, tp * r * (y - mean))
    dphi = np.where(poisson, ((y - mean) ** 2 - y) / 2.0, 0.0)
    p = pi[gene]
    with np.errstate(divide="ignore"):
        keep = 1.0 / (1.0 - p)
        dp = -keep
        dpp = -keep * keep
    dap = np.zeros_like(y)
    dbp = np.zeros_like(y)
    z = d.zero
    if z.size:
        # A zero: ℓ0 = log P0, P0 = π + (1 − π) e^L with L = log f(0); q = (1 − π) e^L / P0.
        big_l = _negbin.log_zero_probability(mean[z], np.where(poisson[z], np.inf, t[z]))
        pz = p[z]
        with np.errstate(divide="ignore"):
            log_p0 = np.logaddexp(np.log(pz), np.log1p(-pz) + big_l)
        q = np.exp(np.log1p(-pz) + big_l - log_p0)
        el = np.exp(big_l - log_p0)  # e^L / P0
        inv = np.exp(-log_p0)  # 1 / P0
        la, lb, laa, lbb, lab = da[z], db[z], daa[z], dbb[z], dab[z]
        qq = q * (1.0 - q)
        da[z], db[z] = q * la, q * lb
        daa[z] = q * laa + qq * la * la
        dbb[z] = q * lbb + qq * lb * lb
        dab[z] = q * lab + qq * la * lb
        dp[z] = inv - el
        dpp[z] = -((inv - el) ** 2)
        dap[z] = -el * inv * la
        dbp[z] = -el * inv * lb
        dphi[z] = np.where(poisson[z], q * mean[z] ** 2 / 2.0, 0.0)

    def total(values):
        return np.bincount(gene, weights=m * values, minlength=k)

    grad = np.column_stack([total(da), total(db), total(dp)])
    hess = np.empty((k, 3, 3))
    hess[:, 0, 0], hess[:, 1, 1], hess[:, 2, 2] = total(daa), total(dbb), total(dpp)
    hess[:, 0, 1] = hess[:, 1, 0] = total(dab)
    hess[:, 0, 2] = hess[:, 2, 0] = total(dap)
    hess[:, 1, 2] = hess[:, 2, 1] = total(dbp)
    return grad, hess, np.where(inf, total(dphi), np.nan)


def _newton_direction(grad, hess, free, modify=False):
    """Newton's step −H⁻¹g on the free coordinates (0 on the others), and definiteness.

    With ``modify``, a gene whose Hessian is finite but not negative definite gets the step
    of the modified Newton method instead: −H with its eigenvalues replaced by their
    absolute values (at least 1e-6 of the largest), an ascent direction that follows the
    curvature. Returns the steps, which Hessians are negative definite, and which genes
    have a step.
    """
    k = grad.shape[0]
    eye = np.broadcast_to(np.eye(3), (k, 3, 3))
    both = free[:, :, None] & free[:, None, :]
    neg = np.where(both, -hess, eye)
    with np.errstate(invalid="ignore"):
        ok = np.all(np.isfinite(neg), axis=(1, 2)) & np.all(np.isfinite(grad), axis=1)
        neg = np.where(ok[:, None, None], neg, eye)
        definite = ok & (np.linalg.eigvalsh(neg)[:, 0] > 0)
    usable = ok if modify else definite
    flip = usable & ~definite
    if flip.any():
        lam, vec = np.linalg.eigh(neg[flip])
        lam = np.abs(lam)
        lam = np.maximum(lam, 1e-6 * lam.max(axis=1, keepdims=True))
        g_flip = np.where(free[flip], grad[flip], 0.0)
        coef = np.einsum("kji,kj->ki", vec, g_flip) / lam
        flipped = np.einsum("kij,kj->ki", vec, coef)
    neg = np.where(definite[:, None, None], neg, eye)
    g = np.where(free & definite[:, None], grad, 0.0)
    delta = np.linalg.solve(neg, g[:, :, None])[:, :, 0]
    if modify:
        if flip.any():
            delta[flip] = flipped
        return delta, definite, usable
    return delta, definite


def _newton_point(v, delta, t):
    """The packed point reached from ``v`` by ``t`` times a step in (log μ, log θ, π)."""
    mu, theta, pi = _unpack(v)
    log_theta = np.log(np.where(np.isinf(theta), 1.0, theta)) + t * delta[:, 1]
    log_theta = np.clip(log_theta, _negbin._LOG_THETA_MIN, _negbin._LOG_THETA_MAX)
    new_theta = np.where(np.isinf(theta), np.inf, np.exp(log_theta))
    new_pi = np.clip(pi + t * delta[:, 2], 0.0, _PI_MAX)
    return _pack(mu * np.exp(t * delta[:, 0]), new_theta, new_pi)


def _free_coordinates(theta, pi, grad=None):
    """Which of (log μ, log θ, π) move, per gene: θ = ∞ is held (the Poisson face), and
    π = 0 while ∂ℓ/∂π ≤ 0 there (an active bound), or always without ``grad`` (EM's view:
    EM cannot leave π = 0)."""
    free = np.ones((theta.size, 3), dtype=bool)
    free[:, 1] = np.isfinite(theta)
    free[:, 2] = (pi > 0.0) if grad is None else ~((pi == 0.0) & (grad[:, 2] <= 0.0))
    return free


def _newton_check(v, grad, hess, dphi, modify=False, em_faces=False):
    """Newton's step from the points ``v`` and what it says of them (see :func:`_polish`).

    θ = ∞ is held (the Poisson face), and π = 0 while ∂ℓ/∂π ≤ 0 there, or with
    ``em_faces`` always (EM cannot leave π = 0: a fit started there is the negative
    binomial's, e.g. ``init`` with π = 0 to fit it alone). Returns the steps
    in (log μ, log θ, π) (with ``modify``, the modified Newton step where the Hessian is
    not negative definite), which free Hessian blocks are negative definite, which genes
    have a step, which satisfy the Karush-Kuhn-Tucker sign at θ = ∞ (∂ℓ/∂(1/θ) ≤ 0), and
    the length of the full step in the stopping rule's measure: where the Hessian is
    negative definite that length estimates the distance to the maximum from the curvature
    alone, whatever the EM rate says.
    """
    _, theta, pi = _unpack(v)
    free = _free_coordinates(theta, pi, None if em_faces else grad)
    if modify:
        delta, definite, usable = _newton_direction(grad, hess, free, modify=True)
    else:
        delta, definite = _newton_direction(grad, hess, free)
        usable = definite
    kkt = ~(np.isinf(theta) & ~(dphi <= 0.0))
    with np.errstate(over="ignore"):  # a long modified step: its distance is inf
        target = _newton_point(v, delta, 1.0)
    return delta, definite, usable, kkt, stopping.step_sizes(v, target)


def _second_order(d: _Data, v, tol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which genes of ``d``, at the points ``v`` the EM stopping rule accepted, Newton
    places further than ``tol`` from their maximum, Newton's distances, and which are not
    at a maximum (:func:`_rising`), from one evaluation of the Newton terms.

    Why: the stopping rule estimates the EM rate from two successive steps, and on the
    nearly flat ridge of a very sparse gene (the log-series limit θ → 0, see
    :func:`_fit_start`) the first EM step after a Newton or SQUAREM move can be hundreds
    of times longer than the next, so the estimated rate (~0.004) is far below the true
    one (~1) and the bound vouches for a point still short of the maximum in ℓ (by up to
    7e-4 on genes of 8-40 positive counts among 20,000 cells with size factors). There
    the Hessian is negative definite and the Newton step is long (0.4 relative): that
    veto sends the gene on. Where the Hessian is not negative definite (or a sign test
    fails) the curvature says nothing and the stopping rule stands.
    """
    grad, hess, dphi = _newton_terms(d, *_unpack(v))
    _, definite, _, kkt, distance = _newton_check(v, grad, hess, dphi, em_faces=True)
    far = definite & kkt & (distance > tol) & (distance > stopping.ROUNDING_STEP)
    return far, distance, _rising(v, hess, dphi)


def _polish(d: _Data, v, ll, tol, budget, terms=None):
    """Safeguarded Newton on the observed-data ℓ of every gene of ``d`` (see :func:`fit`).

    Works in (log μ, log θ, π); θ = ∞ stays fixed (the Poisson face) and π = 0 is held
    (an active bound) while ∂ℓ/∂π ≤ 0 there. Each step is the Newton step on the free
    coordinates, with π projected onto [0, 1) and the step halved until ℓ does not
    decrease (:data:`_NEWTON_HALVINGS` times at most); with size factors, where the Hessian
    is not negative definite, the modified Newton step (:func:`_newton_direction`), which
    is never certified. A gene is certified at its current
    point when the free block of the Hessian is negative definite, the Karush-Kuhn-Tucker
    signs hold on the held coordinates (∂ℓ/∂π ≤ 0 at π = 0, ∂ℓ/∂(1/θ) ≤ 0 at θ = ∞) and the
    Newton step from it is at most ``tol`` in the stopping rule's measure
    (:func:`emlib.stopping.step_sizes` on (μ, 1/θ, π)), or at rounding level; it is then
    returned at that point, unmoved. A gene whose Hessian is not negative definite, whose
    held coordinates fail their sign test, whose step cannot be made to keep ℓ, or which
    runs out of its ``budget`` (Newton steps, one per gene) is left uncertified, at the best
    point reached. Returns the new points, their ℓ, the Newton steps taken (evaluations of
    the gradient and Hessian), which genes were certified, the certified distances, and the
    accepted steps as (genes, their new ℓ, their new points) in order. With size factors,
    ``terms`` may give the Newton terms (:func:`_newton_terms`) of every gene at ``v``.
    """
    k = d.n_genes
    v, ll = v.copy(), ll.copy()
    certified = np.zeros(k, dtype=bool)
    failed = np.zeros(k, dtype=bool)
    steps = np.zeros(k, dtype=np.int64)
    bound = np.full(k, np.inf)
    moves = []
    budget = np.broadcast_to(budget, (k,))
    # With size factors ℓ at a trial point comes with the Newton terms there (one pass
    # over the cells for both), kept for the next step if the trial is accepted.
    scaled = isinstance(d, _Scaled)
    cache = (np.zeros((k, 3)), np.zeros((k, 3, 3)), np.zeros(k), np.zeros(k, dtype=bool))
    if scaled and terms is not None:
        cache = (*(np.array(a) for a in terms), np.ones(k, dtype=bool))

    def evaluate(sub, work, trial, base, mask):
        if not scaled:
            return _objective_where(sub, trial, base, mask), None
        return _fused_where(d, trial, mask, work)

    def keep(work, ok, terms):
        if scaled:
            for whole, part in zip(cache[:3], terms, strict=True):
                whole[work[ok]] = part[ok]
            cache[3][work[ok]] = True

    while True:
        work = np.flatnonzero(~certified & ~failed & (steps < budget))
        if work.size == 0:
            break
        # (With size factors each evaluation takes the genes it needs from d itself.)
        sub = None if scaled else _subset(d, work) if work.size < k else d
        vw = v[work]
        mu, theta, pi = _unpack(vw)
        if scaled:
            need = ~cache[3][work]
            if need.any():
                part_data = _of_genes(d, work[need])
                terms = _newton_terms(part_data, *_unpack(vw[need]))
                for whole, part in zip(cache[:3], terms, strict=True):
                    whole[work[need]] = part
                cache[3][work[need]] = True
            grad, hess, dphi = (a[work] for a in cache[:3])
        else:
            grad, hess, dphi = _newton_terms(sub, mu, theta, pi)
        steps[work] += 1
        delta, definite, usable, kkt, distance = _newton_check(vw, grad, hess, dphi, modify=scaled)
        done = definite & kkt & ((distance <= tol) | (distance <= stopping.ROUNDING_STEP))
        certified[work[done]] = True
        bound[work[done]] = distance[done]
        failed[work[~usable | ~kkt]] = True
        go = usable & kkt & ~done
        # Long steps are cut to a factor e in μ and θ: Newton is only trusted near the top.
        longest = np.max(np.abs(delta[:, :2]), axis=1)
        delta = delta / np.maximum(longest, 1.0)[:, None]
        t = np.ones(work.size)
        pending = go.copy()
        gain = np.sum(grad * delta, axis=1)  # ℓ's first-order gain along the step
        noise = _LL_ROUNDING * np.maximum(np.abs(ll[work]), 1.0)
        # Towards θ = ∞ Newton in log θ only creeps: try the Poisson face itself.
        face = go & np.isfinite(theta) & (np.log(theta) + delta[:, 1] > _LOG_THETA_FACE)
        if scaled:
            # In log θ the Newton step towards ∞ is about 1 (a factor e a step): try the
            # face as soon as θ climbs, and keep it only where its sign test holds (ℓ and
            # the derivatives at the trial come in one pass).
            face |= go & np.isfinite(theta) & (delta[:, 1] > _FACE_CLIMB)
        if face.any():
            trial = _newton_point(vw, delta, 1.0)
            trial[:, 1] = 0.0
            value, terms = evaluate(sub, work, trial, vw, face)
            ok = face & (value >= ll[work])
            if scaled:
                ok &= terms[2] <= 0.0
            v[work[ok]], ll[work[ok]] = trial[ok], value[ok]
            keep(work, ok, terms)
            pending &= ~ok
        for _ in range(_NEWTON_HALVINGS + 1):
            if not pending.any():
                break
            trial = _newton_point(vw, delta, t)
            value, terms = evaluate(sub, work, trial, vw, pending)
            unresolved = (t * gain <= noise) & (value >= ll[work] - noise)
            ok = pending & ((value >= ll[work]) | unresolved)
            moved = work[ok]
            v[moved], ll[moved] = trial[ok], value[ok]
            keep(work, ok, terms)
            pending &= ~ok
            t = np.where(pending, 0.5 * t, t)
        failed[work[pending]] = True
        stepped = work[go & ~pending]
        if stepped.size:
            moves.append((stepped, ll[stepped].copy(), v[stepped].copy()))
    return v, ll, steps, certified, bound, moves


# --------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------


def fit(
    data,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = MAX_ITER,
    accelerate: str | None = DEFAULT_ACCELERATE,
    init: dict | None = None,
    size_factors=None,
    xtol: float | None = None,
    progress: bool | None = None,
    client=None,
    scheduler: str | None = None,
) -> EMResult | ZINBMatrixResult:
    """Maximum-likelihood (μ, θ, π) by EM, for one vector of counts or every gene of a matrix.

    Parameters
    ----------
    data : array_like of counts, a scipy.sparse matrix, or a dask array
        1-D (one gene), or 2-D cells × genes (every gene fitted at once). A sparse
        cells × genes matrix (CSR, CSC, COO, ...) is read from its non-zeros and each gene's
        number of zeros, in its own format, a chunk of entries at a time (never densified
        or copied); the fit is the same as on its dense form. A ``dask.array`` chunked by
        genes is fitted block by block on a dask.distributed cluster (``client``). With
        size factors a sparse matrix's positives are copied once, gene-major (a CSC copy,
        as large as the matrix), and the zeros' factors are rebuilt from ``size_factors``
        a block of genes at a time, never stored.
    tol, max_iter, accelerate, xtol
        See :func:`emlib.em.run`. For a matrix they apply to each gene separately: a gene
        stops when its own estimated distance to the maximum (Aitken's bound, or the
        Newton step of the polish below) is at most ``tol``, relative per parameter.
        ``max_iter`` caps EM-map evaluations plus Newton steps per gene. With
        ``accelerate=None`` there is no polish: plain EM only.
    init : dict, optional
        ``{"mu": μ0, "theta": θ0, "pi": π0}``, scalars or (for a matrix) arrays with one
        entry per gene; default :func:`default_init`.
    size_factors : array_like of shape (n_cells,), optional
        Positive factors :math:`s_c`; the negative-binomial mean of cell c is
        :math:`s_c\\mu`. Without them, each gene's counts are reduced to a frequency table.
    client, scheduler : optional
        Only for a ``dask.array`` of counts: the dask.distributed cluster to fit it on, a
        ``distributed.Client`` or the address of a running scheduler
        (``scheduler="tcp://scheduler-host:8786"``, as printed by ``dask scheduler``; a
        client is opened on it for the fit and closed after). Default: the current client
        (``distributed.get_client()``), else dask's local scheduler. The array must be
        chunked by genes (cells are rechunked into one chunk per block: each task holds
        every cell of its genes, dense or scipy.sparse blocks); each block of genes is
        one task, fitted exactly as an in-memory matrix, so the result is the same, gene
        for gene, as ``fit`` on the whole matrix in memory. Its ``result[g]`` reads gene
        g's column back from the array (for ``se`` and :func:`emlib.rate`).
    progress : bool, optional
        A tqdm progress bar over the genes of a matrix fit. ``None`` (the default): shown
        on a terminal only, and only once the fit has run :data:`PROGRESS_DELAY` seconds
        (never in tests, notebooks or logs, whose output it would change); ``True``:
        always (``tqdm.auto``: a widget in Jupyter); ``False``: never.

    Returns
    -------
    EMResult or ZINBMatrixResult
        For 1-D data, the usual :class:`~emlib.em.EMResult` (floats, ``se``,
        ``summary()``). For a matrix a :class:`ZINBMatrixResult`, one fit per gene:
        ``params``, ``loglik``, ``n_iter``, ``converged``, ``error_bound`` and ``status``
        have one entry per gene, ``loglik_history`` is a list of per-gene histories (each
        non-decreasing; the monotonicity guard is applied to every gene at every
        iteration); ``result[g]`` is gene g's EMResult and ``result.table()`` a pandas
        DataFrame of every gene's estimates, standard errors and flags.

        A gene whose counts are all zero has no finite maximum-likelihood estimate (ℓ → 0
        as π → 1 or μ → 0): it is not fitted, and gets NaN ``params``, ``loglik`` 0,
        ``n_iter`` 0, ``converged`` False and ``status`` ``"all zeros"``, with a
        :class:`ZeroGenesWarning` naming such genes; the other genes are fitted as
        without it. (A 1-D vector of zeros raises a ValueError.)

    Notes
    -----
    For a gene with counts :math:`y_1, \\dots, y_n` and :math:`f` the negative-binomial pmf,

    .. math:: \\ell(\\mu, \\theta, \\pi) = \\sum_{i: y_i = 0}
              \\log\\left(\\pi + (1-\\pi) f(0; s_i\\mu, \\theta)\\right)
              + \\sum_{i: y_i > 0} \\left(\\log(1-\\pi) + \\log f(y_i; s_i\\mu, \\theta)\\right).

    Where the data hold no excess zeros the maximum is at π = 0, which EM approaches
    slowly (pass ``accelerate="squarem"``); where the non-dropout counts are not
    overdispersed it is at θ = ∞ (the zero-inflated Poisson), which the M-step reaches
    exactly. The largest finite θ reported is :data:`emlib._negbin.THETA_MAX`. Without size
    factors a matrix fit gives the same estimates as fitting each column on its own: every
    step below is taken gene by gene, so a column fitted alone follows the same path, with
    the same ``n_iter``.

    **The method.** SQUAREM-accelerated EM (the default) runs on every gene; a gene stops
    when Aitken's bound on its distance to the maximum is at most ``tol``
    (:mod:`emlib.stopping`). A gene still iterating after :data:`POLISH_AFTER` EM-map
    evaluations is *polished*: safeguarded Newton on its observed-data log-likelihood, in
    the coordinates (log μ, log θ, π), with the analytic gradient and Hessian (digamma and
    trigamma sums over the gene's frequency table), all such genes at once. Each step is
    the Newton step, cut to at most a factor e in μ and θ, with π projected onto [0, 1),
    and halved until ℓ does not decrease. The boundaries are handled as constraints:
    π = 0 is held while ∂ℓ/∂π ≤ 0 there (an active bound); θ = ∞ is a face of its own, held
    once reached (a step that would take θ past 1e6 tries θ = ∞ directly, kept only if ℓ
    does not decrease). Why: near the maximum Newton converges quadratically whatever the
    EM rate, while EM's error shrinks only by the rate ρ per step; on the 2,000-gene
    benchmark one gene with ρ within 1e-4 of 1 needed ~10,800 SQUAREM evaluations, more than
    half of the whole fit's time, and the polish needs a handful of Newton steps.

    **With size factors** every gene starts with the polish (:data:`SCALED_POLISH_AFTER`),
    and from the default start the polish first runs on the same genes with the factors
    binned (:func:`_coarse`: 64 bins of log s, one weighted entry per gene and bin), where a
    pass costs a few percent of one over every cell; a gene whose binned maximum is
    certified starts the exact polish from there (within ~1e-3 of its maximum in ℓ), which
    then needs two to four Newton steps instead of about seven. The binned steps are not
    counted in ``n_iter``, and the exact polish certifies the result as above.

    **Monotone.** A Newton step is accepted only if ℓ does not decrease. The one exception
    is a step whose predicted gain is below the rounding error of ℓ itself (1e-13 |ℓ|,
    a thousand times tighter than EM's own guard): ℓ cannot then tell the two points apart,
    and the step is accepted if ℓ falls by at most that much. ``loglik_history`` records
    every accepted Newton step.

    **The certificate.** A polished gene is ``converged`` only at a point where (i) the
    Hessian of ℓ on the free coordinates is negative definite, (ii) the held boundaries
    pass their Karush-Kuhn-Tucker sign tests (∂ℓ/∂π ≤ 0 at π = 0; ∂ℓ/∂(1/θ) ≤ 0 at θ = ∞,
    which is :math:`\\sum_i (1-\\gamma_i)\\,[(y_i - s_i\\mu)^2 - y_i]/2` with the posterior
    non-dropout weights), and (iii) the Newton step from that point, measured as the
    stopping rule measures EM's steps (relative to ``max(1, |·|)`` in (μ, 1/θ, π), the
    largest coordinate), is at most ``tol`` (or at rounding level). Since Newton's error
    after the step is of the order of the step squared, that step estimates the distance
    to the maximum as Aitken's bound does for EM, and more sharply; it is reported in
    ``error_bound``, and the returned point is the one the test was made at, not moved
    after it. A gene that fails the test (an indefinite Hessian, a boundary whose sign
    test fails, a step that cannot keep ℓ, or 30 Newton steps used) goes back to SQUAREM
    at the best point reached, and is polished again after 4, 16, ... times as many
    evaluations. ``n_iter`` counts EM-map evaluations plus Newton steps (one gradient and
    Hessian each).

    **Second-order checks on EM's stop.** Aitken's bound rests on a rate estimated from two
    successive steps, and right after a Newton or SQUAREM move on the nearly flat ridge of
    a very sparse gene (the log-series limit θ → 0) that estimate can be hundreds of times
    too fast. So where the stopping rule is met, Newton's step is computed there too: if
    the Hessian is negative definite and that step is longer than ``tol``, the stop is
    vetoed and the gene is polished at once. A gene that stops where the Hessian has a
    clearly positive eigenvalue (ℓ still rises: a saddle or a ridge) is fitted again from
    starts at both ends of the ridge (:func:`_restart_starts`), and takes the best run that
    ends at a maximum above that point; without one it is reported not converged, with
    ``status`` ``"not a maximum"`` and a ConvergenceWarning. (On two sets of 40 simulated
    genes of 1-50 positive counts among 20,000 cells with size factors, 10 had stopped up
    to 7e-4 short of the maximum in ℓ, reported converged.)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> nb = rng.negative_binomial(2.0, 2.0 / (2.0 + 5.0), 20_000)  # μ = 5, θ = 2
    >>> y = np.where(rng.random(20_000) < 0.2, 0, nb)
    >>> p = fit(y).params
    >>> round(p["mu"], 1), round(p["theta"], 1), round(p["pi"], 2)
    (5.0, 2.1, 0.2)
    """
    tol, max_iter, accelerate, xtol = check_options(tol, max_iter, accelerate, xtol)
    if progress not in (None, True, False):
        raise ValueError(f"progress must be None (automatic), True or False; got {progress!r}")
    from emlib import _zinb_dask

    if _zinb_dask.is_dask_array(data):
        result = _zinb_dask.fit(
            data,
            size_factors=size_factors,
            init=init,
            tol=tol,
            max_iter=max_iter,
            accelerate=accelerate,
            xtol=xtol,
            progress=progress,
            client=client,
            scheduler=scheduler,
        )
        _warn_matrix(result, max_iter, tol, accelerate)
        return result
    if client is not None or scheduler is not None:
        raise ValueError(
            "client= and scheduler= are for a dask array of counts (a matrix chunked by "
            f"genes); got {type(data).__name__}: fit it in memory without them, or pass "
            "dask.array.from_array(counts, chunks=(-1, genes_per_task))"
        )
    d = _prepare(data, size_factors, empty_genes=True)
    if not d.matrix:
        start = _check_params(init, d.n_genes) if init is not None else _start(d, tol, accelerate)
        *arrays, path, rising = _run_checked(
            d, start, tol, max_iter, accelerate, xtol, record=True
        )
        result = _gene_result(d, *arrays, path)
        if rising[0]:
            warnings.warn(
                "zinb: the stopping rule was met where the log-likelihood still rises "
                "(the Hessian has a positive eigenvalue: a saddle or a ridge, not a maximum), "
                "and no restart found a maximum; converged is False. Try other starting "
                "values (init)",
                convergence.ConvergenceWarning,
                stacklevel=2,
            )
        elif not result.converged:
            warnings.warn(
                non_convergence_message(
                    "zinb", result.n_iter, max_iter, tol, result.error_bound, accelerate
                ),
                convergence.ConvergenceWarning,
                stacklevel=2,
            )
        return result
    with _progress_bar(progress, d.n_genes) as bar:
        arrays = _fit_genes(d, init, tol, max_iter, accelerate, xtol, bar)
    result = _matrix_result(arrays)
    result._data = d
    _warn_matrix(result, max_iter, tol, accelerate)
    return result


def _start(d, tol, accelerate):
    """The default start of a fit: :func:`_fit_start`, with size factors moved by the
    coarse polish (:func:`_coarse_start`) where the exact polish comes next."""
    start = _fit_start(d)
    if isinstance(d, _Scaled) and accelerate == "squarem" and SCALED_POLISH_AFTER == 0:
        start = _coarse_start(d, start, tol)
    return start


def _fit_genes(d, init, tol, max_iter, accelerate, xtol, bar=None) -> dict:
    """The matrix fit of every gene of ``d``; genes of zeros only are flagged, not fitted."""
    g = d.n_genes
    total = (
        d.total
        if isinstance(d, _Scaled)
        else np.bincount(d.gene, weights=d.mult * d.y, minlength=g)
    )
    keep = np.flatnonzero(total > 0)
    full = _check_params(init, g) if init is not None else None
    if keep.size == 0:
        return _matrix_arrays(keep, g, np.empty((0, 3)), *(np.empty(0),) * 3, [], np.empty(0))
    sub = d if keep.size == g else _subset(d, keep)
    start = tuple(a[keep] for a in full) if full is not None else _start(sub, tol, accelerate)
    step = None if bar is None else (lambda done: bar.update(done - bar.n))
    *arrays, _, rising = _run_checked(sub, start, tol, max_iter, accelerate, xtol, progress=step)
    return _matrix_arrays(keep, g, *arrays, rising)


#: Seconds before the automatic progress bar of a matrix fit appears (a faster fit never
#: shows one).
PROGRESS_DELAY = 2.0


@contextlib.contextmanager
def _progress_bar(progress, total, unit="gene"):
    """A tqdm bar over the genes done, or None (see :func:`fit`'s ``progress``)."""
    if progress is False or (progress is None and not _stderr_is_terminal()):
        yield None
        return
    if progress is None:
        from tqdm import tqdm

        bar = tqdm(total=total, unit=unit, desc="zinb.fit", delay=PROGRESS_DELAY, leave=False)
    else:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit=unit, desc="zinb.fit")
    try:
        yield bar
    finally:
        bar.close()


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def _warn_matrix(result: ZINBMatrixResult, max_iter, tol, accelerate) -> None:
    empty = np.flatnonzero(result.status == STATUS_ALL_ZEROS)
    if empty.size:
        warnings.warn(
            f"zinb: {empty.size} of {result.n_genes} genes have only zero counts (genes "
            f"{_first_genes(empty)}): their ZINB parameters have no finite maximum-likelihood "
            f"estimate, so they are not fitted: params NaN, loglik 0 (the supremum), "
            f"converged False, status {STATUS_ALL_ZEROS!r} (see result.table())",
            ZeroGenesWarning,
            stacklevel=3,
        )
    rising = np.flatnonzero(result.status == STATUS_NOT_A_MAXIMUM)
    if rising.size:
        warnings.warn(
            f"zinb: for {rising.size} of {result.n_genes} genes (genes "
            f"{_first_genes(rising)}) the stopping rule was met where the log-likelihood "
            "still rises (the Hessian has a positive eigenvalue: a saddle or a ridge, not a "
            f"maximum), and no restart found a maximum: converged False, status "
            f"{STATUS_NOT_A_MAXIMUM!r}. Try other starting values (init)",
            convergence.ConvergenceWarning,
            stacklevel=3,
        )
    stuck = np.flatnonzero(result.status == STATUS_MAX_ITER)
    if stuck.size:
        worst = float(np.max(np.asarray(result.error_bound)[stuck]))
        warnings.warn(
            f"zinb: {stuck.size} of {result.n_genes} genes stopped after max_iter={max_iter} "
            f"EM-map evaluations before meeting tol={tol:g} (genes {_first_genes(stuck)}); "
            f"the largest estimated distance to the maximum among them is {worst:.1e} "
            "(relative; their error_bound entries give each). Raise max_iter"
            + (
                ", or try other starting values (init)"
                if accelerate
                else ", or pass accelerate='squarem'"
            ),
            convergence.ConvergenceWarning,
            stacklevel=3,
        )


def _first_genes(genes) -> str:
    return ", ".join(str(int(i)) for i in genes[:10]) + (", ..." if len(genes) > 10 else "")

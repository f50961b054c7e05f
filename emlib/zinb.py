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
with its own (μ, θ, π), in one vectorised EM loop; optionally with per-cell size factors
:math:`s_c`, so that the mean of cell c for gene g is :math:`s_c \\mu_g`. Without size
factors each gene is reduced once to its frequency table, so an iteration costs time in
proportion to the number of distinct (gene, count) pairs, not cells × genes.

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

import warnings
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import gammaln

from emlib import _negbin, convergence, stopping
from emlib._validation import check_init_keys
from emlib.em import (
    DEFAULT_ACCELERATE,
    DEFAULT_TOL,
    EMModel,
    EMResult,
    check_options,
    non_convergence_message,
)

PARAM_NAMES = ("mu", "theta", "pi")
#: Counts below this are tabulated per gene with one ``bincount``; larger ones are sorted.
_TABLE_WIDTH = 64
_CHUNK_ENTRIES = 1 << 20
#: The default max_iter of ``fit`` (EM-map evaluations plus Newton steps per gene): larger
#: than the other models', because plain EM (``accelerate=None``, which has no Newton
#: polish) needs tens of thousands of evaluations on weakly identified genes (EM rate within
#: 1e-4 of 1).
MAX_ITER = 50_000
#: Most halvings of the SQUAREM step length per cycle in the matrix loop.
_BACKTRACKS = 6
#: A gene still iterating after this many EM-map evaluations is handed to the Newton
#: polish (again after 4, 16, ... times as many if the polish could not certify it).
POLISH_AFTER = 10
#: Most Newton steps per polish, and most halvings of one Newton step.
_NEWTON_STEPS = 30
_NEWTON_HALVINGS = 30
#: The rounding level of ℓ, relative to max(|ℓ|, 1): a Newton step whose predicted gain is
#: below it cannot be checked by evaluating ℓ, and is accepted if ℓ falls by at most this.
_LL_ROUNDING = 1e-13
#: A Newton step beyond this θ also tries θ = ∞ (the zero-inflated Poisson) directly.
_LOG_THETA_FACE = float(np.log(1e6))
#: The largest π a Newton step may reach (the domain is π < 1).
_PI_MAX = 1.0 - 1e-10


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Data:
    """Counts as ragged entries grouped by gene: one entry per distinct (gene, count).

    With size factors there is one entry per (cell, gene), each with its factor ``s``.
    """

    y: np.ndarray  # (m,) float
    mult: np.ndarray  # (m,) float, how often the entry occurs
    gene: np.ndarray  # (m,) intp, sorted
    s: np.ndarray | None  # (m,) size factor of each entry, or None for all 1
    zero: np.ndarray  # indices of the entries with y == 0
    n_genes: int
    n_cells: int
    log_factorial: np.ndarray  # (G,) Σ log y! per gene
    matrix: bool


def _as_count_matrix(data) -> tuple[np.ndarray, bool]:
    """Validate counts (1-D, or 2-D cells × genes) without a full-size temporary."""
    arr = data if isinstance(data, np.ndarray) else None
    if arr is None or arr.dtype.kind not in "iuf":
        try:
            arr = np.asarray(data, dtype=float)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"ZINB counts must be numeric; could not convert them to numbers ({err})"
            ) from err
    if arr.ndim not in (1, 2):
        raise ValueError(
            "ZINB counts must be a 1-D array of counts or a 2-D cells × genes matrix; got an "
            f"array of shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"ZINB counts are empty (shape {arr.shape}): at least one is needed")
    matrix = arr.ndim == 2
    arr2 = arr if matrix else arr[:, None]
    if arr2.dtype.kind in "iu":
        if arr2.dtype.kind == "i" and arr2.min() < 0:
            _raise_at(arr2, arr2 < 0, matrix, "must be counts (>= 0); found")
        return arr2, matrix
    rows = max(1, _CHUNK_ENTRIES // arr2.shape[1])
    for start in range(0, arr2.shape[0], rows):
        block = arr2[start : start + rows]
        for bad, what in (
            (~np.isfinite(block), "contain NaN or infinite values; found"),
            (block < 0, "must be counts (>= 0); found"),
            (block != np.round(block), "must be whole-number counts; found"),
        ):
            if bad.any():
                _raise_at(block, bad, matrix, what, offset=start)
    return arr2, matrix


def _raise_at(block, bad, matrix, what, offset=0):
    i, j = (int(v) for v in np.argwhere(bad)[0])
    where = f"cell {i + offset}, gene {j}" if matrix else f"index {i + offset}"
    raise ValueError(f"ZINB counts {what} {block[i, j]} at {where}")


def _check_size_factors(size_factors, n_cells: int) -> np.ndarray:
    try:
        s = np.asarray(size_factors, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"size_factors must be numeric; got {size_factors!r}") from err
    if s.shape != (n_cells,):
        raise ValueError(
            f"size_factors must have one entry per cell, shape ({n_cells},); got {s.shape}"
        )
    bad = ~np.isfinite(s) | (s <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"size_factors must be positive and finite; found {s[i]} at cell {i}")
    return s


def _tables(counts: np.ndarray):
    """Distinct (gene, value) pairs of a cells × genes count matrix and their frequencies."""
    n, g = counts.shape
    width = _TABLE_WIDTH + 1  # the last slot of each gene counts the values >= width - 1
    table = np.zeros(g * width, dtype=np.int64)
    offsets = np.arange(g, dtype=np.int64) * width
    big_gene, big_value = [], []
    rows = max(1, _CHUNK_ENTRIES // g)
    for start in range(0, n, rows):
        block = counts[start : start + rows]
        if block.dtype.kind == "f":
            block = block.astype(np.int64)
        keys = np.minimum(block, width - 1).astype(np.int64, copy=False) + offsets
        table += np.bincount(keys.ravel(), minlength=g * width)
        r, c = np.nonzero(block >= width - 1)
        big_gene.append(c)
        big_value.append(block[r, c].astype(np.int64))
    table = table.reshape(g, width)[:, :-1]
    gene, value = np.nonzero(table)
    freq = table[gene, value]
    big_gene = np.concatenate(big_gene)
    if big_gene.size:
        pairs, big_freq = np.unique(
            np.column_stack([big_gene, np.concatenate(big_value)]), axis=0, return_counts=True
        )
        gene = np.concatenate([gene, pairs[:, 0]])
        value = np.concatenate([value, pairs[:, 1]])
        freq = np.concatenate([freq, big_freq])
        order = np.lexsort((value, gene))
        gene, value, freq = gene[order], value[order], freq[order]
    return gene.astype(np.intp), value.astype(float), freq.astype(float)


def _prepare(data, size_factors=None, *, for_fit: bool = True) -> _Data:
    counts, matrix = _as_count_matrix(data)
    n, g = counts.shape
    if size_factors is None:
        gene, y, mult = _tables(counts)
        s = None
    else:
        sf = _check_size_factors(size_factors, n)
        y = np.asarray(counts, dtype=float).T.ravel()
        gene = np.repeat(np.arange(g, dtype=np.intp), n)
        mult = np.ones(y.size)
        s = np.tile(sf, g)
    total = np.bincount(gene, weights=mult * y, minlength=g)
    if for_fit and np.any(total == 0):
        empty = np.flatnonzero(total == 0)
        if not matrix:
            raise ValueError(
                "every count is zero: μ → 0 and π → 1 explain the data equally well, so the "
                "ZINB parameters have no finite maximum-likelihood estimate"
            )
        shown = ", ".join(str(int(i)) for i in empty[:10]) + (", ..." if empty.size > 10 else "")
        raise ValueError(
            f"{empty.size} gene(s) have only zero counts (genes {shown}): their ZINB "
            "parameters have no finite maximum-likelihood estimate; remove those columns"
        )
    return _Data(
        y=y,
        mult=mult,
        gene=gene,
        s=s,
        zero=np.flatnonzero(y == 0),
        n_genes=g,
        n_cells=n,
        log_factorial=np.bincount(gene, weights=mult * gammaln(y + 1.0), minlength=g),
        matrix=matrix,
    )


def _subset(d: _Data, genes: np.ndarray) -> _Data:
    """The data of some genes only, renumbered 0, 1, ... in the given (increasing) order."""
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
        raise ValueError(f"{name} must not be NaN; got {arr}")
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
    ll, _ = _loglik_and_share(d, *_check_params(params, d.n_genes))
    return ll if d.matrix else float(ll[0])


def default_init(data, *, size_factors=None) -> dict:
    """Moment-style start per gene, π from the zeros in excess of a moment-fitted NB.

    With the mean :math:`\\bar y` and variance :math:`v` of the counts (of
    :math:`y_c / s_c` with size factors), :math:`\\theta_0 = \\bar y^2 / (v - \\bar y)`
    clipped to [0.01, 1e4] (1e4 when :math:`v \\le \\bar y`),

    .. math:: \\pi_0 = \\min\\left(\\max\\left(\\frac{n_0/n - f_0}{1 - f_0}, 0.01\\right),
              0.9\\right), \\quad f_0 = f(0; \\bar y, \\theta_0), \\qquad
              \\mu_0 = \\bar y / (1 - \\pi_0).

    π0 is kept at or above 0.01 because EM cannot leave π = 0.
    """
    d = _prepare(data, size_factors)
    return _as_output(d, *_default_init(d))


def _default_init(d: _Data):
    g = d.n_genes
    n = d.n_cells
    scaled = d.y if d.s is None else d.y / d.s
    mean = np.bincount(d.gene, weights=d.mult * scaled, minlength=g) / n
    second = np.bincount(d.gene, weights=d.mult * scaled**2, minlength=g) / n
    excess_var = second - mean**2 - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(excess_var > 0, mean**2 / excess_var, 1e4)
    theta = np.clip(theta, 0.01, 1e4)
    zeros = np.bincount(d.gene[d.zero], weights=d.mult[d.zero], minlength=g) / n
    f0 = np.exp(_negbin.log_zero_probability(mean, theta))
    pi = np.clip((zeros - f0) / (1 - f0), 0.01, 0.9)
    return mean / (1 - pi), theta, pi


# --------------------------------------------------------------------------------------
# The vectorised EM loop for a matrix
# --------------------------------------------------------------------------------------


class ZINBMatrixResult(EMResult):
    """An :class:`~emlib.em.EMResult` for a cells × genes matrix, one fit per gene.

    ``params`` holds arrays with one entry per gene; ``loglik``, ``n_iter`` (EM-map
    evaluations) and ``converged`` are arrays per gene; ``loglik_history`` is a list with
    one non-decreasing array per gene (its last entry is that gene's ``loglik``);
    ``param_history`` is not recorded (fit a single gene for it). Standard errors are not
    computed for matrices: fit the gene of interest as a 1-D array for ``se``.
    """

    @property
    def se(self):  # type: ignore[override]
        raise ValueError(
            "standard errors are computed for one gene at a time: fit that gene's counts "
            "as a 1-D array and read .se from that result"
        )

    def summary(self) -> str:
        n_conv = int(np.sum(self.converged))
        return (
            f"EM fit of zinb on {self.loglik.size} genes: total log-likelihood "
            f"{float(np.sum(self.loglik)):.6f}, {n_conv} converged, "
            f"{self.loglik.size - n_conv} NOT converged, EM-map evaluations per gene "
            f"{int(np.min(self.n_iter))}–{int(np.max(self.n_iter))}"
        )


def _em_map(d: _Data, v: np.ndarray):
    """The EM map on packed coordinates for every gene of ``d``, and ℓ at ``v``."""
    mu, theta, pi = _unpack(v)
    ll, share = _loglik_and_share(d, mu, theta, pi)
    return _pack(*_m_step_arrays(d, share, mu, theta)), ll


def _objective(d: _Data, v: np.ndarray) -> np.ndarray:
    ok = _in_domain(v)
    safe = np.where(ok[:, None], v, np.array([1.0, 0.0, 0.5]))
    ll, _ = _loglik_and_share(d, *_unpack(safe))
    return np.where(ok, ll, -np.inf)


def _squarem_cycle(d, v, ll, step_max, xtol, tol, last_rho):
    """One SQUAREM cycle per gene, with backtracking on the step length, and the stopping rule.

    As :func:`emlib.convergence.squarem_step`: two EM steps :math:`v_1, v_2`, then the
    extrapolation :math:`v + 2\\alpha r + \\alpha^2 (v_2 - 2v_1 + v)` with
    :math:`\\alpha = \\|r\\| / \\|v_2 - 2v_1 + v\\|` clipped to ``[1, step_max]`` and one
    stabilising EM step. Unlike the generic step, a candidate that is invalid or worse than
    :math:`v_2` is not dropped at once: α is halved towards 1 (α ← (α + 1)/2) up to
    :data:`_BACKTRACKS` times, and ``step_max`` is reset to the α that worked. On weakly
    identified genes (EM rate ≈ 0.9996, e.g. a mean of 0.15 with 93 % zeros) the plain
    fallback needs thousands of evaluations; backtracking needs tens.

    The stopping rule of :mod:`emlib.stopping` is applied per gene to the two plain steps
    (rate: :func:`emlib.stopping.slowest_rate` of this cycle's estimate and ``last_rho``); a
    gene that meets it (or ``xtol``) ends at :math:`v_2` (:math:`v_1` when its first step is
    at rounding level) and is not extrapolated. Returns the new points, their ℓ, the EM-map
    evaluations used, which genes converged, the new step bounds, the slowest rates seen
    and the distance bounds.
    """
    v1, _ = _em_map(d, v)
    s1 = stopping.step_sizes(v, v1)
    v2, ll1 = _em_map(d, v1)
    s2 = stopping.step_sizes(v1, v2)
    ll2 = _objective(d, v2)
    used = np.full(v.shape[0], 2)
    rate, rho = stopping.slowest_rate(last_rho, stopping.rate_estimate(s1, s2))
    bound = stopping.aitken_bound(s2, rate)
    small1 = s1 <= stopping.ROUNDING_STEP
    small2 = ~small1 & stopping.is_converged(s2, rate, tol)
    bound = np.where(small1, 0.0, bound)
    if xtol is not None:
        by_x1 = ~small1 & ~small2 & (np.linalg.norm(v1 - v, axis=1) <= xtol)
        by_x2 = ~small1 & ~small2 & ~by_x1 & (np.linalg.norm(v2 - v1, axis=1) <= xtol)
        bound = np.where(by_x1 | by_x2, np.nan, bound)
        small1, small2 = small1 | by_x1, small2 | by_x2
    small = small1 | small2
    r = v1 - v
    w = v2 - v1 - r
    sr2, sv2 = np.sum(r * r, axis=1), np.sum(w * w, axis=1)
    degenerate = (sr2 == 0) | (sv2 == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.clip(np.sqrt(sr2 / sv2), 1.0, step_max)
    alpha = np.where(degenerate, 1.0, alpha)
    first_alpha = alpha.copy()
    candidate, value = v2.copy(), ll2.copy()
    accepted = np.ones(v.shape[0])
    pending = ~degenerate & ~small & (alpha > 1.0)
    floor = ll2 - convergence.MONOTONE_RTOL * np.maximum(np.abs(ll2), 1.0)
    for _ in range(_BACKTRACKS + 1):
        if not pending.any():
            break
        trial = v + 2 * alpha[:, None] * r + alpha[:, None] ** 2 * w
        stabilise = pending & (np.abs(alpha - 1.0) > 0.01) & _in_domain(trial)
        if stabilise.any():
            mapped, _ = _em_map(d, np.where(stabilise[:, None], trial, v2))
            trial = np.where(stabilise[:, None], mapped, trial)
            used = used + stabilise
        trial_value = _objective(d, np.where(pending[:, None], trial, v2))
        ok = pending & np.isfinite(trial_value) & (trial_value >= floor)
        candidate[ok], value[ok], accepted[ok] = trial[ok], trial_value[ok], alpha[ok]
        pending &= ~ok
        alpha = np.where(pending, (alpha + 1.0) / 2.0, alpha)
    grow = (accepted == first_alpha) & (first_alpha == step_max) & ~degenerate
    step_max = np.where(grow, 4.0 * step_max, np.where(accepted < first_alpha, accepted, step_max))
    step_max = np.maximum(step_max, 1.0)
    # Converged genes stop at their last plain step.
    candidate = np.where(small1[:, None], v1, np.where(small2[:, None], v2, candidate))
    value = np.where(small1, ll1, np.where(small2, ll2, value))
    used = np.where(small1, 1, used)
    return candidate, value, used, small, step_max, rho, bound


def _guard(old, new, genes, iteration):
    bad = ~np.isfinite(new) | (
        new < old - convergence.MONOTONE_RTOL * np.maximum(np.abs(old), 1.0)
    )
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise convergence.MonotonicityError(
            f"zinb: the log-likelihood of gene {int(genes[i])} went from {old[i]!r} to "
            f"{new[i]!r} at iteration {iteration}: EM cannot lower the likelihood, so the "
            "E-step and M-step disagree"
        )


def _run_matrix(d: _Data, start, tol, max_iter, accelerate, xtol, record=False):
    """Every gene's EM at once; returns the arrays of a :class:`ZINBMatrixResult`.

    Genes that meet the stopping rule leave the active set; once a quarter of them have,
    the data are cut down to the live genes. With ``record`` (one gene), the packed
    parameters after every iteration are kept too.
    """
    g = d.n_genes
    v = _pack(*start)
    ll, _ = _loglik_and_share(d, *start)
    if not np.all(np.isfinite(ll)):
        bad = np.flatnonzero(~np.isfinite(ll))
        raise ValueError(
            f"zinb: the log-likelihood at the starting values is -inf for gene(s) "
            f"{bad[:10].tolist()}; the data are impossible under them (choose starting "
            "values that give every count positive probability, e.g. pi < 1)"
        )
    n_iter = np.zeros(g, dtype=np.int64)
    converged = np.zeros(g, dtype=bool)
    step_max = np.ones(g)
    last_rho = np.full(g, np.inf)
    last_step = np.full(g, np.inf)
    bound = np.full(g, np.inf)
    polish = accelerate == "squarem"
    next_polish = np.full(g, POLISH_AFTER, dtype=np.int64)
    record_genes = [np.arange(g)]
    record_values = [ll.copy()]
    path = [v[0].copy()] if record else None
    sub_genes = np.arange(g)  # the genes of ``sub``; the loop computes on all of them
    sub = d
    live = np.ones(g, dtype=bool)  # which genes of ``sub`` are still iterating
    iteration = 0
    while True:
        iteration += 1
        va, lla = v[sub_genes], ll[sub_genes]
        if accelerate == "squarem" and np.all(max_iter - n_iter[sub_genes[live]] >= 3):
            v_new, ll_new, used, done, new_step_max, rho, new_bound = _squarem_cycle(
                sub, va, lla, step_max[sub_genes], xtol, tol, last_rho[sub_genes]
            )
            new_step = last_step[sub_genes]
        else:
            v_new, _ = _em_map(sub, va)
            ll_new, _ = _loglik_and_share(sub, *_unpack(v_new))
            used = np.ones(sub_genes.size, dtype=np.int64)
            new_step_max = step_max[sub_genes]
            new_step = stopping.step_sizes(va, v_new)
            rate, rho = stopping.slowest_rate(
                last_rho[sub_genes], stopping.rate_estimate(last_step[sub_genes], new_step)
            )
            new_bound = stopping.aitken_bound(new_step, rate)
            done = stopping.is_converged(new_step, rate, tol)
            if xtol is not None:
                by_x = ~done & (np.linalg.norm(v_new - va, axis=1) <= xtol)
                new_bound = np.where(by_x, np.nan, new_bound)
                done |= by_x
        genes = sub_genes[live]
        _guard(lla[live], ll_new[live], genes, iteration)
        n_iter[genes] += used[live]
        done = done[live]
        v[genes], ll[genes], step_max[genes] = v_new[live], ll_new[live], new_step_max[live]
        last_rho[genes], last_step[genes], bound[genes] = (
            rho[live],
            new_step[live],
            new_bound[live],
        )
        record_genes.append(genes)
        record_values.append(ll_new[live])
        if record and live[0]:
            path.append(v_new[0].copy())
        converged[genes[done]] = True
        live[live] = ~done & (n_iter[genes] < max_iter)
        if polish:
            slow = live & (n_iter[sub_genes] >= next_polish[sub_genes])
            if slow.any():
                cand = sub_genes[slow]
                v_p, ll_p, steps, certified, p_bound, moves = _polish(
                    _subset(d, cand),
                    v[cand],
                    ll[cand],
                    tol,
                    np.minimum(_NEWTON_STEPS, max_iter - n_iter[cand]),
                )
                for moved, value, point in moves:
                    record_genes.append(cand[moved])
                    record_values.append(value)
                    if record:
                        path.append(point[0].copy())
                v[cand], ll[cand] = v_p, ll_p
                n_iter[cand] += steps
                converged[cand[certified]] = True
                bound[cand[certified]] = p_bound[certified]
                next_polish[cand] *= 4
                live[slow] = ~certified & (n_iter[cand] < max_iter)
        if not live.any():
            break
        if live.sum() <= 0.75 * live.size:
            sub_genes = sub_genes[live]
            sub = _subset(d, sub_genes)
            live = np.ones(sub_genes.size, dtype=bool)
    genes = np.concatenate(record_genes)
    values = np.concatenate(record_values)
    order = np.argsort(genes, kind="stable")
    history = np.split(values[order], np.cumsum(np.bincount(genes, minlength=g))[:-1])
    return v, ll, n_iter, converged, history, bound, path


def _matrix_result(d, v, ll, n_iter, converged, history, bound) -> ZINBMatrixResult:
    mu, theta, pi = _unpack(v)
    return ZINBMatrixResult(
        params={"mu": mu, "theta": theta, "pi": pi},
        loglik=ll,
        n_iter=n_iter,
        converged=converged,
        loglik_history=history,
        param_history=[],
        _model=MODEL,
        _prepared=d,
        n_iter_total=int(n_iter.sum()),
        error_bound=bound,
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


def _newton_direction(grad, hess, free):
    """Newton's step −H⁻¹g on the free coordinates (0 on the others), and definiteness."""
    k = grad.shape[0]
    eye = np.broadcast_to(np.eye(3), (k, 3, 3))
    both = free[:, :, None] & free[:, None, :]
    neg = np.where(both, -hess, eye)
    with np.errstate(invalid="ignore"):
        ok = np.all(np.isfinite(neg), axis=(1, 2)) & np.all(np.isfinite(grad), axis=1)
        neg = np.where(ok[:, None, None], neg, eye)
        definite = ok & (np.linalg.eigvalsh(neg)[:, 0] > 0)
    neg = np.where(definite[:, None, None], neg, eye)
    g = np.where(free & definite[:, None], grad, 0.0)
    return np.linalg.solve(neg, g[:, :, None])[:, :, 0], definite


def _newton_point(v, delta, t):
    """The packed point reached from ``v`` by ``t`` times a step in (log μ, log θ, π)."""
    mu, theta, pi = _unpack(v)
    log_theta = np.log(np.where(np.isinf(theta), 1.0, theta)) + t * delta[:, 1]
    log_theta = np.clip(log_theta, _negbin._LOG_THETA_MIN, _negbin._LOG_THETA_MAX)
    new_theta = np.where(np.isinf(theta), np.inf, np.exp(log_theta))
    new_pi = np.clip(pi + t * delta[:, 2], 0.0, _PI_MAX)
    return _pack(mu * np.exp(t * delta[:, 0]), new_theta, new_pi)


def _polish(d: _Data, v, ll, tol, budget):
    """Safeguarded Newton on the observed-data ℓ of every gene of ``d`` (see :func:`fit`).

    Works in (log μ, log θ, π); θ = ∞ stays fixed (the Poisson face) and π = 0 is held
    (an active bound) while ∂ℓ/∂π ≤ 0 there. Each step is the Newton step on the free
    coordinates, with π projected onto [0, 1) and the step halved until ℓ does not
    decrease (:data:`_NEWTON_HALVINGS` times at most). A gene is certified at its current
    point when the free block of the Hessian is negative definite, the Karush-Kuhn-Tucker
    signs hold on the held coordinates (∂ℓ/∂π ≤ 0 at π = 0, ∂ℓ/∂(1/θ) ≤ 0 at θ = ∞) and the
    Newton step from it is at most ``tol`` in the stopping rule's measure
    (:func:`emlib.stopping.step_sizes` on (μ, 1/θ, π)), or at rounding level; it is then
    returned at that point, unmoved. A gene whose Hessian is not negative definite, whose
    held coordinates fail their sign test, whose step cannot be made to keep ℓ, or which
    runs out of its ``budget`` (Newton steps, one per gene) is left uncertified, at the best
    point reached. Returns the new points, their ℓ, the Newton steps taken (evaluations of
    the gradient and Hessian), which genes were certified, the certified distances, and the
    accepted steps as (genes, their new ℓ, their new points) in order.
    """
    k = d.n_genes
    v, ll = v.copy(), ll.copy()
    certified = np.zeros(k, dtype=bool)
    failed = np.zeros(k, dtype=bool)
    steps = np.zeros(k, dtype=np.int64)
    bound = np.full(k, np.inf)
    moves = []
    budget = np.broadcast_to(budget, (k,))
    while True:
        work = np.flatnonzero(~certified & ~failed & (steps < budget))
        if work.size == 0:
            break
        sub = _subset(d, work) if work.size < k else d
        vw = v[work]
        mu, theta, pi = _unpack(vw)
        grad, hess, dphi = _newton_terms(sub, mu, theta, pi)
        steps[work] += 1
        free = np.ones((work.size, 3), dtype=bool)
        free[:, 1] = np.isfinite(theta)
        free[:, 2] = ~((pi == 0.0) & (grad[:, 2] <= 0.0))
        delta, definite = _newton_direction(grad, hess, free)
        kkt = ~(np.isinf(theta) & ~(dphi <= 0.0))
        target = _newton_point(vw, delta, 1.0)
        distance = stopping.step_sizes(vw, target)
        done = definite & kkt & ((distance <= tol) | (distance <= stopping.ROUNDING_STEP))
        certified[work[done]] = True
        bound[work[done]] = distance[done]
        failed[work[~definite | ~kkt]] = True
        go = definite & kkt & ~done
        # Long steps are cut to a factor e in μ and θ: Newton is only trusted near the top.
        longest = np.max(np.abs(delta[:, :2]), axis=1)
        delta = delta / np.maximum(longest, 1.0)[:, None]
        t = np.ones(work.size)
        pending = go.copy()
        gain = np.sum(grad * delta, axis=1)  # ℓ's first-order gain along the step
        noise = _LL_ROUNDING * np.maximum(np.abs(ll[work]), 1.0)
        # Towards θ = ∞ Newton in log θ only creeps: try the Poisson face itself.
        face = go & np.isfinite(theta) & (np.log(theta) + delta[:, 1] > _LOG_THETA_FACE)
        if face.any():
            trial = _newton_point(vw, delta, 1.0)
            trial[:, 1] = 0.0
            value = _objective(sub, np.where(face[:, None], trial, vw))
            ok = face & (value >= ll[work])
            v[work[ok]], ll[work[ok]] = trial[ok], value[ok]
            pending &= ~ok
        for _ in range(_NEWTON_HALVINGS + 1):
            if not pending.any():
                break
            trial = _newton_point(vw, delta, t)
            value = _objective(sub, np.where(pending[:, None], trial, vw))
            unresolved = (t * gain <= noise) & (value >= ll[work] - noise)
            ok = pending & ((value >= ll[work]) | unresolved)
            moved = work[ok]
            v[moved], ll[moved] = trial[ok], value[ok]
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
) -> EMResult:
    """Maximum-likelihood (μ, θ, π) by EM, for one vector of counts or every gene of a matrix.

    Parameters
    ----------
    data : array_like of counts
        1-D (one gene), or 2-D cells × genes (every gene fitted at once).
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

    Returns
    -------
    EMResult
        For 1-D data, the usual result (floats, ``se``, ``summary()``). For a matrix a
        :class:`ZINBMatrixResult`: ``params`` and ``loglik`` have one entry per gene,
        ``n_iter`` and ``converged`` are per gene, ``loglik_history`` is a list of per-gene
        histories (each non-decreasing; the monotonicity guard is applied to every gene at
        every iteration).

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
    d = _prepare(data, size_factors)
    start = _check_params(init, d.n_genes) if init is not None else _default_init(d)
    *arrays, path = _run_matrix(d, start, tol, max_iter, accelerate, xtol, record=not d.matrix)
    if not d.matrix:
        result = _gene_result(d, *arrays, path)
        if not result.converged:
            warnings.warn(
                non_convergence_message(
                    "zinb", result.n_iter, max_iter, tol, result.error_bound, accelerate
                ),
                convergence.ConvergenceWarning,
                stacklevel=2,
            )
        return result
    result = _matrix_result(d, *arrays)
    if not result.converged.all():
        stuck = np.flatnonzero(~result.converged)
        shown = ", ".join(str(int(i)) for i in stuck[:10]) + (", ..." if stuck.size > 10 else "")
        worst = float(np.max(result.error_bound[stuck]))
        warnings.warn(
            f"zinb: {stuck.size} of {d.n_genes} genes stopped after max_iter={max_iter} "
            f"EM-map evaluations before meeting tol={tol:g} (genes {shown}); the largest "
            f"estimated distance to the maximum among them is {worst:.1e} (relative; "
            "their error_bound entries give each). Raise max_iter"
            + (
                ", or try other starting values (init)"
                if accelerate
                else ", or pass accelerate='squarem'"
            ),
            convergence.ConvergenceWarning,
            stacklevel=2,
        )
    return result

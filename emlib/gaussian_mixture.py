"""Finite mixture of k d-dimensional normal distributions with full covariance matrices.

.. math:: f(x) = \\sum_{j=1}^k w_j \\, \\phi_d(x; \\mu_j, \\Sigma_j), \\qquad
          \\log \\phi_d(x; \\mu, \\Sigma) = -\\tfrac12 \\lVert L^{-1}(x - \\mu) \\rVert^2
          - \\sum_{a=1}^d \\log L_{aa} - \\tfrac d2 \\log 2\\pi,

with :math:`\\Sigma = L L^\\top` the Cholesky factorisation. The latent variable is each
observation's component. The E-step gives responsibilities
:math:`r_{ij} \\propto w_j \\phi_d(x_i; \\mu_j, \\Sigma_j)` (a log-sum-exp over components);
the M-step is a weighted mean and covariance per component:

.. math::

    w_j = \\frac{N_j}{n}, \\quad \\mu_j = \\frac{1}{N_j}\\sum_i r_{ij} x_i, \\quad
    \\Sigma_j = \\frac{1}{N_j}\\sum_i r_{ij} (x_i - \\mu_j)(x_i - \\mu_j)^\\top,
    \\qquad N_j = \\sum_i r_{ij}.

How it is computed. The data are first centred and whitened, :math:`\\tilde x = A^{-1}(x -
\\bar x)` with :math:`A A^\\top` the Cholesky factorisation of the data's covariance, so
that every quantity below is of order one whatever the units of the columns; parameters
are mapped back (:math:`\\mu = \\bar x + A\\tilde\\mu`, :math:`\\Sigma = A\\tilde\\Sigma A^\\top`)
and :math:`\\log|\\det A|` is subtracted, so every log-likelihood is that of the data as
given. Each component's log joint density is a quadratic in :math:`\\tilde x`,

.. math:: \\log w_j \\phi_d = -\\tfrac12 \\tilde x^\\top P_j \\tilde x
          + \\tilde x^\\top P_j \\tilde\\mu_j + c_j,
          \\qquad P_j = L_j^{-\\top} L_j^{-1},

whose coefficients come from the Cholesky factor :math:`L_j` of :math:`\\tilde\\Sigma_j`;
with the columns :math:`(\\tilde x_a \\tilde x_b)_{a \\le b}, \\tilde x, 1` computed once,
the E-step is one matrix product for all components, a log-sum-exp over components in
blocks that stay in cache, and one more product gives every component's weighted sums
for the M-step. A component narrow compared with its distance from the data's centre
(where the expanded quadratic would cancel catastrophically) takes the direct route
instead: :math:`z = L_j^{-1}(\\tilde x - \\tilde\\mu_j)` by a triangular solve, and its
weighted sums are taken about its current mean.

The likelihood is unbounded when a component collapses onto a point or a lower-
dimensional subspace (:math:`\\det\\Sigma_j \\to 0`). The M-step therefore keeps every
eigenvalue of :math:`\\tilde\\Sigma_j` at or above :data:`COV_FLOOR` (in the data's own
units: the variance of a component along any direction u is at least ``COV_FLOOR`` times
the data's variance along u, i.e. its sd at least 1e-3 times the data's). Clipping the
eigenvalues of the weighted scatter matrix is the exact maximiser of the M-step's
objective over that constraint set, so EM stays monotone. :func:`fit` warns, naming the
components, when a fitted covariance ends on the floor, and lists them in
``result.collapsed``.

Standard errors (``result.se``) come from the driver's finite-difference Hessian of ℓ in
the packed coordinates, mapped to the parameters by the delta method: about ``2 p²``
evaluations of ℓ for ``p = k - 1 + k d + k d (d + 1) / 2`` free coordinates, so they are
practical for small d and k only.

Parameters: ``weights`` (k,), ``means`` (k, d), ``covariances`` (k, d, d); components
sorted by their means (first coordinate first). Data: an (n, d) array, one row per
observation.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, fields
from functools import cached_property

import numpy as np
from scipy.linalg import lapack

from emlib import _mixture, _validation, _warnings, em
from emlib._validation import check_init_keys, check_weights
from emlib.em import DEFAULT_ACCELERATE, DEFAULT_MAX_ITER, DEFAULT_TOL, EMModel, EMResult

PARAM_NAMES = ("weights", "means", "covariances")
#: Every eigenvalue of a whitened covariance is kept at or above this (sd 1e-3 of the data's).
COV_FLOOR = 1e-6
#: Components with sqrt(λ_min(Σ̃) / max(1, |μ̃|²)) below this take the direct Mahalanobis route.
_NARROW = 0.05
_LOG_2PI = np.log(2 * np.pi)
_TINY = np.finfo(float).tiny


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def _tri_inv(lower: np.ndarray) -> np.ndarray:
    """Inverse of a lower-triangular matrix by LAPACK's dtrtri.

    Not scipy.linalg.solve_triangular: its threaded OpenBLAS trsm took ~10 ms a call on
    a 2 x 2 system on a busy machine (dtrtri: 1 µs), and the triangular solves of the
    E-step are GEMMs with this inverse instead.
    """
    inv, info = lapack.dtrtri(lower, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"singular triangular factor (dtrtri info {info})")
    return inv


@dataclass(frozen=True)
class _Data:
    """Whitened data as feature rows ((x̃_a x̃_b)_{a≤b}, x̃, 1), shape (D, n)."""

    features: np.ndarray
    n: int
    d: int
    shift: np.ndarray  # the data's mean, (d,)
    chol: np.ndarray  # A, lower Cholesky factor of the data's covariance (or I)
    chol_inv: np.ndarray  # A⁻¹
    matrix: np.ndarray  # the data as given, (n, d)
    log_det_chol: float  # log |det A|
    sd: np.ndarray  # the data's sd per column (the stopping rule's units)

    @cached_property
    def data(self) -> np.ndarray:
        """The data as given, transposed to (d, n) (for the narrow components only)."""
        return np.ascontiguousarray(self.matrix.T)

    @property
    def x_rows(self) -> slice:
        q = self.d * (self.d + 1) // 2
        return slice(q, q + self.d)

    @property
    def n_quad(self) -> int:
        return self.d * (self.d + 1) // 2


def as_matrix(data) -> np.ndarray:
    """Return ``data`` as a finite (n, d) float array with n, d >= 1, or raise ValueError."""
    return _validation.as_matrix(data, name="gaussian mixture data")


def _prepare(data, *, require_spread: bool = False) -> _Data:
    X = as_matrix(data)
    n, d = X.shape
    shift = X.mean(axis=0)
    centred = X - shift
    cov = centred.T @ centred / n
    chol = None
    scale = np.sqrt(np.diag(cov))
    if np.all(scale > 0):
        # Cholesky of the correlation matrix: rank deficiency shows as a tiny pivot.
        try:
            corr_chol = np.linalg.cholesky(cov / np.outer(scale, scale))
            if np.min(np.diag(corr_chol)) > 1e-7:
                chol = scale[:, None] * corr_chol
        except np.linalg.LinAlgError:
            pass
    if chol is None:
        if require_spread:
            rank = int(np.linalg.matrix_rank(centred)) if n > 1 else 0
            raise ValueError(
                "the data have no spread in some direction (their covariance matrix has rank "
                f"{rank} < d = {d}: constant columns, collinear columns, or n <= d rows); a "
                "Gaussian mixture's likelihood is unbounded there. Drop the redundant columns"
            )
        chol = np.diag(np.where(scale > 0, scale, 1.0))
    chol_inv = _tri_inv(chol)
    white = chol_inv @ centred.T  # (d, n)
    ia, ib = np.triu_indices(d)
    q = ia.size
    features = np.empty((q + d + 1, n))
    for row, (a, b) in enumerate(zip(ia, ib, strict=True)):
        np.multiply(white[a], white[b], out=features[row])
    features[q : q + d] = white
    features[-1] = 1.0
    return _Data(
        features=features,
        n=n,
        d=d,
        shift=shift,
        chol=chol,
        chol_inv=chol_inv,
        matrix=X,
        log_det_chol=float(np.log(np.diag(chol)).sum()),
        sd=np.where(scale > 0, scale, 1.0),
    )


# ---------------------------------------------------------------------------------------
# Parameters: checks, whitening, packing
# ---------------------------------------------------------------------------------------


def _check_params(params, k: int | None = None, d: int | None = None) -> dict:
    """Validate weights (k,), means (k, d), covariances (k, d, d) symmetric positive definite."""
    check_init_keys(params, PARAM_NAMES)
    arrays = {}
    for name in PARAM_NAMES:
        try:
            arrays[name] = np.asarray(params[name], dtype=float)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be numeric; got {params[name]!r}") from err
        if not np.all(np.isfinite(arrays[name])):
            raise ValueError(f"{name} must be finite; got {arrays[name]}")
    weights = np.atleast_1d(arrays["weights"])
    if weights.ndim != 1 or (k is not None and weights.size != k):
        want = f"{k} entries" if k is not None else "one entry per component"
        raise ValueError(f"weights must be a 1-D array with {want}; got shape {weights.shape}")
    k = weights.size
    if np.any(weights <= 0) or np.any(weights > 1):
        raise ValueError(
            f"weights must be positive probabilities (a component of weight 0 is empty: drop "
            f"it); got {weights}"
        )
    weights = check_weights(weights)
    means = arrays["means"]
    if means.ndim != 2 or means.shape[0] != k or (d is not None and means.shape[1] != d):
        want = f"({k}, {d})" if d is not None else f"({k}, d)"
        raise ValueError(f"means must have shape {want}, one row per component; got {means.shape}")
    d = means.shape[1]
    cov = arrays["covariances"]
    if cov.shape != (k, d, d):
        raise ValueError(
            f"covariances must have shape ({k}, {d}, {d}), one d x d matrix per component; "
            f"got {cov.shape}"
        )
    for j in range(k):
        if not np.allclose(cov[j], cov[j].T, rtol=1e-10, atol=0):
            raise ValueError(f"covariances[{j}] is not symmetric: {cov[j].tolist()}")
        try:
            np.linalg.cholesky(cov[j])
        except np.linalg.LinAlgError:
            raise ValueError(
                f"covariances[{j}] is not positive definite (eigenvalues "
                f"{np.linalg.eigvalsh(cov[j]).tolist()})"
            ) from None
    cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
    return {"weights": weights, "means": means.copy(), "covariances": cov}


def _to_white(d: _Data, params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-weights, whitened means (k, d) and Cholesky factors of whitened covariances."""
    mu = (params["means"] - d.shift) @ d.chol_inv.T
    chol_w = d.chol_inv @ np.linalg.cholesky(params["covariances"])
    # A⁻¹L is lower triangular; make its diagonal positive (it is, up to rounding).
    return _mixture.log_weights(params["weights"]), mu, chol_w


def _from_white(d: _Data, weights, mu_w, cov_w) -> dict:
    A = d.chol
    return {
        "weights": weights,
        "means": mu_w @ A.T + d.shift,
        "covariances": A @ cov_w @ A.T,
    }


def _white_cov(d: _Data, cov: np.ndarray) -> np.ndarray:
    return d.chol_inv @ cov @ d.chol_inv.T


def _pack(params) -> np.ndarray:
    """Free coordinates: log(w_j / w_k) for j < k, the means, each Cholesky factor's lower
    triangle row by row with its diagonal on the log scale.

    Every finite vector maps back to valid parameters: weights in the simplex and
    positive definite covariances, so SQUAREM's extrapolations stay in the model.
    """
    w = params["weights"]
    dim = params["means"].shape[1]
    chol = np.linalg.cholesky(params["covariances"])
    diag = np.arange(dim)
    chol[:, diag, diag] = np.log(chol[:, diag, diag])
    il = np.tril_indices(dim)
    with np.errstate(divide="ignore"):
        ratios = np.log(w[:-1]) - np.log(w[-1])
    return np.concatenate([ratios, params["means"].ravel(), chol[:, il[0], il[1]].ravel()])


def _unpack_kd(v: np.ndarray, k: int, dim: int) -> dict:
    z = np.append(v[: k - 1], 0.0)
    w = np.exp(z - z.max())
    w /= w.sum()
    means = v[k - 1 : k - 1 + k * dim].reshape(k, dim).copy()
    il = np.tril_indices(dim)
    chol = np.zeros((k, dim, dim))
    chol[:, il[0], il[1]] = v[k - 1 + k * dim :].reshape(k, -1)
    diag = np.arange(dim)
    chol[:, diag, diag] = np.exp(chol[:, diag, diag])
    return {"weights": w, "means": means, "covariances": chol @ np.swapaxes(chol, 1, 2)}


def _in_domain_kd(v: np.ndarray, k: int, dim: int) -> bool:
    if not np.all(np.isfinite(v)):
        return False
    il = np.tril_indices(dim)
    on_diag = np.flatnonzero(il[0] == il[1])
    log_diag = v[k - 1 + k * dim :].reshape(k, -1)[:, on_diag]
    return bool(np.all(np.abs(log_diag) < 300))


def _sort(params) -> dict:
    order = np.lexsort(params["means"].T[::-1])
    return {name: np.asarray(value)[order] for name, value in params.items()}


# ---------------------------------------------------------------------------------------
# E-step and M-step on the whitened features
# ---------------------------------------------------------------------------------------

#: Observations per block: the feature rows of a block and its (k, block) log joint stay
#: in cache through the log-sum-exp and the product for the M-step's sums.
_BLOCK_ELEMENTS = 1 << 17


def _block(d: _Data) -> int:
    return max(1024, _BLOCK_ELEMENTS // d.features.shape[0])


def _components(d: _Data, params):
    """Quadratic coefficients (k, D) of each log joint density, and the narrow components.

    Returns the coefficients and a list of (j, μ_j, L_j⁻¹, constant_j), in the data's own
    coordinates, for the components that take the direct route.
    """
    log_w, mu, chol = _to_white(d, params)
    k, dim = mu.shape
    ia, ib = np.triu_indices(dim)
    coef = np.empty((k, d.features.shape[0]))
    narrow = []
    for j in range(k):
        inv = _tri_inv(chol[j])  # L̃⁻¹
        prec = inv.T @ inv
        half_log_det = np.log(np.diag(chol[j])).sum()
        constant = log_w[j] - half_log_det - 0.5 * dim * _LOG_2PI - d.log_det_chol
        m = inv @ mu[j]
        coef[j, : ia.size] = np.where(ia == ib, -0.5, -1.0) * prec[ia, ib]
        coef[j, d.x_rows] = prec @ mu[j]
        coef[j, -1] = constant - 0.5 * (m @ m)
        # The expanded quadratic loses about eps · |μ̃|² / λ_min(Σ̃) to cancellation.
        lam_min = np.linalg.eigvalsh(chol[j] @ chol[j].T)[0]
        if lam_min < _NARROW**2 * max(1.0, mu[j] @ mu[j]):
            # x - μ in the data's coordinates: whitening first would cost eps·|x̃| of a
            # difference that is small compared with |x̃| here.
            chol_x = np.linalg.cholesky(params["covariances"][j])
            constant_x = log_w[j] - np.log(np.diag(chol_x)).sum() - 0.5 * dim * _LOG_2PI
            narrow.append((j, params["means"][j], _tri_inv(chol_x), constant_x))
    return coef, narrow


def _e_step(d: _Data, params):
    coef, narrow = _components(d, params)
    k = coef.shape[0]
    stats = np.zeros((k, d.features.shape[0]))
    shifted = {j: (mu, np.zeros(d.d), np.zeros((d.d, d.d))) for j, mu, _, _ in narrow}
    ll = 0.0
    block = _block(d)
    for start in range(0, d.n, block):
        rows = d.features[:, start : start + block]
        log_joint = coef @ rows
        centred = {}
        for j, mu, inv, constant in narrow:
            y = d.data[:, start : start + block] - mu[:, None]
            z = inv @ y
            log_joint[j] = constant - 0.5 * np.einsum("ij,ij->j", z, z)
            centred[j] = y
        # Log-sum-exp over components, in place to keep the passes over the block few.
        top = log_joint.max(axis=0)
        log_joint -= top
        np.exp(log_joint, out=log_joint)
        total = log_joint.sum(axis=0)
        log_joint /= total
        ll += np.log(total).sum() + top.sum()
        # Weighted sums Σ r φ(x̃) per component: the complete-data statistics.
        stats += log_joint @ rows.T
        for j, y in centred.items():
            _, sum_y, scatter = shifted[j]
            r = log_joint[j]
            sum_y += y @ r
            scatter += (y * r) @ y.T
    return (stats, shifted), float(ll)


def _m_step(d: _Data, expected) -> dict:
    """Weights, means and floored covariances from the E-step's sums.

    ``expected`` is the (k, D) sums of the whitened features and, for the narrow
    components, (c_j, Σ r (x - c_j), Σ r (x - c_j)(x - c_j)ᵀ) about their previous mean
    c_j in the data's coordinates.
    """
    stats, shifted = expected
    dim = d.d
    ia, ib = np.triu_indices(dim)
    size = np.maximum(stats[:, -1], _TINY)
    mu = stats[:, d.x_rows] / size[:, None]
    second = np.empty((size.size, dim, dim))
    second[:, ia, ib] = stats[:, : ia.size]
    second[:, ib, ia] = stats[:, : ia.size]
    cov = second / size[:, None, None] - mu[:, :, None] * mu[:, None, :]
    params = _from_white(d, size / d.n, mu, cov)
    for j, (centre, sum_y, scatter) in shifted.items():
        # Sums about the component's previous mean: no cancellation for a narrow component.
        delta = sum_y / size[j]
        params["means"][j] = centre + delta
        params["covariances"][j] = scatter / size[j] - np.outer(delta, delta)
    cov = params["covariances"]
    cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
    floored_w, floored = _floor(_white_cov(d, cov))
    for j in np.flatnonzero(floored.any(axis=1)):
        cov[j] = d.chol @ floored_w[j] @ d.chol.T
        cov[j] = 0.5 * (cov[j] + cov[j].T)
    params["covariances"] = cov
    return params


def _floor(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip the eigenvalues of each whitened covariance at :data:`COV_FLOOR`.

    The clipped matrix maximises ``-log det Σ - tr(Σ⁻¹ S)`` over ``{Σ : Σ ⪰ COV_FLOOR · I}``
    (the M-step's objective for the scatter S), so the floored M-step is still exact.
    """
    lam, vec = np.linalg.eigh(cov)
    floored = lam < COV_FLOOR
    for j in np.flatnonzero(floored.any(axis=1)):
        clipped = np.maximum(lam[j], COV_FLOOR)
        cov[j] = (vec[j] * clipped) @ vec[j].T
        cov[j] = 0.5 * (cov[j] + cov[j].T)
    return cov, floored


def _floored_components(d: _Data, params) -> tuple[np.ndarray, np.ndarray]:
    """Per component: how many eigenvalues of its whitened covariance sit on the floor."""
    lam = np.linalg.eigvalsh(_white_cov(d, params["covariances"]))
    on_floor = lam <= COV_FLOOR * (1 + 1e-6)
    return on_floor.sum(axis=1), lam


def _scale(d: _Data, theta: np.ndarray) -> np.ndarray:
    """The stopping rule's units: 1 for log-weight ratios and log-diagonals of the Cholesky
    factors (relative steps), the data's sd for means and off-diagonal factors."""
    k, dim = _shape_of_data(d, theta.size)
    il = np.tril_indices(dim)
    chol_units = np.where(il[0] == il[1], 1.0, d.sd[il[0]])
    return np.concatenate([np.ones(k - 1), np.tile(d.sd, k), np.tile(chol_units, k)])


def _shape_of_data(d: _Data, size: int) -> tuple[int, int]:
    per = 1 + d.d + d.d * (d.d + 1) // 2
    return (size + 1) // per, d.d


def _make_model(k: int, dim: int) -> EMModel:
    return EMModel(
        name="gaussian_mixture",
        e_step=_e_step,
        m_step=_m_step,
        pack=_pack,
        unpack=lambda v: _unpack_kd(v, k, dim),
        in_domain=lambda v: _in_domain_kd(v, k, dim),
        finalize=_sort,
        scale=_scale,
    )


# ---------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------


@dataclass
class GaussianMixtureResult(EMResult):
    """An :class:`~emlib.em.EMResult` with the collapse flag.

    Attributes
    ----------
    collapsed : tuple of int
        The components (indices into the sorted result) whose covariance has at least one
        eigenvalue held at the floor: they collapsed onto a point or a subspace.
    """

    collapsed: tuple = field(default=())


# ---------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------


def e_step(data, params) -> np.ndarray:
    """Responsibilities: posterior probability of each component for each observation.

    Parameters
    ----------
    data : array_like of shape (n, d)
    params : dict
        ``weights`` (k,), ``means`` (k, d), ``covariances`` (k, d, d).

    Returns
    -------
    ndarray of shape (n, k)
        :math:`r_{ij} = w_j \\phi_d(x_i; \\mu_j, \\Sigma_j) / \\sum_l w_l
        \\phi_d(x_i; \\mu_l, \\Sigma_l)`, computed in log space.
    """
    d = _prepare(data)
    params = _check_params(params, d=d.d)
    coef, narrow = _components(d, params)
    log_joint = coef @ d.features
    for j, mu, inv, constant in narrow:
        z = inv @ (d.data - mu[:, None])
        log_joint[j] = constant - 0.5 * np.einsum("ij,ij->j", z, z)
    resp, _ = _mixture.normalise_log_rows(log_joint)
    return resp.T


def m_step(data, resp) -> dict:
    """Weights, means and covariances from responsibilities of shape (n, k).

    Parameters
    ----------
    data : array_like of shape (n, d)
    resp : array_like of shape (n, k)
        Non-negative, rows summing to one, every column with some mass.

    Notes
    -----
    .. math:: w_j = N_j / n, \\quad \\mu_j = \\sum_i r_{ij} x_i / N_j, \\quad
              \\Sigma_j = \\sum_i r_{ij} (x_i - \\mu_j)(x_i - \\mu_j)^\\top / N_j,

    each covariance's eigenvalues (in the data's whitened units) kept at or above
    :data:`COV_FLOOR`.
    """
    d = _prepare(data)
    resp = _mixture.check_resp(resp, d.n).T
    size = resp.sum(axis=1)
    shifted = {}
    for j in range(resp.shape[0]):
        # Two passes: the mean, then the scatter about it.
        centre = d.data @ resp[j] / size[j]
        y = d.data - centre[:, None]
        shifted[j] = (centre, y @ resp[j], (y * resp[j]) @ y.T)
    return _m_step(d, (resp @ d.features.T, shifted))


def loglik(data, params) -> float:
    """Observed-data log-likelihood, every constant included.

    Parameters
    ----------
    data : array_like of shape (n, d)
    params : dict
        ``weights`` (k,), ``means`` (k, d), ``covariances`` (k, d, d).

    Notes
    -----
    .. math:: \\ell = \\sum_{i=1}^n \\log \\sum_{j=1}^k w_j \\phi_d(x_i; \\mu_j, \\Sigma_j)
    """
    d = _prepare(data)
    return _e_step(d, _check_params(params, d=d.d))[1]


def check_k(k, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be a whole number of components; got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    if k > n:
        raise ValueError(f"k={k} components need at least {k} observations; got n = {n}")
    return k


#: Points used by the k-means start (a random subsample of larger data).
_INIT_SAMPLE = 20_000


def _kmeans_start(d: _Data, k: int, rng: np.random.Generator) -> dict:
    white = d.features[d.x_rows].T  # (n, d)
    if d.n > _INIT_SAMPLE:
        white = white[rng.choice(d.n, _INIT_SAMPLE, replace=False)]
    m = white.shape[0]
    # k-means++ seeding, then Lloyd's iterations.
    centres = [white[rng.integers(m)]]
    dist = ((white - centres[0]) ** 2).sum(axis=1)
    for _ in range(k - 1):
        total = dist.sum()
        i = rng.choice(m, p=dist / total) if total > 0 else rng.integers(m)
        centres.append(white[i])
        dist = np.minimum(dist, ((white - white[i]) ** 2).sum(axis=1))
    centres = np.array(centres)
    label = None
    for _ in range(50):
        sq = ((white[:, None, :] - centres[None]) ** 2).sum(axis=2)
        new = sq.argmin(axis=1)
        if label is not None and np.array_equal(new, label):
            break
        label = new
        for j in range(k):
            if np.any(label == j):
                centres[j] = white[label == j].mean(axis=0)
    counts = np.bincount(label, minlength=k)
    cov = np.empty((k, d.d, d.d))
    for j in range(k):
        members = white[label == j]
        if counts[j] > d.d:
            cov[j] = np.cov(members.T, bias=True).reshape(d.d, d.d)
        else:
            cov[j] = np.eye(d.d) / k**2
    lam, vec = np.linalg.eigh(cov)
    cov = (vec * np.maximum(lam, 1e-3)[:, None, :]) @ np.swapaxes(vec, 1, 2)
    weights = (counts + 1) / (m + k)
    return _from_white(d, weights / weights.sum(), centres, cov)


def default_init(data, k: int = 2, *, seed=_mixture.DEFAULT_SEED) -> dict:
    """The default start: k-means++ seeding and Lloyd's k-means on the whitened data.

    Weights are the cluster fractions, means the cluster centres, covariances the
    within-cluster covariances (eigenvalues at least 1e-3 of the data's variance; the
    identity over k² for a cluster of at most d points). Larger data are subsampled to
    20,000 points.
    """
    d = _prepare(data, require_spread=True)
    k = check_k(k, d.n)
    return _kmeans_start(d, k, np.random.default_rng(seed))


def _start_on_floor(d: _Data, params: dict) -> dict:
    """Raise a start's whitened eigenvalues to the floor, with a warning (EM would first
    lower ℓ to reach the constraint set, and the monotonicity guard would stop it)."""
    cov_w = _white_cov(d, params["covariances"])
    cov_w = 0.5 * (cov_w + np.swapaxes(cov_w, 1, 2))
    floored_cov, floored = _floor(cov_w)
    if floored.any():
        bad = np.flatnonzero(floored.any(axis=1)).tolist()
        _warnings.warn(
            f"gaussian_mixture: init covariance(s) of component(s) {bad} are narrower than "
            f"the floor ({COV_FLOOR:g} × the data's variance in some direction); they were "
            "raised to the floor before EM started",
            RuntimeWarning,
        )
        return {**params, "covariances": d.chol @ floored_cov @ d.chol.T}
    return params


def fit(
    data,
    k: int = 2,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    accelerate: str | None = DEFAULT_ACCELERATE,
    init: dict | None = None,
    n_init: int = 1,
    seed=_mixture.DEFAULT_SEED,
    xtol: float | None = None,
) -> GaussianMixtureResult:
    """Fit a mixture of k d-dimensional normals with full covariances by EM.

    Parameters
    ----------
    data : array_like of shape (n, d)
        One observation per row; finite, with spread in every direction.
    k : int
        Number of components, ``1 <= k <= n``.
    tol, max_iter, accelerate, xtol
        See :func:`emlib.em.run`. SQUAREM extrapolates in the packed coordinates
        (log-weight ratios, means, Cholesky factors with log-diagonal), where every point
        is a valid mixture with positive definite covariances.
    init : dict, optional
        ``{"weights": (k,), "means": (k, d), "covariances": (k, d, d)}``; when given, the
        only start. Weights must be positive and sum to 1; covariances symmetric positive
        definite. A covariance narrower than the floor is raised to it, with a warning.
    n_init : int
        Number of k-means starts (:func:`default_init`, seeds drawn from ``seed``) when
        ``init`` is not given; the fit with the highest log-likelihood is kept.
    seed : int or numpy Generator
        Seed for the starts.

    Returns
    -------
    GaussianMixtureResult
        An :class:`~emlib.em.EMResult` with ``params`` ``weights`` (k,), ``means`` (k, d)
        and ``covariances`` (k, d, d), components sorted by their means; ``collapsed``
        lists the components held at the covariance floor. ``se`` is computed by the
        driver's finite differences (about ``2 p²`` log-likelihood evaluations for ``p``
        free coordinates: small d and k only).

    Notes
    -----
    .. math:: \\ell(w, \\mu, \\Sigma) = \\sum_{i=1}^n \\log \\sum_{j=1}^k
              \\frac{w_j}{(2\\pi)^{d/2} |\\Sigma_j|^{1/2}}
              \\exp\\left(-\\tfrac12 (x_i - \\mu_j)^\\top \\Sigma_j^{-1}
              (x_i - \\mu_j)\\right)

    Warns (RuntimeWarning, naming the components) when a fitted covariance ends on the
    floor :data:`COV_FLOOR`: the component collapsed onto a point or a subspace, where
    the unconstrained likelihood is unbounded.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> X = np.vstack([rng.normal([0, 0], 1, (300, 2)), rng.normal([5, 3], 0.5, (200, 2))])
    >>> result = fit(X, k=2)
    >>> bool(np.abs(result.params["means"] - [[0, 0], [5, 3]]).max() < 0.2)
    True
    >>> result.params["covariances"].shape
    (2, 2, 2)
    """
    d = _prepare(data, require_spread=True)
    k = check_k(k, d.n)
    if init is not None:
        starts = [_start_on_floor(d, _check_params(init, k, d.d))]
    else:
        rng = np.random.default_rng(seed)
        starts = [_kmeans_start(d, k, rng) for _ in range(_mixture.n_starts(n_init))]
    model = _make_model(k, d.d)
    result = em.run(model, d, starts, tol=tol, max_iter=max_iter, accelerate=accelerate, xtol=xtol)
    n_floored, _ = _floored_components(d, result.params)
    collapsed = tuple(int(j) for j in np.flatnonzero(n_floored))
    if collapsed:
        what = ", ".join(
            f"component {j} ({n_floored[j]} of {d.d} eigenvalue(s) held at the floor)"
            for j in collapsed
        )
        _warnings.warn(
            f"gaussian_mixture: {what}: collapsed onto a point or a subspace; its covariance "
            f"was held at the floor ({COV_FLOOR:g} × the data's variance along those "
            "directions, i.e. sd 1e-3 of the data's) instead of shrinking to a singular "
            "matrix. Try a smaller k or other starting values",
            RuntimeWarning,
        )
    values = {f.name: getattr(result, f.name) for f in fields(EMResult)}
    return GaussianMixtureResult(**values, collapsed=collapsed)

"""Hidden Markov models with Poisson or Gaussian emissions, fitted by Baum–Welch (EM).

A hidden chain :math:`z_1, \\dots, z_T` on states :math:`1, \\dots, K` starts from
:math:`\\pi` and moves with the transition matrix :math:`A` (:math:`A_{ij} = P(z_t = j
\\mid z_{t-1} = i)`); each observation is drawn given its state, :math:`y_t \\mid z_t = j
\\sim f_j`, Poisson with rate :math:`\\lambda_j` or normal with mean :math:`\\mu_j` and
variance :math:`\\sigma_j^2`. The observed-data likelihood sums over every hidden path,

.. math:: p(y \\mid \\theta) = \\sum_{z} \\pi_{z_1} f_{z_1}(y_1)
          \\prod_{t=2}^T A_{z_{t-1} z_t} f_{z_t}(y_t)
          = \\pi^\\top D_1 \\, A D_2 \\cdots A D_T \\, \\mathbf 1,
          \\qquad D_t = \\operatorname{diag}(f_1(y_t), \\dots, f_K(y_t)).

**E-step (forward–backward).** With the scaled forward vectors :math:`\\hat\\alpha_t \\propto
\\hat\\alpha_{t-1}^\\top A D_t` (each normalised to sum 1 by :math:`c_t`) and the backward
vectors :math:`\\hat\\beta_{t-1} \\propto A D_t \\hat\\beta_t`,

.. math:: \\ell(\\theta) = \\sum_t \\log c_t, \\qquad
          \\gamma_t(j) = P(z_t = j \\mid y) \\propto \\hat\\alpha_t(j) \\hat\\beta_t(j), \\qquad
          \\xi_t(i, j) = P(z_{t-1} = i, z_t = j \\mid y) \\propto
          \\hat\\alpha_{t-1}(i) A_{ij} f_j(y_t) \\hat\\beta_t(j).

**M-step (Baum–Welch).** :math:`\\pi_j` is the mean of :math:`\\gamma_1(j)` over the
sequences, :math:`A_{ij} = \\sum_t \\xi_t(i,j) / \\sum_t \\sum_l \\xi_t(i,l)`, and the
emission parameters are :math:`\\gamma`-weighted means (and variances) of the data.

**Speed.** The recursions are sequential in t, and a Python loop over 10⁶ steps is slow.
The forward recursion is a running product of the K × K matrices :math:`M_t = A D_t`, and
matrix products associate, so the series is cut into B blocks of L ≈ √T steps: (1) the
product of each block's matrices, all blocks at once (a loop over L with NumPy operations
across the B blocks); (2) the vector entering each block, from the prefix products of
those block maps (by doubling, log₂ B batched products); (3) the recursion inside every
block at once from its now known start (a loop over L again). The backward recursion is
the same with steps (2) and (3) run from the end; its block maps come from the same
products of step (1): :math:`R_b = A D_{f+1} \\cdots A D_l` over the block's steps f..l
gives the forward map :math:`A D_f R_b` and the backward one :math:`D_f R_b A`. About
3L + 2 log₂ B Python-level steps instead of 2T (3L + 2B where A has entries below
1e-200, see ``_chain_blocks``). Every array is state-major, (K, L, B):
each NumPy operation runs over contiguous rows of length B (or T). The vectors and
products are non-negative, so nothing cancels; they are renormalised every few steps,
as many as keep them above underflow given the smallest entry of A (every step if it is
0), and the normalisers multiply to the plain recursion's :math:`\\prod_t c_t`. Viterbi
decoding is the same scan in the (max, +) semiring.

Several sequences are concatenated; where a new one begins the transition :math:`A` is
replaced by the restart :math:`\\mathbf 1 \\pi^\\top`, so ℓ is the sum of the sequences'
log-likelihoods and no transition counts are taken across the join.

Parameters: ``startprob`` (K,), ``transmat`` (K, K), then ``rates`` (K,) for Poisson
emissions or ``means`` and ``variances`` (K,) for Gaussian ones; states sorted by their
emission mean. Data: a 1-D array (one sequence), a list of 1-D arrays, or a 1-D array
with ``lengths`` as in hmmlearn.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np
from scipy.special import gammaln, xlogy

from emlib import _warnings
from emlib._mixture import DEFAULT_N_INIT, DEFAULT_SEED
from emlib._validation import (
    as_counts,
    as_observations,
    check_init_keys,
    check_k,
    check_positive_int,
    param_array,
)
from emlib.em import DEFAULT_ACCELERATE, DEFAULT_MAX_ITER, DEFAULT_TOL, EMModel, EMResult, run

EMISSIONS = {"poisson": ("rates",), "gaussian": ("means", "variances")}
#: A Gaussian state's variance is kept at or above this times the data's variance (sd 1e-3
#: of the data's): below it the likelihood is unbounded (a state collapsing onto a point).
VARIANCE_FLOOR = 1e-6
#: A state whose expected number of visits is below this counts as empty.
_EMPTY = 1e-8
_LOG_2PI = float(np.log(2 * np.pi))
_TINY = np.finfo(float).tiny
#: Poisson counts below max(T, this) take their emission factors from a table.
_TABLE_MIN = 4096


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Data:
    """The sequences concatenated, and laid out in blocks for the scans.

    Time t is entry [t % L, t // L] of the blocked (L, B) arrays: block b holds times
    bL, ..., bL + L - 1, and the tail after the last observation is padding.
    """

    y: np.ndarray  # every sequence, concatenated (T,)
    emission: str
    starts: np.ndarray  # index of each sequence's first observation
    ends: np.ndarray  # index of each sequence's last observation
    shift: float  # the data's mean and sd (Gaussian sufficient statistics are centred)
    sd: float
    L: int
    B: int
    y_blocks: np.ndarray  # (L, B), padded with 0
    centred: np.ndarray  # y - shift, (L·B,) in the blocked order, 0 on the padding
    log_const: float  # the log-density terms common to all states, summed over t
    #: Poisson counts of moderate size: each observation's value, blocked, as an index
    #: into a table of the values 0..max y (the padding points past it), and how often
    #: each value occurs. None for Gaussian data and very large counts.
    value_index: np.ndarray | None
    value_counts: np.ndarray | None
    start_cells: np.ndarray  # each sequence's first observation, in the raveled (L, B)
    forward_restarts: list  # per step l, the blocks where a sequence starts (or None)
    end_rows: list  # the same for the last observation of a sequence
    product_restarts: list  # the starts and the padding's first step (block products)
    #: The last E-step's parameters and expected visits per state, so that the checks
    #: after a fit need not run forward-backward again.
    last_visits: dict = field(default_factory=dict)
    #: The E-step's (K, L, B) and (L, B) arrays, kept between the E-steps of a fit: fresh
    #: arrays of that size cost their page faults again at every step (about a third of
    #: an E-step at T = 10⁶). fit() empties it when done.
    work: dict = field(default_factory=dict)

    def buffer(self, name: str, shape: tuple) -> np.ndarray:
        """An uninitialised array kept under ``name`` in :attr:`work`."""
        buf = self.work.get(name)
        if buf is None or buf.shape != shape:
            buf = self.work[name] = np.empty(shape)
        return buf

    @property
    def T(self) -> int:
        return self.y.size

    @property
    def last(self) -> tuple[int, int]:
        """(l, b) of the last observation: padding is [l + 1:, b]."""
        b, l_ = divmod(self.T - 1, self.L)
        return l_, b

    def blocked(self, x: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """(T,) -> (L, B), the tail padded with ``fill``."""
        out = np.full(self.B * self.L, fill)
        out[: x.size] = x
        return np.ascontiguousarray(out.reshape(self.B, self.L).T)

    def unblocked(self, x: np.ndarray) -> np.ndarray:
        """State-major (K, L, B) -> (T, K)."""
        return x.transpose(2, 1, 0).reshape(self.B * self.L, x.shape[0])[: self.T]


def _split(data, lengths) -> list:
    if lengths is not None:
        try:
            lengths = np.asarray(lengths)
        except (TypeError, ValueError) as err:
            raise ValueError(f"lengths must be whole numbers; got {lengths!r}") from err
        if lengths.ndim != 1 or lengths.size == 0 or lengths.dtype.kind not in "iu":
            raise ValueError(
                f"lengths must be a non-empty 1-D array of whole numbers; got {lengths!r}"
            )
        if np.any(lengths < 1):
            i = int(np.flatnonzero(lengths < 1)[0])
            raise ValueError(
                f"lengths[{i}] is {lengths[i]}: every sequence needs at least one observation "
                "(zero-length sequences are not allowed)"
            )
        x = as_observations(data, name="hmm data")
        if lengths.sum() != x.size:
            raise ValueError(
                f"lengths add up to {int(lengths.sum())} but the data have {x.size} observations"
            )
        return np.split(x, np.cumsum(lengths)[:-1])
    if isinstance(data, (list, tuple)) and data and not isinstance(data[0], numbers.Number):
        return list(data)
    return [data]


def _prepare(data, emission: str, lengths=None) -> _Data:
    if emission not in EMISSIONS:
        raise ValueError(f"emission must be 'poisson' or 'gaussian'; got {emission!r}")
    sequences = _split(data, lengths)
    checked = []
    for i, seq in enumerate(sequences):
        name = "hmm data" if len(sequences) == 1 else f"hmm sequence {i}"
        if np.size(seq) == 0 and np.ndim(seq) == 1:
            raise ValueError(
                f"{name} is empty: every sequence needs at least one observation "
                "(zero-length sequences are not allowed)"
            )
        if emission == "poisson":
            checked.append(as_counts(seq, name=name).astype(float))
        else:
            checked.append(as_observations(seq, name=name))
    lengths = np.array([s.size for s in checked])
    y = np.concatenate(checked)
    ends = np.cumsum(lengths) - 1
    starts = ends - lengths + 1
    sd = float(y.std())
    L, B = _layout(y.size)
    padding = np.arange(y.size, min(y.size + 1, B * L))
    value_index = value_counts = None
    if emission == "poisson":
        top_value = int(y.max())
        if top_value < max(y.size, _TABLE_MIN):
            counts = y.astype(np.intp)
            value_counts = np.bincount(counts, minlength=top_value + 1)
            log_const = -float(value_counts @ gammaln(np.arange(top_value + 1) + 1.0))
            index = np.full(B * L, top_value + 1, dtype=np.intp)
            index[: y.size] = counts
            value_index = np.ascontiguousarray(index.reshape(B, L).T)
        else:
            log_const = -float(gammaln(y + 1.0).sum())
    else:
        log_const = -0.5 * _LOG_2PI * y.size
    d = _Data(
        y=y,
        emission=emission,
        starts=starts,
        ends=ends,
        shift=float(y.mean()),
        sd=sd if sd > 0 else 1.0,
        L=L,
        B=B,
        y_blocks=np.empty(0),
        centred=np.empty(0),
        log_const=log_const,
        value_index=value_index,
        value_counts=value_counts,
        start_cells=(starts % L) * B + starts // L,
        forward_restarts=_restart_rows(starts, L, B),
        end_rows=_restart_rows(ends, L, B),
        product_restarts=_restart_rows(np.concatenate([starts, padding]), L, B),
    )
    # Filled in after: blocked() needs the layout.
    object.__setattr__(d, "y_blocks", d.blocked(y))
    object.__setattr__(d, "centred", d.blocked(y - d.shift).ravel())
    return d


def _emission_of(params) -> str:
    if isinstance(params, dict) and "rates" in params:
        return "poisson"
    return "gaussian"


def _check_params(params, emission: str, k: int | None = None) -> dict:
    names = ("startprob", "transmat", *EMISSIONS[emission])
    check_init_keys(params, names)
    start = param_array(params["startprob"], "startprob", size=k)
    k = start.size
    try:
        trans = np.asarray(params["transmat"], dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"transmat must be numeric; got {params['transmat']!r}") from err
    if trans.shape != (k, k):
        raise ValueError(f"transmat must have shape ({k}, {k}); got {trans.shape}")
    for name, value in (("startprob", start[None]), ("transmat", trans)):
        if not np.all(np.isfinite(value)) or np.any(value < 0):
            raise ValueError(f"{name} must hold probabilities in [0, 1]; got {value}")
        if not np.allclose(value.sum(axis=1), 1.0, rtol=0, atol=1e-8):
            raise ValueError(
                f"{name} must sum to 1"
                + (" along each row" if name == "transmat" else "")
                + f"; the sums are {value.sum(axis=1)}"
            )
    out = {
        "startprob": start / start.sum(),
        "transmat": trans / trans.sum(axis=1, keepdims=True),
    }
    for name in EMISSIONS[emission]:
        out[name] = param_array(params[name], name, size=k)
    if emission == "poisson" and np.any(out["rates"] < 0):
        raise ValueError(f"rates must be non-negative; got {out['rates']}")
    if emission == "gaussian" and np.any(out["variances"] <= 0):
        raise ValueError(f"variances must be positive; got {out['variances']}")
    return out


# ---------------------------------------------------------------------------------------
# Emissions
# ---------------------------------------------------------------------------------------


def _half_squares(d: _Data, params, out: np.ndarray) -> np.ndarray:
    """(y_t - μ_j)² / (2σ_j²) into ``out`` (K, L, B), one state's row at a time.

    The difference first, so that nothing cancels as in a quadratic y² a + y b + c.
    """
    scale = np.sqrt(0.5 / params["variances"])
    y = d.y_blocks
    for j, mean in enumerate(params["means"]):
        row = out[j]
        np.subtract(y, mean, out=row)
        row *= scale[j]
        np.square(row, out=row)
    return out


def _log_emission(d: _Data, params, *, full: bool = False, out=None) -> np.ndarray:
    """log f_j(y_t) up to a term common to all states, state-major (K, L, B); 0 on the padding.

    The common term, -log y_t! (Poisson) or -log(2π)/2 (Gaussian), cancels where the
    densities are scaled to a maximum of 1 at each t; its total is ``d.log_const``. With
    ``full`` it is included (Viterbi's log joint needs every term).
    """
    y = d.y_blocks
    k = params["transmat"].shape[0]
    if out is None:
        out = np.empty((k, d.L, d.B))
    if d.emission == "poisson":
        lam = params["rates"]
        log_lam = np.log(lam) if np.all(lam > 0) else None
        for j in range(k):
            # y log λ by a product: scipy's xlogy (0 log 0 = 0) costs 5x more.
            if log_lam is not None:
                np.multiply(y, log_lam[j], out=out[j])
            else:
                out[j] = xlogy(y, lam[j])
            out[j] -= lam[j]
        if full:
            out -= gammaln(y + 1.0)
    else:
        # -(y - μ)²/(2σ²) - log(σ²)/2, one state's row at a time (contiguous passes).
        _half_squares(d, params, out)
        half_log_var = 0.5 * np.log(params["variances"]) + (0.5 * _LOG_2PI if full else 0.0)
        for j in range(k):
            np.subtract(-half_log_var[j], out[j], out=out[j])
    l_, b = d.last
    out[:, l_ + 1 :, b] = 0.0
    return out


def _emission_factors(d: _Data, params):
    """Emission factors scaled to a maximum of 1 at each t, (K, L, B), 1 on the padding.

    Returns ``(e, log_top, fold)``: f_j(y_t) = e_t(j) w_j exp(m_t) exp(const_t), with
    ``log_top`` = Σ_t m_t and Σ_t const_t = ``d.log_const``; ``fold`` is w (K,), a factor
    per state that the caller folds into the columns of A and into π (None for w = 1).
    (None, -inf, None) where an observation is impossible under every state.

    Poisson counts below the table size take their factors from a table over the values
    0..max y, so that a T × K pass costs one gather per state instead of a log-density,
    a maximum, a difference and an exponential. Gaussian: log f_j(y) = -(y - μ_j)²/(2σ_j²)
    - log(σ_j²)/2 - log(2π)/2; the second term is a constant per state, w_j =
    σ_min / σ_j in (0, 1], so only the squares pass over T × K (the difference first, so
    that nothing cancels as in a quadratic y² a + y b + c), and m_t = -min_j of them.
    """
    k = params["transmat"].shape[0]
    emis = d.buffer("emission", (k, d.L, d.B))
    if d.value_index is not None:
        lam = params["rates"]
        values = np.arange(d.value_counts.size, dtype=float)
        table = xlogy(values[None, :], lam[:, None]) - lam[:, None]
        top = table.max(axis=0)
        seen = d.value_counts > 0
        log_top = float(d.value_counts[seen] @ top[seen])
        if not np.isfinite(log_top):
            return None, -np.inf, None
        factors = np.ones((k, values.size + 1))  # the last column: the padding
        with np.errstate(invalid="ignore"):  # values not seen may be impossible
            np.exp(table - top, out=factors[:, :-1])
        for j in range(k):
            np.take(factors[j], d.value_index, out=emis[j], mode="clip")  # unbuffered
        return emis, log_top, None
    if d.emission == "poisson":
        log_b = _log_emission(d, params, out=emis)
        top = _max_over_states(log_b, d.buffer("top", (d.L, d.B)))
        log_top = float(top.sum())
        if not np.isfinite(log_top):
            return None, -np.inf, None
        log_b -= top
        return np.exp(log_b, out=log_b), log_top, None
    var = params["variances"]
    _half_squares(d, params, emis)
    l_, b = d.last
    emis[:, l_ + 1 :, b] = 0.0
    low = d.buffer("top", (d.L, d.B))
    np.copyto(low, emis[0])
    for j in range(1, k):
        np.minimum(low, emis[j], out=low)
    half_log_var = 0.5 * np.log(var)
    least = float(half_log_var.min())
    log_top = -float(low.sum()) - least * d.T
    if not np.isfinite(log_top):
        return None, -np.inf, None
    np.subtract(low, emis, out=emis)
    np.exp(emis, out=emis)
    return emis, log_top, np.exp(least - half_log_var)


def _max_over_states(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    # Elementwise maxima of the K state rows (each contiguous), a copy even for K = 1: the
    # caller subtracts the result from x in place.
    top = out
    np.copyto(top, x[0])
    for j in range(1, x.shape[0]):
        np.maximum(top, x[j], out=top)
    return top


# ---------------------------------------------------------------------------------------
# The blocked scans
# ---------------------------------------------------------------------------------------


def _layout(T: int) -> tuple[int, int]:
    """Block length L and number of blocks B, L·B >= T, L ≈ √T."""
    L = max(1, int(np.ceil(np.sqrt(T))))
    return L, -(-T // L)


def _restart_rows(restart: np.ndarray, L: int, B: int) -> list:
    """For each l, the blocks whose step l restarts the chain (None where there is none)."""
    mask = np.zeros(B * L, dtype=bool)
    mask[restart] = True
    mask = mask.reshape(B, L).T
    rows = [None] * L
    for l_ in np.flatnonzero(mask.any(axis=1)):
        rows[l_] = np.flatnonzero(mask[l_])
    return rows


#: Most steps between two renormalisations of the scans' vectors and products.
_MAX_EVERY = 16


def _every(A: np.ndarray) -> int:
    """Steps between renormalisations that keep every scan vector above about 1e-250.

    With the emission factors scaled to a maximum of 1 at each t, a step multiplies the
    total of a forward vector (or of a row of a block product) by a factor in [g, 1], g
    the smallest entry of A: (a A)_j* >= g Σ a where e_t(j*) = 1, and the rows of A sum
    to at most 1 (less where a factor per state is folded into its columns). A backward
    step multiplies it by a factor in [g, K] (the columns of A sum to at most K). So n
    steps keep it in [g^n / K, K^n]; g = 0 gives n = 1, every step. A restart multiplies
    it by π·e_t instead, which has no such bound: the scans renormalise there too.
    """
    g = float(A.min())
    if not g > 0:
        return 1
    return int(np.clip(250.0 // max(-np.log10(g), 1.0), 1, _MAX_EVERY))


def _block_products(d: _Data, E: np.ndarray, A: np.ndarray, pi: np.ndarray, every: int):
    """R_b = G_{f+1} D_{f+1} ··· G_l D_l for each block b (times f = bL to l = f + L - 1).

    D_t = diag(e_t), and G_t = A, or the restart 1 πᵀ where a sequence starts (and at the
    first step of the padding, so that nothing after the last observation reaches back).
    Returned as (B, K, K), each scaled by a positive constant (the scans only need their
    directions). The forward block map is G_f D_f R_b and the backward one D_f R_b H_l,
    H_l = A or the restart 1 1ᵀ at a sequence's end: one product serves both scans. D_f
    stays out of R_b: its rows would carry the factors e_f(i), which may differ by more
    than the range of a float where a restart π picks the row of an unlikely state.

    The products are held column-major across the blocks, P[j, i, b] = (R_b)_ij, so that a
    step R ← R A D_t is one matrix product Aᵀ P over (K, K·B) and one contiguous product
    with e_t, whatever K.
    """
    K, L, B = E.shape
    P = np.zeros((K, K, B))
    for j in range(K):
        P[j, j] = 1.0
    spare = np.empty_like(P)
    flat, flat_spare = P.reshape(K, K * B), spare.reshape(K, K * B)
    scale = np.empty(B)
    ones2 = np.ones(K * K)
    rows = d.product_restarts
    with np.errstate(invalid="ignore", divide="ignore"):
        for step in range(1, L):
            np.matmul(A.T, flat, out=flat_spare)
            np.multiply(spare, E[:, step, None, :], out=spare)
            r = rows[step]
            if r is not None:
                # R 1 (π ∘ e_t)ᵀ: the rows' totals times π ∘ e_t, both normalised, as π·e_t
                # (a c_t of the plain recursion) is not bounded below by g.
                totals = P[:, :, r].sum(axis=0)
                totals /= totals.sum(axis=0)
                start = pi[:, None] * E[:, step, r]
                start /= start.sum(axis=0)
                spare[:, :, r] = start[:, None, :] * totals[None]
            if step % every == 0:
                np.matmul(ones2, flat_spare.reshape(K * K, B), out=scale)
                np.divide(1.0, scale, out=scale)
                spare *= scale
            P, spare = spare, P
            flat, flat_spare = flat_spare, flat
    return np.ascontiguousarray(P.transpose(2, 1, 0))


#: Below this smallest entry of A the vectors entering the blocks are chained one block
#: at a time (see _chain_blocks).
_DOUBLING_MIN = 1e-200


def _chain_blocks(maps: np.ndarray, reverse: bool, g: float) -> np.ndarray:
    """The normalised vector entering each block: v_{b+1} ∝ v_b M_b, or v_{b-1} ∝ M_b v_b.

    With g, the smallest entry of A, at least ``_DOUBLING_MIN``: all at once from the
    prefix products M_0 ··· M_b (suffix products M_b ··· M_{B-1} with ``reverse``), formed
    by doubling (Hillis–Steele), log₂ B batched products instead of a Python loop over
    the B blocks. The matrices are non-negative and each is renormalised to total 1, so
    nothing cancels; each forward map's rows are mixtures by a row of A (its columns, for
    the backward maps), so they lie within a factor g of each other, and so do those of
    any product of maps: what a normalised vector picks out of them cannot underflow.
    The first block's map (the last one's, reversed) starts a sequence: it has rank one,
    and the vector entering the scan does not matter. For smaller g (A with zeros: rows
    that cannot mix may differ by more than the range of a float) one block at a time,
    the vector renormalised after each.
    """
    B, K, _ = maps.shape
    v0 = np.full(K, 1.0 / K)
    entering = np.empty((B, K))
    if not g >= _DOUBLING_MIN:
        v = v0
        for b in range(B - 1, -1, -1) if reverse else range(B):
            entering[b] = v
            v = maps[b] @ v if reverse else v @ maps[b]
            v /= v.sum()
        return entering
    P = maps.copy()
    flat = P.reshape(B, K * K)
    ones = np.ones(K * K)
    with np.errstate(invalid="ignore", divide="ignore"):
        P /= (flat @ ones)[:, None, None]
        shift = 1
        while shift < B:
            if reverse:
                P[:-shift] = np.matmul(P[:-shift], P[shift:])
            else:
                P[shift:] = np.matmul(P[:-shift], P[shift:])
            P /= (flat @ ones)[:, None, None]
            shift *= 2
        if reverse:
            entering[-1] = v0
            entering[:-1] = P[1:] @ v0
        else:
            entering[0] = v0
            entering[1:] = v0 @ P[:-1]
        entering /= (entering @ np.ones(K))[:, None]
    return entering


def _forward(d: _Data, E: np.ndarray, A: np.ndarray, pi: np.ndarray, R: np.ndarray, every: int):
    """Forward vectors α̃ (K, L, B), each a positive multiple of α̂_t, and log p(y) - Σ top.

    Inside every block at once from its entering vector: α̃_t = (α̃_{t-1} A) ∘ e_t, or
    π ∘ e_t at a sequence's start, renormalised every ``every`` steps, at each block's
    last step, at the starts and at the last observation. The normalisers s_t (1 where
    none was applied), written to ``norm`` (L, B), multiply with the totals carried into
    the restarts to the plain recursion's Π c_t, so the log-likelihood is the sum of their
    logs; and Σ_ij α̃_{t-1}(i) A_ij e_t(j) β̃_t(j) = s_t (α̃_t · β̃_t) for the ξ weights.
    """
    K, L, B = E.shape
    rows = d.forward_restarts
    first = A * E[:, 0].T[:, None, :]  # G_f D_f, (B, K, K)
    r0 = rows[0]
    if r0 is not None:
        start = pi * E[:, 0, r0].T
        first[r0] = (start / start.sum(axis=1, keepdims=True))[:, None, :]
    maps = np.matmul(first, R)
    entering = _chain_blocks(maps, False, float(A.min()))
    alpha = d.buffer("alpha", (K, L, B))
    norm = d.buffer("norm", (L, B))
    norm.fill(1.0)
    ones = np.ones(K)
    logs = []  # log normalisers and carried totals
    l_last, b_last = d.last
    a = np.ascontiguousarray(entering.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        for step in range(L):
            cur = alpha[:, step]
            np.matmul(A.T, a, out=cur)
            r = rows[step]
            if r is not None:
                # A sequence starts: its vector is π ∘ e_t, whatever came before; the total
                # of the vector it replaces is the previous sequence's last factor.
                logs.append(np.log(a[:, r].sum(axis=0)))
                cur[:, r] = pi[:, None]
            np.multiply(cur, E[:, step], out=cur)
            if step % every == every - 1 or step == L - 1:
                s = norm[step]
                np.matmul(ones, cur, out=s)
                np.divide(cur, s, out=cur)
                logs.append(np.log(s[:b_last] if step > l_last else s))
            else:
                if r is not None:
                    s = cur[:, r].sum(axis=0)
                    cur[:, r] /= s
                    norm[step, r] = s
                    logs.append(np.log(s))
                if step == l_last:
                    s = cur[:, b_last].sum()
                    cur[:, b_last] /= s
                    norm[step, b_last] = s
                    logs.append(np.log([s]))
            a = cur
    norm[l_last + 1 :, b_last] = 1.0  # the padding
    ll = float(sum(x.sum() for x in logs))
    return alpha, norm, ll


def _backward(d: _Data, E: np.ndarray, A: np.ndarray, R: np.ndarray, every: int):
    """Backward vectors β̃ (K, L, B), each a positive multiple of β_t; E becomes e_t ∘ β̃_t.

    From the vector entering each block at its end: β̃_t = A u_{t+1} (1 at a sequence's
    end) with u_t = e_t ∘ β̃_t written over e_t, β̃ renormalised every ``every`` steps.
    """
    K, L, B = E.shape
    rows = d.end_rows
    maps = E[:, 0].T[:, :, None] * R  # D_f R_b
    r_end = rows[L - 1]
    ends = maps[r_end].sum(axis=2, keepdims=True) if r_end is not None else None
    maps = np.matmul(maps, A, out=maps)  # D_f R_b H_l
    if r_end is not None:
        maps[r_end] = ends
    entering = _chain_blocks(maps, True, float(A.min()))
    beta = d.buffer("beta", (K, L, B))
    ones = np.ones(K)
    s = np.empty(B)
    u = np.ascontiguousarray(entering.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        for step in range(L - 1, -1, -1):
            cur = beta[:, step]
            np.matmul(A, u, out=cur)
            r = rows[step]
            if r is not None:
                cur[:, r] = 1.0
            if step % every == 0:
                np.matmul(ones, cur, out=s)
                np.divide(cur, s, out=cur)
            u = E[:, step]
            np.multiply(cur, u, out=u)
    return beta


def _forward_backward(d: _Data, params, *, backward: bool = True):
    """Forward–backward on the blocked layout.

    Returns ``(None, -inf)`` where ℓ = -inf, ``(None, ℓ)`` without ``backward``, else
    ``({"gamma": γ̃ (K, L, B), "weight": w (L, B), "xi": Σ ξ (K, K)}, ℓ)`` with the
    posteriors γ_t(j) = γ̃_t(j) w_t (w = 0 on the padding): the M-step needs only weighted
    sums of γ, taken as γ̃ times a vector, so γ itself is never formed.
    """
    emis, top_sum, fold = _emission_factors(d, params)
    if emis is None:
        return None, -np.inf
    A, pi = params["transmat"], params["startprob"]
    if fold is not None:
        # diag(f(y_t)) = diag(w) diag(e_t) times a scalar: w goes into A's columns and π.
        A, pi = A * fold, pi * fold
    every = _every(A)
    R = _block_products(d, emis, A, pi, every)
    alpha, norm, ll = _forward(d, emis, A, pi, R, every)
    ll += top_sum + d.log_const
    if not np.isfinite(ll):
        return None, -np.inf
    if not backward:
        return None, ll
    beta = _backward(d, emis, A, R, every)
    into = emis  # now e_t ∘ β̃_t
    K = alpha.shape[0]
    gamma = np.multiply(alpha, beta, out=beta)
    # The weights w_t = 1 / (α̃_t · β̃_t) go into the first row of the E-step's moments.
    total = d.buffer("moments", (3, d.L, d.B))[0]
    np.copyto(total, gamma[0])
    for j in range(1, K):
        total += gamma[j]
    l_, b = d.last
    weight = np.divide(1.0, total, out=total)
    weight[l_ + 1 :, b] = 0.0
    # ξ_t(i, j) ∝ α̃_{t-1}(i) A_ij e_t(j) β̃_t(j), whose sum over i, j is s_t (α̃_t · β̃_t);
    # no transition into a sequence's first observation (nor into the padding).
    pair = np.divide(weight, norm, out=d.buffer("pair", (d.L, d.B)))
    pair.reshape(-1)[d.start_cells] = 0.0
    into *= pair
    # Pairs (t - 1, t) inside each block, then across each block boundary.
    xi = _cross(alpha[:, :-1].reshape(K, -1), into[:, 1:].reshape(K, -1))
    xi += alpha[:, -1, :-1] @ into[:, 0, 1:].T
    xi *= A
    return {"gamma": gamma, "weight": weight, "xi": xi}, ll


#: Columns per product in _cross.
_CHUNK = 16384


def _cross(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """X Yᵀ for a few long rows (X (m, N), Y (n, N)), summed over chunks of columns.

    One BLAS call on (m × N)(N × n) with N = 10⁶ runs about 3x slower than the same in
    chunks that stay in cache.
    """
    out = np.zeros((X.shape[0], Y.shape[0]))
    for start in range(0, X.shape[1], _CHUNK):
        stop = start + _CHUNK
        out += X[:, start:stop] @ Y[:, start:stop].T
    return out


def _posteriors(d: _Data, expected) -> np.ndarray:
    """γ (T, K) from the forward–backward output."""
    gamma = expected["gamma"] * expected["weight"]
    return d.unblocked(gamma)


def _viterbi(d: _Data, params) -> tuple[np.ndarray, float]:
    """The most probable path and its log joint probability, by the (max, +) scan."""
    log_b = np.ascontiguousarray(_log_emission(d, params, full=True).transpose(1, 2, 0))
    with np.errstate(divide="ignore"):
        log_a, log_pi = np.log(params["transmat"]), np.log(params["startprob"])
    T, L, B, K = d.T, d.L, d.B, log_b.shape[-1]
    E = log_b
    rows = d.forward_restarts
    restart_m = np.broadcast_to(log_pi, (K, K))
    last_block, last_l = divmod(T - 1, L)
    with np.errstate(invalid="ignore"):
        # (1) Each block's (max, +) product of step matrices, shifted to max 0.
        P = np.broadcast_to(np.where(np.eye(K, dtype=bool), 0.0, -np.inf), (B, K, K)).copy()
        for step in range(L):
            nxt = (P[:, :, :, None] + log_a[None, None]).max(axis=2)
            r = rows[step]
            if r is not None:
                nxt[r] = (P[r][:, :, :, None] + restart_m[None, None]).max(axis=2)
            nxt += E[step][:, None, :]
            P = nxt - np.max(nxt, axis=(1, 2))[:, None, None]
        # (2) δ just before each block's first step, shifted to max 0.
        before = np.empty((B, K))
        delta = np.zeros(K)
        for b in range(B):
            before[b] = delta
            delta = (delta[:, None] + P[b]).max(axis=0)
            delta -= delta.max()
        # (3) Inside every block at once: back pointers ψ_t(j) = argmax_i δ_{t-1}(i) + log A_ij.
        back = np.empty((B, L, K), dtype=np.intp)
        back[:] = np.arange(K)  # the padding maps every state to itself
        delta = before
        for step in range(L):
            cand = delta[:, :, None] + log_a[None]
            r = rows[step]
            if r is not None:
                cand[r] = delta[r][:, :, None] + restart_m[None]
            pointer = cand.argmax(axis=1)
            delta = np.take_along_axis(cand, pointer[:, None, :], axis=1)[:, 0] + E[step]
            delta = delta - delta.max(axis=1, keepdims=True)
            back[:, step] = pointer
            if step == last_l:
                final = delta[last_block].copy()
        back.reshape(B * L, K)[T:] = np.arange(K)
    # The path backwards, s_{t-1} = ψ_t(s_t), blocked the same way: (1') each block's
    # composed map from its last step's state to its first step's, (2') the blocks' end
    # states from the last block down, (3') every block filled at once.
    comp = np.broadcast_to(np.arange(K), (B, K)).copy()
    for step in range(L - 1, 0, -1):
        comp = np.take_along_axis(back[:, step, :], comp, axis=1)
    end_state = np.empty(B, dtype=np.intp)
    s = int(np.argmax(final))
    for b in range(B - 1, -1, -1):
        end_state[b] = s
        s = int(back[b, 0, comp[b, s]])
    path = np.empty((B, L), dtype=np.intp)
    state = end_state
    blocks = np.arange(B)
    for step in range(L - 1, -1, -1):
        path[:, step] = state
        state = back[blocks, step, state]
    path = path.reshape(-1)[:T]
    return path, _path_log_joint(d, log_b, log_a, log_pi, path)


def _path_log_joint(d: _Data, log_b, log_a, log_pi, path) -> float:
    """log p(y, z = path): start, transition and emission terms."""
    steps = log_a[path[:-1], path[1:]]
    starts = d.starts[1:]
    steps[starts - 1] = log_pi[path[starts]]
    t = np.arange(d.T)
    return float(log_pi[path[0]] + steps.sum() + log_b[t % d.L, t // d.L, path].sum())


# ---------------------------------------------------------------------------------------
# The model on the driver
# ---------------------------------------------------------------------------------------


def _e_step(d: _Data, params):
    expected, ll = _forward_backward(d, params)
    if expected is None:
        return None, ll
    gamma, weight = expected["gamma"], expected["weight"]
    K = gamma.shape[0]
    # Only K-vectors leave the E-step: Σ_t γ_t (1, y_t - ȳ, (y_t - ȳ)²) by one product of
    # γ̃ (K, L·B) with the weights w_t (1, y_t - ȳ, ...); the padding has w = 0.
    y = d.centred
    moments = d.buffer("moments", (3, d.L, d.B)).reshape(3, -1)  # row 0 holds the weights
    np.multiply(moments[0], y, out=moments[1])
    if d.emission == "gaussian":
        np.multiply(moments[1], y, out=moments[2])
    sums = _cross(gamma.reshape(K, -1), moments[: 2 if d.emission == "poisson" else 3])
    first = d.start_cells
    stats = {
        "start": gamma.reshape(K, -1)[:, first] @ weight.reshape(-1)[first],
        "xi": expected["xi"],
        "n": sums[:, 0],
        "s1": sums[:, 1],
    }
    if d.emission == "gaussian":
        stats["s2"] = sums[:, 2]
    d.last_visits.clear()
    d.last_visits[_key(_sort(params))] = _sort({**params, "visits": stats["n"]})["visits"]
    return stats, ll


def _key(params) -> bytes:
    return b"".join(np.asarray(v, dtype=float).tobytes() for v in params.values())


def _m_step(d: _Data, stats) -> dict:
    k = stats["n"].size
    rows = stats["xi"].sum(axis=1, keepdims=True)
    # A state never left (no responsibility before the last step) keeps a uniform row:
    # its row does not enter ℓ, and 0/0 must not.
    transmat = np.where(rows > 0, stats["xi"] / np.where(rows > 0, rows, 1.0), 1.0 / k)
    n = np.maximum(stats["n"], _TINY)
    mean = stats["s1"] / n
    out = {"startprob": stats["start"] / d.starts.size, "transmat": transmat}
    if d.emission == "poisson":
        out["rates"] = np.maximum(mean + d.shift, 0.0)
    else:
        var = np.maximum(stats["s2"] / n - mean**2, 0.0)
        out["means"] = mean + d.shift
        out["variances"] = np.maximum(var, VARIANCE_FLOOR * d.sd**2)
    return out


def _pack(params) -> np.ndarray:
    """Free coordinates: π without its last entry, each row of A without its last entry,
    then the emission parameters."""
    parts = [params["startprob"][:-1], params["transmat"][:, :-1].ravel()]
    parts += [v for name, v in params.items() if name not in ("startprob", "transmat")]
    return np.concatenate(parts)


def _sizes(size: int, n_emission: int) -> int:
    # size = (K - 1) + K (K - 1) + n_emission K = K² + n_emission K - 1
    return round((-n_emission + np.sqrt(n_emission**2 + 4 * (size + 1))) / 2)


def _make_model(emission: str) -> EMModel:
    names = EMISSIONS[emission]

    def unpack(v: np.ndarray) -> dict:
        k = _sizes(v.size, len(names))
        free_pi = v[: k - 1]
        free_a = v[k - 1 : k - 1 + k * (k - 1)].reshape(k, k - 1)
        out = {
            "startprob": np.append(free_pi, 1.0 - free_pi.sum()),
            "transmat": np.column_stack([free_a, 1.0 - free_a.sum(axis=1)]),
        }
        rest = v[k - 1 + k * (k - 1) :]
        for j, name in enumerate(names):
            out[name] = rest[j * k : (j + 1) * k].copy()
        return out

    def in_domain(v: np.ndarray) -> bool:
        if not np.all(np.isfinite(v)):
            return False
        p = unpack(v)
        ok = np.all(p["startprob"] >= 0) and np.all(p["transmat"] >= 0)
        if emission == "poisson":
            return bool(ok and np.all(p["rates"] >= 0))
        return bool(ok and np.all(p["variances"] > 0))

    def scale(d: _Data, theta: np.ndarray) -> np.ndarray:
        k = _sizes(theta.size, len(names))
        units = [np.ones(k * k - 1), np.full(k, d.sd)]
        if emission == "gaussian":
            units.append(np.full(k, d.sd**2))
        return np.concatenate(units)

    return EMModel(
        name=f"hmm ({emission} emissions)",
        e_step=_e_step,
        m_step=_m_step,
        pack=_pack,
        unpack=unpack,
        in_domain=in_domain,
        finalize=_sort,
        scale=scale,
        loglik_only=lambda d, params: _forward_backward(d, params, backward=False)[1],
    )


def _sort(params) -> dict:
    """States in increasing order of their emission mean (ties keep their order)."""
    key = params["rates"] if "rates" in params else params["means"]
    order = np.argsort(key, kind="stable")
    out = {
        "startprob": params["startprob"][order],
        "transmat": params["transmat"][np.ix_(order, order)],
    }
    for name, value in params.items():
        if name not in out:
            out[name] = np.asarray(value)[order]
    return out


# ---------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------


def _data_and_params(data, params, lengths):
    emission = _emission_of(params)
    d = _prepare(data, emission, lengths)
    return d, _check_params(params, emission)


def loglik(data, params, *, lengths=None) -> float:
    """Observed-data log-likelihood :math:`\\sum_{\\text{sequences}} \\log p(y \\mid \\theta)`.

    Parameters
    ----------
    data : array_like, or list of array_like
        One 1-D sequence, a list of them, or a 1-D array split by ``lengths``.
    params : dict
        ``startprob``, ``transmat`` and ``rates`` (Poisson) or ``means`` and
        ``variances`` (Gaussian); the keys say which emission.
    lengths : sequence of int, optional
        Lengths of the sequences concatenated in ``data`` (hmmlearn's convention).
    """
    d, params = _data_and_params(data, params, lengths)
    return _forward_backward(d, params, backward=False)[1]


def posterior(data, params, *, lengths=None) -> np.ndarray:
    """Posterior state probabilities :math:`\\gamma_t(j) = P(z_t = j \\mid y)`, shape (T, K).

    Rows follow the observations of every sequence, concatenated; each row sums to 1.
    """
    d, params = _data_and_params(data, params, lengths)
    expected, _ = _forward_backward(d, params)
    if expected is None:
        raise ValueError("the data are impossible under params (log-likelihood -inf)")
    return _posteriors(d, expected)


def e_step(data, params, *, lengths=None) -> dict:
    """Forward–backward: ``{"posteriors": (T, K), "transitions": (K, K)}``.

    ``posteriors`` is :math:`\\gamma_t(j)`, ``transitions`` the expected transition counts
    :math:`\\sum_t \\xi_t(i, j)` over the steps within each sequence.
    """
    d, params = _data_and_params(data, params, lengths)
    expected, _ = _forward_backward(d, params)
    if expected is None:
        raise ValueError("the data are impossible under params (log-likelihood -inf)")
    return {"posteriors": _posteriors(d, expected), "transitions": expected["xi"]}


def m_step(data, expected, *, emission: str, lengths=None) -> dict:
    """Baum–Welch update from :func:`e_step`'s output.

    .. math:: \\pi_j = \\frac1S \\sum_s \\gamma_{t_s}(j), \\quad
              A_{ij} = \\frac{\\sum_t \\xi_t(i,j)}{\\sum_t \\sum_l \\xi_t(i,l)}, \\quad
              \\lambda_j = \\mu_j = \\frac{\\sum_t \\gamma_t(j) y_t}{\\sum_t \\gamma_t(j)}, \\quad
              \\sigma^2_j = \\frac{\\sum_t \\gamma_t(j) (y_t - \\mu_j)^2}{\\sum_t \\gamma_t(j)}

    with :math:`t_s` the first time of sequence s.
    """
    d = _prepare(data, emission, lengths)
    gamma = np.asarray(expected["posteriors"], dtype=float)
    xi = np.asarray(expected["transitions"], dtype=float)
    if gamma.ndim != 2 or gamma.shape[0] != d.T or xi.shape != (gamma.shape[1],) * 2:
        raise ValueError(
            f"posteriors must have shape ({d.T}, K) and transitions (K, K); got "
            f"{gamma.shape} and {xi.shape}"
        )
    y = d.y - d.shift
    stats = {"start": gamma[d.starts].sum(axis=0), "xi": xi, "n": gamma.sum(axis=0)}
    stats["s1"] = y @ gamma
    stats["s2"] = (y * y) @ gamma
    return _m_step(d, stats)


def viterbi(data, params, *, lengths=None) -> tuple[np.ndarray, float]:
    """Most probable hidden path :math:`\\arg\\max_z p(y, z \\mid \\theta)` and its log joint.

    Returns
    -------
    path : ndarray of int, shape (T,)
        The decoded states of every sequence, concatenated.
    log_prob : float
        :math:`\\log p(y, \\hat z \\mid \\theta)` summed over the sequences.
    """
    d, params = _data_and_params(data, params, lengths)
    return _viterbi(d, params)


def _default_starts(d: _Data, k: int, n_init: int, seed) -> list[dict]:
    """A start at the data's quantiles with sticky transitions, then random ones."""
    y = d.y
    stay = 0.9 if k > 1 else 1.0
    transmat = np.full((k, k), (1 - stay) / max(k - 1, 1)) + (
        stay - (1 - stay) / max(k - 1, 1)
    ) * np.eye(k)
    quantiles = np.quantile(y, (np.arange(k) + 0.5) / k) + 1e-3 * d.sd * np.arange(k)
    starts = []
    rng = np.random.default_rng(seed)
    for i in range(n_init):
        if i == 0:
            centres = quantiles
            trans = transmat
        else:
            centres = np.sort(rng.choice(y, size=k, replace=False)) + 0.05 * d.sd * rng.random(k)
            trans = rng.dirichlet(np.ones(k) + 5 * np.eye(k)[0], size=k)
            trans = np.array([np.roll(trans[j], j) for j in range(k)])
        start = {"startprob": np.full(k, 1 / k), "transmat": trans}
        if d.emission == "poisson":
            start["rates"] = np.maximum(centres, 0.05 * max(d.shift, 1.0))
        else:
            start["means"] = centres
            start["variances"] = np.full(k, d.sd**2 / k)
        starts.append(start)
    return starts


def fit(
    data,
    k: int = 2,
    *,
    emission: str,
    lengths=None,
    init: dict | None = None,
    n_init: int = DEFAULT_N_INIT,
    seed=DEFAULT_SEED,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    accelerate: str | None = DEFAULT_ACCELERATE,
    xtol: float | None = None,
) -> EMResult:
    """Fit a K-state hidden Markov model by Baum–Welch (EM), keeping the best start.

    Parameters
    ----------
    data : array_like, or list of array_like
        One 1-D sequence, a list of 1-D sequences, or a 1-D array split by ``lengths``.
        Counts (non-negative whole numbers) for Poisson emissions; finite numbers for
        Gaussian ones. No sequence may be empty.
    k : int
        Number of hidden states, at least 1 and at most the number of distinct values.
    emission : {"poisson", "gaussian"}
        The state-conditional distribution of an observation.
    lengths : sequence of int, optional
        Lengths of the sequences concatenated in ``data`` (hmmlearn's convention).
    init : dict, optional
        ``{"startprob": (K,), "transmat": (K, K), "rates": (K,)}`` or with ``means`` and
        ``variances`` instead of ``rates``; when given, the only start.
    n_init : int
        Starts when ``init`` is not given: one at the data's quantiles with sticky
        transitions (0.9 on the diagonal), the rest random (seeded by ``seed``).
    seed : int or numpy Generator
        Seed for the random starts.
    tol, max_iter, accelerate, xtol
        See :func:`emlib.em.run`. SQUAREM extrapolates in the free coordinates (π and the
        rows of A without their last entries, the emission parameters); a point outside
        the parameter space or one that lowers ℓ falls back to plain EM steps.

    Returns
    -------
    EMResult
        ``params`` ``startprob`` (K,), ``transmat`` (K, K) and ``rates`` (K,) or
        ``means`` and ``variances`` (K,), states sorted by their emission mean; ``se``
        by the driver's finite-difference observed information (entries of π or A on
        the boundary 0 have NaN standard errors, with a warning).

    Raises
    ------
    ValueError
        For data that are not 1-D, empty sequences, NaN or infinite values, negative or
        fractional counts (Poisson), ``lengths`` that do not add up, ``k < 1`` or more
        states than distinct values, or a malformed ``init``.

    Warns
    -----
    RuntimeWarning
        When a Gaussian state's variance ends on the floor :data:`VARIANCE_FLOOR` (it
        collapsed onto a point, where ℓ is unbounded), or a state gets no responsibility.

    Notes
    -----
    .. math:: \\ell(\\pi, A, \\phi) = \\sum_{\\text{sequences}} \\log \\sum_z \\pi_{z_1}
              f_{z_1}(y_1) \\prod_{t \\ge 2} A_{z_{t-1} z_t} f_{z_t}(y_t)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = np.repeat(rng.integers(2, size=40), 25)
    >>> y = rng.poisson(np.where(z == 1, 12.0, 2.0))
    >>> result = fit(y, 2, emission="poisson")
    >>> np.round(result.params["rates"], 0)
    array([ 2., 12.])
    """
    d = _prepare(data, emission, lengths)
    k = check_k(k, d.y)
    if init is not None:
        starts = [_check_params(init, emission, k)]
    else:
        starts = _default_starts(d, k, check_positive_int(n_init, "n_init"), seed)
    starts = [_start_on_floor(d, s) for s in starts]
    result = run(
        _make_model(emission),
        d,
        starts,
        tol=tol,
        max_iter=max_iter,
        accelerate=accelerate,
        xtol=xtol,
    )
    _warn_degenerate(d, result.params)
    d.work.clear()
    return result


def _start_on_floor(d: _Data, params: dict) -> dict:
    if d.emission != "gaussian":
        return params
    floor = VARIANCE_FLOOR * d.sd**2
    low = params["variances"] < floor
    if low.any():
        _warnings.warn(
            f"hmm: init variance(s) of state(s) {np.flatnonzero(low).tolist()} are below the "
            f"floor ({VARIANCE_FLOOR:g} × the data's variance); raised to it before EM",
            RuntimeWarning,
        )
        return {**params, "variances": np.maximum(params["variances"], floor)}
    return params


def _warn_degenerate(d: _Data, params: dict) -> None:
    visits = d.last_visits.get(_key(params))
    if visits is None:  # the best start was not the last one run
        expected, _ = _forward_backward(d, params)
        if expected is None:
            return
        visits = _posteriors(d, expected).sum(axis=0)
    empty = np.flatnonzero(visits < _EMPTY * d.T)
    if empty.size:
        _warnings.warn(
            f"hmm: state(s) {empty.tolist()} get no responsibility (expected visits "
            f"{visits[empty].tolist()}): the data do not need {visits.size} states; their "
            "emission parameters and transition rows are not identified. Try a smaller k",
            RuntimeWarning,
        )
    if d.emission == "gaussian":
        floor = VARIANCE_FLOOR * d.sd**2
        held = np.flatnonzero(params["variances"] <= floor * (1 + 1e-9))
        if held.size:
            _warnings.warn(
                f"hmm: the variance of state(s) {held.tolist()} was held at the floor "
                f"({VARIANCE_FLOOR:g} × the data's variance, i.e. sd 1e-3 of the data's): "
                "the state collapsed onto a point, where the likelihood is unbounded. Try a "
                "smaller k or other starting values",
                RuntimeWarning,
            )

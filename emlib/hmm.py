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
across the B blocks); (2) a loop over the B blocks carrying :math:`\\hat\\alpha` from one
block's start to the next through those products; (3) the recursion inside every block
at once from its now known start (a loop over L again). Every vector and every partial
product is renormalised as it is formed (their entries are non-negative, so nothing
cancels and nothing under- or overflows), and the scaling constants of step (3) are those
of the plain sequential recursion. The backward recursion is the same scan run backwards
with :math:`A^\\top`, and Viterbi decoding the same scan in the (max, +) semiring. About
2L + B ≈ 3√T Python-level steps instead of T.

Several sequences are concatenated; where a new one begins the transition :math:`A` is
replaced by the restart :math:`\\mathbf 1 \\pi^\\top`, so ℓ is the sum of the sequences'
log-likelihoods and no transition counts are taken across the join.

Parameters: ``startprob`` (K,), ``transmat`` (K, K), then ``rates`` (K,) for Poisson
emissions or ``means`` and ``variances`` (K,) for Gaussian ones; states sorted by their
emission mean. Data: a 1-D array (one sequence), a list of 1-D arrays, or a 1-D array
with ``lengths`` as in hmmlearn.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, field

import numpy as np
from scipy.special import gammaln, xlogy

from emlib import _warnings
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
    log_factorials: np.ndarray | None  # log y!, (L, B) (Poisson)
    start_mask: np.ndarray  # (L, B): the first observation of a sequence
    forward_restarts: list  # per step l, the blocks where a sequence starts (or None)
    backward_restarts: list  # the same for the ends, in reversed time
    #: The last E-step's parameters and expected visits per state, so that the checks
    #: after a fit need not run forward-backward again.
    last_visits: dict = field(default_factory=dict)

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
        """(L, B, ...) -> (T, ...)."""
        return np.swapaxes(x, 0, 1).reshape(self.B * self.L, *x.shape[2:])[: self.T]


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
    start_mask = np.zeros(B * L, dtype=bool)
    start_mask[starts] = True
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
        log_factorials=None,
        start_mask=start_mask.reshape(B, L).T.copy(),
        forward_restarts=_restart_rows(starts, L, B),
        backward_restarts=_restart_rows(B * L - 1 - ends, L, B),
    )
    # Filled in after: blocked() needs the layout.
    object.__setattr__(d, "y_blocks", d.blocked(y))
    if emission == "poisson":
        object.__setattr__(d, "log_factorials", d.blocked(gammaln(y + 1.0)))
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


def _log_emission(d: _Data, params) -> np.ndarray:
    """log f_j(y_t) in the blocked layout (L, B, K); 0 on the padding."""
    y = d.y_blocks[:, :, None]
    if d.emission == "poisson":
        lam = params["rates"]
        if np.all(lam > 0):
            # y log λ by a product: scipy's xlogy (0 log 0 = 0) costs 5x more.
            out = y * np.log(lam)
        else:
            out = xlogy(y, lam)
        out -= lam
        out -= d.log_factorials[:, :, None]
    else:
        var = params["variances"]
        out = y - params["means"]
        out *= out
        out *= -0.5 / var
        out -= 0.5 * (_LOG_2PI + np.log(var))
    l_, b = d.last
    out[l_ + 1 :, b] = 0.0
    return out


def _max_over_states(x: np.ndarray) -> np.ndarray:
    # Elementwise maxima of K slices: a reduction along an axis of length K is ~6x slower.
    # (a copy even for K = 1: the caller subtracts the result from x in place)
    return functools.reduce(
        np.maximum, [x[..., j] for j in range(1, x.shape[-1])], x[..., 0].copy()
    )


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
    return [np.flatnonzero(row) if row.any() else None for row in mask]


def _scan(E: np.ndarray, rows: list, M: np.ndarray, v0: np.ndarray, *, before: bool = False):
    """The scaled recursion a_t = normalise((a_{t-1} M) * e_t) over all t, blocked.

    ``E`` (L, B, K) holds the emission factors e_t in the blocked layout; at step l of the
    blocks ``rows[l]`` the chain starts afresh, a_t = normalise(v0 * e_t) (the restart
    matrix 1 v0ᵀ applied to a normalised a_{t-1}). The first observation must be such a
    restart. Returns the vectors (L, B, K): the normalised a_t, or with ``before`` the
    vector a_{t-1} M before the emission factor; and the normalisers c_t (L, B), those of
    the plain sequential recursion.
    """
    L, B, K = E.shape
    # Sums over states as products with a vector of ones: a BLAS call beats a reduction
    # along an axis of length K.
    ones, ones2 = np.ones(K), np.ones(K * K)
    # (1) Each block's product of step matrices (restarts included), renormalised; two
    # buffers written in place, as the loop runs L times.
    P = np.broadcast_to(np.eye(K), (B, K, K)).copy()
    spare = np.empty_like(P)
    scale = np.empty(B)
    for step in range(L):
        nxt = spare
        np.matmul(P.reshape(B * K, K), M, out=nxt.reshape(B * K, K))
        r = rows[step]
        if r is not None:
            nxt[r] = P[r].sum(axis=2, keepdims=True) * v0[None, None, :]
        nxt *= E[step][:, None, :]
        np.matmul(nxt.reshape(B, K * K), ones2, out=scale)
        np.divide(1.0, scale, out=scale)
        nxt *= scale[:, None, None]
        P, spare = nxt, P
    # (2) The normalised vector just before each block's first step.
    start = np.empty((B, K))
    a = np.full(K, 1.0 / K)
    for b in range(B):
        start[b] = a
        a = a @ P[b]
        a /= a.sum()
    # (3) The recursion inside every block at once, written into the output in place.
    out = np.empty((L, B, K))
    norm = np.empty((L, B))
    work = np.empty((2, B, K))
    a = start
    with np.errstate(invalid="ignore", divide="ignore"):
        for step in range(L):
            cur = out[step] if not before else work[step % 2]
            pre = out[step] if before else cur
            np.matmul(a, M, out=pre)
            r = rows[step]
            if r is not None:
                pre[r] = v0
            np.multiply(pre, E[step], out=cur)
            c = norm[step]
            np.matmul(cur, ones, out=c)
            cur /= c[:, None]
            a = cur
    return out, norm


def _forward_backward(d: _Data, params, *, backward: bool = True):
    """Posteriors γ (L, B, K), expected transition counts and ℓ; (None, -inf) if ℓ = -inf."""
    log_b = _log_emission(d, params)
    top = _max_over_states(log_b)
    if not np.all(np.isfinite(top)):
        return None, -np.inf
    log_b -= top[:, :, None]
    emis = np.exp(log_b, out=log_b)
    A, pi = params["transmat"], params["startprob"]
    alpha, c = _scan(emis, d.forward_restarts, A, pi)
    l_, b = d.last
    c[l_ + 1 :, b] = 1.0  # the padding
    if not np.all(c > 0):
        return None, -np.inf
    ll = float(np.log(c).sum() + top.sum())
    if not backward:
        return None, ll
    # Backwards, u_t ∝ e_t β_t follows u_{t-1} ∝ (u_t Aᵀ) e_{t-1}, restarting at each end;
    # the vector before the emission factor is β_{t-1} ∝ A u_t (1 at an end). Reversed
    # time is the blocked layout read backwards in both axes.
    beta, _ = _scan(emis[::-1, ::-1], d.backward_restarts, A.T, np.ones(A.shape[0]), before=True)
    beta = beta[::-1, ::-1]
    ones = np.ones(A.shape[0])
    gamma = alpha * beta
    total = gamma @ ones
    gamma *= (1.0 / total)[:, :, None]
    gamma[l_ + 1 :, b] = 0.0
    # ξ_t(i, j) ∝ α̂_{t-1}(i) A_ij e_t(j) β_t(j), whose sum over i, j is c_t (α̂_t · β_t).
    weight = 1.0 / (c * total)
    weight[d.start_mask] = 0.0  # no transition into a sequence's first observation
    weight[l_ + 1 :, b] = 0.0
    prev = np.empty_like(alpha)
    prev[1:] = alpha[:-1]
    prev[0, 1:] = alpha[-1, :-1]
    prev[0, 0] = 0.0
    K = A.shape[0]
    into = emis * beta
    into *= weight[:, :, None]
    xi = A * (prev.reshape(-1, K).T @ into.reshape(-1, K))
    return {"gamma": gamma, "xi": xi}, ll


def _viterbi(d: _Data, params) -> tuple[np.ndarray, float]:
    """The most probable path and its log joint probability, by the (max, +) scan."""
    log_b = _log_emission(d, params)
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
    gamma = expected["gamma"]
    K = gamma.shape[-1]
    flat = gamma.reshape(-1, K)
    y = (d.y_blocks - d.shift).ravel()  # the padding has γ = 0
    # Only K-vectors leave the E-step: the M-step needs these sums, not the (L, B, K) γ.
    stats = {
        "start": gamma[d.start_mask].sum(axis=0),
        "xi": expected["xi"],
        "n": np.ones(flat.shape[0]) @ flat,
        "s1": y @ flat,
    }
    if d.emission == "gaussian":
        stats["s2"] = (y * y) @ flat
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
    return d.unblocked(expected["gamma"])


def e_step(data, params, *, lengths=None) -> dict:
    """Forward–backward: ``{"posteriors": (T, K), "transitions": (K, K)}``.

    ``posteriors`` is :math:`\\gamma_t(j)`, ``transitions`` the expected transition counts
    :math:`\\sum_t \\xi_t(i, j)` over the steps within each sequence.
    """
    d, params = _data_and_params(data, params, lengths)
    expected, _ = _forward_backward(d, params)
    if expected is None:
        raise ValueError("the data are impossible under params (log-likelihood -inf)")
    return {"posteriors": d.unblocked(expected["gamma"]), "transitions": expected["xi"]}


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
    n_init: int = 4,
    seed=0,
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
        visits = expected["gamma"].reshape(-1, expected["gamma"].shape[-1]).sum(axis=0)
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

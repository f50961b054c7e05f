"""The one EM driver that every model in :mod:`emlib` runs on, and the result it returns.

A model supplies its E-step, M-step and log-likelihood (an :class:`EMModel`); the driver
supplies the loop, the stopping rule, the monotonicity guard, SQUAREM acceleration,
restarts and standard errors. EM alternates

.. math::

    \\text{E: } q^{(t)}(z) = p(z \\mid x, \\theta^{(t)}), \\qquad
    \\text{M: } \\theta^{(t+1)} = \\arg\\max_\\theta
        \\mathbb{E}_{q^{(t)}}[\\log p(x, z \\mid \\theta)],

and never lowers the observed-data log-likelihood :math:`\\ell(\\theta) = \\log p(x \\mid
\\theta)`; the driver checks that at every iteration.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from emlib import _per_fit, _warnings, convergence, stopping
from emlib._validation import check_positive_int, check_tol

Params = dict[str, Any]

#: The defaults every ``fit`` shares: the stopping rule's tolerance (Aitken's bound on the
#: relative distance to the maximum), the cap on EM-map evaluations, SQUAREM acceleration.
DEFAULT_TOL = stopping.DEFAULT_TOL
DEFAULT_MAX_ITER = 10_000
DEFAULT_ACCELERATE = "squarem"


def _identity(params: Params) -> Params:
    return params


@dataclass(frozen=True)
class EMModel:
    """What a model module hands to the driver.

    Attributes
    ----------
    name : str
        Module name, used in messages.
    e_step : callable
        ``e_step(prepared, params) -> (expected, loglik)``: the expected complete-data
        statistics and the observed-data log-likelihood at ``params`` (both come out of
        the same pass over the data).
    m_step : callable
        ``m_step(prepared, expected) -> params``.
    pack, unpack : callable
        Map ``params`` to a vector of free coordinates and back (a probability vector
        loses its last entry, which is one minus the rest). SQUAREM, the rate and the
        standard errors work on these coordinates.
    in_domain : callable
        Whether a packed vector is a valid parameter.
    finalize : callable
        Put fitted parameters in canonical form (mixtures sort components by mean).
    scale : callable, optional
        ``scale(prepared, theta)`` (``theta`` a packed start): the size of each packed
        coordinate below which the stopping rule measures its steps in absolute rather
        than relative terms (a number or one per coordinate; default 1). Giving the data's
        units here (e.g. sd(x) for the means and sds of a normal mixture) makes the number
        of iterations independent of those units.
    loglik_only : callable, optional
        ``loglik_only(prepared, params) -> float``: ℓ alone, for models where that costs
        less than a whole E-step (the standard errors evaluate ℓ about ``2 p²`` times and
        need no expected statistics). Default: the E-step's second output.
    symmetric : tuple of str
        Names of parameters that are symmetric matrices (or stacks of them, symmetric in
        the last two axes): :meth:`EMResult.summary` lists only their lower triangle.
    """

    name: str
    e_step: Callable[[Any, Params], tuple[Any, float]]
    m_step: Callable[[Any, Any], Params]
    pack: Callable[[Params], np.ndarray]
    unpack: Callable[[np.ndarray], Params]
    in_domain: Callable[[np.ndarray], bool]
    finalize: Callable[[Params], Params] = _identity
    scale: Callable[[Any], Any] | None = None
    loglik_only: Callable[[Any, Params], float] | None = None
    symmetric: tuple[str, ...] = ()

    def loglik(self, prepared, params: Params) -> float:
        if self.loglik_only is not None:
            return self.loglik_only(prepared, params)
        return self.e_step(prepared, params)[1]

    def em_map(self, prepared) -> Callable[[np.ndarray], np.ndarray]:
        """The EM fixed-point map on packed coordinates, for the data ``prepared``."""

        def em_map(theta: np.ndarray) -> np.ndarray:
            expected, _ = self.e_step(prepared, self.unpack(theta))
            return self.pack(self.m_step(prepared, expected))

        return em_map

    def objective(self, prepared) -> Callable[[np.ndarray], float]:
        """The log-likelihood on packed coordinates, ``-inf`` outside the parameter space."""

        def objective(theta: np.ndarray) -> float:
            if not self.in_domain(theta):
                return -np.inf
            return self.loglik(prepared, self.unpack(theta))

        return objective


@dataclass
class EMResult:
    """The outcome of an EM fit.

    Attributes
    ----------
    params : dict
        Parameter name -> float or array (of any shape: vectors, matrices, stacks of
        matrices), in the model's documented form.
    loglik : float
        Observed-data log-likelihood at ``params``, with every constant included.
    n_iter : int
        Number of EM-map evaluations (one E-step and one M-step each) of the reported run.
    converged : bool
        Whether the stopping rule (:mod:`emlib.stopping`) was met within ``max_iter``: the
        estimated distance to the maximum is at most ``tol``. False otherwise, with a
        :class:`~emlib.convergence.ConvergenceWarning`.
    loglik_history : ndarray
        Log-likelihood at the start and after every iteration (every SQUAREM cycle when
        accelerated); ``loglik_history[-1] == loglik``.
    param_history : list of dict
        The parameters at the same points as ``loglik_history``.
    se : dict
        Standard errors from the observed information (computed on first access), each
        of the shape of its parameter.
    n_iter_total : int
        EM-map evaluations over every start (the work done; ``n_iter`` counts the winner).
    error_bound : float
        Aitken's estimate of the relative distance to the maximum when the run stopped
        (:func:`emlib.stopping.aitken_bound`; ``inf`` when the rate could not be estimated,
        NaN when a step rule ``xtol`` ended the run).
    packed_params : ndarray
        ``params`` in the model's free (packed) coordinates :math:`\\hat\\eta`, the vector
        SQUAREM, the rate and the standard errors work on (:attr:`EMModel.pack`).

    Methods
    -------
    em_map(theta)
        One EM iteration :math:`M(\\eta)` (an E-step and an M-step on this fit's data) from a
        point in packed coordinates, returned in packed coordinates. At a converged fit
        :math:`M(\\hat\\eta) \\approx \\hat\\eta`, and the Jacobian of ``em_map`` there is the
        rate matrix of :func:`emlib.convergence.rate`.
    summary()
        A text table of estimates and standard errors.
    """

    params: Params
    loglik: float
    n_iter: int
    converged: bool
    loglik_history: np.ndarray = field(repr=False)
    param_history: list[Params] = field(repr=False)
    _model: EMModel = field(repr=False)
    _prepared: Any = field(repr=False)
    n_iter_total: Any = None
    error_bound: Any = float("nan")

    def __post_init__(self):
        if self.n_iter_total is None:
            self.n_iter_total = self.n_iter

    @property
    def packed_params(self) -> np.ndarray:
        """``params`` in the model's free (packed) coordinates."""
        return self._model.pack(self.params)

    def em_map(self, theta: np.ndarray) -> np.ndarray:
        """One EM iteration from ``theta`` (packed coordinates), on this fit's data.

        .. math:: M(\\eta) = \\operatorname{pack}\\bigl(\\arg\\max_{\\theta'}
                  \\mathbb{E}_{p(z \\mid x, \\eta)}[\\log p(x, z \\mid \\theta')]\\bigr)
        """
        return self._model.em_map(self._prepared)(theta)

    @cached_property
    def se(self) -> Params:
        """Standard errors from the inverse of the observed information.

        The observed information :math:`-\\nabla^2 \\ell(\\hat\\theta)` is computed by central
        finite differences in the free (packed) coordinates :math:`\\eta`; the standard
        error of every entry :math:`g_m(\\eta)` of every parameter (matrices raveled in C
        order, e.g. a covariance entry or a transition probability) follows by the delta
        method, :math:`\\operatorname{se}(g_m) = \\sqrt{(J I^{-1} J^\\top)_{mm}}` with
        :math:`J = \\partial g / \\partial \\eta`. Each standard error has the shape of its
        parameter.
        """
        return _standard_errors(self._model, self._prepared, self.params)

    def summary(self) -> str:
        """A short text table of estimates and standard errors.

        One row per entry: ``name`` for a scalar, ``name[i]`` for a vector, ``name[i,j]``
        for a matrix (``name[j,a,b]`` for a stack of matrices); of a symmetric matrix
        (:attr:`EMModel.symmetric`) only the lower triangle.
        """
        se = self.se
        rows = []
        for name, value in self.params.items():
            values, errors = np.asarray(value, dtype=float), np.asarray(se[name], dtype=float)
            for index in np.ndindex(values.shape):
                if name in self._model.symmetric and index[-1] > index[-2]:
                    continue
                label = f"{name}[{','.join(str(i) for i in index)}]" if index else name
                rows.append((label, values[index], errors[index]))
        width = max([14] + [len(label) + 2 for label, _, _ in rows])
        lines = [
            f"EM fit of {self._model.name}: log-likelihood {self.loglik:.6f}, "
            f"{self.n_iter} EM-map evaluations, "
            + ("converged" if self.converged else "NOT converged"),
            f"{'parameter':<{width}}{'estimate':>14}{'std. error':>14}",
        ]
        lines += [f"{label:<{width}}{v:>14.6g}{e:>14.4g}" for label, v, e in rows]
        return "\n".join(lines)


def _flatten(params: Params) -> np.ndarray:
    """Every parameter's entries in one vector (matrices raveled in C order)."""
    return np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in params.values()])


def _standard_errors(model: EMModel, prepared, params: Params) -> Params:
    theta = model.pack(params)
    nan_result = {k: np.full(np.shape(v), np.nan) for k, v in params.items()}
    for k, v in nan_result.items():
        if v.ndim == 0:
            nan_result[k] = float("nan")
    # The finite differences step up to twice the Hessian step in each coordinate; a
    # coordinate that cannot step both ways is on the boundary of the parameter space.
    reach = 2 * convergence.difference_steps(theta, order=2)
    eye = np.eye(theta.size)
    interior = np.array(
        [
            all(model.in_domain(theta + sign * reach[i] * eye[i]) for sign in (-1, 1))
            for i in range(theta.size)
        ],
        dtype=bool,
    )
    if not interior.any():
        _warnings.warn(
            f"{model.name}: every coordinate of the estimate lies on the boundary of the "
            "parameter space, where the observed information does not give standard "
            "errors; they are NaN",
            RuntimeWarning,
        )
        return nan_result
    free = np.flatnonzero(interior)

    def embed(sub: np.ndarray) -> np.ndarray:
        full = theta.copy()
        full[free] = sub
        return full

    objective = model.objective(prepared)
    hess = convergence.hessian(lambda sub: objective(embed(sub)), theta[free])
    info = -hess
    if not np.all(np.isfinite(info)) or np.any(np.linalg.eigvalsh(info) <= 0):
        _warnings.warn(
            f"{model.name}: the observed information is not positive definite at the "
            "estimate (a flat or boundary maximum), so standard errors are NaN",
            RuntimeWarning,
        )
        return nan_result
    cov = np.linalg.inv(info)
    jac = convergence.jacobian(lambda sub: _flatten(model.unpack(embed(sub))), theta[free])
    flat_se = np.sqrt(np.maximum(np.diag(jac @ cov @ jac.T), 0.0))
    # Parameters that move with a boundary coordinate have no standard error.
    if not interior.all():
        boundary_jac = convergence.jacobian(
            lambda sub: _flatten(model.unpack(_with(theta, ~interior, sub))), theta[~interior]
        )
        flat_se[np.any(boundary_jac != 0, axis=1)] = np.nan
        _warnings.warn(
            f"{model.name}: the estimate lies on the boundary of the parameter space in "
            f"packed coordinate(s) {np.flatnonzero(~interior).tolist()}; their standard "
            "errors are NaN, and those of the other parameters hold the boundary ones fixed "
            "(as pscl and MASS::glm.nb report them)",
            RuntimeWarning,
        )
    out: Params = {}
    start = 0
    for name, value in params.items():
        size = np.size(value)
        chunk = flat_se[start : start + size]
        out[name] = float(chunk[0]) if np.ndim(value) == 0 else chunk.reshape(np.shape(value))
        start += size
    return out


def _with(theta: np.ndarray, mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    full = theta.copy()
    full[mask] = values
    return full


def check_options(tol, max_iter, accelerate, xtol):
    """Validate the run options every ``fit`` shares; return them normalised."""
    tol = check_tol(tol)
    if xtol is not None:
        xtol = check_tol(xtol, "xtol")
    max_iter = check_positive_int(max_iter, "max_iter")
    if accelerate not in (None, "squarem"):
        raise ValueError(f"accelerate must be None or 'squarem'; got {accelerate!r}")
    return tol, max_iter, accelerate, xtol


def run(
    model: EMModel,
    prepared,
    starts: Sequence[Params],
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    accelerate: str | None = DEFAULT_ACCELERATE,
    xtol: float | None = None,
) -> EMResult:
    """Run EM from each start and return the fit with the highest log-likelihood.

    Each start is fitted alone, as a batch of one of :func:`run_batch` (which runs it on
    numbers): the model's steps run start by start, so one batch of all starts would share
    no work and only add numpy's cost per call on its few rows.

    Parameters
    ----------
    model : EMModel
        The model's E-step, M-step and coordinates.
    prepared
        The data in the form the model's steps take (validated, often reduced to
        sufficient statistics such as a frequency table).
    starts : sequence of dict
        Starting parameters; one EM run each.
    tol : float, default 1e-8
        Stop when Aitken's estimate of the distance still to go to the maximum,
        ``s ρ̂ / (1 − ρ̂)`` with ``s`` the last plain EM step and ``ρ̂`` the rate estimated
        from the last step ratios (:mod:`emlib.stopping`), is at most ``tol``. Distances
        are relative per coordinate (``|Δθ_j| / max(scale_j, |θ_j|)``, the largest taken),
        so the rule depends neither on the additive constants of ℓ nor, with the model's
        ``scale``, on the units of the data. A step at rounding level also ends the run.
    max_iter : int
        Most EM-map evaluations per run.
    accelerate : {"squarem", None}, default "squarem"
        ``"squarem"`` extrapolates with SQUAREM (Varadhan & Roland 2008), one cycle of
        :func:`emlib.convergence.squarem_cycle_batch` at a time (the rule zinb's matrix
        fits use too): an extrapolated point that would lower the likelihood is moved back
        towards the two plain EM steps of the cycle, and replaced by them if it still
        would, so the log-likelihood never decreases; ``None`` runs plain EM.
    xtol : float, optional
        Also stop when the Euclidean length of a step in the free coordinates is at most
        ``xtol`` (the rule of the SQUAREM R package). Either rule ends the run.

    Returns
    -------
    EMResult
        The best run; ``n_iter_total`` adds up the EM-map evaluations of every start.

    Notes
    -----
    Why SQUAREM by default: plain EM converges linearly at the rate ρ, the fraction of
    missing information, and crawls where ρ is near 1 (overlapping mixtures, boundary
    maxima: ρ = 0.996 on Hasselblad's data). SQUAREM's squared extrapolation turns that
    into a few dozen EM-map evaluations, needs nothing but the EM map, and with the
    likelihood check (the "globally convergent" safeguard of Varadhan & Roland 2008, §7)
    keeps EM's monotone ascent. Why this stopping rule: a small change of ℓ or of θ per
    step says nothing about the distance left when ρ is near 1; Aitken's geometric-tail
    bound (Lange, *Numerical Analysis for Statisticians*, on EM's linear rate) scales the
    step by ρ/(1 − ρ). Inside a SQUAREM cycle the rule is applied to its two plain EM
    steps, the rate being the larger of this cycle's and the last cycle's estimates.
    """
    tol, max_iter, accelerate, xtol = check_options(tol, max_iter, accelerate, xtol)
    if not starts:
        raise ValueError("at least one starting value is needed")
    results = _run_starts(model, prepared, list(starts), tol, max_iter, accelerate, xtol)
    best = results[0]
    for result in results[1:]:
        if result.loglik > best.loglik:
            best = result
    best.n_iter_total = sum(result.n_iter for result in results)
    if not best.converged:
        _warnings.warn(
            non_convergence_message(
                model.name, best.n_iter, max_iter, tol, best.error_bound, accelerate
            ),
            convergence.ConvergenceWarning,
        )
    return best


def non_convergence_message(name, n_iter, max_iter, tol, bound, accelerate, what="EM") -> str:
    """The text of the :class:`~emlib.convergence.ConvergenceWarning`: how far, what to do."""
    how_far = (
        f"the estimated distance to the maximum is still {bound:.1e} (relative)"
        if np.isfinite(bound)
        else "the steps were not yet shrinking, so the distance to the maximum is unknown"
    )
    return (
        f"{name}: {what} stopped after {n_iter} EM-map evaluations (max_iter={max_iter}) "
        f"before meeting tol={tol:g}: {how_far}. Raise max_iter"
        + (
            ", or try other starting values (SQUAREM is on; accelerate='squarem')"
            if accelerate
            else ", or pass accelerate='squarem'"
        )
    )


@dataclass
class BatchRun:
    """What :func:`run_batch` returns: one row per fit, in packed coordinates."""

    points: np.ndarray  # (n_fits, d): where each fit ended
    loglik: np.ndarray  # (n_fits,)
    n_iter: np.ndarray  # (n_fits,) EM-map evaluations
    converged: np.ndarray  # (n_fits,) bool
    error_bound: np.ndarray  # (n_fits,) Aitken's bound at the end (NaN: stopped by xtol)
    loglik_history: list  # per fit: ℓ at the start and after every step (an array)
    #: Which fits are still iterating: all False once :func:`run_batch` returns. During
    #: the run the hooks of :func:`run_batch` see (and may change) this state, the
    #: histories then being lists.
    active: np.ndarray  # (n_fits,) bool


def run_batch(
    em_map: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    objective: Callable[[np.ndarray, np.ndarray], np.ndarray],
    in_domain: Callable[[np.ndarray], np.ndarray],
    starts: np.ndarray,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    accelerate: str | None = DEFAULT_ACCELERATE,
    xtol: float | None = None,
    scale=1.0,
    message: str | None = None,
    labels: np.ndarray | None = None,
    on_step: Callable[[np.ndarray, np.ndarray], None] | None = None,
    loglik: np.ndarray | None = None,
    vet_stop: Callable | None = None,
    between: Callable[[BatchRun], None] | None = None,
    vectors: bool = False,
) -> BatchRun:
    """Run EM on many fits at once (many genes, many starts): the loop of :func:`run` and
    of :func:`emlib.zinb.fit` (which adds its Newton polish by the two hooks).

    Each step takes every fit still iterating together: one SQUAREM cycle
    (:func:`emlib.convergence.squarem_cycle_batch`) or, with ``accelerate=None`` or fewer
    than three evaluations left in a fit's budget, one plain EM step; then each fit's
    stopping rule (:mod:`emlib.stopping`), the monotonicity guard and the budget of
    ``max_iter`` EM-map evaluations. A fit that stops is not evaluated again. Each fit
    takes the path it would take alone (a cycle's backtracking is bounded by that fit's
    budget, not the batch's). :func:`run` fits each start of a model as a batch of one.
    A batch of one (a single start) runs on numbers (:mod:`emlib._per_fit`): its per-fit
    values are floats and its point a vector, the same arithmetic as its row of a batch,
    without numpy's cost per call on arrays of one element (and, with no ``vet_stop`` or
    ``between`` hook to see it, its state is Python's until the result); the callables
    and hooks see arrays, unless ``vectors`` is given.

    Parameters
    ----------
    em_map : callable
        ``em_map(rows, v) -> (M(v), ℓ(v))``: the EM map of the fits ``rows`` (indices
        into ``starts``) at their packed points ``v`` of shape ``(len(rows), d)``, and the
        log-likelihood at ``v``. Only fits whose result is used are passed.
    objective : callable
        ``objective(rows, v) -> ℓ(v)``, ``-inf`` where ``v`` is outside the domain.
    in_domain : callable
        ``in_domain(v) -> bool array``: which rows of ``v`` are parameters of the model.
    starts : ndarray of shape (n_fits, d)
        The packed starting points.
    tol, max_iter, accelerate, xtol
        As in :func:`run`.
    scale : float or array_like
        The stopping rule's floor per coordinate (:func:`emlib.stopping.step_sizes`): a
        number, one per coordinate (shape ``(d,)``) or one row per fit (``(n_fits, d)``).
    message : str, optional
        The guard's message template (:func:`emlib.convergence.guard_batch`).
    labels : ndarray of shape (n_fits,), optional
        The fits' names in the guard's message (default: their row, for more than one fit).
    on_step : callable, optional
        ``on_step(rows, v)`` after every step, with the fits that took it and their new
        points (to keep a parameter history, say); with ``vectors``, the point as a vector.
    loglik : ndarray of shape (n_fits,), optional
        ℓ at the starts, if the caller has it (else ``objective`` gives it).
    vet_stop : callable, optional
        ``vet_stop(state, rows, done, bound) -> (done, bound)`` after every step, with the
        fits that took it, which of them met the stopping rule and their bounds (the
        state's points, ℓ and ``n_iter`` already updated): a model's own check of a stop,
        which may veto it (e.g. a second-order test of the point).
    between : callable, optional
        ``between(state)`` before the first step and after every step, with the run's
        :class:`BatchRun` state: it may move fits (``points``, ``loglik``, appending to
        ``loglik_history``, adding to ``n_iter``), and stop them (``active``, with
        ``converged`` and ``error_bound``), e.g. by another method near the maximum. A
        fit's moves must not lower its ℓ: the guard checks each step from the ℓ it left.
    vectors : bool, default False
        For a batch of one: call ``em_map``, ``objective`` and ``in_domain`` on the fit's
        point as a vector of shape ``(d,)``, and take numbers back (ℓ a float, the domain a
        bool), with no arrays of one element to build and take apart. Ignored for more
        fits.

    Returns
    -------
    BatchRun
    """
    v = np.array(starts, dtype=float)
    n = v.shape[0]
    everyone = np.arange(n)
    # A batch of one runs on numbers (emlib._per_fit.ONE): its per-fit values are floats and
    # its point a vector, indexed by 0; the same arithmetic, without numpy's cost per call.
    one = n == 1
    vectors = vectors and one
    xp = _per_fit.ONE if one else _per_fit.BATCH
    if not isinstance(scale, float):
        scale = np.asarray(scale, dtype=float)
        scale = float(scale) if scale.ndim == 0 else scale
    per_fit_scale = isinstance(scale, np.ndarray) and scale.ndim == 2
    if one and per_fit_scale:
        scale, per_fit_scale = scale[0], False
    if loglik is None:
        loglik = [objective(everyone, v[0])] if vectors else objective(everyone, v)
    # The state of a fit alone that no hook sees is Python's: lists of one (its point a
    # vector, replaced, not copied), read and written without numpy scalars.
    own = one and vet_stop is None and between is None

    def per_fit(value, dtype=float):
        return [value] if own else np.full(n, value, dtype=dtype)

    ll = [float(loglik[0])] if own else np.array(loglik, dtype=float)
    n_iter = per_fit(0, np.int64)
    converged = per_fit(False, bool)
    bound = per_fit(np.inf)
    last_step = per_fit(np.inf)  # plain EM: the previous step
    last_rho = per_fit(np.inf)  # the slowest rate seen (see stopping.slowest_rate)
    step_max = per_fit(1.0)
    active = per_fit(True, bool)
    history = [[value] for value in ll]
    if own:
        v, state = [v[0]], None  # no hook to see the state before the end
    else:
        state = BatchRun(v, ll, n_iter, converged, bound, history, active)
    if labels is None and n > 1:
        labels = np.arange(n)
    calls_everyone = _subset_calls(em_map, objective, in_domain, everyone, one, vectors)
    if between is not None:
        between(state)
    iteration = 0
    while active[0] if one else active.any():
        iteration += 1
        rows = everyone if one else np.flatnonzero(active)
        if accelerate != "squarem":
            groups = ((rows, False),)
        elif xp.all(cycling := max_iter - n_iter[0 if one else rows] >= 3):
            groups = ((rows, True),)
        elif not xp.any(cycling):
            groups = ((rows, False),)
        else:
            groups = ((rows[cycling], True), (rows[~cycling], False))
        for group, squarem in groups:
            # Every fit at once (one fit, say): slices, views instead of copies.
            at = 0 if one else slice(None) if group.size == n else group
            guard = functools.partial(
                convergence.guard_batch,
                labels=None if labels is None else labels[group if one else at],
                iteration=iteration,
                message=message,
            )
            if group.size == n:
                mapped, value, domain = calls_everyone
            else:
                mapped, value, domain = _subset_calls(em_map, objective, in_domain, group, one)
            sc = scale[at] if per_fit_scale else scale
            if squarem:
                v_new, ll_new, used, done, step_max[at], last_rho[at], bound[at] = (
                    convergence.squarem_cycle_batch(
                        mapped,
                        value,
                        v[at],
                        step_max[at],
                        in_domain=domain,
                        tol=tol,
                        xtol=xtol,
                        last_rho=last_rho[at],
                        # Each halving may cost an EM step: no more than the budget has left.
                        backtracks=xp.minimum(
                            convergence.SQUAREM_BACKTRACKS, max_iter - n_iter[at] - 3
                        ),
                        scale=sc,
                        guard=guard,
                    )
                )
            else:
                v_new, ll_new, done, last_step[at], last_rho[at], bound[at] = (
                    convergence.plain_step_batch(
                        mapped,
                        value,
                        v[at],
                        tol=tol,
                        xtol=xtol,
                        last_step=last_step[at],
                        last_rho=last_rho[at],
                        scale=sc,
                    )
                )
                used = 1
            guard(ll[at], ll_new)
            v[at], ll[at] = v_new, ll_new
            n_iter[at] += used
            if vet_stop is not None:
                done, vetted = vet_stop(state, group, xp.batch(done), xp.batch(bound[at]))
                done, bound[at] = xp.unbatch(done), xp.unbatch(vetted)
            converged[at] = done
            for i, value_i in zip(group.tolist(), xp.values(ll_new), strict=True):
                history[i].append(value_i)
            if on_step is not None:
                on_step(group, v_new if vectors else v_new[None] if one else v_new)
            active[at] = xp.not_(done) & (n_iter[at] < max_iter)
        if between is not None:
            between(state)
    if own:  # the result's arrays
        state = BatchRun(
            np.array(v), *map(np.array, (ll, n_iter, converged, bound)), history, np.array(active)
        )
    state.loglik_history = [np.asarray(h) for h in history]
    return state


def _subset_calls(em_map, objective, in_domain, rows, one: bool, vectors: bool = False):
    """``em_map``, ``objective`` and ``in_domain`` of :func:`run_batch` in the cycle's form,
    ``f(v, need)``, on the fits ``rows``: each is called on the fits whose result is used
    only. With ``one`` (a batch of one) they take the fit's point as a vector and give
    numbers (:data:`emlib._per_fit.ONE`); with ``vectors`` too, the callables already do."""
    if vectors:
        return (lambda v, need: em_map(rows, v), lambda v, need: objective(rows, v), in_domain)
    if one:
        return (
            lambda v, need: _first(em_map(rows, v[None])),
            lambda v, need: objective(rows, v[None])[0].item(),
            lambda v: in_domain(v[None])[0].item(),
        )

    def mapped(v, need):
        if need.all():
            return em_map(rows, v)
        out, ll = v.copy(), np.full(v.shape[0], np.nan)
        out[need], ll[need] = em_map(rows[need], v[need])
        return out, ll

    def value(v, need):
        if need.all():
            return objective(rows, v)
        out = np.full(v.shape[0], np.nan)
        out[need] = objective(rows[need], v[need])
        return out

    return mapped, value, in_domain


def _first(mapped):
    """The one fit of a batch's ``(M(v), ℓ(v))``: a vector and a number."""
    points, ll = mapped
    return points[0], ll[0].item()


def _run_starts(model, prepared, starts, tol, max_iter, accelerate, xtol) -> list[EMResult]:
    """One EM fit from each start, each a batch of one of :func:`run_batch` (on numbers).

    The starts are fitted one after another, not as one batch: a model's E- and M-steps run
    start by start, so a batch would share no work and only add numpy's cost per call on
    its few rows (five starts of a model of trivial cost: 20 µs per evaluation as a batch,
    11 µs alone). A model whose EM map is vectorised across fits gains from
    :func:`run_batch` itself, as :func:`emlib.zinb.fit` does across genes.
    """
    begun = []
    for start in starts:  # every start is checked before any is fitted
        expected, ll = model.e_step(prepared, start)
        if not np.isfinite(ll):
            raise ValueError(
                f"{model.name}: the log-likelihood at the starting values is {ll}; the data "
                "are impossible under them (choose starting values that give every "
                "observation positive probability)"
            )
        begun.append((start, expected, ll))
    return [_run_one(model, prepared, *first, tol, max_iter, accelerate, xtol) for first in begun]


def _run_one(model, prepared, start, expected, ll, tol, max_iter, accelerate, xtol) -> EMResult:
    """The EM fit from ``start`` (whose E-step gave ``expected`` and ``ℓ``)."""
    theta = model.pack(start)
    fit = _OneFit(model, prepared)
    fit.remember(theta, start, expected, ll)
    scale = 1.0
    if model.scale is not None:
        scale = np.broadcast_to(model.scale(prepared, theta), theta.shape)
    param_history = [start]

    def record(rows, v):
        param_history.append(fit.recall(v)[0])

    run = run_batch(
        lambda rows, v: fit.em_map(v),
        lambda rows, v: fit.objective(v),
        model.in_domain,
        theta[None],
        loglik=[ll],
        vectors=True,
        tol=tol,
        max_iter=max_iter,
        accelerate=accelerate,
        xtol=xtol,
        scale=scale,
        on_step=record,
    )
    return EMResult(
        params=model.finalize(param_history[-1]),
        loglik=float(run.loglik[0]),
        n_iter=int(run.n_iter[0]),
        converged=bool(run.converged[0]),
        loglik_history=run.loglik_history[0],
        param_history=param_history,
        _model=model,
        _prepared=prepared,
        error_bound=float(run.error_bound[0]),
    )


class _OneFit:
    """One fit's EM map and log-likelihood on packed points, E-stepping no point twice.

    The cycle asks for ℓ at the point it starts from, whose E-step the driver already has,
    and the driver needs the E-step of the point the cycle ends at, which the cycle already
    made: the last few E-steps are kept, keyed by the packed point. A point the M-step made
    is E-stepped at the M-step's own parameters, not at their packed and unpacked copy.
    """

    #: E-steps kept (each may hold per-observation arrays): the cycle's start, its end and
    #: the points between. A fallback after several trials may E-step its point again.
    _KEEP = 4
    #: M-step parameters kept (small): every point one cycle makes.
    _KEEP_MAPPED = 2 * (convergence.SQUAREM_BACKTRACKS + 2)

    def __init__(self, model: EMModel, prepared):
        self.model, self.prepared = model, prepared
        self._e_steps: dict[bytes, tuple] = {}  # packed point -> (params, expected, ℓ)
        self._mapped: dict[bytes, Any] = {}  # packed point -> the M-step's params

    def remember(self, theta: np.ndarray, params, expected, ll: float) -> None:
        _keep(self._e_steps, theta.tobytes(), (params, expected, ll), self._KEEP)

    def recall(self, theta: np.ndarray) -> tuple:
        """``(params, expected, ℓ)`` at ``theta``."""
        key = theta.tobytes()
        found = self._e_steps.get(key)
        return self._e_step(theta, key, self._mapped.get(key)) if found is None else found

    def _e_step(self, theta: np.ndarray, key: bytes, params) -> tuple:
        """E-step ``theta`` (whose bytes are ``key``) at the M-step's ``params``, if any."""
        params = self.model.unpack(theta) if params is None else params
        found = (params, *self.model.e_step(self.prepared, params))
        _keep(self._e_steps, key, found, self._KEEP)
        return found

    def em_map(self, theta: np.ndarray) -> tuple[np.ndarray, float]:
        _, expected, ll = self.recall(theta)
        if not math.isfinite(ll):  # no E-step to map from: the point stays, and is rejected
            return theta, ll
        params = self.model.m_step(self.prepared, expected)
        packed = self.model.pack(params)
        _keep(self._mapped, packed.tobytes(), params, self._KEEP_MAPPED)
        return packed, ll

    def objective(self, theta: np.ndarray) -> float:
        key = theta.tobytes()
        found = self._e_steps.get(key)
        if found is not None:
            return found[2]
        # A point the M-step made is the model's by construction (a weight can reach 0
        # exactly, on the boundary): only an extrapolated point is checked.
        params = self._mapped.get(key)
        if params is None and not self.model.in_domain(theta):
            return -np.inf
        return self._e_step(theta, key, params)[2]


def _keep(store: dict, key, value, most: int) -> None:
    """Put ``key: value`` in ``store``, dropping the oldest entries beyond ``most``."""
    store[key] = value
    if len(store) > most:  # one entry comes in at a time
        store.pop(next(iter(store)))

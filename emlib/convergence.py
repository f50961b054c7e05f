"""Tools for watching EM converge: stopping rules, the monotonicity guard, the rate, SQUAREM.

Every EM fit in :mod:`emlib` runs through :func:`emlib.em.run`, which uses the pieces here:

* :func:`relative_change` is the stopping rule on the log-likelihood;
* :func:`check_monotone` is the guard that turns a decrease of the log-likelihood
  (beyond rounding) into an error that names the iteration, because EM cannot go down;
  :func:`guard_batch` is the same guard on many fits at once (the ZINB matrix fit);
* :func:`squarem_step` is one cycle of SQUAREM (Varadhan & Roland 2008), an
  extrapolation that uses the same fixed-point map as plain EM;
  :func:`squarem_cycle_batch` is a cycle on many fits at once, with backtracking on the
  step length and the stopping rule, and :func:`plain_step_batch` its unaccelerated
  counterpart (the one driver, :func:`emlib.em.run_batch`, runs both, for a model's
  starts and for every gene of a ZINB matrix);
* :func:`rate` estimates the linear rate of convergence at the fixed point;
* :func:`jacobian` and :func:`hessian` are the central finite differences behind
  :func:`rate` and the standard errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from emlib import _per_fit, _warnings, stopping

#: A decrease of the log-likelihood smaller than this, relative to its size, is taken as
#: rounding error in the sum over observations rather than as a real decrease.
MONOTONE_RTOL = 1e-10


class ConvergenceWarning(UserWarning):
    """EM stopped before its stopping rule was met."""


class MonotonicityError(RuntimeError):
    """The log-likelihood went down between two EM iterations: a bug, since EM cannot."""


def relative_change(old: float, new: float) -> float:
    """Relative change of the log-likelihood, ``|new - old| / max(|new|, 1)``.

    The denominator is floored at 1 so that a log-likelihood near zero (a perfect fit)
    does not make the rule impossible to satisfy.
    """
    return abs(new - old) / max(abs(new), 1.0)


def decrease_tolerance(loglik, rtol: float = MONOTONE_RTOL):
    """The largest decrease of ``loglik`` that is still treated as rounding (batched).

    :math:`\\text{rtol} \\cdot \\max(|\\ell|, 1)`: relative to the size of ℓ, a sum over
    observations whose rounding grows with it, floored at 1 for ℓ near zero.
    """
    if isinstance(loglik, float):  # one fit: the same arithmetic on a number
        return rtol * max(abs(loglik), 1.0)
    return rtol * np.maximum(np.abs(loglik), 1.0)


def check_monotone(history, *, rtol: float = MONOTONE_RTOL) -> None:
    """Raise :class:`MonotonicityError` if a log-likelihood history ever goes down.

    Parameters
    ----------
    history : array_like
        Log-likelihood values, one per iteration, oldest first.
    rtol : float
        Decreases smaller than ``rtol * max(|loglik|, 1)`` are rounding and are allowed.

    Examples
    --------
    >>> check_monotone([-10.0, -9.0, -8.5])
    >>> check_monotone([-10.0, -9.0, -9.5])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emlib.convergence.MonotonicityError: the log-likelihood decreased at iteration 2, ...
    """
    h = np.asarray(history, dtype=float)
    for t in range(1, h.size):
        guard_batch(h[t - 1], h[t], iteration=t, rtol=rtol)


#: The guard's default messages (fields: ``of``, naming the fit or empty, ``iteration``,
#: ``old``, ``new`` and ``by`` = old − new).
_DECREASE_MESSAGE = (
    "the log-likelihood{of} decreased at iteration {iteration}, from {old!r} to {new!r} "
    "(by {by:.3g}): EM cannot lower the likelihood, so the E-step and M-step disagree"
)
_NOT_FINITE_MESSAGE = (
    "the log-likelihood{of} became {new} at iteration {iteration}: the parameters left the "
    "region where the model is defined"
)


def guard_batch(old, new, *, iteration: int, labels=None, message=None, rtol=MONOTONE_RTOL):
    """The monotonicity guard on a batch of fits: raise if any log-likelihood went down.

    EM never lowers the observed-data log-likelihood, :math:`\\ell(\\theta^{(t+1)}) \\ge
    \\ell(\\theta^{(t)})`. Fit :math:`i` fails when its new value is not finite (the
    parameters left the model's domain) or when

    .. math:: \\ell_i^{\\text{new}} < \\ell_i^{\\text{old}}
              - \\text{rtol} \\cdot \\max(|\\ell_i^{\\text{old}}|, 1),

    a decrease beyond the rounding of the sum over observations
    (:func:`decrease_tolerance`).

    Parameters
    ----------
    old, new : float or ndarray of shape (n_fits,)
        Each fit's log-likelihood before and after the step. A scalar is a batch of one.
    iteration : int
        The iteration the message names.
    labels : ndarray of shape (n_fits,), optional
        A name for each fit (gene indices, say); the message names the first failing one.
    message : str, optional
        A :meth:`str.format` template for the error, used for both failures, with the
        fields ``label``, ``iteration``, ``old``, ``new`` and ``by`` (old − new).
        Default: one message for a decrease, another for a value that is not finite, each
        naming the fit as ``"of fit {label}"`` when ``labels`` are given.
    rtol : float
        The relative rounding allowance.

    Raises
    ------
    MonotonicityError
        For the first failing fit (in batch order), with its values as given.

    Examples
    --------
    >>> guard_batch(np.array([-10.0, -5.0]), np.array([-9.0, -5.0]), iteration=3)
    >>> guard_batch(np.array([-10.0, -5.0]), np.array([-9.0, -6.0]), iteration=3,
    ...             labels=np.array([7, 8]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emlib.convergence.MonotonicityError: the log-likelihood of fit 8 decreased at iteration 3, ...
    """
    if isinstance(new, float):  # one fit, on numbers: no numpy calls in the common case
        # _fails_guard on numbers; a rise needs no tolerance.
        if math.isfinite(new) and (old <= new or not new < old - decrease_tolerance(old, rtol)):
            return
        i = 0
    else:
        bad = _fails_guard(old, new, rtol)
        if not bad.any():
            return
        i = int(np.flatnonzero(bad)[0])
    # The values as the caller holds them (a Python float stays a float in the message).
    old_i, new_i = (x if np.ndim(x) == 0 else x[i] for x in (old, new))
    label = None if labels is None else labels[i]
    if message is None:
        message = _DECREASE_MESSAGE if np.isfinite(new_i) else _NOT_FINITE_MESSAGE
    with np.errstate(invalid="ignore"):  # inf - inf is NaN in the message, not a warning
        by = old_i - new_i
    raise MonotonicityError(
        message.format(
            of="" if label is None else f" of fit {label}",
            label=label,
            iteration=iteration,
            old=old_i,
            new=new_i,
            by=by,
        )
    )


def _fails_guard(old, new, rtol: float):
    """Where the guard fails: ``new`` not finite, or below ``old`` by more than rounding."""
    return ~np.isfinite(new) | (new < old - decrease_tolerance(old, rtol))


#: Most halvings of the SQUAREM step length per cycle in the drivers (see
#: :func:`squarem_cycle_batch`): on weakly identified fits the plain fallback to two EM
#: steps needs thousands of evaluations, backtracking tens.
SQUAREM_BACKTRACKS = 6


@dataclass
class SquaremState:
    """The adaptive step bounds that SQUAREM carries from one cycle to the next."""

    step_min: float = 1.0
    step_max: float = 1.0
    step_factor: float = 4.0


def squarem_step(
    theta: np.ndarray,
    loglik: float,
    em_map: Callable[[np.ndarray], np.ndarray],
    objective: Callable[[np.ndarray], float],
    in_domain: Callable[[np.ndarray], bool],
    state: SquaremState,
    xtol: float | None = None,
) -> tuple[np.ndarray, float, int, bool]:
    """One SQUAREM cycle (scheme S3 of Varadhan & Roland 2008), never lowering the likelihood.

    From :math:`\\theta_0` take two EM steps, :math:`\\theta_1 = M(\\theta_0)` and
    :math:`\\theta_2 = M(\\theta_1)`; with :math:`r = \\theta_1 - \\theta_0` and
    :math:`v = \\theta_2 - 2\\theta_1 + \\theta_0` the extrapolated point is

    .. math:: \\theta' = \\theta_0 + 2\\alpha r + \\alpha^2 v,
              \\qquad \\alpha = \\|r\\| / \\|v\\|,

    clipped to ``[state.step_min, state.step_max]`` and followed by one stabilising EM
    step. If that point is invalid or lowers the log-likelihood, the cycle falls back to
    :math:`\\theta_2`, which two plain EM steps guarantee is no worse. The step bound
    grows by ``step_factor`` each time the longest step is accepted, as in the SQUAREM
    R package. This is the textbook step (chapter 5 has students write it); the fitting
    drivers use :func:`squarem_cycle_batch`, which backtracks before falling back.

    Parameters
    ----------
    theta : ndarray
        Current point, in the model's packed coordinates.
    loglik : float
        Log-likelihood at ``theta``.
    em_map : callable
        The EM fixed-point map on packed coordinates.
    objective : callable
        Log-likelihood on packed coordinates.
    in_domain : callable
        Whether a packed point lies in the parameter space (the extrapolation can leave it).
    state : SquaremState
        Step bounds, updated in place.
    xtol : float, optional
        Stop inside the cycle as soon as one plain EM step is shorter than ``xtol``
        (the residual rule of the SQUAREM R package).

    Returns
    -------
    theta_new, loglik_new, n_evaluations, converged
        The accepted point, its log-likelihood, the number of EM-map evaluations used, and
        whether the ``xtol`` rule was met.
    """
    theta1 = em_map(theta)
    r = theta1 - theta
    if xtol is not None and np.linalg.norm(r) <= xtol:
        return theta1, objective(theta1), 1, True
    theta2 = em_map(theta1)
    evaluations = 2
    if xtol is not None and np.linalg.norm(theta2 - theta1) <= xtol:
        return theta2, objective(theta2), evaluations, True
    v = theta2 - theta1 - r
    sr2, sv2 = float(r @ r), float(v @ v)
    if sv2 == 0.0 or sr2 == 0.0:
        return theta2, objective(theta2), evaluations, False
    alpha = min(state.step_max, max(state.step_min, np.sqrt(sr2 / sv2)))
    candidate = theta + 2 * alpha * r + alpha**2 * v
    if abs(alpha - 1.0) > 0.01 and in_domain(candidate):
        candidate = em_map(candidate)
        evaluations += 1
    value = objective(candidate) if in_domain(candidate) else -np.inf
    if not np.isfinite(value) or value < loglik - decrease_tolerance(loglik):
        # Extrapolated too far: keep the two plain EM steps and shrink the bound.
        candidate, value = theta2, objective(theta2)
        if alpha == state.step_max:
            state.step_max = max(1.0, state.step_max / state.step_factor)
    elif alpha == state.step_max:
        state.step_max *= state.step_factor
    return candidate, value, evaluations, False


def squarem_cycle_batch(
    em_map: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    objective: Callable[[np.ndarray, np.ndarray], np.ndarray],
    v: np.ndarray,
    step_max: np.ndarray,
    *,
    in_domain: Callable[[np.ndarray], np.ndarray],
    tol: float,
    xtol: float | None,
    last_rho: np.ndarray,
    backtracks,
    scale=1.0,
    guard: Callable[[np.ndarray, np.ndarray], None] | None = None,
):
    """One SQUAREM cycle on each of ``n_fits`` fits, with backtracking on the step length,
    and the stopping rule of :mod:`emlib.stopping` on its two plain EM steps.

    This is the drivers' one rule: :func:`emlib.em.fit` runs a single fit as a batch of
    one, :func:`emlib.zinb.fit` every gene of a matrix at once. A batch of one may be given
    as a vector ``v`` of shape ``(d,)``: then every per-fit value (``step_max``,
    ``last_rho``, ``backtracks``, ℓ, the masks ``need``, what ``em_map``, ``objective``,
    ``in_domain`` and ``guard`` take and give, and the results) is a number, not an array
    of one (:mod:`emlib._per_fit`: the same arithmetic, to the last bit, without numpy's
    cost per call).

    As :func:`squarem_step`, row by row: two EM steps :math:`v_1 = M(v)`,
    :math:`v_2 = M(v_1)`, then with :math:`r = v_1 - v` and :math:`w = v_2 - 2v_1 + v`
    the extrapolation

    .. math:: v' = v + 2\\alpha r + \\alpha^2 w, \\qquad
              \\alpha = \\|r\\| / \\|w\\| \\text{ clipped to } [1, \\text{step\\_max}],

    followed by one stabilising EM step, which puts the point back in the M-step's range
    (a model whose M-step keeps to a constraint set, such as a floor on covariances, would
    otherwise take the next plain EM step from outside it, where ℓ can fall). It is
    accepted where it lies in the domain and :math:`\\ell(v') \\ge \\ell(v) -`
    :func:`decrease_tolerance`, the cycle's start (Varadhan & Roland's rule, and the R
    package SQUAREM's), so the likelihood never falls; :math:`\\ell(v_2)` is evaluated
    only where the cycle ends at :math:`v_2`.

    Unlike :func:`squarem_step`, a rejected candidate is not dropped at once: α is halved
    towards 1, :math:`\\alpha \\leftarrow (\\alpha + 1)/2`, up to ``backtracks`` times
    before the fit falls back to :math:`v_2`, and ``step_max`` is reset to the α that
    worked (1 after a fallback); it grows fourfold when the longest step is taken. On
    weakly identified fits (EM rate 0.9996, e.g. a ZINB gene of mean 0.15 with 93 % zeros)
    the plain fallback needs thousands of evaluations; backtracking needs tens.

    Every call of ``em_map`` and ``objective`` takes all ``n_fits`` rows and a mask
    ``need`` of the rows whose result is used. A row that does not need the evaluation is
    given :math:`v_2`, a point of its domain, and its result is dropped, so a vectorised
    model may evaluate every row (each fit the same way whichever others are pending),
    and a model that fits row by row may skip the rows not needed (:func:`emlib.em.run_batch`
    passes it only those).

    The stopping rule is applied per fit to the two plain steps, the rate being
    :func:`emlib.stopping.slowest_rate` of this cycle's estimate and ``last_rho``. A fit
    that meets it (or ``xtol``) ends at :math:`v_2`, or at :math:`v_1` when its first step
    is already at rounding level (:data:`emlib.stopping.ROUNDING_STEP`); it is not
    extrapolated.

    Parameters
    ----------
    em_map : callable
        ``em_map(v, need) -> (M(v), ℓ(v))`` on packed points of shape (n_fits, d): the EM
        map of each row and the log-likelihood at the input (one E-step gives both); rows
        where the bool array ``need`` is False may hold anything.
    objective : callable
        ``objective(v, need) -> ℓ(v)``, shape (n_fits,), ``-inf`` for a row outside the
        domain; rows where ``need`` is False may hold anything.
    v : ndarray of shape (n_fits, d), or (d,) for one fit
        The current points.
    step_max : ndarray of shape (n_fits,)
        Each fit's bound on α, carried from cycle to cycle (start at 1).
    in_domain : callable
        ``in_domain(v) -> bool array (n_fits,)``: which rows are parameters of the model
        (the extrapolation can leave the domain).
    tol : float
        The stopping rule's tolerance on Aitken's bound.
    xtol : float or None
        Also stop a fit whose plain EM step is at most ``xtol`` in Euclidean length.
    last_rho : ndarray of shape (n_fits,)
        The slowest rate estimate seen so far (``inf`` at the start).
    backtracks : int or ndarray of shape (n_fits,)
        Most halvings of α per cycle (per fit); 0 tries the first α only.
    scale : float or ndarray broadcasting against ``v``
        The floor of the stopping rule's relative steps (see
        :func:`emlib.stopping.step_sizes`); α is measured in the same units, so neither
        depends on the units of the data.
    guard : callable, optional
        ``guard(old, new)`` on arrays of shape (n_fits,), called on ℓ before and after
        each of the two plain EM steps (e.g. :func:`guard_batch`): a plain step that lowers
        ℓ is a bug, whatever the extrapolation then does.

    Returns
    -------
    v_new, ll_new, used, done, step_max, rho, bound
        The new points and their ℓ; the EM-map evaluations used per fit (1 or 2 for a fit
        that stopped, else 2 plus one per stabilising step it was given); which fits met
        the stopping rule; the new step bounds; the slowest rates seen; and Aitken's
        bounds on the distance left (0 for a rounding-level step, NaN where ``xtol``
        stopped the fit).
    """
    xp = _per_fit.of(v)
    every = xp.full(v, True)
    v1, ll0 = em_map(v, every)
    s1 = xp.steps(v, v1, scale)
    v2, ll1 = em_map(v1, every)
    s2 = xp.steps(v1, v2, scale)
    if guard is not None:
        guard(ll0, ll1)
    used = xp.full(v, 2)
    _, rho, bound, converged = stopping.apply_rule(s1, s2, last_rho, tol)
    r, r2 = v1 - v, v2 - v1
    small1, small2, bound = _cycle_stops(xp, r, r2, s1, converged, bound, xtol)
    small = small1 | small2
    w = r2 - r
    sr2 = xp.sum_of_squares(r / scale)
    sv2 = xp.sum_of_squares(w / scale)
    degenerate = (sr2 == 0) | (sv2 == 0)
    ratio = xp.ratio(sr2, sv2)
    alpha = xp.where(degenerate, 1.0, xp.minimum(xp.maximum(xp.sqrt(ratio), 1.0), step_max))
    first_alpha = alpha
    candidate, value, accepted = v2, xp.full(v, np.nan), xp.full(v, 1.0)
    pending = xp.not_(degenerate) & xp.not_(small) & (alpha > 1.0)
    floor = ll0 - decrease_tolerance(ll0)
    for attempt in range(xp.most(backtracks) + 1):
        if attempt:
            pending = pending & (attempt <= backtracks)
        if not xp.any(pending):
            break
        a = xp.col(alpha)
        trial = v + 2 * a * r + (a * a) * w
        stabilise = pending & in_domain(trial)
        if xp.any(stabilise):
            mapped, _ = em_map(xp.rows(stabilise, trial, v2), stabilise)
            trial = xp.rows(stabilise, mapped, trial)
            used = used + stabilise
        trial_value = objective(xp.rows(pending, trial, v2), pending)
        ok = pending & xp.isfinite(trial_value) & (trial_value >= floor)
        candidate = xp.rows(ok, trial, candidate)
        value = xp.where(ok, trial_value, value)
        accepted = xp.where(ok, alpha, accepted)
        pending = pending & xp.not_(ok)
        alpha = xp.where(pending, (alpha + 1.0) / 2.0, alpha)
    # ℓ(v2) only where the cycle ends at v2 (its rule met, or no extrapolation accepted):
    # a single fit whose extrapolation is accepted needs no E-step of v2.
    at_v2 = xp.not_(small1) & xp.isnan(value)
    if xp.any(at_v2):
        ll2 = objective(v2, at_v2)
        if guard is not None:
            # A row not needed may be left unevaluated (NaN): only its own step is judged.
            guard(ll1, xp.where(xp.not_(at_v2) & xp.isnan(ll2), ll1, ll2))
        value = xp.where(at_v2, ll2, value)
    grow = (accepted == first_alpha) & (first_alpha == step_max) & xp.not_(degenerate)
    shrunk = xp.where(accepted < first_alpha, accepted, step_max)
    step_max = xp.where(grow, SquaremState.step_factor * step_max, shrunk)
    step_max = xp.maximum(step_max, 1.0)
    # Converged fits stop at their last plain step.
    candidate = xp.rows(small1, v1, xp.rows(small2, v2, candidate))
    value = xp.where(small1, ll1, value)
    used = xp.where(small1, 1, used)
    return candidate, value, used, small, step_max, rho, bound


def plain_step_batch(
    em_map: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    objective: Callable[[np.ndarray, np.ndarray], np.ndarray],
    v: np.ndarray,
    *,
    tol: float,
    xtol: float | None,
    last_step: np.ndarray,
    last_rho: np.ndarray,
    scale=1.0,
):
    """One plain EM step on each of ``n_fits`` fits, and the stopping rule on it.

    The unaccelerated counterpart of :func:`squarem_cycle_batch`, with the same arguments
    (a vector ``v`` is one fit, its per-fit values numbers):
    the rate is :func:`emlib.stopping.slowest_rate` of the ratio of this step to
    ``last_step`` and ``last_rho``; with ``xtol`` a fit whose step is at most ``xtol`` long
    stops too (its bound NaN).

    Returns
    -------
    v_new, ll_new, done, step, rho, bound
        The new points and their ℓ; which fits met the stopping rule; this step's sizes
        (the next call's ``last_step``); the slowest rates seen; Aitken's bounds.
    """
    xp = _per_fit.of(v)
    every = xp.full(v, True)
    v_new, _ = em_map(v, every)
    ll_new = objective(v_new, every)
    step = xp.steps(v, v_new, scale)
    _, rho, bound, done = stopping.apply_rule(last_step, step, last_rho, tol)
    if xtol is not None:
        by_x = xp.not_(done) & (xp.norm(v_new - v) <= xtol)
        bound = xp.where(by_x, np.nan, bound)
        done = done | by_x
    return v_new, ll_new, done, step, rho, bound


def _cycle_stops(xp, r, r2, s1, converged, bound, xtol):
    """Which fits of a SQUAREM cycle stop at ``v1`` and which at ``v2``, and their bounds,
    given its two plain steps ``r = v1 - v`` and ``r2 = v2 - v1``.

    At ``v1`` where the first step is at rounding level (bound 0) or, with ``xtol``, at most
    ``xtol`` long; at ``v2`` where the stopping rule holds after the second step or that
    step is at most ``xtol`` long. A stop by ``xtol`` alone has no Aitken bound (NaN).
    ``xp`` is the cycle's :mod:`emlib._per_fit` namespace.
    """
    small1 = s1 <= stopping.ROUNDING_STEP
    small2 = xp.not_(small1) & converged
    bound = xp.where(small1, 0.0, bound)
    if xtol is not None:
        going = xp.not_(small1) & xp.not_(small2)
        by_x1 = going & (xp.norm(r) <= xtol)
        by_x2 = going & xp.not_(by_x1) & (xp.norm(r2) <= xtol)
        bound = xp.where(by_x1 | by_x2, np.nan, bound)
        small1, small2 = small1 | by_x1, small2 | by_x2
    return small1, small2, bound


def jacobian(func: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Central finite-difference Jacobian of a vector function at ``x``.

    An output that is infinite on both sides (a dispersion at its Poisson limit, say) has no
    derivative: its entries are NaN, without numpy's "invalid value" warning.
    """
    x = np.asarray(x, dtype=float)
    steps = difference_steps(x, order=1)
    columns = []
    for i, h in enumerate(steps):
        e = np.zeros_like(x)
        e[i] = h
        with np.errstate(invalid="ignore"):
            columns.append((np.asarray(func(x + e)) - np.asarray(func(x - e))) / (2 * h))
    return np.column_stack(columns)


def hessian(func: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """Central finite-difference Hessian of a scalar function at ``x``."""
    x = np.asarray(x, dtype=float)
    steps = difference_steps(x, order=2)
    d = x.size
    hess = np.empty((d, d))
    for i in range(d):
        for j in range(i, d):
            ei = np.zeros(d)
            ej = np.zeros(d)
            ei[i] = steps[i]
            ej[j] = steps[j]
            value = (
                func(x + ei + ej) - func(x + ei - ej) - func(x - ei + ej) + func(x - ei - ej)
            ) / (4 * steps[i] * steps[j])
            hess[i, j] = hess[j, i] = value
    return hess


def difference_steps(x: np.ndarray, order: int) -> np.ndarray:
    """Finite-difference step per coordinate for derivatives of the given order."""
    # Balance truncation error (h^2) against rounding (eps / h^order): h ~ eps^(1/(order+2)).
    scale = np.maximum(np.abs(x), 1e-2)
    return np.finfo(float).eps ** (1 / (order + 2)) * scale


def rate(result) -> float:
    """Linear rate of convergence of EM at the fixed point of a fit.

    Near the maximum :math:`\\hat\\theta` the EM map :math:`M` is close to linear,
    :math:`\\theta_{t+1} - \\hat\\theta \\approx J(\\theta_t - \\hat\\theta)` with
    :math:`J = \\partial M / \\partial\\theta` at :math:`\\hat\\theta`, so the error
    shrinks by the spectral radius of :math:`J` per iteration. :math:`J` equals
    :math:`I_c^{-1} I_m`, the fraction of the complete-data information that is missing:
    the more is missing, the slower EM.

    Parameters
    ----------
    result : EMResult
        A converged fit from any :mod:`emlib` model.

    Returns
    -------
    float
        The largest absolute eigenvalue of the numerical Jacobian of the EM map at
        ``result.params``.

    Examples
    --------
    >>> from emlib import linkage
    >>> round(rate(linkage.fit([125, 18, 20, 34], tol=1e-14)), 4)
    0.1328
    """
    if not result.converged:
        _warnings.warn(
            "the fit did not converge, so the rate is measured away from the fixed point; "
            "refit with a larger max_iter or a smaller tol",
            ConvergenceWarning,
        )
    jac = jacobian(result.em_map, result.packed_params)
    return float(np.max(np.abs(np.linalg.eigvals(jac))))

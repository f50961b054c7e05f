"""The stopping rule of EM: stop when the fixed point is provably near, not when steps are small.

EM is a fixed-point iteration :math:`\\theta^{(t+1)} = M(\\theta^{(t)})` that converges
linearly: near the maximum :math:`\\hat\\theta` the error shrinks by the rate
:math:`\\rho` (the largest eigenvalue of the Jacobian of :math:`M` at
:math:`\\hat\\theta`) at every step. Summing the geometric tail of the remaining steps gives
Aitken's bound on the distance still to go,

.. math::

    \\lVert \\theta^{(t+1)} - \\hat\\theta \\rVert \\;\\lesssim\\;
    \\frac{\\rho}{1 - \\rho}\\, \\lVert \\theta^{(t+1)} - \\theta^{(t)} \\rVert ,

and :math:`\\rho` itself is estimated by the ratio of two successive steps. Where EM
crawls (:math:`\\rho` near 1) a small step is far from the maximum, and the factor
:math:`\\rho/(1-\\rho)` says how far. A rule on the change of the log-likelihood cannot
see this, and it also depends on the units of the data and on the additive constants of
the log-likelihood; this one depends on neither.

Distances are measured coordinate by coordinate relative to ``max(scale, |θ_j|)`` and
the largest is taken (the maximum norm): ``tol = 1e-8`` asks for about eight correct
significant digits in every parameter whose size is at least ``scale``.

A step at rounding level (at most :data:`ROUNDING_STEP`) also ends the run, whatever
``tol``: no further progress can be measured there, so a ``tol`` below the precision of
the arithmetic still stops, converged.

Every rule here also has a batched form (:func:`step_sizes`, :func:`aitken_bound`,
:func:`is_converged`) that works along the last axis of arrays, so one fit and a batch of
many fits (e.g. every gene of a count matrix) stop by the same rule; :mod:`emlib.em` and
:mod:`emlib.zinb` call these, so the rule is written once, here.

This module needs only numpy: the course's notebooks use it in their own EM loops, and it
is the one part of :mod:`emlib` that answers to the exercises may call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

#: The default ``tol`` of every rule here: an estimated distance to the fixed point of
#: 1e-8 relative (in the maximum norm, with the floor ``scale``).
DEFAULT_TOL = 1e-8

#: A relative step this small is rounding noise (about 1000 machine epsilons): it counts
#: as converged whatever ``tol`` asks, since no smaller step can be measured reliably.
ROUNDING_STEP = 1000 * np.finfo(float).eps


def _flat(theta) -> np.ndarray:
    """A parameter as one float vector: an array, a number, or a dict or tuple of them."""
    if isinstance(theta, Mapping):
        theta = [theta[key] for key in theta]
    if isinstance(theta, list | tuple):
        parts = [np.ravel(np.asarray(part, dtype=float)) for part in theta]
        return np.concatenate(parts) if parts else np.zeros(0)
    return np.ravel(np.asarray(theta, dtype=float))


def step_sizes(old, new, scale=1.0) -> np.ndarray:
    """:func:`step_size` along the last axis: one step per row of a batch of fits.

    Parameters
    ----------
    old, new : ndarray of shape (..., d)
        Parameter values, one fit per row (any leading shape).
    scale : float or array_like broadcasting against ``new``
        The floor of the denominator (one number, one per coordinate, or one per entry).

    Returns
    -------
    ndarray of shape (...)
        ``inf`` in rows with a non-finite coordinate, except one that stays at the same
        infinity (it did not move: 0 for that coordinate).

    Examples
    --------
    >>> step_sizes(np.array([[1.0, 200.0], [0.0, 0.0]]), np.array([[2.0, 202.0], [0.0, 1e-3]]))
    array([0.5  , 0.001])
    """
    old = np.asarray(old, dtype=float)
    new = np.asarray(new, dtype=float)
    if old.shape != new.shape:
        raise ValueError(
            f"the two parameter values have different shapes ({old.shape} and {new.shape})"
        )
    return _step_sizes(old, new, scale)


def _step_sizes(old: np.ndarray, new: np.ndarray, scale) -> np.ndarray:
    """:func:`step_sizes` on float arrays of one shape (the drivers' points), unchecked."""
    if new.shape[-1] == 0:
        return np.zeros(new.shape[:-1])
    # With a positive floor (NaN fails the test too) and finite points, nothing to guard.
    floor_positive = (
        scale > 0 if isinstance(scale, float) else np.minimum.reduce(scale, axis=None) > 0
    )
    if floor_positive and np.isfinite(old).all() and np.isfinite(new).all():
        return np.maximum.reduce(np.abs(new - old) / np.maximum(scale, np.abs(new)), axis=-1)
    with np.errstate(invalid="ignore"):
        rel = np.abs(new - old) / np.maximum(scale, np.abs(new))
    # A coordinate that stays at the same infinity (a dispersion at its Poisson limit, say)
    # did not move; any other non-finite change (nan, or reaching infinity) is unbounded.
    rel = np.where(np.isfinite(rel), rel, np.where(new == old, 0.0, np.inf))
    return rel.max(axis=-1)


#: Coordinates up to which one fit's step is computed on Python floats: numpy's cost per
#: call (about 4 µs for the step's nine calls) exceeds Python's per coordinate below this.
SHORT_POINT = 32


def _one_step_size(old: np.ndarray, new: np.ndarray, scale) -> float:
    """:func:`_step_sizes` of one fit's points (vectors), the same IEEE operations on Python
    floats where the point is short, finite and the floor positive (the common case)."""
    if 0 < old.size <= SHORT_POINT:
        if isinstance(scale, np.ndarray):  # a floor per coordinate, else numpy broadcasts it
            floors = scale.tolist() if scale.shape == old.shape else None
        else:
            floors = [float(scale)] * old.size
        if floors is not None:
            largest = 0.0
            for a, b, floor in zip(old.tolist(), new.tolist(), floors, strict=True):
                if not (floor > 0 and math.isfinite(a) and math.isfinite(b)):
                    break  # the guarded way
                step = abs(b - a) / max(floor, abs(b))
                if step > largest:
                    largest = step
            else:
                return largest
    return float(_step_sizes(old, new, scale))


def step_size(theta_old, theta_new, scale=1.0) -> float:
    """The largest relative change of a coordinate, ``max_j |Δθ_j| / max(scale_j, |θ_j|)``.

    Parameters
    ----------
    theta_old, theta_new : array_like, or dict or tuple of array_like
        Two parameter values of the same shape (dicts are read in key order).
    scale : float or array_like, default 1.0
        The size below which a coordinate's change counts in absolute rather than relative
        terms (one number, or one per coordinate of the flattened parameter).

    Returns
    -------
    float
        ``inf`` if any coordinate is not finite, except one that stays at the same infinity
        (it did not move).

    Examples
    --------
    >>> step_size([1.0, 200.0], [2.0, 202.0])  # 1 / 2 and 2 / 202
    0.5
    >>> step_size([0.001], [0.002])  # below the floor of 1: an absolute change
    0.001
    >>> step_size([2.0, np.inf], [2.5, np.inf])  # theta stays at its Poisson limit
    0.2
    """
    old, new = _flat(theta_old), _flat(theta_new)
    if old.shape != new.shape:
        raise ValueError(
            f"the two parameter values have different sizes ({old.size} and {new.size})"
        )
    return float(step_sizes(old, new, scale))


def rate_estimate(s1, s2):
    """The rate estimate :math:`\\hat\\rho = s_2 / s_1` of two successive steps (batched).

    ``inf`` where it cannot be estimated (``s1`` zero or not finite, ``s2`` not finite).
    """
    if isinstance(s1, float) and isinstance(s2, float):  # one fit: no array overhead
        return s2 / s1 if s1 > 0 and math.isfinite(s1) and math.isfinite(s2) else math.inf
    s1 = np.asarray(s1, dtype=float)
    s2 = np.asarray(s2, dtype=float)
    ok = np.isfinite(s1) & np.isfinite(s2) & (s1 > 0)
    if ok.all():
        return s2 / s1
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = s2 / s1
    return np.where(ok, rho, np.inf)


def slowest_rate(seen, rho):
    """The rate a driver uses: the larger of the latest estimate and the slowest seen (batched).

    A ratio of two steps estimates the rate only along the current error. Early steps
    often shrink fast while a slow component of the error remains, and once SQUAREM's
    extrapolation has removed the slow component the next steps shrink faster too; with
    either ratio alone Aitken's bound would stop short. So a driver keeps the slowest
    estimate below 1 it has seen (``seen``, ``inf`` while there is none) and uses the larger
    of it and the latest estimate ``rho``. Like :func:`converged`, which takes the larger of
    the last two step ratios, it never stops on the first ratio alone.

    Returns
    -------
    rate, seen
        The rate to use in :func:`aitken_bound` now, and the updated ``seen``.

    Examples
    --------
    >>> slowest_rate(float("inf"), 0.5)  # the first estimate: no bound yet
    (inf, 0.5)
    >>> slowest_rate(0.99, 0.2)  # a fast ratio after an extrapolation: keep the slow one
    (0.99, 0.99)
    """
    if isinstance(seen, float) and isinstance(rho, float):
        new_seen = rho if rho < 1.0 and (seen == math.inf or rho > seen) else seen
        return max(rho, seen), new_seen
    seen = np.asarray(seen, dtype=float)
    rho = np.asarray(rho, dtype=float)
    new_seen = np.where((rho < 1.0) & (np.isinf(seen) | (rho > seen)), rho, seen)
    return np.maximum(rho, seen), new_seen


def aitken_bound(step, rho):
    """Aitken's bound :math:`s \\hat\\rho / (1 - \\hat\\rho)` on the distance still to go.

    Batched: ``step`` is the last step, ``rho`` the rate estimate, arrays of one shape.
    0 where the step is exactly zero; ``inf`` where :math:`\\hat\\rho \\ge 1` (the steps
    do not shrink: the iteration is not yet in its linear phase) or the step is not finite.

    Examples
    --------
    >>> aitken_bound(0.25, 0.5), aitken_bound(0.1, 1.2)
    (0.25, inf)
    >>> f"{aitken_bound(1e-9, 0.999):.3g}"  # a tiny step at a crawl is far from the end
    '9.99e-07'
    """
    if isinstance(step, float) and isinstance(rho, float):
        if step == 0.0:
            return 0.0
        if not (math.isfinite(step) and rho < 1.0):
            return math.inf
        return step * rho / (1.0 - rho)
    step = np.asarray(step, dtype=float)
    rho = np.asarray(rho, dtype=float)
    ok = np.isfinite(step) & (rho < 1.0)
    if ok.all():  # every fit in its linear phase: no division to guard
        bound = step * rho / (1.0 - rho)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = np.where(ok, step * rho / np.where(ok, 1.0 - rho, 1.0), np.inf)
    bound = np.where(step == 0.0, 0.0, bound)
    return float(bound) if bound.ndim == 0 else bound


def is_converged(step, rho, tol: float = DEFAULT_TOL):
    """The stopping rule itself (batched): Aitken's bound at most ``tol``, or a rounding step.

    Parameters
    ----------
    step : float or ndarray
        The last step (see :func:`step_size`).
    rho : float or ndarray
        The rate estimate (see :func:`rate_estimate`; take the larger of the last two so that
        one lucky short step cannot stop the run).
    tol : float

    Returns
    -------
    bool or ndarray of bool
    """
    if isinstance(step, float) and isinstance(rho, float):
        return _stops(step, aitken_bound(step, rho), tol)
    step = np.asarray(step, dtype=float)
    out = _stops(step, np.asarray(aitken_bound(step, rho)), tol)
    return bool(out) if out.ndim == 0 else out


def _stops(step, bound, tol: float):
    """Where a fit stops, given its last step and Aitken's bound: a rounding-level step,
    or a bound at most ``tol`` (floats, or arrays of one shape)."""
    if isinstance(bound, float):
        return step <= ROUNDING_STEP or bound <= tol
    return (step <= ROUNDING_STEP) | (bound <= tol)


def apply_rule(last_step, step, seen, tol: float = DEFAULT_TOL):
    """The stopping rule on a batch of fits after a step: rate, slowest rate, bound, stop.

    :func:`rate_estimate` of ``step`` over ``last_step``, :func:`slowest_rate` with the
    slowest rate ``seen``, Aitken's bound (:func:`aitken_bound`) at that rate and
    :func:`is_converged`, for arrays of shape (n_fits,) or floats. A batch of one fit is
    computed on its floats, the same arithmetic without numpy's overhead per call (which,
    on a cheap model, costs more than its E-step).

    Returns
    -------
    rate, seen, bound, done
        The rate used, the updated slowest rate, the bound, and whether each fit stops.

    Examples
    --------
    Fit 0 halves its step but has seen a rate of 0.6, so its bound is 0.01 · 0.6 / 0.4;
    fit 1 has no rate yet, but its step is at rounding level:

    >>> apply_rule(np.array([0.02, 1.0]), np.array([0.01, 1e-20]), np.array([0.6, np.inf]), 1e-8)
    (array([0.6, inf]), array([6.e-01, 1.e-20]), array([0.015,   inf]), array([False,  True]))
    >>> apply_rule(0.02, 0.01, 0.6, 1e-8)  # one fit, as floats
    (0.6, 0.6, 0.015, False)
    """
    if not isinstance(step, float) and np.shape(step) == (1,):
        one = apply_rule(float(last_step[0]), float(step[0]), float(seen[0]), tol)
        return tuple(np.array([x]) for x in one)
    rate, seen = slowest_rate(seen, rate_estimate(last_step, step))
    bound = aitken_bound(step, rate)
    return rate, seen, bound, _stops(step, bound, tol)


def distance_bound(theta0, theta1, theta2, scale=1.0) -> float:
    """Aitken's estimate of the distance from ``theta2`` to the fixed point.

    ``theta1 = M(theta0)`` and ``theta2 = M(theta1)`` are two successive EM steps (or the
    two EM-map evaluations inside a SQUAREM cycle). With steps :math:`s_1, s_2` (see
    :func:`step_size`) and the rate estimate :math:`\\hat\\rho = s_2 / s_1`, the bound is
    :math:`s_2\\, \\hat\\rho / (1 - \\hat\\rho)`.

    Returns
    -------
    float
        0 when the last step is exactly zero; ``inf`` when the steps do not shrink
        (:math:`\\hat\\rho \\ge 1`: the iteration is not yet in its linear phase).

    Examples
    --------
    A map that halves the distance to 0 each time: from 1 the steps are 0.5 and 0.25, the
    rate estimate 0.5, and the point 0.25 is exactly 0.25 from the fixed point.

    >>> distance_bound([1.0], [0.5], [0.25])  # 0.25 * 0.5 / (1 - 0.5)
    0.25
    """
    s1 = step_size(theta0, theta1, scale)
    s2 = step_size(theta1, theta2, scale)
    return aitken_bound(s2, rate_estimate(s1, s2))


def converged(history, tol: float = DEFAULT_TOL, scale=1.0) -> bool:
    """Whether plain EM, with iterates ``history``, has reached its fixed point within ``tol``.

    Uses the last four iterates: the rate is the larger of the last two step ratios, so one
    lucky short step cannot stop the run (a long first step followed by a short one gives a
    small first ratio whatever the true rate). A last step at rounding level
    (:data:`ROUNDING_STEP`) counts as converged from the third iterate on.

    Parameters
    ----------
    history : sequence
        The EM iterates so far, oldest first: arrays, numbers, or dicts or tuples of arrays
        (the same form every time).
    tol : float, default 1e-8
        The largest accepted estimate of the distance to the fixed point (see
        :func:`step_size` for how distances are measured).
    scale : float or array_like, default 1.0
        Coordinates smaller than ``scale`` are measured in absolute terms.

    Returns
    -------
    bool
        False while fewer than three iterates exist; with three, True only for a last step
        at rounding level.

    Examples
    --------
    >>> path = [0.5 ** t for t in range(40)]  # M(θ) = θ / 2, fixed point 0
    >>> converged(path[:10]), converged(path[:30])
    (False, True)

    The same rule does not stop a crawl: steps of 1e-9 at the rate 0.999 are still about
    1e-6 from the fixed point.

    >>> crawl = [1e-6 * 0.999 ** t for t in range(4)]
    >>> converged(crawl)
    False
    """
    if tol < 0 or not np.isfinite(tol):
        raise ValueError(f"tol must be a non-negative number; got {tol!r}")
    if len(history) < 3:
        return False
    last = np.stack([_flat(theta) for theta in history[-4:]])
    steps = step_sizes(last[:-1], last[1:], scale)
    if len(steps) < 3:  # one ratio only: it may be a lucky one
        return bool(steps[-1] <= ROUNDING_STEP)
    rho = float(np.max(rate_estimate(steps[:-1], steps[1:])))
    return is_converged(float(steps[-1]), rho, tol)

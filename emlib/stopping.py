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

This module needs only numpy: the course's notebooks use it in their own EM loops, and it
is the one part of :mod:`emlib` that answers to the exercises may call.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

#: The default ``tol`` of every rule here: an estimated distance to the fixed point of
#: 1e-8 relative (in the maximum norm, with the floor ``scale``).
DEFAULT_TOL = 1e-8


def _flat(theta) -> np.ndarray:
    """A parameter as one float vector: an array, a number, or a dict or tuple of them."""
    if isinstance(theta, Mapping):
        theta = [theta[key] for key in theta]
    if isinstance(theta, list | tuple):
        parts = [np.ravel(np.asarray(part, dtype=float)) for part in theta]
        return np.concatenate(parts) if parts else np.zeros(0)
    return np.ravel(np.asarray(theta, dtype=float))


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
        ``inf`` if any coordinate is not finite.

    Examples
    --------
    >>> step_size([1.0, 200.0], [2.0, 202.0])  # 1 / 2 and 2 / 202
    0.5
    >>> step_size([0.001], [0.002])  # below the floor of 1: an absolute change
    0.001
    """
    old, new = _flat(theta_old), _flat(theta_new)
    if old.shape != new.shape:
        raise ValueError(
            f"the two parameter values have different sizes ({old.size} and {new.size})"
        )
    if old.size == 0:
        return 0.0
    if not (np.all(np.isfinite(old)) and np.all(np.isfinite(new))):
        return float("inf")
    floor = np.broadcast_to(np.asarray(scale, dtype=float), new.shape)
    return float(np.max(np.abs(new - old) / np.maximum(floor, np.abs(new))))


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
    return _bound(s1, s2)


def _bound(s1: float, s2: float) -> float:
    if s2 == 0.0:
        return 0.0
    if not (np.isfinite(s1) and np.isfinite(s2)) or s2 >= s1:
        return float("inf")
    rho = s2 / s1
    return s2 * rho / (1.0 - rho)


def converged(history, tol: float = DEFAULT_TOL, scale=1.0) -> bool:
    """Whether plain EM, with iterates ``history``, has reached its fixed point within ``tol``.

    Uses the last four iterates when there are four (the rate is then the larger of the last
    two step ratios, so one lucky short step cannot stop the run), else the last three.

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
        False while fewer than three iterates exist.

    Examples
    --------
    >>> path = [0.5 ** t for t in range(40)]  # M(θ) = θ / 2, fixed point 0
    >>> converged(path[:10]), converged(path[:30])
    (False, True)
    """
    if tol < 0 or not np.isfinite(tol):
        raise ValueError(f"tol must be a non-negative number; got {tol!r}")
    if len(history) < 3:
        return False
    last = [_flat(theta) for theta in history[-4:]]
    steps = [step_size(a, b, scale) for a, b in itertools.pairwise(last)]
    if steps[-1] == 0.0:
        return True
    if not all(np.isfinite(steps)) or min(steps[:-1]) == 0.0:
        return False
    rho = max(b / a for a, b in itertools.pairwise(steps))
    if rho >= 1.0:
        return False
    return bool(steps[-1] * rho / (1.0 - rho) <= tol)

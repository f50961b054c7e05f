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

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from emlib import convergence
from emlib._validation import check_positive_int, check_tol

Params = dict[str, Any]


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
    """

    name: str
    e_step: Callable[[Any, Params], tuple[Any, float]]
    m_step: Callable[[Any, Any], Params]
    pack: Callable[[Params], np.ndarray]
    unpack: Callable[[np.ndarray], Params]
    in_domain: Callable[[np.ndarray], bool]
    finalize: Callable[[Params], Params] = _identity

    def loglik(self, prepared, params: Params) -> float:
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
        Parameter name -> float or 1-D array, in the model's documented form.
    loglik : float
        Observed-data log-likelihood at ``params``, with every constant included.
    n_iter : int
        Number of EM-map evaluations (one E-step and one M-step each) of the reported run.
    converged : bool
        Whether the stopping rule was met within ``max_iter``.
    loglik_history : ndarray
        Log-likelihood at the start and after every iteration (every SQUAREM cycle when
        accelerated); ``loglik_history[-1] == loglik``.
    param_history : list of dict
        The parameters at the same points as ``loglik_history``.
    se : dict
        Standard errors from the observed information (computed on first access).
    """

    params: Params
    loglik: float
    n_iter: int
    converged: bool
    loglik_history: np.ndarray = field(repr=False)
    param_history: list[Params] = field(repr=False)
    _model: EMModel = field(repr=False)
    _prepared: Any = field(repr=False)

    @property
    def _em_map(self) -> Callable[[np.ndarray], np.ndarray]:
        return self._model.em_map(self._prepared)

    @cached_property
    def se(self) -> Params:
        """Standard errors from the inverse of the observed information.

        The observed information :math:`-\\nabla^2 \\ell(\\hat\\theta)` is computed by central
        finite differences in the free coordinates; standard errors of the remaining
        parameters (e.g. the last mixing weight) follow by the delta method.
        """
        return _standard_errors(self._model, self._prepared, self.params)

    def summary(self) -> str:
        """A short text table of estimates and standard errors."""
        lines = [
            f"EM fit of {self._model.name}: log-likelihood {self.loglik:.6f}, "
            f"{self.n_iter} EM-map evaluations, "
            + ("converged" if self.converged else "NOT converged"),
            f"{'parameter':<14}{'estimate':>14}{'std. error':>14}",
        ]
        se = self.se
        for name, value in self.params.items():
            values = np.atleast_1d(value)
            errors = np.atleast_1d(se[name])
            for i, (v, e) in enumerate(zip(values, errors, strict=True)):
                label = name if values.size == 1 and np.ndim(value) == 0 else f"{name}[{i}]"
                lines.append(f"{label:<14}{v:>14.6g}{e:>14.4g}")
        return "\n".join(lines)


def _flatten(params: Params) -> np.ndarray:
    return np.concatenate([np.atleast_1d(np.asarray(v, dtype=float)) for v in params.values()])


def _standard_errors(model: EMModel, prepared, params: Params) -> Params:
    theta = model.pack(params)
    nan_result = {k: np.full(np.shape(v), np.nan) for k, v in params.items()}
    for k, v in nan_result.items():
        if v.ndim == 0:
            nan_result[k] = float("nan")
    # The finite differences step up to twice the Hessian step in each coordinate.
    reach = 2 * convergence.difference_steps(theta, order=2)
    if not all(
        model.in_domain(theta + sign * reach[i] * np.eye(theta.size)[i])
        for i in range(theta.size)
        for sign in (-1, 1)
    ):
        warnings.warn(
            f"{model.name}: the estimate lies on the boundary of the parameter space, where "
            "the observed information does not give standard errors; they are NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        return nan_result
    hess = convergence.hessian(model.objective(prepared), theta)
    info = -hess
    if not np.all(np.isfinite(info)) or np.any(np.linalg.eigvalsh(info) <= 0):
        warnings.warn(
            f"{model.name}: the observed information is not positive definite at the "
            "estimate (a flat or boundary maximum), so standard errors are NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        return nan_result
    cov = np.linalg.inv(info)
    jac = convergence.jacobian(lambda v: _flatten(model.unpack(v)), theta)
    flat_se = np.sqrt(np.maximum(np.diag(jac @ cov @ jac.T), 0.0))
    out: Params = {}
    start = 0
    for name, value in params.items():
        size = np.size(value)
        chunk = flat_se[start : start + size]
        out[name] = float(chunk[0]) if np.ndim(value) == 0 else chunk.copy()
        start += size
    return out


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
    tol: float = 1e-10,
    max_iter: int = 10_000,
    accelerate: str | None = None,
    xtol: float | None = None,
) -> EMResult:
    """Run EM from each start and return the fit with the highest log-likelihood.

    Parameters
    ----------
    model : EMModel
        The model's E-step, M-step and coordinates.
    prepared
        The data in the form the model's steps take (validated, often reduced to
        sufficient statistics such as a frequency table).
    starts : sequence of dict
        Starting parameters; one EM run each.
    tol : float
        Stop when the relative change of the log-likelihood between iterations,
        ``|ℓ_new − ℓ_old| / max(|ℓ_new|, 1)``, is at most ``tol``.
    max_iter : int
        Most EM-map evaluations per run.
    accelerate : {None, "squarem"}
        ``"squarem"`` extrapolates with SQUAREM and falls back to plain EM steps whenever
        extrapolation would lower the likelihood.
    xtol : float, optional
        Also stop when the Euclidean length of a step in the free coordinates is at most
        ``xtol`` (the rule of the SQUAREM R package). Either rule ends the run.

    Returns
    -------
    EMResult
    """
    tol, max_iter, accelerate, xtol = check_options(tol, max_iter, accelerate, xtol)
    if not starts:
        raise ValueError("at least one starting value is needed")

    best = None
    for start in starts:
        result = _run_once(model, prepared, start, tol, max_iter, accelerate, xtol)
        if best is None or result.loglik > best.loglik:
            best = result
    if not best.converged:
        warnings.warn(
            f"{model.name}: EM stopped after {best.n_iter} EM-map evaluations without meeting "
            f"tol={tol:g} (last relative change "
            f"{convergence.relative_change(*best.loglik_history[-2:]):.2e}); raise max_iter, "
            + (
                "loosen tol (it may be below the rounding noise of the log-likelihood), "
                "or try other starting values"
                if accelerate
                else "try other starting values, or pass accelerate='squarem'"
            ),
            convergence.ConvergenceWarning,
            stacklevel=3,
        )
    return best


def _run_once(model, prepared, start, tol, max_iter, accelerate, xtol) -> EMResult:
    params = start
    expected, ll = model.e_step(prepared, params)
    if not np.isfinite(ll):
        raise ValueError(
            f"{model.name}: the log-likelihood at the starting values is {ll}; the data are "
            "impossible under them (choose starting values that give every observation "
            "positive probability)"
        )
    history = [ll]
    param_history = [params]
    n_eval = 0
    converged = False
    if accelerate == "squarem":
        theta = model.pack(params)
        em_map = model.em_map(prepared)
        objective = model.objective(prepared)
        state = convergence.SquaremState()
    while n_eval < max_iter:
        # A SQUAREM cycle takes up to three EM-map evaluations; near the cap, plain steps.
        if accelerate == "squarem" and max_iter - n_eval >= 3:
            theta, ll_new, used, small_step = convergence.squarem_step(
                theta, ll, em_map, objective, model.in_domain, state, xtol
            )
            n_eval += used
            params = model.unpack(theta)
            expected = None
        else:
            if expected is None:
                expected, _ = model.e_step(prepared, params)
            params_new = model.m_step(prepared, expected)
            n_eval += 1
            expected, ll_new = model.e_step(prepared, params_new)
            small_step = xtol is not None and bool(
                np.linalg.norm(model.pack(params_new) - model.pack(params)) <= xtol
            )
            params = params_new
            theta = model.pack(params)
        convergence._guard(ll, ll_new, len(history))
        history.append(ll_new)
        param_history.append(params)
        done = convergence.relative_change(ll, ll_new) <= tol
        ll = ll_new
        if done or small_step:
            converged = True
            break
    return EMResult(
        params=model.finalize(params),
        loglik=float(ll),
        n_iter=n_eval,
        converged=converged,
        loglik_history=np.asarray(history),
        param_history=param_history,
        _model=model,
        _prepared=prepared,
    )

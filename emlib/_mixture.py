"""Pieces shared by the finite mixtures: parameter checks, restarts and canonical order.

The 1-D mixtures (:mod:`emlib.poisson_mixture`, :mod:`emlib.nb_mixture`,
:mod:`emlib.normal_mixture`) share one ``fit`` skeleton, :func:`fit`: validate the data,
check k, prepare the data, take ``init`` or the model's starts, run EM. The count mixtures
also share their frequency table (:func:`count_table`) and their starts
(:func:`count_starts`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import gammaln

from emlib._multinomial import frequency_table
from emlib._validation import (
    as_counts,
    check_init_keys,
    check_k,
    check_positive_int,
    check_weights,
    param_array,
)
from emlib.em import EMModel, EMResult, run

#: Starts per fit of a 1-D mixture, and of a hidden Markov model (:mod:`emlib.hmm`), when
#: no ``init`` is given (one at the quantiles, the rest random): their likelihoods have
#: local maxima, and a few starts are cheap on a frequency table or a single column.
DEFAULT_N_INIT = 4
#: The seed of those random starts (and of the Gaussian mixture's): fixed, so that a fit
#: repeated on the same data is the same.
DEFAULT_SEED = 0
#: The floor of a component's total responsibility in an M-step: a component with none
#: keeps weight 0, and its mean is not 0/0.
TINY = np.finfo(float).tiny


def check_params(params, names: tuple[str, ...], k: int | None = None) -> dict:
    """Validate a mixture's parameters: ``weights`` first, then per-component arrays."""
    check_init_keys(params, names)
    weights = param_array(params["weights"], "weights", size=k)
    k = weights.size
    out = {"weights": check_weights(weights)}
    for name in names[1:]:
        out[name] = param_array(params[name], name, size=k)
    return out


def sort_by_means(params: dict) -> dict:
    order = np.argsort(params["means"], kind="stable")
    return {name: np.asarray(value)[order] for name, value in params.items()}


def pack(params: dict) -> np.ndarray:
    """Free coordinates: all weights but the last, then every other parameter array."""
    return np.concatenate([params["weights"][:-1], *list(params.values())[1:]])


def unpack(v: np.ndarray, names: tuple[str, ...]) -> dict:
    k = (v.size + 1) // len(names)
    out = {"weights": free_weights(v, k)}
    for j, name in enumerate(names[1:]):
        out[name] = v[k - 1 + j * k : k - 1 + (j + 1) * k].copy()
    return out


def free_weights(v: np.ndarray, k: int) -> np.ndarray:
    """The k weights from the k − 1 free ones that lead ``v``: the last is one minus the rest."""
    weights = np.empty(k)
    weights[: k - 1] = free = v[: k - 1]
    weights[k - 1] = 1.0 - free.sum()
    return weights


def weights_in_domain(v: np.ndarray, k: int) -> bool:
    free = v[: k - 1]
    # Array methods, not np.all: this runs on every extrapolated point of an EM fit.
    return bool((free >= 0).all() and free.sum() <= 1)


def normalise_log_rows(log_joint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior probabilities from log joint densities of shape (k, m), in log space.

    Returns the responsibilities (k, m) and the log marginal density of each column.
    Raises ValueError when an observation has probability zero under every component.
    """
    # log-sum-exp over components by hand: scipy's version costs ~100 µs a call in input
    # checks, which dominates EM on a small frequency table.
    top = log_joint.max(axis=0)
    finite = np.isfinite(top)
    shift = top if finite.all() else np.where(finite, top, 0.0)
    joint = np.exp(log_joint - shift)
    total = joint.sum(axis=0)
    if not (total > 0).all():
        raise ValueError(
            f"{int((~(total > 0)).sum())} observation(s) have probability zero under every "
            "component with these parameters (e.g. a positive count when every mean is 0); "
            "choose parameters that give every observation positive probability"
        )
    log_marginal = np.log(total)  # every total is positive: no log of zero to silence
    log_marginal += shift
    joint /= total
    return joint, log_marginal


def check_resp(resp, n: int) -> np.ndarray:
    """Responsibilities of shape (n, k): finite, non-negative, rows summing to one."""
    resp = np.asarray(resp, dtype=float)
    if resp.ndim != 2 or resp.shape[0] != n:
        raise ValueError(f"resp must have shape (n, k) with n = {n}; got {resp.shape}")
    if not np.all(np.isfinite(resp)) or np.any(resp < 0):
        raise ValueError("resp must hold finite, non-negative probabilities")
    if not np.allclose(resp.sum(axis=1), 1.0):
        raise ValueError("each row of resp must sum to 1")
    if np.any(resp.sum(axis=0) == 0):
        raise ValueError("a component has no responsibility at all; its mean is undefined")
    return resp


def n_starts(n_init) -> int:
    return check_positive_int(n_init, "n_init")


def log_weights(weights: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(weights)


@dataclass(frozen=True)
class CountTable:
    """Counts as a frequency table: each distinct value, how often it occurs, its log y!.

    Every E-step and M-step of a count mixture is a sum over observations of a function of
    the count alone, so it runs over the distinct values weighted by ``freqs``: the cost
    per iteration does not grow with the sample size ``n``.
    """

    values: np.ndarray
    freqs: np.ndarray
    log_factorials: np.ndarray
    n: int


def count_table(data, name: str) -> CountTable:
    """Validate counts (``name`` is used in the messages) and tabulate them."""
    y = as_counts(data, name=name)
    values, freqs = frequency_table(y)
    return CountTable(values, freqs, gammaln(values + 1.0), y.size)


def count_starts(y: np.ndarray, k: int, n_init: int, seed, **fixed) -> list[dict]:
    """A quantile start plus ``n_init - 1`` random ones (means drawn from the data).

    The quantile start puts :math:`\\mu_j` at the :math:`(j + \\tfrac12)/k` quantile plus
    :math:`0.1 j` (so tied quantiles still give distinct components), floored at 0.05 (a
    mean of 0 would make every positive count impossible), with equal weights. A random
    start takes k distinct counts plus U(0.05, 0.5) as means and Dirichlet(5, ..., 5)
    weights. ``fixed`` entries (the negative binomial's θ) are the same in every start.
    """
    quantiles = np.quantile(y, (np.arange(k) + 0.5) / k) + 0.1 * np.arange(k)
    starts = [{"weights": np.full(k, 1 / k), "means": np.maximum(quantiles, 0.05), **fixed}]
    rng = np.random.default_rng(seed)
    for _ in range(n_init - 1):
        means = rng.choice(y, size=k, replace=False) + rng.uniform(0.05, 0.5, size=k)
        starts.append({"weights": rng.dirichlet(np.full(k, 5.0)), "means": means, **fixed})
    return starts


@dataclass(frozen=True)
class Spec:
    """What :func:`fit` needs from a 1-D mixture module besides its :class:`EMModel`.

    Attributes
    ----------
    model : EMModel
    as_data : callable
        ``as_data(data) -> ndarray``: validate the data (raising ValueError with the
        model's wording).
    prepare : callable
        ``prepare(x) -> prepared``: the validated data in the form the EM steps take.
    check_params : callable
        ``check_params(init, k) -> dict``: validate a user's starting values.
    starts : callable
        ``starts(x, k, n_init, seed) -> list of dict``: the default starts (``x`` as float).
    """

    model: EMModel
    as_data: Callable[[Any], np.ndarray]
    prepare: Callable[[np.ndarray], Any]
    check_params: Callable[[Any, int], dict]
    starts: Callable[[np.ndarray, int, int, Any], list[dict]]


def fit(spec: Spec, data, k, *, init, n_init, seed, **options) -> tuple[EMResult, Any]:
    """The ``fit`` of every 1-D mixture: check, prepare, choose the starts, run EM.

    The data are validated before k (whose check counts the distinct values) and k before
    ``init`` (whose arrays must have k entries); ``options`` (``tol``, ``max_iter``,
    ``accelerate``, ``xtol``) go to :func:`emlib.em.run` unchanged. Returns the best fit
    and the prepared data (for checks on the fit such as the normal mixture's sd floor).
    """
    x = spec.as_data(data)
    k = check_k(k, x)
    prepared = spec.prepare(x)
    if init is not None:
        starts = [spec.check_params(init, k)]
    else:
        starts = spec.starts(np.asarray(x, dtype=float), k, n_starts(n_init), seed)
    return run(spec.model, prepared, starts, **options), prepared

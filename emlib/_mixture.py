"""Pieces shared by the finite mixtures: parameter checks, restarts and canonical order."""

from __future__ import annotations

import numpy as np

from emlib._validation import check_init_keys, check_positive_int, check_weights, param_array


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
    free = v[: k - 1]
    out = {"weights": np.append(free, 1.0 - free.sum())}
    for j, name in enumerate(names[1:]):
        out[name] = v[k - 1 + j * k : k - 1 + (j + 1) * k].copy()
    return out


def weights_in_domain(v: np.ndarray, k: int) -> bool:
    free = v[: k - 1]
    return bool(np.all(free >= 0) and free.sum() <= 1)


def normalise_log_rows(log_joint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior probabilities from log joint densities of shape (k, m), in log space.

    Returns the responsibilities (k, m) and the log marginal density of each column.
    Raises ValueError when an observation has probability zero under every component.
    """
    # log-sum-exp over components by hand: scipy's version costs ~100 µs a call in input
    # checks, which dominates EM on a small frequency table.
    top = log_joint.max(axis=0)
    finite_top = np.where(np.isfinite(top), top, 0.0)
    joint = np.exp(log_joint - finite_top)
    total = joint.sum(axis=0)
    with np.errstate(divide="ignore"):
        log_marginal = np.log(total) + finite_top
    impossible = ~(total > 0)
    if impossible.any():
        raise ValueError(
            f"{int(impossible.sum())} observation(s) have probability zero under every "
            "component with these parameters (e.g. a positive count when every mean is 0); "
            "choose parameters that give every observation positive probability"
        )
    return joint / total, log_marginal


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

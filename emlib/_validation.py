"""Input checks shared by every model: validate at the edge, name the problem in the message."""

from __future__ import annotations

import numbers

import numpy as np


def as_observations(data, *, name: str = "data") -> np.ndarray:
    """Return `data` as a finite, non-empty 1-D float array, or raise ValueError."""
    try:
        x = np.asarray(data, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be numeric; could not convert it to numbers ({err})"
        ) from err
    if x.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of observations; got an array of shape {x.shape}"
        )
    if x.size == 0:
        raise ValueError(f"{name} is empty: at least one observation is needed")
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or infinite value(s); the first is {x[i]} "
            f"at index {i}"
        )
    return x


def as_matrix(data, *, name: str = "data", allow_nan: bool = False) -> np.ndarray:
    """Return ``data`` as an (n, d) float array with n, d >= 1, or raise ValueError.

    Every entry must be finite; with ``allow_nan`` NaN is allowed too (it marks a missing
    value) and only infinities are rejected. The messages name the first bad cell.
    """
    missing = " (NaN for missing values)" if allow_nan else ""
    try:
        x = np.asarray(data, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be numeric{missing}; could not convert it to numbers ({err})"
        ) from err
    if x.ndim != 2:
        hint = " (for one variable use X.reshape(-1, 1))" if x.ndim == 1 else ""
        raise ValueError(
            f"{name} must be a 2-D array of shape (n, d), one row per observation and one "
            f"column per variable{missing}; got an array of shape {x.shape}{hint}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: got shape {x.shape}; need n >= 1 rows, d >= 1 columns")
    bad = np.isinf(x) if allow_nan else ~np.isfinite(x)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        if allow_nan:
            raise ValueError(
                f"{name} contains {int(bad.sum())} infinite value(s), the first at row {i}, "
                f"column {j}; missing values must be NaN"
            )
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or infinite value(s); the first is "
            f"{x[i, j]} at row {i}, column {j}"
        )
    return x


def as_counts(data, *, name: str = "data", shape=None) -> np.ndarray:
    """Return `data` as a 1-D int64 array of non-negative whole numbers, or raise ValueError."""
    if isinstance(data, np.ndarray) and data.dtype.kind in "iu" and data.ndim == 1:
        # Integer arrays need no float round trip: only emptiness, shape and sign to check.
        if data.size == 0:
            raise ValueError(f"{name} is empty: at least one observation is needed")
        if shape is not None and data.shape != shape:
            raise ValueError(f"{name} must have shape {shape}; got {data.shape}")
        if data.dtype.kind == "i" and data.min() < 0:
            i = int(np.argmin(data))
            raise ValueError(f"{name} must be counts (>= 0); found {data[i]} at index {i}")
        return data.astype(np.int64, copy=False)
    x = as_observations(data, name=name)
    if shape is not None and x.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {x.shape}")
    negative = x < 0
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        raise ValueError(f"{name} must be counts (>= 0); found {x[i]} at index {i}")
    fractional = x != np.round(x)
    if fractional.any():
        i = int(np.flatnonzero(fractional)[0])
        raise ValueError(f"{name} must be whole-number counts; found {x[i]} at index {i}")
    return x.astype(np.int64)


def check_k(k, x: np.ndarray) -> int:
    """Check the number of mixture components against the data."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be a whole number of components; got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    n_distinct = np.unique(x).size
    if k > n_distinct:
        raise ValueError(
            f"k={k} components cannot be told apart with only {n_distinct} distinct value(s) "
            "in the data; use a smaller k"
        )
    return k


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive whole number; got {value!r}")
    return int(value)


def check_tol(tol, name: str = "tol") -> float:
    try:
        tol = float(tol)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a non-negative number; got {tol!r}") from err
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"{name} must be a non-negative number; got {tol!r}")
    return tol


def check_init_keys(init, expected: tuple[str, ...]) -> dict:
    if not isinstance(init, dict):
        raise ValueError(
            f"init must be a dict with keys {list(expected)}; got {type(init).__name__}"
        )
    missing = [key for key in expected if key not in init]
    extra = [key for key in init if key not in expected]
    if missing or extra:
        raise ValueError(
            f"init must have exactly the keys {list(expected)}; "
            f"missing {missing}, unexpected {extra}"
        )
    return init


def param_array(value, name: str, *, size: int | None = None) -> np.ndarray:
    """A finite 1-D float array of the given size (a scalar counts as size 1)."""
    try:
        arr = np.atleast_1d(np.asarray(value, dtype=float))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric; got {value!r}") from err
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a scalar or 1-D array; got shape {arr.shape}")
    if size is not None and arr.size != size:
        raise ValueError(f"{name} must have {size} entries; got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got {arr}")
    return arr


def param_scalar(value, name: str) -> float:
    arr = param_array(value, name, size=1)
    return float(arr[0])


def check_probability(value: float, name: str, *, open_interval: bool = False) -> float:
    if open_interval and not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1; got {value}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1]; got {value}")
    return value


def check_weights(weights: np.ndarray, name: str = "weights") -> np.ndarray:
    if np.any(weights < 0) or np.any(weights > 1):
        raise ValueError(f"{name} must be probabilities in [0, 1]; got {weights}")
    if not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-8):
        raise ValueError(f"{name} must sum to 1; they sum to {weights.sum()}")
    return weights / weights.sum()


def check_positive(arr: np.ndarray, name: str) -> np.ndarray:
    if np.any(arr <= 0):
        raise ValueError(f"{name} must be positive; got {arr}")
    return arr

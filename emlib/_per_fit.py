"""The per-fit operations of the EM drivers, for a batch of fits or for one fit.

:func:`emlib.convergence.squarem_cycle_batch`, :func:`emlib.convergence.plain_step_batch`
and :func:`emlib.em.run_batch` are written once, against one of two namespaces:

* :data:`BATCH`: ``n`` fits; a per-fit value (ℓ, a step, a mask, a bound) is an array of
  shape ``(n,)`` and the fits' points are the rows of an ``(n, d)`` array;
* :data:`ONE`: a single fit; a per-fit value is a Python number and the point a vector of
  shape ``(d,)``.

Both do the same IEEE arithmetic on each fit, so a fit takes the same path, to the last
bit, alone or in a batch. They differ in cost: a numpy call on an array of one element costs
about a microsecond, a Python operation on a float a few tens of nanoseconds, and on a
cheap model (Hasselblad's 10-count table: 30 µs an E-step and M-step) the cycle's hundred
or so per-fit operations would otherwise cost more than the model.

Operators that mean the same on both (``+``, ``*``, ``<``, ``&`` and ``|`` on masks) are
written as operators; logical negation is :meth:`not_` (``~`` on a Python bool is an
integer), and a choice between values is :meth:`where` (``x[mask] = y`` has no scalar
form).
"""

from __future__ import annotations

import math
import operator

import numpy as np

from emlib import stopping

#: Terms below which numpy's pairwise summation adds in order, one after another, as
#: Python's ``sum`` does (its unrolled blocks start at 8): one fit's short sums run on
#: Python floats, to the last bit the batch's (tests/test_stopping.py checks it).
IN_ORDER = 8


class _Batch:
    """Per-fit values are arrays of shape ``(n,)``, points the rows of ``(n, d)``."""

    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    sqrt = staticmethod(np.sqrt)
    isfinite = staticmethod(np.isfinite)
    isnan = staticmethod(np.isnan)

    @staticmethod
    def not_(mask):
        return ~mask

    @staticmethod
    def any(mask) -> bool:
        return bool(mask.any())

    @staticmethod
    def all(mask) -> bool:
        return bool(mask.all())

    @staticmethod
    def most(x) -> int:
        """The largest of the per-fit integers ``x`` (or the one integer given)."""
        return int(np.max(x))

    @staticmethod
    def rows(mask, a, b):
        """Point by point, ``a`` where ``mask`` holds, else ``b``."""
        return np.where(mask[:, None], a, b)

    @staticmethod
    def col(x):
        """A per-fit value against the fits' points (broadcasting over coordinates)."""
        return x[:, None]

    @staticmethod
    def full(v, value):
        """``value`` for every fit of the points ``v``."""
        return np.full(v.shape[0], value)

    @staticmethod
    def sum_of_squares(x):
        return np.add.reduce(x * x, axis=1)

    @staticmethod
    def ratio(a, b):
        """``a / b``, any value where ``b`` is 0 (the caller's degenerate case)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return a / b

    @staticmethod
    def norm(x):
        return np.linalg.norm(x, axis=1)

    @staticmethod
    def steps(old, new, scale):
        return stopping._step_sizes(old, new, scale)

    @staticmethod
    def values(x) -> list:
        """The per-fit values as a list of Python numbers."""
        return x.tolist()

    @staticmethod
    def batch(x):
        """A per-fit value as the array of a batch."""
        return x

    @staticmethod
    def unbatch(x):
        return x


class _One:
    """One fit: per-fit values are Python numbers, its point a vector of shape ``(d,)``."""

    minimum = staticmethod(min)
    maximum = staticmethod(max)
    sqrt = staticmethod(math.sqrt)
    isfinite = staticmethod(math.isfinite)
    isnan = staticmethod(math.isnan)

    @staticmethod
    def where(mask, a, b):
        return a if mask else b

    rows = where

    # Builtins where one exists: each call of a Python function costs more than its work.
    not_ = staticmethod(operator.not_)
    any = all = staticmethod(bool)
    most = staticmethod(int)

    @staticmethod
    def col(x):
        return x

    @staticmethod
    def full(v, value):
        return value

    @staticmethod
    def sum_of_squares(x) -> float:
        if x.size < IN_ORDER:  # the batch's sum, on Python floats
            return sum([t * t for t in x.tolist()])
        return np.add.reduce(x * x).item()

    @staticmethod
    def ratio(a, b):
        return a / b if b else math.inf

    @staticmethod
    def norm(x) -> float:
        # The batch's summation (np.linalg.norm on rows adds the squares, not a BLAS dot).
        return math.sqrt(_One.sum_of_squares(x))

    steps = staticmethod(stopping._one_step_size)

    @staticmethod
    def values(x) -> list:
        return [x]

    @staticmethod
    def batch(x):
        return np.array([x])

    @staticmethod
    def unbatch(x):
        return x[0].item()


BATCH = _Batch()
ONE = _One()


def of(v: np.ndarray):
    """The namespace for the points ``v``: :data:`ONE` for a vector, else :data:`BATCH`."""
    return ONE if v.ndim == 1 else BATCH

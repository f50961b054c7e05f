"""Warnings that point at the user's line, however deep inside emlib they are raised."""

from __future__ import annotations

import functools
import inspect
import os
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_FUNCTOOLS = os.path.abspath(functools.__file__)


def _inside(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path.startswith(_PACKAGE) or path == _FUNCTOOLS


def stack_level() -> int:
    """The ``stacklevel`` that makes :func:`warnings.warn`, called by the caller of this
    function, name the first frame outside emlib (and outside functools, through which a
    ``cached_property`` such as :attr:`~emlib.em.EMResult.se` is computed).

    A fixed ``stacklevel`` names the right line from one call path only: ``result.se``,
    ``result.summary()`` and ``fit(...)`` reach the same warning at different depths.
    """
    frame = inspect.currentframe()
    level = 0
    while frame is not None and _inside(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    return max(level, 1)


def warn(message: str, category: type[Warning]) -> None:
    """:func:`warnings.warn` attributed to the user's line (see :func:`stack_level`)."""
    warnings.warn(message, category, stacklevel=stack_level())

"""Helpers for the course's test cells: fresh random data and an independence check.

Hidden tests compare a student's function with :mod:`emlib` on data drawn at grading
time, so a hard-coded answer cannot pass; :func:`assert_independent` makes sure the
student's function is their own work rather than a call into the reference library.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import re
import secrets
import types

import numpy as np

_SEEDS: contextvars.ContextVar = contextvars.ContextVar("emlib_testing_seeds", default=None)


def fresh_rng() -> tuple[np.random.Generator, int]:
    """A generator for a hidden test's data, and its seed (for failure messages).

    Outside :func:`seeded` the seed comes from the operating system. While a notebook is
    graded the grader sets the seed of each test cell (:func:`seeded`), so that regrading
    a submission draws the same data, while no student can know it in advance.
    """
    source = _SEEDS.get()
    if source is None:
        seed = secrets.randbits(32)
    else:
        seed = next(source)
    return np.random.default_rng(seed), seed


@contextlib.contextmanager
def seeded(seed: int):
    """Make every :func:`fresh_rng` call inside the block reproducible from ``seed``.

    The n-th call gets the n-th number of a generator seeded with ``seed``.

    Examples
    --------
    >>> with seeded(7):
    ...     first = fresh_rng()[1], fresh_rng()[1]
    >>> with seeded(7):
    ...     again = fresh_rng()[1], fresh_rng()[1]
    >>> first == again and first[0] != first[1]
    True
    """
    stream = np.random.default_rng(int(seed))
    token = _SEEDS.set(iter(lambda: int(stream.integers(2**32)), None))
    try:
        yield
    finally:
        _SEEDS.reset(token)


#: The parts of emlib that answers may use: the course's stopping rule.
ALLOWED = ("emlib.stopping",)
_ALLOWED_TEXT = re.compile(r"\bemlib\.stopping\b|\bfrom\s+emlib\s+import\s+stopping\b")


def _package():
    import emlib

    return emlib


def _is_emlib(obj) -> bool:
    if isinstance(obj, types.ModuleType):
        name = obj.__name__
    else:
        name = getattr(obj, "__module__", None) or ""
    if name in ALLOWED or name.startswith(tuple(f"{a}." for a in ALLOWED)):
        return False
    return name == "emlib" or name.startswith("emlib.")


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names) | set(code.co_freevars)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def assert_independent(func, *, _seen=None) -> None:
    """Raise AssertionError if ``func`` (or a function it calls) uses :mod:`emlib`.

    Looks at the function's source text and at every global name its code refers to,
    following the student's own helper functions.
    """
    remote = getattr(type(func), "__assert_independent__", None)
    if remote is not None:  # the grader's stand-in for a function in the student's kernel
        remote(func)
        return
    seen = set() if _seen is None else _seen
    if id(func) in seen:
        return
    seen.add(id(func))
    name = getattr(func, "__name__", repr(func))
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        source = ""
    if "emlib" in _ALLOWED_TEXT.sub("", source):
        raise AssertionError(
            f"{name} must be your own implementation, but its code mentions emlib, the "
            "course's reference library"
        )
    code = getattr(func, "__code__", None)
    if code is None:
        return
    globals_ = getattr(func, "__globals__", {})
    for ref in _code_names(code):
        obj = globals_.get(ref)
        if obj is None:
            continue
        # ``emlib.stopping.converged(...)`` refers to the package itself; the source check
        # above has already made sure that nothing but emlib.stopping is reached through it.
        if obj is _package() and source:
            continue
        if _is_emlib(obj):
            raise AssertionError(
                f"{name} must be your own implementation, but it uses {ref!r} from emlib, "
                "the course's reference library"
            )
        if isinstance(obj, types.FunctionType) and obj.__module__ == func.__module__:
            assert_independent(obj, _seen=seen)

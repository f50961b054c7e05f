"""Small helpers shared by the ``bench_*.py`` scripts: timing, result lines, exit status.

A benchmark prints one ``RESULT`` line per goal (the ratio and PASS or FAIL) and records
every correctness condition it checks with :func:`check`. :func:`finish` exits 0 when all
of those held, even if a speed goal was missed, and 1 when any failed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

_failures: list[str] = []


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call of ``func()`` (``time.perf_counter``) and its return value."""
    start = time.perf_counter()
    out = func()
    return time.perf_counter() - start, out


def best_of(repeats: int, func: Callable[[], Any]) -> tuple[float, Any]:
    """Smallest wall time over ``repeats`` calls of ``func()``, and the last return value."""
    best = float("inf")
    out = None
    for _ in range(repeats):
        elapsed, out = timed(func)
        best = min(best, elapsed)
    return best, out


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def goal_line(name: str, measured: str, goal: str, ok: bool) -> bool:
    """Print ``RESULT name: measured (goal ...) PASS|FAIL`` and return ``ok``."""
    print(f"RESULT {name}: {measured} (goal {goal}) {verdict(ok)}")
    return ok


def result(name: str, ratio: float, goal: float, *, extra: bool = True) -> bool:
    """Print ``RESULT name: ratio (goal >= goal) PASS|FAIL`` and return whether it passed.

    ``extra`` is the further condition the goal carries (e.g. an equal or higher
    log-likelihood); the goal passes only when the ratio reaches ``goal`` and ``extra`` holds.
    """
    return goal_line(name, f"{ratio:.1f}x", f">= {goal:g}x", ratio >= goal and extra)


def check(ok: bool, message: str) -> bool:
    """Record a correctness condition; a failed one makes :func:`finish` exit non-zero."""
    if not ok:
        _failures.append(message)
        print(f"CORRECTNESS FAILURE: {message}")
    return ok


def finish() -> None:
    """Exit 1 if any :func:`check` failed, else 0 (a missed speed goal is not a failure)."""
    if _failures:
        print(f"{len(_failures)} correctness failure(s)")
        sys.exit(1)
    sys.exit(0)

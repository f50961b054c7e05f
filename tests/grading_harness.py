"""Grade many variants of one chapter's answers with the grader's own judge, cheaply.

:func:`grade_variants` runs the chapter's notebook, with the solutions typed into the
released student version, once in a sandboxed grading kernel
(:class:`autograder.execute.GradingSession`, through the grader's scratch course). Then,
for each variant, it redefines the replaced answers in that kernel, judges every test with
:func:`autograder.judge.judge` exactly as a graded submission is judged, scores with the
grader's own :func:`autograder.grade._score`, and puts the correct answers back. One kernel
per chapter instead of one per variant; the same judge, sandbox and scoring as grading.
A variant may be judged only up to a given test cell (``until``): the tests after it, which
a wrong answer upstream can make run to their time limit, are then not judged at all.
"""

from __future__ import annotations

import os
import secrets
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import nbformat

from autograder import REPO, SOLUTIONS, cells

UNFILLED = "unfilled"
#: Seconds one call of an answer may take: far more than any correct answer needs, and what a
#: wrong answer that never ends costs per call.
CALL_TIMEOUT = 6.0


def solution_notebook(assignment: str) -> tuple[str, nbformat.NotebookNode]:
    """The (single) notebook of an assignment: its file name and contents."""
    paths = sorted((SOLUTIONS / assignment).glob("*.ipynb"))
    if len(paths) != 1:
        raise ValueError(f"{assignment} should hold one notebook; found {paths}")
    return paths[0].name, nbformat.read(paths[0], as_version=4)


def grade_many(
    jobs: dict[str, dict[str, dict[str, str]]], workers: int = 2, until: dict | None = None
) -> dict:
    """:func:`grade_variants` for several assignments at once, in worker processes.

    ``jobs`` maps an assignment to its variants, ``until`` (optional) an assignment to its
    variants' last judged test cells; returns ``{assignment: scores}``.
    """
    until = until or {}
    ctx = get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
        futures = {a: pool.submit(grade_variants, a, v, until.get(a)) for a, v in jobs.items()}
        return {a: f.result() for a, f in futures.items()}


def _judged_part(notebook, last: str | None):
    """``notebook`` up to and including the test cell ``last`` (all of it if None)."""
    if last is None:
        return notebook
    ids = [cells.grade_id(c) if cells.is_test(c) else None for c in notebook.cells]
    return nbformat.NotebookNode({**notebook, "cells": notebook.cells[: ids.index(last) + 1]})


def grade_variants(
    assignment: str, variants: dict[str, dict[str, str]], until: dict | None = None
) -> dict:
    """Scores of the solution (``"correct"``), the unfilled release and each variant.

    ``variants`` maps a name to ``{answer grade_id: new source}``; ``until`` (optional) a
    name to the last test cell to judge (its later tests are left out of its scores).
    Returns ``{name: {grade_id: (score, max_score)}}``.
    """
    until = until or {}
    from autograder import grade, judge
    from autograder.execute import GradingSession
    from autograder.records import Settings
    from autograder.release import solved
    from autograder.submission import prepare

    os.environ.setdefault("MPLBACKEND", "Agg")
    settings = Settings(timeout=120, notebook_timeout=1200, seed_key=secrets.token_hex(16))
    sc = grade._scratch(str(REPO), assignment, settings)
    ((name, release),) = sc["release"].items()
    solution = sc["solution"][name]
    stubs = {cells.grade_id(c): c.source for c in release.cells if cells.is_answer(c)}
    correct = {gid: cells.find(solution, gid).source for gid in stubs}
    nb, _ = prepare(solved(release, solution), release)
    key = bytes.fromhex(settings.seed_key)

    def scores(caller, label):
        judged = _judged_part(solution, until.get(label))
        outcomes = judge.judge(
            judged,
            caller,
            base=sc["namespace"][name],
            seed_of=lambda gid: judge.cell_seed(key, label, assignment, gid),
            hidden=sc["hidden"][name],
        )
        grades = grade._zero_grades(sc)[name]
        grade._score(grades, outcomes, solution, release, set())
        tests = {cells.grade_id(c) for c in judged.cells if cells.is_test(c)}
        return {gid: (g["score"], g["max_score"]) for gid, g in grades.items() if gid in tests}

    def then(session):
        caller = judge.Caller(session, call_timeout=CALL_TIMEOUT)

        def define(sources: dict[str, str]):
            for gid, source in sources.items():
                code = "\n".join(ln for ln in source.splitlines() if "### " not in ln)
                reply = session.wait_for_reply(session.kc.execute(code, store_history=False))
                if reply["content"]["status"] != "ok" and sources is correct:
                    raise RuntimeError(f"{assignment}: the solution of {gid} does not run")

        out = {"correct": scores(caller, "correct")}
        for label, replacements in variants.items():
            define(replacements)
            start = time.monotonic()
            out[label] = scores(caller, label)
            if os.environ.get("HARNESS_TIMES"):
                print(assignment, label, f"{time.monotonic() - start:.1f} s", flush=True)
            define({gid: correct[gid] for gid in replacements})
        define(stubs)
        out[UNFILLED] = scores(caller, UNFILLED)
        return out

    session = GradingSession(config=sc["config"])
    resources = {"metadata": {"path": str(sc["root"] / "solutions" / assignment)}}
    return session.run(nb, resources, then, is_test=cells.is_test)

"""Grade notebooks with nbgrader's own API in scratch courses, for the tests.

`grade` releases one assignment from ``solutions/`` into a temporary course, submits the
given notebooks (the solution notebook with some answer cells replaced, say), autogrades
them, and returns every grade cell's score. Submissions are split across worker
processes, each with its own scratch course and gradebook (SQLite takes one writer).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

from autograder import SOLUTIONS, cells, config


def solution_notebook(assignment: str) -> tuple[str, nbformat.NotebookNode]:
    """The (single) notebook of an assignment: its file name and contents."""
    paths = sorted((SOLUTIONS / assignment).glob("*.ipynb"))
    if len(paths) != 1:
        raise ValueError(f"{assignment} should hold one notebook; found {paths}")
    return paths[0].name, nbformat.read(paths[0], as_version=4)


def with_answers(nb, replacements: dict[str, str]):
    """A copy of ``nb`` in which each answer cell named in ``replacements`` gets new code."""
    nb = copy.deepcopy(nb)
    for grade_id, source in replacements.items():
        cells.find(nb, grade_id).source = source
    return nb


def grade(
    assignment: str,
    submissions: dict[str, nbformat.NotebookNode],
    *,
    unfilled: str | None = None,
    jobs: int = 2,
) -> dict:
    """Autograde ``{student: notebook}``; return ``{student: {grade_id: (score, max)}}``.

    With ``unfilled="name"``, the released student notebook, submitted as it is, is
    graded too under that name.
    """
    items = [(student, nbformat.writes(nb)) for student, nb in submissions.items()]
    batches = [items[i::jobs] for i in range(jobs)]
    batches[0] = batches[0] + ([(unfilled, None)] if unfilled else [])
    batches = [b for b in batches if b]
    scores = {}
    with ProcessPoolExecutor(max_workers=len(batches)) as pool:
        for part in pool.map(_grade_batch, [assignment] * len(batches), batches):
            scores.update(part)
    return scores


def _grade_batch(assignment: str, batch: list[tuple[str, str | None]]) -> dict:
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI

    name, _ = solution_notebook(assignment)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(SOLUTIONS / assignment, root / "solutions" / assignment)
        db = f"sqlite:///{root}/gradebook.db"
        cfg = config(
            **{
                "CourseDirectory.root": str(root),
                "CourseDirectory.db_url": db,
                "Exchange.root": str(root / "exchange"),
            }
        )
        api = NbGraderAPI(config=cfg)
        result = api.generate_assignment(assignment, force=True)
        assert result["success"], result["log"]
        scores = {}
        for student, text in batch:
            folder = root / "submitted" / student / assignment
            folder.mkdir(parents=True)
            if text is None:  # the unfilled release, as a student would submit it
                shutil.copy(root / "course" / assignment / name, folder / name)
            else:
                (folder / name).write_text(text)
            with Gradebook(db) as gb:
                gb.update_or_create_student(student)
            result = api.autograde(assignment, student, force=True, create=True)
            assert result["success"], result["log"]
            with Gradebook(db) as gb:
                notebook = gb.find_submission_notebook(
                    name.removesuffix(".ipynb"), assignment, student
                )
                scores[student] = {g.name: (g.score, g.max_score) for g in notebook.grades}
        return scores

"""Grade notebooks with nbgrader's own API in a scratch course, for the tests.

`grade` releases one assignment from ``solutions/`` into a temporary course, submits the
given notebooks (the solution notebook with some answer cells replaced, say), autogrades
them, and returns every grade cell's score.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
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
    assignment: str, submissions: dict[str, nbformat.NotebookNode], *, unfilled: str | None = None
) -> dict:
    """Autograde ``{student: notebook}``; return ``{student: {grade_id: (score, max)}}``.

    With ``unfilled="name"``, the released student notebook, submitted as it is, is
    graded too under that name.
    """
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
        if unfilled:
            released = root / "course" / assignment / name
            submissions = {**submissions, unfilled: nbformat.read(released, as_version=4)}
        for student, nb in submissions.items():
            folder = root / "submitted" / student / assignment
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / name)
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

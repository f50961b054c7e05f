"""Build and inspect nbgrader cells (nbgrader 0.9 metadata, schema version 3)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SCHEMA_VERSION = 3


def _nbgrader(cell, *, grade: bool, solution: bool, locked: bool, grade_id=None, points=None):
    meta = {"grade": grade, "solution": solution, "locked": locked}
    meta["schema_version"] = SCHEMA_VERSION
    if grade_id is not None:
        meta["grade_id"] = grade_id
    if points is not None:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta
    return cell


def markdown(source: str, *, grade_id: str | None = None):
    """Narrative text; locked (read-only) when given a ``grade_id``."""
    cell = new_markdown_cell(source.strip("\n"))
    if grade_id:
        _nbgrader(cell, grade=False, solution=False, locked=True, grade_id=grade_id)
    return cell


def code(source: str):
    """An ordinary code cell (narrative code, "try it" cells)."""
    return new_code_cell(source.strip("\n"))


def answer(source: str, grade_id: str):
    """An autograded answer cell; the solution sits between BEGIN/END SOLUTION markers."""
    return _nbgrader(
        new_code_cell(source.strip("\n")),
        grade=False,
        solution=True,
        locked=False,
        grade_id=grade_id,
    )


def test(source: str, grade_id: str, points: float):
    """A locked test cell worth ``points``; may hold ``### BEGIN/END HIDDEN TESTS``."""
    return _nbgrader(
        new_code_cell(source.strip("\n")),
        grade=True,
        solution=False,
        locked=True,
        grade_id=grade_id,
        points=points,
    )


def written(source: str, grade_id: str, points: float):
    """A manually graded written answer (markdown)."""
    return _nbgrader(
        new_markdown_cell(source.strip("\n")),
        grade=True,
        solution=True,
        locked=False,
        grade_id=grade_id,
        points=points,
    )


def notebook(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def is_test(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution") and cell["cell_type"] == "code"


def is_answer(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("solution")) and cell["cell_type"] == "code"


def with_exercise(nb) -> Iterator[tuple[object, str, str | None]]:
    """Each cell of ``nb`` with where it stands: ``(cell, heading, answer)``.

    ``heading`` is the last markdown heading so far ("" before any), ``answer`` the grade_id of
    the last answer cell since that heading (``None`` before one; an answer cell is its own).
    The feedback's summary and the class report name a test by these two.
    """
    heading, answer = "", None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", cell.source, flags=re.M)
            if found:
                heading, answer = found[-1], None
        if is_answer(cell):
            answer = grade_id(cell)
        yield cell, heading, answer


def find(nb, grade_id_: str):
    """The cell with the given grade_id; KeyError naming what exists if none."""
    for cell in nb.cells:
        if grade_id(cell) == grade_id_:
            return cell
    known = [grade_id(c) for c in nb.cells if grade_id(c)]
    raise KeyError(f"no cell with grade_id {grade_id_!r}; the notebook has {known}")

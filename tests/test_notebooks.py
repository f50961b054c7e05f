"""The chapters as nbgrader sees them: release in sync, solutions pass, releases fail.

nbval (``pytest --nbval`` on ``solutions/``, configured in pyproject.toml) separately re-runs
every solution notebook and compares its stored outputs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest

from autograder import COURSE, SOLUTIONS, cells, config
from autograder.release import assignments, release

ASSIGNMENTS = assignments()
#: Longest a solution notebook may take to execute: the target is 30 s on a quiet machine;
#: the guard is twice that, as `make test` runs another test file beside this one.
MAX_SECONDS = 60


def _notebooks(folder: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(folder)): p
        for p in sorted(folder.glob("*/*.ipynb"))
        if ".ipynb_checkpoints" not in p.parts
    }


def _essence(nb) -> list[tuple]:
    """What must match between a fresh release and course/: types, sources, nbgrader metadata."""
    return [
        (cell.cell_type, cell.source, cell.get("metadata", {}).get("nbgrader"))
        for cell in nb.cells
    ]


def test_course_is_the_release_of_solutions(tmp_path):
    shutil.copytree(SOLUTIONS, tmp_path / "solutions")
    release(root=tmp_path)
    fresh = _notebooks(tmp_path / "course")
    committed = _notebooks(COURSE)
    assert sorted(fresh) == sorted(committed), (
        "course/ does not hold exactly the released notebooks; run `python -m autograder release`"
    )
    for name, path in fresh.items():
        new = nbformat.read(path, as_version=4)
        old = nbformat.read(committed[name], as_version=4)
        assert _essence(new) == _essence(old), (
            f"course/{name} differs from the release of solutions/{name}; "
            "run `python -m autograder release`"
        )


def test_released_notebooks_hide_solutions_and_hidden_tests():
    for name, path in _notebooks(COURSE).items():
        text = path.read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN"):
            assert marker not in text, f"course/{name} still contains {marker!r}"


def test_each_chapter_has_three_autograded_exercises():
    for name, path in _notebooks(SOLUTIONS).items():
        nb = nbformat.read(path, as_version=4)
        answers = [c for c in nb.cells if cells.is_answer(c)]
        tests = [c for c in nb.cells if cells.is_test(c)]
        assert len(answers) >= 3, f"{name}: {len(answers)} autograded answer cells, need 3"
        ids = [cells.grade_id(c) for c in nb.cells if cells.grade_id(c)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate grade_ids"
        for cell in tests:
            meta = cell.metadata["nbgrader"]
            assert meta["schema_version"] == 3 and meta["locked"] and meta["points"] > 0
            first = cell.source.lstrip().splitlines()[0]
            assert first.startswith('"""'), f"{name}: {meta['grade_id']} lacks a docstring"


def _validator(invert: bool):
    from nbgrader.validator import Validator

    return Validator(config=config(**{"Validator.invert": invert}))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_passes_nbgrader_validate(assignment):
    (path,) = (SOLUTIONS / assignment).glob("*.ipynb")
    start = time.perf_counter()
    result = _validator(invert=False).validate(str(path))
    seconds = time.perf_counter() - start
    assert not result, f"nbgrader validate failed on {path.name}: {result}"
    assert seconds <= MAX_SECONDS, f"{path.name} took {seconds:.1f} s to execute"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_unfilled_release_fails_every_test(assignment):
    (path,) = (COURSE / assignment).glob("*.ipynb")
    result = _validator(invert=True).validate(str(path))
    assert not result, f"nbgrader validate --invert: some tests pass unfilled: {result}"

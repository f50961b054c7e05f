"""Generate the student notebooks (``course/``) from the solutions (``solutions/``)."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from autograder import COURSE, SOLUTIONS, cells, config


def assignments(source: Path = SOLUTIONS) -> list[str]:
    """Assignment folders in the source directory, in order."""
    if not source.is_dir():
        return []
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def release(names=None, *, root: Path | None = None) -> list[str]:
    """Run nbgrader's generate_assignment for each assignment (all by default).

    ``root`` is the course root holding ``solutions/``; the student versions are written
    to ``root/course/``. The gradebook nbgrader insists on is a throwaway one, so that
    releasing never touches a real class's gradebook.
    """
    from nbgrader.apps import NbGraderAPI

    root = Path(root) if root is not None else SOLUTIONS.parent
    names = list(names) if names else assignments(root / SOLUTIONS.name)
    with tempfile.TemporaryDirectory() as scratch:
        cfg = config(
            **{
                "CourseDirectory.root": str(root),
                "CourseDirectory.db_url": f"sqlite:///{scratch}/release.db",
                "Exchange.root": f"{scratch}/exchange",
            }
        )
        api = NbGraderAPI(config=cfg)
        for name in names:
            result = api.generate_assignment(name, force=True)
            if not result["success"]:
                raise RuntimeError(f"releasing {name} failed:\n{result['log']}")
    return names


def solved(release_nb, solution, replace=None, extra=()):
    """A copy of the released notebook with the solution's answers typed in, as a student would.

    The ``### BEGIN/END SOLUTION`` marker lines are left out. ``replace`` maps an answer's
    grade_id to other source to type instead; ``extra`` is ``(index, cell)`` pairs to insert
    (index -1: at the end). For tests and benchmarks of the grader.
    """
    nb = copy.deepcopy(release_nb)
    for cell in nb.cells:
        if cells.is_answer(cell) and cell.cell_type == "code":
            gid = cells.grade_id(cell)
            source = (replace or {}).get(gid, cells.find(solution, gid).source)
            cell.source = "\n".join(ln for ln in source.splitlines() if "### " not in ln)
    for index, cell in extra:
        nb.cells.insert(index if index >= 0 else len(nb.cells), cell)
    return nb


__all__ = ["COURSE", "assignments", "release", "solved"]

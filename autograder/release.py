"""Generate the student notebooks (``course/``) from the solutions (``solutions/``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from autograder import COURSE, SOLUTIONS, config


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


__all__ = ["COURSE", "assignments", "release"]

"""Check a submitted notebook against the released one before nbgrader grades it.

nbgrader restores edited test cells from the gradebook but says so only in its log, does not
put deleted test cells back reliably (``OverwriteCells.add_missing_cells`` crashes with
``KeyError: 'ro_note'`` after a read-only cell), and has no notion of answers that call the
reference library. :func:`prepare` records those as flags and repairs the notebook: every
released cell (test, answer or written) gets the release's metadata back, so a student's
metadata never changes what is graded. Whether an answer used emlib is decided while it runs
(:mod:`autograder.judge`), not by reading its text.
"""

from __future__ import annotations

import copy

from autograder import cells


def _meaning(cell) -> dict:
    """The nbgrader metadata that decides grading (not nbgrader's own checksum)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return {k: meta.get(k) for k in ("grade", "solution", "locked", "points", "grade_id")}


def _points(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("points")


def exercises(release) -> dict[str, list[str]]:
    """``{answer grade_id: [test grade_ids that follow it]}`` in the released notebook."""
    groups: dict[str, list[str]] = {}
    current = None
    for cell in release.cells:
        if cells.is_answer(cell):
            current = cells.grade_id(cell)
            groups[current] = []
        elif cells.is_test(cell) and current is not None:
            groups[current].append(cells.grade_id(cell))
    return groups


def prepare(nb, release) -> tuple[object, set[str]]:
    """Repair ``nb`` against ``release``; return it and its flags (tampered, deleted_tests)."""
    nb = copy.deepcopy(nb)
    flags: set[str] = set()
    released = {cells.grade_id(c): c for c in release.cells if cells.grade_id(c)}
    order = [cells.grade_id(c) for c in release.cells if cells.grade_id(c)]

    # Each released grade_id once, test cells exactly as released; anything else loses its
    # nbgrader metadata (a copied or invented test cell must not count).
    seen: set[str] = set()
    for cell in nb.cells:
        gid = cells.grade_id(cell)
        if gid is None:
            continue
        rel = released.get(gid)
        if gid in seen or rel is None:
            cell.metadata.pop("nbgrader", None)
            if rel is not None and cells.is_test(rel):
                flags.add("tampered")
            continue
        seen.add(gid)
        if not cells.is_test(rel):  # answer and written cells: the release's metadata
            if _meaning(cell) != _meaning(rel):
                flags.add("tampered")
            cell.metadata["nbgrader"] = copy.deepcopy(rel.metadata["nbgrader"])
            continue
        if cells.is_test(rel):
            if (
                cell.cell_type != rel.cell_type
                or not cells.is_test(cell)
                or cell.source.strip() != rel.source.strip()
                or _points(cell) != _points(rel)
            ):
                flags.add("tampered")
            if cell.cell_type != rel.cell_type:
                cell.cell_type = rel.cell_type
                cell.setdefault("outputs", [])
                cell.setdefault("execution_count", None)
            cell.source = rel.source
            cell.metadata["nbgrader"] = copy.deepcopy(rel.metadata["nbgrader"])

    # Put back what was deleted, after the released cell that preceded it.
    for i, gid in enumerate(order):
        if gid in seen:
            continue
        rel = released[gid]
        if cells.is_test(rel):
            flags.add("deleted_tests")
        where = 0
        for previous in reversed(order[:i]):
            hits = [k for k, c in enumerate(nb.cells) if cells.grade_id(c) == previous]
            if hits:
                where = hits[0] + 1
                break
        nb.cells.insert(where, copy.deepcopy(rel))
        seen.add(gid)

    return nb, flags

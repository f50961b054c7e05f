"""Check a submitted notebook against the released one before nbgrader grades it.

nbgrader restores edited test cells from the gradebook but says so only in its log, does not
put deleted test cells back reliably (``OverwriteCells.add_missing_cells`` crashes with
``KeyError: 'ro_note'`` after a read-only cell), and has no notion of answers that call the
reference library. :func:`prepare` records those as flags and repairs the notebook.
"""

from __future__ import annotations

import copy
import io
import re
import tokenize

from autograder import cells

LIBRARY = "emlib"


def _points(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("points")


def _mentions_library(source: str) -> bool:
    """Whether code names the reference library outside comments (static, conservative)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return bool(re.search(rf"\b{LIBRARY}\b", source))
    return any(
        tok.type in (tokenize.NAME, tokenize.STRING) and LIBRARY in tok.string for tok in tokens
    )


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


def prepare(nb, release) -> tuple[object, set[str], set[str]]:
    """Repair ``nb`` against ``release``; return it, its flags and the test ids to zero."""
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

    # Answers that use the reference library earn nothing for their exercise. Code cells the
    # student added count towards the exercise whose answer cell precedes them.
    groups = exercises(release)
    instructor_code = {c.source.strip() for c in release.cells if c.cell_type == "code"}
    zero: set[str] = set()
    current = next(iter(groups), None)
    for cell in nb.cells:
        gid = cells.grade_id(cell)
        if gid in groups:
            current = gid
        if cell.cell_type != "code" or current is None:
            continue
        if cells.is_test(cell) or (gid is None and cell.source.strip() in instructor_code):
            continue
        if _mentions_library(cell.source):
            flags.add("uses_emlib")
            zero.update(groups[current])
    return nb, flags, zero

"""Hand grades: the points and comment a person gives a manually graded cell.

A written answer (:func:`autograder.cells.written`) is a cell nbgrader leaves to a person.
The grader marks it *pending hand grading* (flag ``needs_manual``, the points it still
awaits in the ``pending`` column of ``grades.csv``, "pending hand grading" in the student's
feedback) until the instructor gives it points in a CSV file::

    student,assignment,cell,points,comment
    alice,01_lower_bound,written_monotone,2.5,"Right idea; say where Jensen's inequality is used."

and merges that file with ``python -m autograder report OUT --hand-grades FILE`` (or
``grade ... --hand-grades FILE``). ``cell`` is the written answer's grade_id, ``points`` a
number from 0 to the cell's maximum, ``comment`` optional. A file is checked as a whole
before anything is kept: one bad row (unknown student, assignment or cell, a cell graded
automatically, points not a number or out of range, the same cell twice) rejects the file
with every bad row named, and the grades recorded so far stay as they were. Accepted rows are
kept in ``OUT/.state/hand/grades.json``; a later file adds to them, a row for the same cell
replaces the earlier grade. Hand grades never trigger regrading: they are laid over the
recorded results whenever ``grades.csv``, the gradebook, the report and the feedback are
written.
"""

from __future__ import annotations

import copy
import csv
import html
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import nbformat

from autograder import cells
from autograder.files import write_atomic
from autograder.records import Result

COLUMNS = ("student", "assignment", "cell", "points", "comment")
STORE = "hand/grades.json"  # not *.json directly in .state/, which holds results
PENDING = "pending hand grading"


class HandGradeError(ValueError):
    """A hand-grades file that cannot be used; ``problems`` names every bad row."""

    def __init__(self, path, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{path}: nothing merged, fix these rows and run again:\n{lines}")


def manual_cells(course: Path) -> dict[str, dict[str, tuple[str, float]]]:
    """``{assignment: {grade_id: (notebook, points)}}`` of the cells a person grades."""
    found: dict[str, dict[str, tuple[str, float]]] = {}
    for path in sorted((Path(course) / "solutions").glob("*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") and meta.get("solution"):
                points = float(meta.get("points", 0))
                found.setdefault(path.parent.name, {})[cells.grade_id(cell)] = (path.stem, points)
    return found


def read(path, results: list[Result], course: Path) -> dict[str, dict]:
    """The hand grades in the CSV file ``path``, checked against ``results`` and the course.

    Returns ``{key: {"student", "assignment", "notebook", "cell", "points", "comment"}}``;
    raises :class:`HandGradeError` naming every bad row (nothing is returned then).
    """
    manual = manual_cells(course)
    graded = {(r.student, r.assignment) for r in results if r.grades}
    students = {r.student for r in results}
    problems: list[str] = []
    grades: dict[str, dict] = {}
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise HandGradeError(path, [f"cannot read the file ({error})"]) from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header and c != "comment"]
    if missing:
        raise HandGradeError(
            path, [f"line 1: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"]
        )
    reader.fieldnames = header
    for row in reader:
        line = reader.line_num
        student = (row.get("student") or "").strip()
        assignment = (row.get("assignment") or "").strip()
        gid = (row.get("cell") or "").strip()
        raw = (row.get("points") or "").strip()
        comment = (row.get("comment") or "").strip()
        where = f"line {line} ({student or '?'}, {assignment or '?'}, {gid or '?'})"
        if not (student or assignment or gid or raw or comment):
            continue  # a blank line
        if student not in students:
            problems.append(f"{where}: unknown student {student!r}")
            continue
        if assignment not in manual and assignment not in {a for _, a in graded}:
            problems.append(f"{where}: unknown assignment {assignment!r}")
            continue
        if (student, assignment) not in graded:
            problems.append(f"{where}: {student!r} has no graded submission of {assignment!r}")
            continue
        if gid not in manual.get(assignment, {}):
            known = ", ".join(sorted(manual.get(assignment, {}))) or "none"
            problems.append(
                f"{where}: {gid!r} is not a hand-graded cell of {assignment} (those are: {known})"
            )
            continue
        notebook, top = manual[assignment][gid]
        try:
            points = float(raw)
        except ValueError:
            problems.append(f"{where}: points {raw!r} is not a number")
            continue
        if not math.isfinite(points) or points < 0 or points > top:
            problems.append(f"{where}: points {raw} outside 0 to {top:g}, the cell's maximum")
            continue
        key = _key(student, assignment, gid)
        if key in grades:
            first = grades[key]["line"]
            problems.append(f"{where}: a second grade for this cell (first on line {first})")
            continue
        grades[key] = {
            "student": student,
            "assignment": assignment,
            "notebook": notebook,
            "cell": gid,
            "points": points,
            "comment": comment,
            "line": line,
        }
    if problems:
        raise HandGradeError(path, problems)
    for g in grades.values():
        del g["line"]
    return grades


def _key(student: str, assignment: str, gid: str) -> str:
    return json.dumps([student, assignment, gid])


def load(out: Path) -> dict[str, dict]:
    """The hand grades kept in ``out``."""
    path = Path(out) / ".state" / STORE
    return json.loads(path.read_text()) if path.is_file() else {}


def merge(out: Path, new: dict[str, dict]) -> dict[str, dict]:
    """Add ``new`` (from :func:`read`) to the hand grades kept in ``out``; return them all."""

    kept = load(out)
    kept.update(new)
    write_atomic(Path(out) / ".state" / STORE, json.dumps(kept, indent=1, sort_keys=True))
    return kept


def apply(results: list[Result], hand: dict[str, dict]) -> list[Result]:
    """Copies of ``results`` with their hand grades in, and ``pending`` points counted.

    A hand-graded cell gets ``score`` = the hand points, ``hand`` = True and its ``comment``;
    a cell still awaiting a person keeps ``needs_manual``; ``pending`` sums those cells'
    maxima, and the flag ``needs_manual`` stays only while some remain.
    """
    out = []
    for r in results:
        every = copy.deepcopy(r.grades)
        for nb, grades in every.items():
            for gid, g in grades.items():
                h = hand.get(_key(r.student, r.assignment, gid))
                if h is not None and h["notebook"] == nb:
                    g.update(score=h["points"], hand=True, comment=h["comment"])
                    g["needs_manual"] = False
        score = round(sum(g["score"] for gs in every.values() for g in gs.values()), 6)
        pending = sum(
            g["max_score"] for gs in every.values() for g in gs.values() if g["needs_manual"]
        )
        flags = r.flags
        if not pending and "needs_manual" in flags:
            flags = tuple(f for f in flags if f != "needs_manual")
        out.append(replace(r, grades=every, score=score, pending=round(pending, 6), flags=flags))
    return out


# --- The feedback pages --------------------------------------------------------------------
#
# The worker writes each page with markers around what a hand grade changes (nbgrader's page
# would say "Score: 0.0" for a cell nobody has graded yet); :func:`publish` fills them in the
# pages in place, as often as it is run. Student text on a page is escaped (feedback.sanitize),
# so it can never contain a marker.


def _score_span(gid: str, text: str) -> str:
    return f'<span class="hand-score" data-cell="{gid}">{text}</span>'


def _comment_div(gid: str, comment: str) -> str:
    body = f"<b>Comment:</b> {html.escape(comment)}" if comment else ""
    return f'<div class="hand-comment" data-cell="{gid}">{body}</div>'


def _total_span(text: str) -> str:
    return f'<span class="hand-total">{text}</span>'


def _points(x: float) -> str:
    return f"{x:.1f}" if float(x).is_integer() else f"{x:g}"


def mark_pending(page: str, notebook: str, grades: dict) -> str:
    """nbgrader's feedback ``page`` with every manual cell's score and the total marked."""
    for gid, g in grades.items():
        if not g["needs_manual"]:
            continue
        pending = _score_span(gid, f"Score: {PENDING} (of {_points(g['max_score'])})")
        toc = re.compile(rf'(<a href="#{re.escape(gid)}">[^<]*</a> )\(Score: [^)]*\)')
        page = toc.sub(lambda m, p=pending: f"{m.group(1)}({p})", page, count=1)
        heading = re.compile(
            rf'(<a name="{re.escape(gid)}"></a><div class="panel-heading">.*?)'
            r'Score: [^<]*?(<a href="#top">\(Top\)</a>\s*</span></div>)',
            flags=re.S,
        )
        after = f"{pending} {{}}{_comment_div(gid, '')}"
        page = heading.sub(lambda m, a=after: m.group(1) + a.format(m.group(2)), page, count=1)
    total = re.compile(rf"(<h4>{re.escape(html.escape(notebook))} )\(Score: [^)]*\)(</h4>)")
    return total.sub(lambda m: f"{m.group(1)}({_total_span(_total(grades))}){m.group(2)}", page)


def _total(grades: dict) -> str:
    score = sum(g["score"] for g in grades.values())
    top = sum(g["max_score"] for g in grades.values())
    pending = sum(g["max_score"] for g in grades.values() if g["needs_manual"])
    text = f"Score: {_points(score)} / {_points(top)}"
    return text + (f"; {_points(pending)} of them {PENDING}" if pending else "")


def fill(page: str, grades: dict) -> str:
    """Fill the markers of a page (see :func:`mark_pending`) from ``grades`` (applied)."""
    for gid, g in grades.items():
        if g.get("hand"):
            score = f"Score: {_points(g['score'])} / {_points(g['max_score'])} (graded by hand)"
            comment = g.get("comment", "")
        elif g["needs_manual"]:
            score, comment = f"Score: {PENDING} (of {_points(g['max_score'])})", ""
        else:
            continue
        cell = re.escape(gid)
        span = re.compile(rf'<span class="hand-score" data-cell="{cell}">[^<]*</span>')
        new_span, new_div = _score_span(gid, score), _comment_div(gid, comment)
        page = span.sub(lambda _m, s=new_span: s, page)
        div = re.compile(rf'<div class="hand-comment" data-cell="{cell}">.*?</div>', re.S)
        page = div.sub(lambda _m, d=new_div: d, page)
    total = re.compile(r'<span class="hand-total">[^<]*</span>')
    return total.sub(lambda _m: _total_span(_total(grades)), page)


def publish(out: Path, results: list[Result]) -> None:
    """Rewrite the feedback pages in ``out`` whose hand grades changed (``results`` applied)."""

    for r in results:
        for nb, grades in r.grades.items():
            path = r.feedback_dir(out) / f"{nb}.html"
            if not path.is_file():
                continue
            page = path.read_text()
            if 'class="hand-' not in page:
                continue
            new = fill(page, grades)
            if new != page:
                write_atomic(path, new)

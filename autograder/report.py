"""The class report: what an instructor reads after grading (``OUT/report.html``).

* **Exercises**, per assignment and in notebook order: each exercise (its heading and answer
  cell) with the share of the class that earned all its autograded points, and each of its
  tests with the share that passed it and the most common failing message (with how many
  students got it). ``report.png`` draws the tests' shares as bars, in the same order.
* **Hand grading**: every written answer still pending, with the students it awaits; the
  same rows, points left empty, are in ``OUT/hand_grades_pending.csv``, the format of
  ``--hand-grades`` (fill in the points, delete the rows not graded yet, merge).
* **Students**: score, maximum, points pending and flags of every student and assignment,
  and how many submissions carry each flag.

"The class" of an assignment is every student with a result for it, including those whose
notebook was missing or unreadable (they earned nothing).
"""

from __future__ import annotations

import csv
import html
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from autograder.files import write_atomic
from autograder.records import Result

PENDING_CSV = "hand_grades_pending.csv"


@dataclass
class Cell:
    """A graded cell of an assignment, in notebook order."""

    notebook: str
    grade_id: str
    title: str
    points: float
    auto: bool
    exercise: str  # the exercise's title (its heading and answer grade_id)
    earned: int = 0
    graded: int = 0
    pending: int = 0
    failures: Counter = field(default_factory=Counter)


def _layout(course, assignment: str, results: list[Result]) -> list[Cell]:
    """The graded cells of ``assignment`` in notebook order (from the course's source
    notebooks; from the results' order when the source cannot be read)."""
    import nbformat

    from autograder import cells

    out: list[Cell] = []
    folder = Path(course) / "solutions" / assignment if course is not None else None
    notebooks = sorted(folder.glob("*.ipynb")) if folder is not None and folder.is_dir() else []
    for path in notebooks:
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # a broken source notebook: fall back to the results' order
            return _layout(None, assignment, results)
        for cell, heading, answer in cells.with_exercise(nb):
            gid = cells.grade_id(cell)
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if not (gid and meta.get("grade")):
                continue
            points = float(meta.get("points", 0))
            exercise = ", ".join(p for p in (heading, answer) if p) or path.stem
            if cells.is_test(cell):
                out.append(Cell(path.stem, gid, f"test {gid}", points, True, exercise))
            else:  # a written answer (or a code answer graded by hand)
                title = f"written answer {gid}"
                out.append(Cell(path.stem, gid, title, points, False, heading or gid))
    if out:
        return out
    seen: dict[tuple[str, str], Cell] = {}
    for r in results:
        for nb, grades in r.grades.items():
            for gid, g in grades.items():
                if (nb, gid) not in seen:
                    auto = not (g["needs_manual"] or g.get("hand"))
                    seen[nb, gid] = Cell(nb, gid, gid, g["max_score"], auto, nb)
    return list(seen.values())


def exercise_table(course, assignment: str, results: list[Result]) -> list[Cell]:
    """The cells of ``assignment`` with the class's shares and failing messages counted."""
    mine = [r for r in results if r.assignment == assignment]
    layout = _layout(course, assignment, mine)
    for cell in layout:
        for r in mine:
            g = r.grades.get(cell.notebook, {}).get(cell.grade_id)
            if not r.grades:  # a grading error: nothing to count
                continue
            cell.graded += 1
            if g is None:
                continue
            if g["needs_manual"]:
                cell.pending += 1
            elif g["max_score"] and g["score"] >= g["max_score"]:
                cell.earned += 1
            elif cell.auto and g.get("message"):
                cell.failures[g["message"]] += 1
    return layout


def _share(k: int, n: int) -> str:
    return f"{100 * k / n:.0f}% ({k} / {n})" if n else "none graded"


def _figure(out: Path, tables: dict[str, list[Cell]], submissions: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [
        (
            f"{a} · {c.exercise}: {c.grade_id}"
            if len(tables) > 1
            else f"{c.exercise}: {c.grade_id}",
            c,
        )
        for a, cells in tables.items()
        for c in cells
        if c.auto
    ]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.35 * len(bars) + 1.2)))
    if bars:
        shares = [c.earned / c.graded if c.graded else 0.0 for _, c in bars]
        ys = list(range(len(bars)))[::-1]  # the notebook's first test at the top
        ax.barh(ys, shares, color="C0")
        ax.set_yticks(ys, [label for label, _ in bars], fontsize=8)
        for y, share, (_, c) in zip(ys, shares, bars, strict=True):
            ax.text(min(share, 0.85) + 0.01, y, f"{c.earned}/{c.graded}", va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the class that earned the test's points")
    ax.set_title(f"Autograded tests in notebook order ({submissions} submissions)")
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=100)
    plt.close(fig)


def _exercise_rows(assignment: str, table: list[Cell], results: list[Result]) -> str:
    e = html.escape
    rows = []
    mine = [r for r in results if r.assignment == assignment and r.grades]
    for exercise in dict.fromkeys(c.exercise for c in table):
        group = [c for c in table if c.exercise == exercise]
        auto = [c for c in group if c.auto]
        if auto:
            full = sum(
                all(
                    (g := r.grades.get(c.notebook, {}).get(c.grade_id)) is not None
                    and g["score"] >= g["max_score"]
                    for c in auto
                )
                for r in mine
            )
            points = sum(c.points for c in auto)
            rows.append(
                f'<tr class="exercise" data-exercise="{e(exercise)}"><th colspan="2">'
                f"{e(exercise)}</th><td>{points:g}</td><td>{_share(full, len(mine))}</td>"
                "<td>all its tests</td></tr>"
            )
        for c in group:
            if c.auto:
                message, count = c.failures.most_common(1)[0] if c.failures else ("", 0)
                failing = (
                    f"<code>{e(message)}</code> ({count} of {c.graded})" if count else "&mdash;"
                )
                earned = _share(c.earned, c.graded)
            else:
                failing = f"graded by hand: {c.pending} pending (below)"
                earned = _share(c.earned, c.graded)
            rows.append(
                f'<tr class="cell" data-cell="{e(c.grade_id)}"><td>{e(c.notebook)}</td>'
                f"<td>{e(c.title)}</td><td>{c.points:g}</td><td>{earned}</td>"
                f"<td>{failing}</td></tr>"
            )
    return "\n".join(rows)


def pending_cells(results: list[Result]) -> list[tuple[str, str, str, float, list[str]]]:
    """``(assignment, notebook, grade_id, points, [students])`` of each cell awaiting a
    person (hand grades applied), in the results' cell order."""
    found: dict[tuple[str, str, str], tuple[float, list[str]]] = {}
    for r in results:
        for nb, grades in r.grades.items():
            for gid, g in grades.items():
                if g["needs_manual"]:
                    found.setdefault((r.assignment, nb, gid), (g["max_score"], []))[1].append(
                        r.student
                    )
    return [(a, nb, gid, pts, students) for (a, nb, gid), (pts, students) in found.items()]


def _write_pending_csv(out: Path, pending) -> None:

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student", "assignment", "cell", "points", "comment"])
    for assignment, _nb, gid, _pts, students in pending:
        for student in students:
            writer.writerow([student, assignment, gid, "", ""])
    write_atomic(out / PENDING_CSV, buf.getvalue())


def _sandboxes(results: list[Result]) -> str:
    """How the submissions' kernels were sandboxed, as the runs that graded them recorded it
    (several runs may have graded one output folder)."""
    counts = Counter(r.sandbox or "not recorded" for r in results)
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{how} ({n} submissions)" for how, n in sorted(counts.items()))


def write_report(out: Path, results: list[Result], course=None) -> Path:
    """Write ``report.png``, ``report.html`` and ``hand_grades_pending.csv`` in ``out``
    (``course``: the course root holding ``solutions/``, for the notebook order); return the
    HTML's path."""
    e = html.escape
    out = Path(out)
    assignments = sorted({r.assignment for r in results})
    tables = {a: exercise_table(course, a, results) for a in assignments}
    _figure(out, tables, len(results))

    sections = []
    for a in assignments:
        sections.append(
            f'<h3 id="assignment-{e(a)}">{e(a)}</h3>\n<table border="1" data-assignment="{e(a)}">'
            "<tr><th>notebook</th><th>test</th><th>points</th><th>earned by</th>"
            "<th>most common failing message</th></tr>\n"
            f"{_exercise_rows(a, tables[a], results)}\n</table>"
        )

    pending = pending_cells(results)
    _write_pending_csv(out, pending)
    pending_rows = "\n".join(
        f'<tr data-pending="{e(gid)}"><td>{e(a)}</td><td>{e(nb)}</td><td><code>{e(gid)}</code>'
        f"</td><td>{pts:g}</td><td>{len(students)}</td>"
        f"<td>{e(', '.join(students))}</td></tr>"
        for a, nb, gid, pts, students in pending
    )
    waiting = sum(len(s) for *_, s in pending)

    counts = Counter(f for r in results for f in r.flags)
    student_rows = "\n".join(
        f'<tr data-student="{e(r.student)}"><td>{e(r.student)}</td>'
        f"<td>{e(r.assignment)}</td><td>{r.score:g} / {r.max_score:g}</td>"
        f"<td>{r.pending:g}</td><td>{e(', '.join(r.flags))}</td></tr>"
        for r in results
    )
    summary = "".join(f"<li>{e(f)}: {n}</li>" for f, n in sorted(counts.items()))
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Grading report</title>
<style>
body {{ font-family: sans-serif; max-width: 70em; margin: 1em auto; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
td, th {{ padding: 0.2em 0.5em; text-align: left; vertical-align: top; }}
tr.exercise {{ background: #eef; }}
code {{ white-space: pre-wrap; }}
</style></head><body>
<h1>Grading report</h1>
<p>{len(results)} submissions graded. Kernel sandbox: {e(_sandboxes(results))}.
Files: <code>grades.csv</code>, <code>grades_by_cell.csv</code>, <code>lms_grades.csv</code>,
<code>handback/</code> (a zip of feedback per student), <code>{PENDING_CSV}</code>.</p>
<h2 id="exercises">Exercises</h2>
<p>In notebook order: the share of the class that earned each exercise's autograded points
(all its tests) and each test's, and the failing message most students got.</p>
{"".join(sections) or "<p>No graded exercises.</p>"}
<img src="report.png" alt="share of the class that earned each test, in notebook order">
<h2 id="hand-grading">Hand grading</h2>
<p>{waiting} answers await a person. Grade them in <code>{PENDING_CSV}</code> (fill in the
points; delete the rows not graded yet) and merge it with
<code>python -m autograder report OUT --hand-grades {PENDING_CSV}</code>.</p>
<table border="1" id="pending"><tr><th>assignment</th><th>notebook</th><th>cell</th>
<th>points</th><th>waiting</th><th>students</th></tr>
{pending_rows}
</table>
<h2 id="students">Students</h2>
<h3>Flags</h3><ul>{summary or "<li>none</li>"}</ul>
<table border="1" id="results"><tr><th>student</th><th>assignment</th><th>score</th>
<th>pending</th><th>flags</th></tr>
{student_rows}
</table></body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path

"""Handing the grades back: a zip of feedback per student and a grades file an LMS imports.

* ``OUT/handback/<student>.zip`` holds ``feedback/index.html`` (links to the student's pages),
  ``feedback/<student>/<assignment>/<notebook>.html`` and ``feedback/.mathjax/`` (MathJax, which
  the pages load by a relative path): unzipped anywhere, the pages open with no network. A
  zip is rewritten only when a page of that student (or MathJax) is newer than it.
* ``OUT/lms_grades.csv``: one row per student, one column per assignment (the points earned,
  hand grades included; empty if the student has no result for it) and ``total``::

      student,01_lower_bound,02_normal_mixture,total
      alice,9,12.5,21.5

  The maxima are in ``grades.csv`` (``max_score``); points still pending hand grading are not
  in the scores (``grades.csv``'s ``pending`` column, the report's hand-grading list).
"""

from __future__ import annotations

import csv
import html
import io
import os
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import quote

from autograder.feedback import MATHJAX_DIR, csp
from autograder.files import write_atomic
from autograder.records import Result

HANDBACK = "handback"
LMS_CSV = "lms_grades.csv"


def _number(x: float) -> str:
    return f"{round(x, 6):g}"


def write_lms_csv(out: Path, results: list[Result]) -> Path:
    """``OUT/lms_grades.csv`` (see the module's doc); return its path."""

    assignments = sorted({r.assignment for r in results})
    rows: dict[str, dict[str, str]] = {}
    totals: dict[str, float] = {}
    for r in results:
        rows.setdefault(r.student, {"student": r.student})[r.assignment] = _number(r.score)
        totals[r.student] = totals.get(r.student, 0.0) + r.score
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["student", *assignments, "total"], lineterminator="\n")
    writer.writeheader()
    for student in sorted(rows):
        writer.writerow({**rows[student], "total": _number(totals[student])})
    path = Path(out) / LMS_CSV
    write_atomic(path, buf.getvalue())
    return path


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _index(student: str, pages: list[str]) -> str:
    items = "\n".join(
        f'<li><a href="{html.escape(quote(p))}">{html.escape(p.split("/", 1)[1])}</a></li>'
        for p in pages
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>\n"
        f"{csp()}\n<title>Feedback: {html.escape(student)}</title></head><body>\n"
        f"<h1>Feedback for {html.escape(student)}</h1>\n<ul>\n{items}\n</ul>\n</body></html>\n"
    )


def write_zips(out: Path, results: list[Result]) -> list[Path]:
    """``OUT/handback/<student>.zip`` for every student with feedback pages; return them."""
    out = Path(out)
    feedback = out / "feedback"
    mathjax = feedback / MATHJAX_DIR
    assets = _files(mathjax) if mathjax.is_dir() else []
    assets_time = max((p.stat().st_mtime_ns for p in assets), default=0)
    target = out / HANDBACK
    target.mkdir(exist_ok=True)
    written = []
    for student in sorted({r.student for r in results}):
        folder = feedback / student
        pages = _files(folder) if folder.is_dir() else []
        if not pages:
            continue
        path = target / f"{student}.zip"
        newest = max([assets_time, *(p.stat().st_mtime_ns for p in pages)])
        if path.is_file() and path.stat().st_mtime_ns > newest:
            written.append(path)
            continue
        fd, tmp = tempfile.mkstemp(dir=target, suffix=".tmp")
        os.close(fd)
        names = [p.relative_to(feedback).as_posix() for p in pages]
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            zf.writestr("feedback/index.html", _index(student, names))
            for page, name in zip(pages, names, strict=True):
                zf.write(page, f"feedback/{name}")
            for asset in assets:
                zf.write(asset, f"feedback/{asset.relative_to(feedback).as_posix()}")
        os.replace(tmp, path)
        written.append(path)
    return written

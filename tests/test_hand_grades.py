"""Hand grades of written answers (autograder/hand.py) on the toy class.

The toy assignment's written answer ``why_square`` (1 point) awaits a person: until a hand
grade is merged it reads "pending hand grading" (not 0) in the feedback and counts in the
``pending`` column of grades.csv; ``--hand-grades FILE`` merges the instructor's CSV.
"""

from __future__ import annotations

import csv
import html
import re
import shutil
from pathlib import Path

import pytest

from autograder.__main__ import main
from autograder.grade import grade

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "submissions"
TOY = FIXTURES / "course"
LIMITS = {"timeout": 5, "notebook_timeout": 30, "progress": False}
HEADER = "student,assignment,cell,points,comment\n"


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _by_student(out: Path) -> dict[str, dict]:
    return {r["student"]: r for r in _rows(out / "grades.csv")}


def _cell(out: Path, student: str, gid: str) -> dict:
    (row,) = [
        r
        for r in _rows(out / "grades_by_cell.csv")
        if r["student"] == student and r["grade_id"] == gid
    ]
    return row


def _text(out: Path, student: str) -> str:
    raw = (out / "feedback" / student / "toy" / "toy.html").read_text()
    raw = re.sub(r"<style.*?</style>", "", raw, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hand")
    folder = tmp / "class"
    for student in ("correct", "wrong_cube"):
        shutil.copytree(FIXTURES / "class" / student, folder / student)
    out = tmp / "out"
    grade(folder, out, course=TOY, jobs=1, **LIMITS)
    return folder, out


@pytest.fixture
def out(graded, tmp_path):
    """A copy of the graded class's output folder, for a test to change."""
    copy = tmp_path / "out"
    shutil.copytree(graded[1], copy)
    return copy


def _merge(out: Path, rows: str, tmp_path: Path, capsys=None) -> int:
    path = tmp_path / "hand_grades.csv"
    path.write_text(HEADER + rows)
    return main(["report", str(out), "--course", str(TOY), "--hand-grades", str(path)])


def test_a_written_answer_reads_pending_until_a_person_grades_it(graded):
    _, out = graded
    rows = _by_student(out)
    assert rows["correct"]["score"] == "5" and rows["correct"]["pending"] == "1"
    assert rows["correct"]["flags"] == "needs_manual"
    assert _cell(out, "correct", "why_square")["graded_by"] == "pending"
    text = _text(out, "correct")
    assert "Score: pending hand grading (of 1.0)" in text
    assert "1.0 of them pending hand grading" in text
    assert "Score: 0.0 / 1.0" not in text


def test_merged_hand_grade_shows_in_grades_feedback_and_gradebook(out, tmp_path):
    comment = "Half: say why the signs <b>agree</b>."
    assert _merge(out, f'correct,toy,why_square,0.5,"{comment}"\n', tmp_path) == 0
    rows = _by_student(out)
    assert (rows["correct"]["score"], rows["correct"]["pending"]) == ("5.5", "0")
    assert rows["correct"]["flags"] == ""  # nothing awaits a person any more
    assert rows["wrong_cube"]["pending"] == "1"  # the other student still waits
    cell = _cell(out, "correct", "why_square")
    assert (cell["score"], cell["graded_by"], cell["comment"]) == ("0.5", "hand", comment)
    text = _text(out, "correct")
    assert "Score: 0.5 / 1.0 (graded by hand)" in text and "Score: 5.5 / 6.0" in text
    assert f"Comment: {comment}" in text  # as text: the comment's HTML is escaped
    assert "<b>agree</b>" not in (out / "feedback/correct/toy/toy.html").read_text()
    assert "pending" not in text
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out}/gradebook.db") as gb:
        grade_ = gb.find_grade("why_square", "toy", "toy", "correct")
        assert grade_.manual_score == 0.5 and not grade_.needs_manual_grade
        assert gb.find_comment("why_square", "toy", "toy", "correct").comment == comment
    # A later file adds to the hand grades and replaces the same cell's.
    assert _merge(out, "wrong_cube,toy,why_square,1,\ncorrect,toy,why_square,1,\n", tmp_path) == 0
    rows = _by_student(out)
    assert (rows["correct"]["score"], rows["wrong_cube"]["score"]) == ("6", "4")
    assert "Score: 1.0 / 1.0 (graded by hand)" in _text(out, "correct")
    assert "Comment:" not in _text(out, "correct")


def test_bad_rows_are_named_and_change_nothing(out, tmp_path, capsys):
    assert _merge(out, "correct,toy,why_square,1,fine\n", tmp_path) == 0
    before = {p: (out / p).read_bytes() for p in ("grades.csv", "grades_by_cell.csv")}
    bad = (
        "wrong_cube,toy,why_square,1,a good row\n"  # line 2
        "bob,toy,why_square,1,\n"  # 3
        "correct,toy,no_such_cell,1,\n"  # 4
        "correct,toy,why_square,1.5,\n"  # 5
        "correct,toy,test_cube,2,\n"  # 6: graded automatically
        "wrong_cube,toy,why_square,half,\n"  # 7
        "correct,ch9,why_square,1,\n"  # 8
    )
    assert _merge(out, bad, tmp_path) == 2
    err = capsys.readouterr().err
    assert "nothing merged" in err
    for line, what in [
        (3, "unknown student 'bob'"),
        (4, "'no_such_cell' is not a hand-graded cell of toy"),
        (5, "points 1.5 outside 0 to 1"),
        (6, "'test_cube' is not a hand-graded cell"),
        (7, "points 'half' is not a number"),
        (8, "unknown assignment 'ch9'"),
    ]:
        assert re.search(rf"line {line} \([^)]*\): {re.escape(what)}", err), (line, err)
    assert "line 2" not in err
    assert {p: (out / p).read_bytes() for p in before} == before  # the good row was not kept
    assert "Score: 1.0 / 1.0 (graded by hand)" in _text(out, "correct")


def test_regrading_a_student_keeps_the_hand_grade(graded, out, tmp_path):
    folder, _ = graded
    assert _merge(out, "correct,toy,why_square,0.25,kept\n", tmp_path) == 0
    grade(folder, out, course=TOY, jobs=1, students=["correct"], force=True, **LIMITS)
    assert _by_student(out)["correct"]["score"] == "5.25"
    text = _text(out, "correct")
    assert "Score: 0.25 / 1.0 (graded by hand)" in text and "Comment: kept" in text

"""The autograder (``python -m autograder grade``) on a class of bad submissions.

The class is ``tests/submissions/class/<student>/toy/toy.ipynb`` (one student per case, made
by ``tests/submissions/make_fixtures.py``) for the toy assignment in
``tests/submissions/course/solutions/toy``: exercise 1 (3 points: tests of 2 and 1), exercise
2 (2 points), a written answer (1 point). A correct submission earns 5 of 6 and awaits a person.
"""

from __future__ import annotations

import csv
import html
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import typing
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import REPO, cells
from autograder.feedback import hidden_lines
from autograder.grade import STATE, grade
from autograder.release import release, solved
from autograder.sandbox import isolation_available

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "submissions"
TOY = FIXTURES / "course"
CLASS = FIXTURES / "class"
TIMEOUT = 5
NOTEBOOK_TIMEOUT = 30
ISOLATED, WHY = isolation_available()
LIMITS = {"timeout": TIMEOUT, "notebook_timeout": NOTEBOOK_TIMEOUT, "progress": False}


def _class_copy(tmp: Path) -> Path:
    """The fixture class plus what git cannot store: an empty folder, the unfilled release."""
    folder = tmp / "class"
    shutil.copytree(CLASS, folder)
    (folder / "empty_folder" / "toy").mkdir(parents=True, exist_ok=True)
    course = tmp / "course"
    shutil.copytree(TOY, course)
    release(["toy"], root=course)
    (folder / "unfilled" / "toy").mkdir(parents=True, exist_ok=True)
    shutil.copy(course / "course" / "toy" / "toy.ipynb", folder / "unfilled" / "toy")
    if not ISOLATED:  # without the sandbox's quota it would really write 2 GiB
        shutil.rmtree(folder / "disk_bomb")
    return folder


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "grades.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def _text(path: Path) -> str:
    """An HTML file's text as a reader sees it (tags removed, entities decoded)."""
    raw = re.sub(r"<style.*?</style>", "", path.read_text(), flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("graded")
    folder = _class_copy(tmp)
    out = tmp / "out"
    start = time.monotonic()
    results = grade(folder, out, course=TOY, jobs=2, **LIMITS)
    return {
        "folder": folder,
        "out": out,
        "rows": _rows(out),
        "results": {r.student: r for r in results},
        "seconds": time.monotonic() - start,
    }


def _check(graded, student, score, flags):
    row = graded["rows"][student]
    assert (row["score"], row["max_score"]) == (str(score), "6"), row
    assert row["flags"] == ";".join(flags), row
    assert (graded["out"] / "feedback" / student / "toy" / "toy.html").is_file()


def test_grades_csv_has_one_row_per_student_and_the_documented_columns(graded):
    with open(graded["out"] / "grades.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields = ["student", "assignment", "score", "max_score", "pending", "flags"]
        assert reader.fieldnames == fields
        students = [row["student"] for row in reader]
    assert sorted(students) == sorted(p.name for p in graded["folder"].iterdir())


def test_correct_answers_earn_every_autograded_point(graded):
    _check(graded, "correct", 5, ["needs_manual"])
    grades = graded["results"]["correct"].grades["toy"]
    assert all(g["score"] == g["max_score"] for k, g in grades.items() if k != "why_square")


def test_unfilled_release_scores_zero(graded):
    _check(graded, "unfilled", 0, [])  # an untouched written answer scores 0 by itself


def test_known_wrong_answer_earns_exactly_the_other_exercise(graded):
    _check(graded, "wrong_cube", 3, ["needs_manual"])


@pytest.mark.parametrize(
    ("student", "score"),
    [("loop_top", 5), ("loop_function", 3), ("loop_sigint", 3)],
    ids=["top-level", "in-function", "ignores-sigint"],
)
def test_infinite_loops_are_graded_and_flagged_timeout(graded, student, score):
    _check(graded, student, score, ["timeout", "needs_manual"])


@pytest.mark.parametrize("student", ["exit_kernel", "crash_kernel"])
def test_dead_kernel_is_flagged_and_graded_with_what_ran(graded, student):
    _check(graded, student, 3, ["kernel_died", "needs_manual"])


def test_memory_bomb_is_stopped_by_the_kernel_memory_limit(graded):
    row = graded["rows"]["memory_bomb"]
    assert "memory_limit" in row["flags"].split(";") or "kernel_died" in row["flags"], row
    assert row["score"] == "5", row


def test_edited_tests_and_points_are_restored_and_flagged(graded):
    _check(graded, "tampered", 3, ["tampered", "needs_manual"])
    points = graded["results"]["tampered"].grades["toy"]["test_square_float"]
    assert points["max_score"] == 1


def test_deleted_tests_are_restored_and_run(graded):
    _check(graded, "deleted_tests", 5, ["deleted_tests", "needs_manual"])
    assert graded["results"]["deleted_tests"].grades["toy"]["test_cube"]["score"] == 2


@pytest.mark.parametrize(
    ("student", "flag"),
    [("invalid_json", "unreadable"), ("renamed", "missing"), ("empty_folder", "missing")],
)
def test_unusable_submissions_score_zero_with_a_flag(graded, student, flag):
    _check(graded, student, 0, [flag])
    assert flag in _text(graded["out"] / "feedback" / student / "toy" / "toy.html").replace(
        "could not be read", "unreadable"
    ).replace("was found", "missing")


def test_answer_using_the_reference_library_earns_nothing_for_its_exercise(graded):
    _check(graded, "uses_emlib", 3, ["uses_emlib", "needs_manual"])
    grades = graded["results"]["uses_emlib"].grades["toy"]
    assert grades["test_cube"]["score"] == 0
    assert grades["test_square"]["score"] == 2


def test_an_honest_self_check_that_calls_emlib_costs_nothing(graded):
    _check(graded, "emlib_selfcheck", 5, ["needs_manual"])


def test_the_notebook_time_limit_stops_many_slow_cells(graded):
    _check(graded, "slow_cells", 5, ["timeout", "needs_manual"])
    text = _text(graded["out"] / "feedback" / "slow_cells" / "toy" / "toy.html")
    assert "time limit is up" in text


@pytest.mark.skipif(not ISOLATED, reason=f"kernel sandbox unavailable: {WHY}")
def test_the_disk_quota_stops_a_kernel_that_fills_its_folder(graded):
    _check(graded, "disk_bomb", 5, ["disk_limit", "needs_manual"])
    text = _text(graded["out"] / "feedback" / "disk_bomb" / "toy" / "toy.html")
    (written,) = re.findall(r"wrote (\d+) MiB", text)
    assert int(written) <= 256


def test_student_html_and_script_are_inert_in_the_feedback(graded):
    page = (graded["out"] / "feedback" / "html_feedback" / "toy" / "toy.html").read_text()
    _check(graded, "html_feedback", 5, ["needs_manual"])
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert '<b id="pwned-html">' not in page  # the HTML output is not rendered
    assert "<script>document.title" not in page
    assert '<img src="x" onerror' not in page  # the student's markdown is text
    assert "PWNED-MARKDOWN" in _text(
        graded["out"] / "feedback" / "html_feedback" / "toy" / "toy.html"
    )


@pytest.mark.parametrize("student", ["jo@uni", "jo_uni", "[x]"])
def test_student_names_are_kept_exactly(graded, student):
    _check(graded, student, 5, ["needs_manual"])


@pytest.mark.skipif(not ISOLATED, reason=f"kernel sandbox unavailable: {WHY}")
def test_nothing_a_kernel_leaves_in_shared_places_reaches_the_next(graded, tmp_path):
    folder = tmp_path / "class"
    for student in ("ipc_a_leaves", "ipc_b_reads"):
        shutil.copytree(graded["folder"] / student, folder / student)
    out = tmp_path / "out"
    grade(folder, out, course=TOY, jobs=1, **LIMITS)  # one worker: a, then b
    text = _text(out / "feedback" / "ipc_b_reads" / "toy" / "toy.html")
    assert re.findall(r"^(LEAK-\w+) \[", text, flags=re.M) == ["LEAK-NONE"]
    assert not Path("/run/lock/emcourse-leak").exists()
    assert not Path("/dev/shm/emcourse-leak").exists()


def test_huge_output_is_truncated_and_graded(graded):
    _check(graded, "huge_output", 5, ["needs_manual"])
    feedback = graded["out"] / "feedback" / "huge_output" / "toy" / "toy.html"
    assert feedback.stat().st_size < 2_000_000
    assert "output truncated" in _text(feedback)


@pytest.mark.skipif(not ISOLATED, reason=f"kernel sandbox unavailable: {WHY}")
def test_student_code_cannot_reach_course_files_other_students_or_network(graded):
    _check(graded, "attacker", 5, ["needs_manual"])
    text = _text(graded["out"] / "feedback" / "attacker" / "toy" / "toy.html")
    attempts = re.findall(r"^ATTACK-(OK|FAILED) (\S+)", text, flags=re.M)
    assert {what for _, what in attempts} == {
        "read-solutions",
        "read-hidden-tests",
        "read-gradebook",
        "write-solutions",
        "write-gradebook",
        "write-other-student",
        "network",
    }
    assert [what for ok, what in attempts if ok == "OK"] == []
    assert not (REPO / "solutions" / "pwned.txt").exists()
    other = graded["folder"] / "correct" / "toy" / "toy.ipynb"
    assert other.read_bytes() == (CLASS / "correct" / "toy" / "toy.ipynb").read_bytes()


def test_feedback_never_shows_hidden_tests(graded):
    source = nbformat.read(TOY / "solutions" / "toy" / "toy.ipynb", as_version=4)
    secret = hidden_lines(source)
    assert len(secret) == 3
    files = sorted((graded["out"] / "feedback").rglob("*.html"))
    assert len(files) == len(graded["rows"])
    for path in files:
        text = _text(path)
        leaked = [line for line in secret if line in text or line.split(",")[-1] in text]
        assert not leaked, f"{path} shows hidden tests: {leaked}"
    # ...while showing the student's code, visible tests and points.
    text = _text(graded["out"] / "feedback" / "wrong_cube" / "toy" / "toy.html")
    assert "return 3 * x" in text and "assert cube(2) == 8" in text
    assert re.search(r"Points:\s*0\.0\s*\(of\s*2\.0\)|0\.0\s*/\s*2\.0|Score:\s*0\.0", text)


def _pages(graded) -> list[Path]:
    return sorted((graded["out"] / "feedback").glob("*/toy/*.html"))


def test_feedback_pages_load_mathjax_from_the_feedback_folder_not_a_cdn(graded):
    pages = _pages(graded)
    assert len(pages) == len(graded["rows"])
    with_math = set()
    for path in pages:
        page = path.read_text()
        assert "cdn" not in page.lower(), path
        loads = re.findall(r"<(?:script|link|img)[^>]*\b(?:src|href)=\"([^\"]*)\"", page)
        assert not [u for u in loads if re.match(r"\w+://|//", u)], (path, loads)
        for src in loads:  # every script a page loads is there, relative to the page
            assert (path.parent / src.split("?")[0]).is_file(), (path, src)
            with_math.add(path.parents[1].name)
    never_run = {s for s, row in graded["rows"].items() if {"unreadable", "missing"} & set(
        row["flags"].split(";"))}  # fmt: skip
    assert with_math == set(graded["rows"]) - never_run
    page = (graded["out"] / "feedback" / "numpy_traceback" / "toy" / "toy.html").read_text()
    assert "../../.mathjax/MathJax.js?config=" in page and r"$\psi_{ik}$" in page


def test_feedback_math_is_typeset_offline_in_a_browser(graded):
    from tests.browser import chromium, skip_without_browser

    skip_without_browser()
    page = graded["out"] / "feedback" / "numpy_traceback" / "toy" / "toy.html"
    with chromium() as driver:
        driver.get(page.as_uri())
        deadline = time.monotonic() + 20
        done = "return document.documentElement.getAttribute('data-math')"
        while not driver.execute_script(done) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert driver.execute_script(done) == "done"
        count = "return document.querySelectorAll(arguments[0]).length"
        assert driver.execute_script(count, ".MathJax") == 2  # psi inline, the sum displayed
        assert driver.execute_script(count, ".MathJax_Display") == 1
        assert driver.execute_script(count, ".merror, .MathJax_Error") == 0


def test_feedback_tracebacks_show_the_students_cells_and_the_message_only(graded):
    _check(graded, "numpy_traceback", 2, ["needs_manual"])
    for path in _pages(graded):
        text = _text(path)
        for where in (".venv", "/run/autograder-kernels", "site-packages", "lib/python"):
            assert where not in text, (path, where)
        assert "numpy/" not in text and "_linalg.py" not in text, path
    text = _text(graded["out"] / "feedback" / "numpy_traceback" / "toy" / "toy.html")
    assert "Cell In[" in text and "np.linalg.inv(np.zeros((2, 2)))" in text
    assert "frames in library code left out" in text
    assert "LinAlgError: Singular matrix" in text
    assert "square(3) should be 9" in text  # the failing test's own message
    text = _text(graded["out"] / "feedback" / "emlib_selfcheck" / "toy" / "toy.html")
    assert "EmlibUnavailable: emlib.moth.fit is not available" in text


def test_feedback_summary_names_each_test_by_its_exercise(graded):
    page = (graded["out"] / "feedback" / "wrong_cube" / "toy" / "toy.html").read_text()
    summary = re.findall(r'<li><a href="#(\w+)">([^<]*)</a>', page)
    assert summary == [
        ("test_square", "Exercise 1 (3 points), square: test test_square"),
        ("test_square_float", "Exercise 1 (3 points), square: test test_square_float"),
        ("test_cube", "Exercise 2 (2 points), cube: test test_cube"),
        ("why_square", "Exercise 3 (1 point): written answer why_square"),
    ]
    assert "Test cell" not in _text(graded["out"] / "feedback" / "wrong_cube" / "toy" / "toy.html")


def test_class_report_has_a_figure_and_the_flags(graded):
    out = graded["out"]
    assert (out / "report.png").stat().st_size > 1000
    report = (out / "report.html").read_text()
    for flag in ("timeout", "kernel_died", "tampered", "deleted_tests", "unreadable", "missing"):
        assert flag in report


def test_every_cell_grade_has_the_shape_records_declare(graded):
    """The state files' cell grades hold CellGrade's keys and no other, with its types."""
    from autograder.grade import load_results
    from autograder.records import CellGrade

    declared = typing.get_type_hints(CellGrade)
    seen = set()
    for result in load_results(graded["out"]):
        for grades in result.grades.values():
            for gid, g in grades.items():
                assert {"score", "max_score", "needs_manual"} <= g.keys() <= declared.keys(), g
                for key, value in g.items():
                    kind = (int, float) if declared[key] is float else declared[key]
                    assert isinstance(value, kind), (gid, key, value)
                seen |= g.keys()
    assert {"seed", "message"} <= seen  # failing autograded tests are among the toy class's


def test_report_states_the_sandbox_the_run_recorded_not_a_new_probe(graded, monkeypatch):
    """Each result keeps how its kernels were sandboxed (the grading run's one decision);
    the report states that, even when written later on a machine that would decide
    otherwise."""
    from autograder import sandbox
    from autograder.grade import load_results
    from autograder.report import write_report

    expected = isolation_available()[1]
    results = load_results(graded["out"])
    assert {r.sandbox for r in results} == {expected}
    stated = f"Kernel sandbox: {html.escape(expected)}."
    assert stated in (graded["out"] / "report.html").read_text()

    def no_probe():
        raise AssertionError("the report probed the machine again")

    monkeypatch.setattr(sandbox, "isolation_available", no_probe)
    assert stated in write_report(graded["out"], results, TOY).read_text()


def test_each_student_gets_a_zip_of_feedback_that_opens_offline(graded, tmp_path):
    out = graded["out"]
    zips = sorted((out / "handback").glob("*.zip"))
    assert [z.name for z in zips] == sorted(f"{s}.zip" for s in graded["rows"])
    for path in zips:
        student = path.name[: -len(".zip")]
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
        assert f"feedback/{student}/toy/toy.html" in names and "feedback/index.html" in names
        assert "feedback/.mathjax/MathJax.js" in names
        assert {n.split("/")[1] for n in names} == {"index.html", student, ".mathjax"}, path
    with zipfile.ZipFile(out / "handback" / "numpy_traceback.zip") as zf:
        zf.extractall(tmp_path)
    page = tmp_path / "feedback" / "numpy_traceback" / "toy" / "toy.html"
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]*)"', page.read_text())
    assert scripts and all((page.parent / s.split("?")[0]).is_file() for s in scripts)
    assert "toy/toy.html" in (tmp_path / "feedback" / "index.html").read_text()


def test_lms_grades_have_one_row_per_student_one_column_per_assignment_and_a_total(graded):
    with open(graded["out"] / "lms_grades.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["student", "toy", "total"]
        rows = list(reader)
    assert [r["student"] for r in rows] == sorted(graded["rows"])
    for row in rows:
        assert row["toy"] == row["total"] == graded["rows"][row["student"]]["score"], row


def _report_rows(report: str, attribute: str) -> list[tuple[str, str]]:
    """``(value of attribute, the row's text)`` of each table row carrying ``attribute``."""
    rows = re.findall(rf'<tr[^>]*\b{attribute}="([^"]*)"[^>]*>(.*?)</tr>', report, flags=re.S)
    return [(html.unescape(v), html.unescape(re.sub(r"<[^>]+>", " ", t))) for v, t in rows]


def test_class_report_gives_each_exercise_in_notebook_order_with_shares_and_failures(graded):
    from collections import Counter

    report = (graded["out"] / "report.html").read_text()
    cells_ = _report_rows(report, "data-cell")
    assert [gid for gid, _ in cells_] == [
        "test_square",
        "test_square_float",
        "test_cube",
        "why_square",
    ]
    exercises = [name for name, _ in _report_rows(report, "data-exercise")]
    assert exercises == ["Exercise 1 (3 points), square", "Exercise 2 (2 points), cube"]
    results = [r for r in graded["results"].values() if r.grades]
    for gid, text in cells_[:3]:
        grades = [r.grades["toy"][gid] for r in results]
        earned = sum(g["score"] == g["max_score"] for g in grades)
        assert f"({earned} / {len(results)})" in text, (gid, text)
        (message, count), *_ = Counter(
            g["message"] for g in grades if "message" in g
        ).most_common()
        expected = " ".join(f"{message} ({count} of {len(results)})".split())
        assert expected in " ".join(text.split()), (gid, text)
    assert "AssertionError: square(3) should be 9" in cells_[0][1]
    assert "<img" in report and "boxplot" not in report


def test_class_report_lists_what_awaits_hand_grading_and_every_student(graded):
    report = (graded["out"] / "report.html").read_text()
    (pending,) = _report_rows(report, "data-pending")
    assert pending[0] == "why_square"
    waiting = {s for s, r in graded["results"].items() if r.pending}
    assert "correct" in waiting and "unfilled" not in waiting
    listed = pending[1].split(None, 5)[-1]  # after assignment, notebook, cell, points, count
    assert set(listed.replace(",", " ").split()) == waiting
    with open(graded["out"] / "hand_grades_pending.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["student"] for r in rows} == waiting and {r["cell"] for r in rows} == {"why_square"}
    students = dict(_report_rows(report, "data-student"))
    assert set(students) == set(graded["rows"])
    assert "3 / 6" in students["wrong_cube"] and "needs_manual" in students["wrong_cube"]
    assert "timeout" in students["loop_top"]


def test_grading_again_skips_everyone_and_gives_the_same_csv(graded):
    out = graded["out"]
    before = (out / "grades.csv").read_bytes()
    start = time.monotonic()
    grade(graded["folder"], out, course=TOY, **LIMITS)
    assert time.monotonic() - start < 20
    assert (out / "grades.csv").read_bytes() == before


def test_regrading_one_student_changes_nothing_else(graded):
    out = graded["out"]
    before = (out / "grades.csv").read_bytes()
    states = {p.name: p.stat().st_mtime_ns for p in (out / STATE).glob("*.json")}
    grade(
        graded["folder"],
        out,
        course=TOY,
        students=["wrong_cube"],
        force=True,
        **LIMITS,
    )
    assert (out / "grades.csv").read_bytes() == before
    changed = {
        p.name for p in (out / STATE).glob("*.json") if p.stat().st_mtime_ns != states[p.name]
    }
    assert changed == {"wrong_cube__toy.json"}


def test_zip_downloads_graded_alone_give_the_same_grades(graded, tmp_path):
    """Grading two students alone (from an LMS-style zip) gives their rows in the class run."""
    zips = tmp_path / "zips"
    zips.mkdir()
    with zipfile.ZipFile(zips / "toy.zip", "w") as zf:
        for student in ("correct", "wrong_cube"):
            path = graded["folder"] / student / "toy" / "toy.ipynb"
            zf.write(path, f"{student}/toy.ipynb")
    out = tmp_path / "out"
    grade(zips, out, course=TOY, **LIMITS)
    rows = _rows(out)
    assert set(rows) == {"correct", "wrong_cube"}
    for student, row in rows.items():
        assert row == graded["rows"][student]


def test_interrupted_run_resumes_without_regrading_or_losing_grades(graded, tmp_path):
    folder = tmp_path / "class"
    for student in ("correct", "wrong_cube", "loop_top", "deleted_tests"):
        shutil.copytree(graded["folder"] / student, folder / student)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "autograder", "grade", str(folder), "--out", str(out)]
    cmd += ["--course", str(TOY), "--timeout", str(TIMEOUT), "--jobs", "1", "--quiet"]
    cmd += ["--notebook-timeout", str(NOTEBOOK_TIMEOUT)]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 90
    while not list((out / STATE).glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    proc.wait(timeout=60)
    done = {p.name: p.stat().st_mtime_ns for p in (out / STATE).glob("*.json")}
    assert 1 <= len(done) < 4, done
    grade(folder, out, course=TOY, jobs=2, **LIMITS)
    after = {p.name: p.stat().st_mtime_ns for p in (out / STATE).glob("*.json")}
    assert len(after) == 4
    assert all(after[name] == mtime for name, mtime in done.items())
    rows = _rows(out)
    for student, row in rows.items():
        assert row == graded["rows"][student]


@pytest.mark.skipif(not ISOLATED, reason=f"kernel sandbox unavailable: {WHY}")
def test_a_killed_grader_leaves_no_kernel_behind(graded, tmp_path):
    """kill -9 of the grader and its workers (no clean-up code runs) still ends every kernel."""
    from tests.processes import alive, descendants, sandboxes

    folder = tmp_path / "class"
    shutil.copytree(graded["folder"] / "slow_cells", folder / "slow_cells")
    cmd = [sys.executable, "-m", "autograder", "grade", str(folder), "--out", str(tmp_path)]
    cmd += ["--course", str(TOY), "--jobs", "1", "--quiet"]
    log = tmp_path / "grader.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
    # The grader's own sandboxes only: the other test worker may be grading at the same time.
    deadline = time.monotonic() + 180
    while not (started := sandboxes(descendants(proc.pid))) and time.monotonic() < deadline:
        if proc.poll() is not None:
            break  # the grader ended without a sandboxed kernel: say what it printed
        time.sleep(0.2)
    if not started:
        proc.kill()
        states = {p.name: p.read_text()[-2000:] for p in (tmp_path / STATE).glob("*.json")}
        pytest.fail(
            f"no sandboxed kernel started (grader exit {proc.poll()}):\n"
            f"{log.read_text()[-3000:]}\nstate files: {states}"
        )
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
    ).stdout.split()
    for pid in [proc.pid, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(started), "a sandbox kernel outlived its grader"


def test_the_readme_says_what_to_do_about_every_flag():
    from autograder.grade import FLAGS

    lines = (REPO / "README.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("| `")]
    named = {flag for row in rows for flag in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    assert named == set(FLAGS), f"README's flag table: {sorted(named ^ set(FLAGS))}"


_CLAIM = (
    "from autograder import sandbox; print(sandbox.claim_slot(), sandbox.claim_slot(), "
    "flush=True); input()"
)


@pytest.mark.skipif(not ISOLATED, reason=f"kernel sandbox unavailable: {WHY}")
def test_concurrent_grading_processes_never_share_a_sandbox_user():
    """Each process holds its own slot (sandbox user) until it exits; then it is free again."""

    def start():
        return subprocess.Popen(
            [sys.executable, "-c", _CLAIM], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip

    procs = [start() for _ in range(3)]
    got = [tuple(map(int, proc.stdout.readline().split())) for proc in procs]
    assert all(a == b for a, b in got), f"a process changed its slot: {got}"
    assert len({a for a, _ in got}) == 3, f"processes share a slot: {got}"
    for proc in procs:
        proc.communicate("\n", timeout=30)
    proc = start()
    again, _ = map(int, proc.stdout.readline().split())
    proc.communicate("\n", timeout=30)
    assert again <= min(a for a, _ in got), "a slot stayed taken after its process exited"


_HOLD = (
    "import sys, tempfile; from pathlib import Path; from autograder import sandbox; "
    "box = Path(tempfile.mkdtemp(prefix='kernel-', dir=sandbox.KERNELS)); "
    "lock = sandbox.hold_box(box); print(box, flush=True); input()"
)


@pytest.mark.skipif(not ISOLATED, reason=f"kernel sandbox unavailable: {WHY}")
def test_kernel_folders_of_a_killed_grader_are_swept_and_live_ones_kept():
    """A box whose owner died (SIGKILL: no clean-up ran) is removed; a held one is kept."""
    from autograder.sandbox import sweep_stale_boxes

    def hold():
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        return proc, Path(proc.stdout.readline().strip())

    (live, live_box), (dead, dead_box) = hold(), hold()
    dead.kill()
    dead.communicate(timeout=30)  # closes its pipes
    removed = sweep_stale_boxes(min_age=0)
    assert str(dead_box) in removed and not dead_box.exists()
    assert live_box.is_dir() and str(live_box) not in removed
    live.communicate("\n", timeout=30)  # exits without cleaning up, like a crash
    assert str(live_box) in sweep_stale_boxes(min_age=0) and not live_box.exists()


@pytest.fixture(scope="module")
def real_chapter(tmp_path_factory):
    """The first chapter's solutions, typed into the released notebook as a student would."""
    assignment = "01_lower_bound"
    tmp = tmp_path_factory.mktemp("chapter")
    course = tmp / "course"
    shutil.copytree(REPO / "solutions" / assignment, course / "solutions" / assignment)
    release([assignment], root=course)
    (name,) = [p.name for p in (course / "course" / assignment).glob("*.ipynb")]
    student = nbformat.read(course / "course" / assignment / name, as_version=4)
    solution = nbformat.read(course / "solutions" / assignment / name, as_version=4)
    student = solved(student, solution)
    folder = tmp / "class" / "alice" / assignment
    folder.mkdir(parents=True)
    nbformat.write(student, folder / name)
    out = tmp / "out"
    (result,) = grade(tmp / "class", out, course=course, progress=False)
    return solution, out, result


def test_real_chapter_solution_earns_every_autograded_point(real_chapter):
    solution, _, result = real_chapter
    assert set(result.flags) <= {"needs_manual"}, result.flags
    tests = {cells.grade_id(c) for c in solution.cells if cells.is_test(c)}
    (grades,) = result.grades.values()
    assert tests and all(grades[t]["score"] == grades[t]["max_score"] for t in tests)


def test_real_chapter_feedback_never_shows_hidden_tests(real_chapter):
    solution, out, _ = real_chapter
    secret = hidden_lines(solution)
    (path,) = (out / "feedback").rglob("*.html")
    text = _text(path)
    assert secret and not [line for line in secret if line in text]


# --- The records' fixed points: what the grader keys on and writes --------------------------

#: The fingerprint of :func:`_fixed_task`'s files and :data:`_FIXED_SETTINGS`, recorded from the
#: grader before its records (the task and settings were dicts then). A different value would
#: make every saved result look stale: a rerun would regrade the whole class.
_FIXED_FINGERPRINT = "66d3fffe6fd48c3b85c2674b4c59bb3f29c876d859434521469d01276c459acc"
_FIXED_SETTINGS = {
    "timeout": 5,
    "notebook_timeout": 30,
    "memory_limit": None,
    "sandbox": True,
    "seed_key": "ab" * 32,
}


def _fixed_task(tmp: Path) -> dict:
    """A submission and a course with fixed files (the fingerprint reads their bytes)."""
    folder = tmp / "class" / "alice" / "toy"
    (folder / "data").mkdir(parents=True)
    (folder / "toy.ipynb").write_bytes(b'{"cells": []}\n')
    (folder / "data" / "x.csv").write_bytes(b"a,b\n1,2\n")
    source = tmp / "course" / "solutions" / "toy"
    source.mkdir(parents=True)
    (source / "toy.ipynb").write_bytes(b'{"cells": ["solution"]}\n')
    return {
        "student": "alice",
        "assignment": "toy",
        "folder": str(folder),
        "notebooks": ["toy"],
        "course": str(tmp / "course"),
    }


def _fingerprint_of_dicts(task: dict, settings: dict) -> str:
    """The grader's fingerprint as it was computed from dicts (the reference)."""
    import hashlib
    import json

    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for root in (Path(task["folder"]), Path(task["course"]) / "solutions" / task["assignment"]):
        if root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                h.update(str(path.relative_to(root)).encode() + b"\0")
                h.update(hashlib.sha256(path.read_bytes()).digest())
        h.update(b"\1")
    return h.hexdigest()


def test_the_fingerprint_of_a_fixed_task_and_settings_never_changes(tmp_path):
    import json

    from autograder.grade import fingerprint
    from autograder.records import GradingTask, Settings

    task = _fixed_task(tmp_path)
    reference = _fingerprint_of_dicts(task, _FIXED_SETTINGS)
    assert reference == _FIXED_FINGERPRINT
    record = GradingTask(
        student="alice",
        assignment="toy",
        folder=Path(task["folder"]),
        notebooks=("toy",),
        course=Path(task["course"]),
    )
    settings = Settings(**_FIXED_SETTINGS)
    assert settings.canonical_json() == json.dumps(_FIXED_SETTINGS, sort_keys=True)
    assert fingerprint(record, settings) == reference
    # What only this run needs (the folders kernels must not see) is not part of a grade.
    assert fingerprint(record, Settings(**_FIXED_SETTINGS, hide=("/tmp/x",))) == reference
    assert fingerprint(record, Settings(**{**_FIXED_SETTINGS, "timeout": 6})) != reference


def _state_dict(notes: bool = True) -> dict:
    """A result as the grader writes it to OUT/.state (keys in their written order)."""
    grades = {
        "toy": {
            "test_square": {"score": 2.0, "max_score": 2.0, "needs_manual": False, "seed": 7},
            "test_cube": {
                "score": 0.0,
                "max_score": 3.0,
                "needs_manual": False,
                "seed": 8,
                "message": "cube(2) should be 8",
            },
            "why_square": {"score": 0.0, "max_score": 1.0, "needs_manual": True},
        }
    }
    d = {
        "student": "jo@uni",
        "assignment": "toy",
        "score": 2.0 if notes else 0.0,
        "max_score": 6.0 if notes else 0.0,
        "flags": ["tampered", "needs_manual"] if notes else ["grading_error"],
        "grades": grades if notes else {},
    }
    if notes:
        d["notes"] = {"other": "No notebook other.ipynb was found in your submission."}
    d["log"] = "" if notes else "the grading worker crashed"
    d["fingerprint"] = "ab" * 32 if notes else "retry"
    return d


@pytest.mark.parametrize("notes", [True, False], ids=["graded", "grading-error"])
def test_a_result_record_round_trips_through_its_state_file_json(notes):
    import json
    import pickle

    from autograder.records import Result

    written = json.dumps(_state_dict(notes), indent=1)
    result = Result.from_dict(json.loads(written))
    assert json.dumps(result.to_dict(), indent=1) == written  # the same bytes on disk
    assert Result.from_dict(result.to_dict()) == result
    assert ("notes" in result.to_dict()) is notes
    assert pickle.loads(pickle.dumps(result)) == result  # a worker sends it to the parent


def test_tasks_and_settings_cross_to_a_worker_process(tmp_path):
    import pickle

    from autograder.grade import tasks
    from autograder.records import Settings

    (tmp_path / "course" / "solutions" / "toy").mkdir(parents=True)
    shutil.copy(TOY / "solutions" / "toy" / "toy.ipynb", tmp_path / "course" / "solutions" / "toy")
    (tmp_path / "class" / "alice" / "toy").mkdir(parents=True)
    (tmp_path / "class" / "bob").mkdir()
    found = tasks(tmp_path / "class", tmp_path / "course", problems={"carl": ["a bad zip"]})
    assert [(t.student, t.problems) for t in found] == [
        ("alice", ()),
        ("bob", ()),
        ("carl", ("a bad zip",)),
    ]
    assert found[0].folder == tmp_path / "class" / "alice" / "toy"
    assert found[0].notebooks == ("toy",)
    settings = Settings(timeout=5, seed_key="ab" * 32, hide=("/tmp/x",))
    assert pickle.loads(pickle.dumps((found, settings))) == (found, settings)


@pytest.mark.skipif(not ISOLATED, reason=f"kernel sandbox unavailable: {WHY}")
def test_a_run_that_found_isolation_never_starts_a_kernel_without_it(monkeypatch):
    """Once the run has decided, a failed probe in a worker does not unwrap a kernel."""
    import asyncio

    from autograder import sandbox

    monkeypatch.setattr(sandbox, "isolation_available", lambda: (False, "probe failed"))
    monkeypatch.setattr(sandbox, "_slot", None)  # this test's own slot, released below
    try:
        for required, wrapped in ((True, True), (False, False)):
            km = sandbox.SandboxKernelManager(kernel_name="python3", require_isolation=required)
            try:
                cmd, _ = asyncio.run(km._async_pre_start_kernel())
            finally:
                km._forget_box()
            assert ("unshare" in cmd) is wrapped, cmd
    finally:
        if sandbox._slot is not None:
            sandbox._slot[2].close()

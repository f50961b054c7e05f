"""Grade a class: every ``<student>/<assignment>/<notebook>.ipynb`` under a folder.

nbgrader does the grading (``NbGraderAPI.autograde`` and ``generate_feedback``, with the
course's ``nbgrader_config.py``); this module adds what a class needs around it:

* **Workers.** ``jobs`` processes each keep a scratch course per assignment (a copy of that
  assignment's source, released once, with the worker's own gradebook: SQLite takes one
  writer) and grade one student's assignment at a time.
* **Flags.** :mod:`autograder.submission` checks each notebook against the release before
  grading (tampered, deleted_tests, uses_emlib); the autograded notebook tells the rest
  (timeout, kernel_died, memory_limit, needs_manual); unreadable and missing notebooks score 0.
* **Nothing lost.** Each result (a :class:`~autograder.records.Result`, from a worker given a
  :class:`~autograder.records.GradingTask` and the run's :class:`~autograder.records.Settings`)
  is written atomically to ``OUT/.state/`` as soon as it arrives; a rerun skips every student
  whose submission and course are unchanged. The parent process alone writes
  ``OUT/gradebook.db``, ``OUT/grades.csv`` and the report, from those files.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import urllib.parse
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import nbformat

from autograder import REPO, cells, config
from autograder.collect import collect_zips
from autograder.files import write_atomic
from autograder.records import CellGrade, GradingTask, Result, Settings

FLAGS = (
    "timeout",
    "kernel_died",
    "memory_limit",
    "disk_limit",
    "process_limit",
    "tampered",
    "deleted_tests",
    "unreadable",
    "missing",
    "uses_emlib",
    "needs_manual",
    "grading_error",
)
STATE = ".state"
COLLECTED = ".collected"


# --- Finding the submissions ---------------------------------------------------------------


def source_assignments(course: Path) -> dict[str, list[str]]:
    """``{assignment: [notebook names]}`` in ``course/solutions``."""
    src = Path(course) / "solutions"
    return {
        p.name: sorted(nb.stem for nb in p.glob("*.ipynb"))
        for p in sorted(src.iterdir())
        if p.is_dir() and any(p.glob("*.ipynb"))
    }


def tasks(
    folder: Path, course: Path, students=None, assignments=None, problems=None
) -> list[GradingTask]:
    """One task per student and assignment found (assignments nobody submitted are left out).

    ``problems`` (``{student: [notes]}``, from collecting zips) adds a flagged task for each
    student whose archive could not be used, so that nobody silently disappears.
    """
    known = source_assignments(course)
    problems = problems or {}
    people = {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    people = sorted(people | set(problems))
    seen = {a for s in people for a in known if (folder / s / a).is_dir()}
    wanted = [a for a in known if a in seen or (assignments and a in assignments)]
    if assignments:
        wanted = [a for a in wanted if a in assignments]
    if not wanted and assignments is None:
        wanted = list(known) if len(known) == 1 else []
    out = []
    for student in people:
        if students and student not in students:
            continue
        for assignment in wanted:
            unusable = student in problems and not (folder / student / assignment).is_dir()
            task = GradingTask(
                student=student,
                assignment=assignment,
                folder=folder / student / assignment,
                notebooks=tuple(known[assignment]),
                course=Path(course),
                problems=tuple(problems[student]) if unusable else (),
            )
            out.append(task)
    return out


def fingerprint(task: GradingTask, settings: Settings) -> str:
    """What a grade depends on: the submitted files, the assignment's source, the settings."""
    h = hashlib.sha256(settings.canonical_json().encode())
    for root in (Path(task.folder), Path(task.course) / "solutions" / task.assignment):
        if root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                h.update(str(path.relative_to(root)).encode() + b"\0")
                h.update(hashlib.sha256(path.read_bytes()).digest())
        h.update(b"\1")
    return h.hexdigest()


# --- The worker: one student's assignment -------------------------------------------------

_SCRATCH: dict = {}


def _init_worker(base: str) -> None:
    import signal

    os.environ.setdefault("MPLBACKEND", "Agg")  # the judge imports each chapter's imports
    os.environ["AUTOGRADER_SCRATCH"] = base
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _quiet_gradebook()
    # The parent decides when grading stops: Ctrl-C reaches the whole process group, and a
    # worker that died of it halfway could not end its kernel. SIGTERM (from the parent, or
    # anyone) ends the worker's kernels and removes their folders first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)


def _stop_worker(signum, _frame) -> None:
    from autograder.sandbox import kill_kernels

    kill_kernels()
    os._exit(128 + signum)


class Interrupted(KeyboardInterrupt):
    """A grading run stopped by SIGINT or SIGTERM; the grades finished so far are kept."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, _frame) -> None:
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not stop the clean-up
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def _quiet_gradebook() -> None:
    """nbgrader's gradebook code emits SQLAlchemy autoflush warnings about itself."""
    import warnings

    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", category=SAWarning)


def _scratch(course, assignment: str, settings: Settings):
    """This worker's scratch course for ``assignment``, released once.

    It holds nbgrader's release of the assignment (to compare submissions with), a
    gradebook for the feedback, the instructor's notebooks and the judge's namespaces.
    """
    key = (str(course), assignment, settings)
    if key in _SCRATCH:
        return _SCRATCH[key]
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI

    from autograder import judge
    from autograder.feedback import cell_titles, hidden_lines

    base = os.environ.get("AUTOGRADER_SCRATCH") or tempfile.gettempdir()
    root = Path(tempfile.mkdtemp(prefix="course-", dir=base))
    source = Path(course) / "solutions" / assignment
    shutil.copytree(source, root / "solutions" / assignment)
    db = f"sqlite:///{root}/gradebook.db"
    overrides = {
        "CourseDirectory.root": str(root),
        "CourseDirectory.db_url": db,
        "Exchange.root": str(root / "exchange"),
        # What a kernel must not see, besides the repository's private folders and emlib.
        "SandboxKernelManager.hide": [
            str(Path(course).resolve() / "solutions"),
            *settings.hide,
        ],
    }
    if settings.timeout:
        overrides["Execute.timeout"] = int(settings.timeout)
    if settings.notebook_timeout:
        overrides["GradingSession.notebook_timeout"] = int(settings.notebook_timeout)
    if settings.memory_limit:
        overrides["SandboxKernelManager.memory_limit"] = int(settings.memory_limit)
    if settings.sandbox is False:
        overrides["GradingExecute.sandbox"] = False
    elif settings.isolated:
        overrides["SandboxKernelManager.require_isolation"] = True
    cfg = config(**overrides)
    api = NbGraderAPI(config=cfg)
    result = api.generate_assignment(assignment, force=True)
    if not result["success"]:
        raise RuntimeError(f"releasing {assignment} failed:\n{result['log']}")
    release = {
        p.stem: nbformat.read(p, as_version=4)
        for p in (root / "course" / assignment).glob("*.ipynb")
    }
    solutions = {name: nbformat.read(source / f"{name}.ipynb", as_version=4) for name in release}
    with Gradebook(db) as gb:
        maxima = {
            nb.name: {g.name: g.max_score for g in nb.grade_cells}
            for nb in gb.find_assignment(assignment).notebooks
        }
    _SCRATCH[key] = scratch = {
        "root": root,
        "api": api,
        "config": cfg,
        "db": db,
        "release": release,
        "solution": solutions,
        "namespace": {name: judge.namespace(nb) for name, nb in solutions.items()},
        "hidden": {name: hidden_lines(nb) for name, nb in solutions.items()},
        "titles": {name: cell_titles(nb) for name, nb in release.items()},
        "max": maxima,
    }
    return scratch


#: A submitted notebook larger than this is not read (a real chapter is well under 1 MiB).
MAX_NOTEBOOK_BYTES = 20 * 1024**2


def grade_one(task: GradingTask, settings: Settings) -> Result:
    """Grade one student's assignment in this worker; return the result (see module doc)."""
    sc = _scratch(task.course, task.assignment, settings)
    grades = _zero_grades(sc)
    flags: set[str] = {"unreadable"} if task.problems else set()
    notes: dict[str, str] = {}
    judged: dict[str, nbformat.NotebookNode] = {}
    for name, release in sc["release"].items():
        try:
            nb, raw, found = _stage(task, name, release)
            flags |= found
            outcomes, found = _run_and_judge(sc, name, nb, task, settings, raw)
        except _NotGraded as why:
            flags |= why.flags
            notes[name] = why.note
            continue
        flags |= found
        _score(grades[name], outcomes, sc["solution"][name], release, flags, nb)
        _verdicts(nb, outcomes, grades[name])
        judged[name] = nb
    _write_feedback(sc, task, judged, grades, notes)
    return _result(task, grades, flags, notes)


class _NotGraded(Exception):
    """A notebook that earns nothing, with the flags it gets and the note its page shows."""

    def __init__(self, note: str, *flags: str):
        super().__init__(note)
        self.note, self.flags = note, set(flags)


def _zero_grades(sc) -> dict[str, dict[str, CellGrade]]:
    """``{notebook: {grade_id: grade}}`` at 0 points: a notebook that is not graded (missing,
    unreadable, no kernel) keeps them, and every cell of the release is in the result."""
    return {
        name: {
            gid: {"score": 0.0, "max_score": float(top), "needs_manual": False}
            for gid, top in sc["max"][name].items()
        }
        for name in sc["release"]
    }


def _stage(task: GradingTask, name: str, release) -> tuple[nbformat.NotebookNode, bytes, set]:
    """The submitted notebook ``name`` made ready to run, its bytes (they seed the hidden
    tests) and the flags :func:`autograder.submission.prepare` found comparing it with the
    release; :class:`_NotGraded` if there is nothing to run, so the other notebooks are
    still graded."""
    from autograder.submission import prepare

    path = Path(task.folder) / f"{name}.ipynb"
    if task.problems:  # the archive could not be used (flag "unreadable": grade_one)
        raise _NotGraded(" ".join(task.problems))
    if not path.is_file():
        raise _NotGraded(f"No notebook {name}.ipynb was found in your submission.", "missing")
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES // 1024**2} MiB")
        raw = path.read_bytes()
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as error:  # invalid JSON, not a notebook, wrong schema, too large
        note = f"{name}.ipynb could not be read as a notebook ({error})."[:300]
        raise _NotGraded(note, "unreadable") from None
    nb, flags = prepare(nb, release)
    return nb, raw, flags


def _run_and_judge(sc, name, nb, task: GradingTask, settings: Settings, raw: bytes):
    """Run ``nb`` in a sandboxed kernel and judge its tests; return outcomes and flags.

    A kernel that could not start grades nothing: :class:`_NotGraded` (``grading_error``),
    so that the submission's other notebooks are still graded.
    """
    try:
        return _judge_in_kernel(sc, name, nb, task, settings, raw)
    except Exception as error:
        note = f"Grading {name}.ipynb failed: {type(error).__name__}: {error}"[:500]
        raise _NotGraded(note, "grading_error") from None


def _judge_in_kernel(sc, name, nb, task: GradingTask, settings: Settings, raw: bytes):
    """:func:`_run_and_judge`'s work: a kernel that dies in a cell is restarted without it
    (at most three times), so the rest of the notebook is still judged."""
    from autograder import judge
    from autograder.execute import GradingSession

    solution = sc["solution"][name]
    digest = hashlib.sha256(raw).hexdigest()
    key = bytes.fromhex(settings.seed_key)
    parts = (task.student, task.assignment, name, digest)

    skip: set[int] = set()

    def then(session):
        caller = judge.Caller(session, call_timeout=float(session.timeout or 60))
        if session.fatal_cell is not None and len(skip) < 3:
            return [], caller  # graded again without that cell (below)
        outcomes = judge.judge(
            solution,
            caller,
            base=sc["namespace"][name],
            seed_of=lambda gid: judge.cell_seed(key, *parts, gid),
            hidden=sc["hidden"][name],
        )
        return outcomes, caller

    resources = {"metadata": {"path": str(sc["root"] / "solutions" / task.assignment)}}
    pristine = copy.deepcopy(nb)
    while True:
        session = GradingSession(config=sc["config"])
        outcomes, caller = session.run(nb, resources, then, is_test=cells.is_test, skip=skip)
        if session.fatal_cell is None or len(skip) >= 3:
            break
        # The kernel died in a cell: grade what the rest of the notebook defines, in a fresh
        # kernel that does not run that cell again.
        skip.add(session.fatal_cell)
        nb.cells[:] = copy.deepcopy(pristine.cells)
    flags = _output_flags(nb)
    if skip:
        flags.add("kernel_died")
    if session.timed_out or caller.timed_out:
        flags.add("timeout")
    if session.kernel_died:
        flags.add("kernel_died")
    if any(o.emlib for o in outcomes):
        flags.add("uses_emlib")
    return outcomes, flags


#: Error text in a cell's output that says which limit stopped the kernel.
_LIMITS = {
    "memory_limit": ("MemoryError",),
    "disk_limit": ("No space left on device", "File too large", "Disk quota exceeded"),
    "process_limit": ("can't start new thread", "Resource temporarily unavailable"),
}


def _output_flags(nb) -> set[str]:
    from autograder.execute import DEAD, STUCK, TIMEOUT

    flags = set()
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") != "error":
                continue
            ename, text = o.get("ename", ""), f"{o.get('ename', '')}: {o.get('evalue', '')}"
            if ename in (TIMEOUT, STUCK):
                flags.add("timeout")
            if ename == DEAD:
                flags.add("kernel_died")
            for flag, marks in _LIMITS.items():
                if any(mark in text for mark in marks):
                    flags.add(flag)
    return flags


def _source_of(nb, gid: str) -> str | None:
    return next((c.source.strip() for c in nb.cells if cells.grade_id(c) == gid), None)


def _score(
    grades: dict[str, CellGrade], outcomes, solution, release, flags: set[str], submitted=None
) -> None:
    """Points for each test from the judge's outcomes; an exercise that used emlib earns none."""
    from autograder.submission import exercises

    by_id = {o.grade_id: o for o in outcomes}
    for group in exercises(release).values():
        if any(by_id[g].emlib for g in group if g in by_id):
            for g in group:
                if g in by_id and by_id[g].passed:
                    by_id[g].passed = False
                    used = ", ".join(sorted(by_id[g].emlib)) or "in another of its tests"
                    by_id[g].message = (
                        "no points: this exercise's answer called emlib, the course's "
                        f"reference library ({used})"
                    )
    for cell in solution.cells:
        gid = cells.grade_id(cell)
        if gid not in grades:
            continue
        if gid in by_id:
            grades[gid]["score"] = grades[gid]["max_score"] if by_id[gid].passed else 0.0
            grades[gid]["seed"] = by_id[gid].seed
            if not by_id[gid].passed:  # for the class report's most common failure
                grades[gid]["message"] = by_id[gid].message or "The test failed."
        elif cell.cell_type == "markdown" or cells.is_answer(cell):
            # A written answer: a person grades it, unless it is still the release's stub
            # (nbgrader's rule: an untouched answer scores 0 by itself).
            untouched = submitted is not None and _source_of(submitted, gid) == _source_of(
                release, gid
            )
            grades[gid]["needs_manual"] = not untouched


def _points_text(points: float) -> str:
    return f"{points:g} point" + ("" if points == 1 else "s")


def _verdicts(nb, outcomes, grades) -> None:
    """Replace each test cell's outputs by the judge's verdict, for the feedback."""
    from nbformat.v4 import new_output

    by_id = {o.grade_id: o for o in outcomes}
    for cell in nb.cells:
        outcome = by_id.get(cells.grade_id(cell))
        if outcome is None or cell.cell_type != "code":
            continue
        points = grades[outcome.grade_id]
        if outcome.passed:
            cell.outputs = [
                new_output(
                    "stream",
                    name="stdout",
                    text=f"Passed ({_points_text(points['max_score'])}).\n",
                )
            ]
        else:
            text = f"{outcome.message or 'The test failed.'}\n[test data seed {outcome.seed}]"
            cell.outputs = [
                new_output("error", ename="Failed", evalue=outcome.message, traceback=[text])
            ]
        cell.execution_count = None


def _write_feedback(sc, task: GradingTask, judged: dict, grades: dict, notes: dict) -> None:
    """Replace the student's feedback pages for the assignment, one per notebook of the
    release: nbgrader's page for a judged notebook (its one script MathJax, from
    OUT/feedback/.mathjax: autograder.feedback), a plain page saying why for any other."""
    from autograder.feedback import offline

    out = task.feedback_dir
    shutil.rmtree(out, ignore_errors=True)  # no page of an earlier grading stays
    out.mkdir(parents=True)
    pages = _feedback(sc, _alias(task.student), task.assignment, judged, grades) if judged else {}
    for name in sc["release"]:
        if name in pages:
            nonce = secrets.token_urlsafe(16)
            text = _with_csp(offline(pages[name], nonce), nonce)
        else:
            text = _with_csp(_plain_feedback(name, notes.get(name, "")))
        (out / f"{name}.html").write_text(text)


def _result(
    task: GradingTask, grades: dict[str, dict[str, CellGrade]], flags: set[str], notes: dict
) -> Result:
    """The totals and the flags (in :data:`FLAGS` order, ``needs_manual`` if any cell awaits
    a person) the parent records for the submission."""
    if any(g["needs_manual"] for nb in grades.values() for g in nb.values()):
        flags = flags | {"needs_manual"}
    score = sum(g["score"] for nb in grades.values() for g in nb.values())
    top = sum(g["max_score"] for nb in grades.values() for g in nb.values())
    return Result(
        student=task.student,
        assignment=task.assignment,
        score=round(score, 6),
        max_score=round(top, 6),
        flags=tuple(sorted(flags, key=FLAGS.index)),
        grades=grades,
        notes=notes,
    )


def _alias(student: str) -> str:
    """The student's name in the scratch course: glob- and path-safe whatever the name."""
    return "s" + hashlib.sha256(student.encode()).hexdigest()[:16]


def _clean_scratch(sc, alias: str) -> None:
    """Remove a student's notebooks and pages from the worker's scratch course, before and
    after its feedback: the next submission this worker grades must not find them."""
    for sub in ("autograded", "feedback"):
        shutil.rmtree(sc["root"] / sub / alias, ignore_errors=True)


def _feedback(sc, alias: str, assignment: str, judged: dict, grades: dict) -> dict[str, str]:
    """nbgrader's feedback pages of the judged notebooks; ``{notebook: html}``."""
    from nbgrader.api import Gradebook, MissingEntry

    from autograder.feedback import name_summary, readable_outputs, sanitize
    from autograder.hand import mark_pending

    root, api = sc["root"], sc["api"]
    _clean_scratch(sc, alias)
    dest = root / "autograded" / alias / assignment
    dest.mkdir(parents=True)
    for name, nb in judged.items():
        safe = sanitize(nb, sc["release"][name])
        readable_outputs(safe)  # tracebacks: the student's cells and the error, no paths
        nbformat.write(safe, dest / f"{name}.ipynb")
    with Gradebook(sc["db"]) as gb:
        gb.update_or_create_student(alias)
        try:
            gb.remove_submission(assignment, alias)
        except MissingEntry:
            pass
        gb.add_submission(assignment, alias)
        for name in judged:
            for gid, g in grades[name].items():
                grade = gb.find_grade(gid, name, assignment, alias)
                grade.auto_score = None if g["needs_manual"] else g["score"]
                grade.needs_manual_grade = g["needs_manual"]
        gb.db.commit()
    result = api.generate_feedback(assignment, alias, force=True)
    pages = {}
    for name in judged:
        html = root / "feedback" / alias / assignment / f"{name}.html"
        if result.get("success") and html.is_file():
            page = mark_pending(html.read_text(), name, grades[name])
            pages[name] = name_summary(page, sc["titles"][name])
    _clean_scratch(sc, alias)
    return pages


def _with_csp(html: str, nonce: str | None = None) -> str:
    """``html`` with a Content-Security-Policy: no script runs in a feedback page, whatever a
    student's notebook held, but MathJax's (the scripts carrying ``nonce``)."""
    from autograder.feedback import csp

    head = re.search(r"<head[^>]*>", html, flags=re.I)
    if head is None:
        return csp(nonce) + html
    return html[: head.end()] + "\n" + csp(nonce) + html[head.end() :]


def _plain_feedback(name: str, note: str) -> str:
    import html

    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(name)}</title></head><body>\n"
        f"<h1>{html.escape(name)}</h1>\n<p>{html.escape(note or 'Not graded.')}</p>\n"
        "<p>Score: 0</p>\n</body></html>\n"
    )


# --- The parent: schedule, record, merge ---------------------------------------------------


def _state_path(out: Path, task: GradingTask) -> Path:
    # Percent-encoding is one-to-one: "jo@uni" and "jo_uni" never share a file.
    student = urllib.parse.quote(task.student, safe="")
    return out / STATE / f"{student}__{task.assignment}.json"


def _seed_key(out: Path) -> str:
    """The secret behind every hidden test's seed in ``out`` (made once, kept for regrades)."""
    path = out / STATE / "seed_key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def load_results(out: Path) -> list[Result]:
    """Every recorded result in ``out``, sorted by student and assignment."""
    results = [
        Result.from_dict(json.loads(p.read_text()))
        for p in sorted((Path(out) / STATE).glob("*.json"))
    ]
    return sorted(results, key=lambda r: (r.student, r.assignment))


def _record(out: Path, task: GradingTask, result: Result) -> None:
    """Write ``result`` to the task's state file (atomically: a run stopped now loses none)."""
    write_atomic(_state_path(out, task), json.dumps(result.to_dict(), indent=1))


def grade(
    submissions,
    out,
    *,
    course=REPO,
    jobs: int = 2,
    timeout: int | None = None,
    notebook_timeout: int | None = None,
    students=None,
    assignments=None,
    force: bool = False,
    memory_limit: int | None = None,
    sandbox: bool = True,
    progress: bool = True,
    hand_grades=None,
) -> list[Result]:
    """Grade every submission under ``submissions`` into ``out``; return all results.

    ``hand_grades``: a CSV file of hand grades (:mod:`autograder.hand`) to merge afterwards.
    """
    submissions, out, course = Path(submissions).resolve(), Path(out).resolve(), Path(course)
    out.mkdir(parents=True, exist_ok=True)
    known = source_assignments(course)
    folder, problems = submissions, {}
    if any(p.suffix.lower() == ".zip" and p.is_file() for p in submissions.iterdir()):
        collected = collect_zips(submissions, out / COLLECTED, known)
        folder, problems = collected.folder, collected.problems
        write_atomic(
            out / "collected.json",
            json.dumps(
                {
                    "taken": {f"{s}/{a}": src for (s, a), src in sorted(collected.taken.items())},
                    "problems": problems,
                },
                indent=1,
            ),
        )
    settings = Settings(
        timeout=timeout,
        notebook_timeout=notebook_timeout,
        memory_limit=memory_limit,
        sandbox=sandbox,
        seed_key=_seed_key(out),
    )
    todo = []
    for task in tasks(folder, course, students, assignments, problems):
        task = replace(task, out=out, fingerprint=fingerprint(task, settings))
        state = _state_path(out, task)
        if not force and state.is_file():
            try:
                if json.loads(state.read_text()).get("fingerprint") == task.fingerprint:
                    continue
            except ValueError:
                pass
        todo.append(task)

    if todo:
        _run(todo, out, settings, max(1, min(jobs, len(todo))), progress, submissions)
    return finish(out, course, hand_grades)


def _signals_raise():
    """While grading, SIGINT and SIGTERM raise :class:`Interrupted` (main thread only)."""
    import contextlib
    import signal
    import threading

    @contextlib.contextmanager
    def handlers():
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in old:
            signal.signal(sig, _on_signal)
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    return handlers()


def _stop_pool(pool, grace: float = 10.0) -> None:
    """Stop a pool's workers now: SIGTERM (each ends its kernels), SIGKILL after ``grace``."""
    import time

    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def finish(out: Path, course: Path, hand_grades=None) -> list[Result]:
    """Write ``grades.csv``, ``lms_grades.csv``, the gradebook, the report, the feedback's hand
    grades and the students' zips (:mod:`autograder.handback`) from the results recorded in
    ``out`` (merging the hand-grades file ``hand_grades`` first, if given:
    :class:`autograder.hand.HandGradeError` if it has a bad row, with nothing changed);
    return the results, hand grades applied."""
    from autograder import hand
    from autograder.feedback import copy_mathjax
    from autograder.handback import write_lms_csv, write_zips
    from autograder.report import write_report

    out = Path(out)
    recorded = load_results(out)
    rejected = None
    if hand_grades is not None:
        try:
            hand.merge(out, hand.read(hand_grades, recorded, course))
        except hand.HandGradeError as error:  # the outputs still show every recorded grade
            rejected = error
    results = hand.apply(recorded, hand.load(out))
    if (out / "feedback").is_dir():
        copy_mathjax(out / "feedback")  # what the pages' math needs, offline
    write_csv(out, results)
    write_lms_csv(out, results)
    merge_gradebook(out.resolve(), results, course)
    write_report(out, results, course)
    hand.publish(out, results)
    write_zips(out, results)  # after publish: the zips hold the pages with hand grades
    if rejected is not None:
        raise rejected
    return results


def _run(todo, out, settings, jobs, progress, submissions) -> None:
    """Grade ``todo`` in ``jobs`` workers. SIGINT or SIGTERM stops the workers and their
    kernels, removes the run's scratch and kernel folders and raises :class:`Interrupted`;
    each result already written to ``out/.state`` stays, and a rerun grades the rest."""
    ctx = get_context("spawn")
    with _signals_raise():
        _run_pool(todo, out, settings, jobs, progress, submissions, ctx)


def _run_pool(todo, out, settings, jobs, progress, submissions, ctx) -> None:
    from tqdm import tqdm

    from autograder.sandbox import isolation_available, sweep_stale_boxes

    isolated, how = isolation_available()
    if isolated:
        sweep_stale_boxes()  # left by runs killed outright (SIGKILL): no clean-up code ran
    if not settings.sandbox:
        isolated, how = False, "none: graded without the sandbox (sandbox=False)"
    base = tempfile.mkdtemp(prefix="autograder-")  # 0700: no kernel can look inside
    settings = replace(settings, hide=(base, str(submissions), str(out)), isolated=isolated)
    bar = tqdm(total=len(todo), disable=not progress, unit="submission", desc="grading")
    bar.write(f"sandbox: {how}") if progress else None
    remaining = list(todo)
    try:
        for _attempt in range(3):  # a crashed worker breaks the pool: start another
            if not remaining:
                break
            pool = ProcessPoolExecutor(
                jobs, mp_context=ctx, initializer=_init_worker, initargs=(base,)
            )
            stopped = False
            try:
                futures = {pool.submit(grade_one, t, settings): t for t in remaining}
                for future in as_completed(futures):
                    task = futures[future]
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        continue
                    except Exception as error:
                        result = _failed(task, f"{type(error).__name__}: {error}")
                    _record(out, task, replace(result, fingerprint=task.fingerprint, sandbox=how))
                    remaining.remove(task)
                    bar.update()
            except BaseException:  # Interrupted, or any error: no worker or kernel outlives us
                stopped = True
                _stop_pool(pool)
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            finally:
                if not stopped:
                    pool.shutdown(wait=True, cancel_futures=True)
        for task in remaining:  # never graded: recorded as errors, retried on the next run
            result = _failed(task, "the grading worker crashed")
            _record(out, task, replace(result, fingerprint="retry", sandbox=how))
    finally:
        bar.close()
        from autograder.sandbox import remove_recorded_kernels

        remove_recorded_kernels(base)  # those of workers killed before they could
        shutil.rmtree(base, ignore_errors=True)


def _failed(task: GradingTask, why: str) -> Result:
    """The result of a submission whose grading failed as a whole (no notes: none was made)."""
    return Result(task.student, task.assignment, 0.0, 0.0, ("grading_error",), {}, log=why)


def _number(x: float) -> str:
    return f"{x:g}"


def write_csv(out: Path, results: list[Result]) -> None:
    """``grades.csv`` (one row per student and assignment) and ``grades_by_cell.csv``."""
    rows = [
        {
            "student": r.student,
            "assignment": r.assignment,
            "score": _number(r.score),
            "max_score": _number(r.max_score),
            "pending": _number(r.pending),
            "flags": ";".join(r.flags),
        }
        for r in results
    ]
    fields = ["student", "assignment", "score", "max_score", "pending", "flags"]
    _write_rows(out / "grades.csv", fields, rows)
    cells = [
        {
            "student": r.student,
            "assignment": r.assignment,
            "notebook": nb,
            "grade_id": gid,
            "score": "" if g["needs_manual"] else _number(g["score"]),
            "max_score": _number(g["max_score"]),
            "graded_by": "pending" if g["needs_manual"] else "hand" if g.get("hand") else "auto",
            "comment": g.get("comment", ""),
        }
        for r in results
        for nb, grades in sorted(r.grades.items())
        for gid, g in grades.items()
    ]
    fields = ["student", "assignment", "notebook", "grade_id", "score", "max_score"]
    fields += ["graded_by", "comment"]
    _write_rows(out / "grades_by_cell.csv", fields, cells)


def _write_rows(path: Path, fields, rows) -> None:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue())


def merge_gradebook(out: Path, results: list[Result], course: Path) -> None:
    """Record every result in ``out/gradebook.db`` (nbgrader's gradebook, for formgrader).

    Hand grades (applied to ``results``) become the cells' manual scores and comments there.
    The gradebook is an output: a manual score set in it by other means (formgrader,
    nbgrader's API) is not read back; a warning names each such cell.
    """
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.apps import NbGraderAPI

    _quiet_gradebook()
    db = f"sqlite:///{out}/gradebook.db"
    needed = sorted({r.assignment for r in results if r.grades})
    ignored: list[str] = []
    with Gradebook(db) as gb:
        have = {a.name for a in gb.assignments}
    missing = [a for a in needed if a not in have]
    if missing:
        with tempfile.TemporaryDirectory() as tmp:
            for a in missing:
                shutil.copytree(Path(course) / "solutions" / a, Path(tmp) / "solutions" / a)
            cfg = config(
                **{
                    "CourseDirectory.root": tmp,
                    "CourseDirectory.db_url": db,
                    "Exchange.root": f"{tmp}/exchange",
                }
            )
            api = NbGraderAPI(config=cfg)
            for a in missing:
                api.generate_assignment(a, force=True)
    with Gradebook(db) as gb:
        for r in results:
            if not r.grades:
                continue
            gb.update_or_create_student(r.student)
            try:
                gb.find_submission(r.assignment, r.student)
            except MissingEntry:
                gb.add_submission(r.assignment, r.student)
            for nb, grades in r.grades.items():
                for gid, g in grades.items():
                    grade = gb.find_grade(gid, nb, r.assignment, r.student)
                    if g.get("hand"):
                        grade.auto_score, grade.manual_score = None, g["score"]
                        grade.needs_manual_grade = False
                        comment = gb.find_comment(gid, nb, r.assignment, r.student)
                        comment.manual_comment = g.get("comment") or None
                        continue
                    if grade.manual_score is not None and g["needs_manual"]:
                        ignored.append(f"{r.student}/{r.assignment}/{gid}")
                    grade.auto_score = None if g["needs_manual"] else g["score"]
                    grade.needs_manual_grade = g["needs_manual"] and grade.manual_score is None
        gb.db.commit()
    if ignored:
        import warnings

        warnings.warn(
            f"{out}/gradebook.db has manual scores the grader does not use: "
            f"{', '.join(ignored)}; give hand grades with --hand-grades FILE "
            "(autograder/hand.py)",
            stacklevel=2,
        )

"""Grade a class: every ``<student>/<assignment>/<notebook>.ipynb`` under a folder.

nbgrader does the grading (``NbGraderAPI.autograde`` and ``generate_feedback``, with the
course's ``nbgrader_config.py``); this module adds what a class needs around it:

* **Workers.** ``jobs`` processes each keep a scratch course per assignment (a copy of that
  assignment's source, released once, with the worker's own gradebook: SQLite takes one
  writer) and grade one student's assignment at a time.
* **Flags.** :mod:`autograder.submission` checks each notebook against the release before
  grading (tampered, deleted_tests, uses_emlib); the autograded notebook tells the rest
  (timeout, kernel_died, memory_limit, needs_manual); unreadable and missing notebooks score 0.
* **Nothing lost.** Each result is written atomically to ``OUT/.state/`` as soon as it arrives;
  a rerun skips every student whose submission and course are unchanged. The parent process
  alone writes ``OUT/gradebook.db``, ``OUT/grades.csv`` and the report, from those files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import nbformat

from autograder import REPO, config

FLAGS = (
    "timeout",
    "kernel_died",
    "memory_limit",
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


def collect_zips(folder: Path, dest: Path, known: dict[str, list[str]]) -> Path:
    """Unpack LMS downloads into ``dest/<student>/<assignment>/<notebook>.ipynb``.

    A zip may hold ``<student>/<assignment>/<nb>.ipynb`` or ``<assignment>/<nb>.ipynb``
    (the student is then the zip's name), or, as learning-management systems download one
    assignment, be named after the assignment and hold ``<student>_<anything>_<nb>.ipynb``
    or ``<student>/<nb>.ipynb``.
    """
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    by_notebook = {nb: a for a, nbs in known.items() for nb in nbs}
    for archive in sorted(folder.glob("*.zip")):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                parts = [p for p in Path(info.filename).parts if p not in ("", ".", "..")]
                if info.is_dir() or not parts or parts[-1].startswith("."):
                    continue
                name = parts[-1]
                if archive.stem in known:  # one assignment, many students
                    assignment = archive.stem
                    if len(parts) >= 2:
                        student, file = parts[-2], name
                    else:
                        student, _, file = name.partition("_")
                        nbs = known[assignment]
                        file = next(
                            (f"{n}.ipynb" for n in nbs if name.endswith(f"_{n}.ipynb")), file
                        )
                elif len(parts) >= 3:
                    student, assignment, file = parts[-3], parts[-2], name
                elif len(parts) == 2:
                    student, assignment, file = archive.stem, parts[0], name
                else:
                    student, file = archive.stem, name
                    assignment = by_notebook.get(Path(name).stem, "unknown")
                if not student or assignment not in known:
                    continue
                target = dest / _safe(student) / assignment / _safe(file)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
    return dest


def _safe(name: str) -> str:
    return re.sub(r"[^\w.() -]", "_", name).strip() or "_"


def tasks(folder: Path, course: Path, students=None, assignments=None) -> list[dict]:
    """One task per student and assignment found (assignments nobody submitted are left out)."""
    known = source_assignments(course)
    people = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
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
            out.append(
                {
                    "student": student,
                    "assignment": assignment,
                    "folder": str(folder / student / assignment),
                    "notebooks": known[assignment],
                    "course": str(course),
                }
            )
    return out


def fingerprint(task: dict, settings: dict) -> str:
    """What a grade depends on: the submitted files, the assignment's source, the settings."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for root in (Path(task["folder"]), Path(task["course"]) / "solutions" / task["assignment"]):
        if root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                h.update(str(path.relative_to(root)).encode() + b"\0")
                h.update(hashlib.sha256(path.read_bytes()).digest())
        h.update(b"\1")
    return h.hexdigest()


# --- The worker: one student's assignment -------------------------------------------------

_SCRATCH: dict = {}


def _init_worker(slots, hide: list[str], base: str) -> None:
    from autograder import sandbox

    os.environ[sandbox.SLOT_ENV] = str(slots.get())
    os.environ[sandbox.HIDE_ENV] = os.pathsep.join(hide)
    os.environ["AUTOGRADER_SCRATCH"] = base
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _quiet_gradebook()


def _quiet_gradebook() -> None:
    """nbgrader's gradebook code emits SQLAlchemy autoflush warnings about itself."""
    import warnings

    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", category=SAWarning)


def _scratch(course: str, assignment: str, settings: dict):
    """This worker's scratch course for ``assignment``, released once."""
    key = (course, assignment, json.dumps(settings, sort_keys=True))
    if key in _SCRATCH:
        return _SCRATCH[key]
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI

    base = os.environ.get("AUTOGRADER_SCRATCH") or tempfile.gettempdir()
    root = Path(tempfile.mkdtemp(prefix="course-", dir=base))
    shutil.copytree(Path(course) / "solutions" / assignment, root / "solutions" / assignment)
    db = f"sqlite:///{root}/gradebook.db"
    overrides = {
        "CourseDirectory.root": str(root),
        "CourseDirectory.db_url": db,
        "Exchange.root": str(root / "exchange"),
    }
    if settings.get("timeout"):
        overrides["Execute.timeout"] = int(settings["timeout"])
    if settings.get("memory_limit"):
        overrides["SandboxKernelManager.memory_limit"] = int(settings["memory_limit"])
    if settings.get("sandbox") is False:
        overrides["GradingExecute.sandbox"] = False
    api = NbGraderAPI(config=config(**overrides))
    result = api.generate_assignment(assignment, force=True)
    if not result["success"]:
        raise RuntimeError(f"releasing {assignment} failed:\n{result['log']}")
    release = {
        p.stem: nbformat.read(p, as_version=4)
        for p in (root / "course" / assignment).glob("*.ipynb")
    }
    with Gradebook(db) as gb:
        maxima = {
            nb.name: {g.name: g.max_score for g in nb.grade_cells}
            for nb in gb.find_assignment(assignment).notebooks
        }
    _SCRATCH[key] = scratch = {
        "root": root,
        "api": api,
        "db": db,
        "release": release,
        "max": maxima,
    }
    return scratch


def grade_one(task: dict, settings: dict) -> dict:
    """Grade one student's assignment in this worker; return the result (see module doc)."""
    from nbgrader.api import Gradebook

    from autograder.execute import DEAD, STUCK, TIMEOUT
    from autograder.submission import prepare

    sc = _scratch(task["course"], task["assignment"], settings)
    student, assignment = task["student"], task["assignment"]
    root, api, db = sc["root"], sc["api"], sc["db"]
    folder = Path(task["folder"])
    for sub in ("submitted", "autograded", "feedback"):
        shutil.rmtree(root / sub / student, ignore_errors=True)
    dest = root / "submitted" / student / assignment
    dest.mkdir(parents=True)
    flags: set[str] = set()
    notes: dict[str, str] = {}
    zero: dict[str, set[str]] = {}
    present = []
    for name in sc["release"]:
        path = folder / f"{name}.ipynb"
        if not path.is_file():
            flags.add("missing")
            notes[name] = f"No notebook {name}.ipynb was found in your submission."
            continue
        try:
            nb = nbformat.read(path, as_version=4)
            nbformat.validate(nb)
        except Exception as error:  # invalid JSON, not a notebook, wrong schema
            flags.add("unreadable")
            notes[name] = f"{name}.ipynb could not be read as a notebook ({type(error).__name__})."
            continue
        nb, nb_flags, zero[name] = prepare(nb, sc["release"][name])
        flags |= nb_flags
        nbformat.write(nb, dest / f"{name}.ipynb")
        present.append(name)

    log = ""
    with Gradebook(db) as gb:
        gb.update_or_create_student(student)
    if present:
        result = api.autograde(assignment, student, force=True, create=True)
        log = result.get("log") or ""
        if not result["success"]:
            flags.add("grading_error")

    grades: dict[str, dict] = {}
    with Gradebook(db) as gb:
        for name, maxima in sc["max"].items():
            scores = {}
            if name in present and not {"grading_error"} & flags:
                notebook = gb.find_submission_notebook(name, assignment, student)
                for g in notebook.grades:
                    if g.name in zero.get(name, ()):
                        g.auto_score, g.manual_score, g.needs_manual_grade = 0.0, None, False
                    scores[g.name] = g
                gb.db.commit()
            grades[name] = {
                gid: {
                    "score": float(scores[gid].score) if gid in scores else 0.0,
                    "max_score": float(top),
                    "needs_manual": bool(scores[gid].needs_manual_grade)
                    if gid in scores
                    else False,
                }
                for gid, top in maxima.items()
            }

    for name in present:
        graded = root / "autograded" / student / assignment / f"{name}.ipynb"
        if not graded.is_file():
            continue
        enames = {
            o.get("ename")
            for cell in nbformat.read(graded, as_version=4).cells
            for o in cell.get("outputs", [])
            if o.get("output_type") == "error"
        }
        if enames & {TIMEOUT, STUCK}:
            flags.add("timeout")
        if DEAD in enames:
            flags.add("kernel_died")
        if "MemoryError" in enames:
            flags.add("memory_limit")
    if any(g["needs_manual"] for nb in grades.values() for g in nb.values()):
        flags.add("needs_manual")

    out = Path(task["out"]) / "feedback" / student / assignment
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if present and "grading_error" not in flags:
        api.generate_feedback(assignment, student, force=True)
    for name in sc["release"]:
        html = root / "feedback" / student / assignment / f"{name}.html"
        if html.is_file() and name in present:
            shutil.copy(html, out / f"{name}.html")
        else:
            (out / f"{name}.html").write_text(_plain_feedback(name, notes.get(name, "")))
    for sub in ("submitted", "autograded", "feedback"):
        shutil.rmtree(root / sub / student, ignore_errors=True)

    score = sum(g["score"] for nb in grades.values() for g in nb.values())
    top = sum(g["max_score"] for nb in grades.values() for g in nb.values())
    return {
        "student": student,
        "assignment": assignment,
        "score": round(score, 6),
        "max_score": round(top, 6),
        "flags": sorted(flags, key=FLAGS.index),
        "grades": grades,
        "log": log[-4000:] if "grading_error" in flags else "",
    }


def _plain_feedback(name: str, note: str) -> str:
    import html

    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(name)}</title></head><body>\n"
        f"<h1>{html.escape(name)}</h1>\n<p>{html.escape(note or 'Not graded.')}</p>\n"
        "<p>Score: 0</p>\n</body></html>\n"
    )


# --- The parent: schedule, record, merge ---------------------------------------------------


def _state_path(out: Path, task: dict) -> Path:
    return out / STATE / f"{_safe(task['student'])}__{task['assignment']}.json"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(f.name, path)


def load_results(out: Path) -> list[dict]:
    """Every recorded result in ``out``, sorted by student and assignment."""
    results = [json.loads(p.read_text()) for p in sorted((Path(out) / STATE).glob("*.json"))]
    return sorted(results, key=lambda r: (r["student"], r["assignment"]))


def grade(
    submissions,
    out,
    *,
    course=REPO,
    jobs: int = 2,
    timeout: int | None = None,
    students=None,
    assignments=None,
    force: bool = False,
    memory_limit: int | None = None,
    sandbox: bool = True,
    progress: bool = True,
) -> list[dict]:
    """Grade every submission under ``submissions`` into ``out``; return all results."""
    submissions, out, course = Path(submissions).resolve(), Path(out).resolve(), Path(course)
    out.mkdir(parents=True, exist_ok=True)
    known = source_assignments(course)
    folder = submissions
    if any(submissions.glob("*.zip")):
        folder = collect_zips(submissions, out / COLLECTED, known)
    settings = {"timeout": timeout, "memory_limit": memory_limit, "sandbox": sandbox}
    todo = []
    for task in tasks(folder, course, students, assignments):
        task["out"] = str(out)
        task["fingerprint"] = fingerprint(task, settings)
        state = _state_path(out, task)
        if not force and state.is_file():
            try:
                if json.loads(state.read_text()).get("fingerprint") == task["fingerprint"]:
                    continue
            except ValueError:
                pass
        todo.append(task)

    if todo:
        _run(todo, out, settings, max(1, min(jobs, len(todo))), progress, submissions)
    results = load_results(out)
    write_csv(out, results)
    merge_gradebook(out, results, course)
    from autograder.report import write_report

    write_report(out, results)
    return results


def _run(todo, out, settings, jobs, progress, submissions) -> None:
    from tqdm import tqdm

    from autograder.sandbox import isolation_available

    ctx = get_context("spawn")
    base = tempfile.mkdtemp(prefix="autograder-")  # 0700: no kernel can look inside
    hide = [base, str(submissions), str(out)]
    bar = tqdm(total=len(todo), disable=not progress, unit="submission", desc="grading")
    bar.write(f"sandbox: {isolation_available()[1]}") if progress else None
    remaining = list(todo)
    try:
        for _attempt in range(3):  # a crashed worker breaks the pool: start another
            if not remaining:
                break
            slots = ctx.Queue()
            for i in range(jobs):
                slots.put(i)
            pool = ProcessPoolExecutor(
                jobs, mp_context=ctx, initializer=_init_worker, initargs=(slots, hide, base)
            )
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
                    result["fingerprint"] = task["fingerprint"]
                    _write_atomic(_state_path(out, task), json.dumps(result, indent=1))
                    remaining.remove(task)
                    bar.update()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        for task in remaining:  # never graded: recorded as errors, retried on the next run
            result = _failed(task, "the grading worker crashed")
            result["fingerprint"] = "retry"
            _write_atomic(_state_path(out, task), json.dumps(result, indent=1))
    finally:
        bar.close()
        shutil.rmtree(base, ignore_errors=True)


def _failed(task: dict, why: str) -> dict:
    return {
        "student": task["student"],
        "assignment": task["assignment"],
        "score": 0.0,
        "max_score": 0.0,
        "flags": ["grading_error"],
        "grades": {},
        "log": why,
    }


def _number(x: float) -> str:
    return f"{x:g}"


def write_csv(out: Path, results: list[dict]) -> None:
    """``grades.csv`` (one row per student and assignment) and ``grades_by_cell.csv``."""
    rows = [
        {
            "student": r["student"],
            "assignment": r["assignment"],
            "score": _number(r["score"]),
            "max_score": _number(r["max_score"]),
            "flags": ";".join(r["flags"]),
        }
        for r in results
    ]
    _write_rows(out / "grades.csv", ["student", "assignment", "score", "max_score", "flags"], rows)
    cells = [
        {
            "student": r["student"],
            "assignment": r["assignment"],
            "notebook": nb,
            "grade_id": gid,
            "score": _number(g["score"]),
            "max_score": _number(g["max_score"]),
        }
        for r in results
        for nb, grades in sorted(r["grades"].items())
        for gid, g in grades.items()
    ]
    fields = ["student", "assignment", "notebook", "grade_id", "score", "max_score"]
    _write_rows(out / "grades_by_cell.csv", fields, cells)


def _write_rows(path: Path, fields, rows) -> None:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write_atomic(path, buf.getvalue())


def merge_gradebook(out: Path, results: list[dict], course: Path) -> None:
    """Record every result in ``out/gradebook.db`` (nbgrader's gradebook, for formgrader)."""
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.apps import NbGraderAPI

    _quiet_gradebook()
    db = f"sqlite:///{out}/gradebook.db"
    needed = sorted({r["assignment"] for r in results if r["grades"]})
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
            if not r["grades"]:
                continue
            gb.update_or_create_student(r["student"])
            try:
                gb.find_submission(r["assignment"], r["student"])
            except MissingEntry:
                gb.add_submission(r["assignment"], r["student"])
            for nb, grades in r["grades"].items():
                for gid, g in grades.items():
                    grade = gb.find_grade(gid, nb, r["assignment"], r["student"])
                    grade.auto_score = None if g["needs_manual"] else g["score"]
                    grade.needs_manual_grade = g["needs_manual"] and grade.manual_score is None
        gb.db.commit()

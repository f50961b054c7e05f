"""Grading a class: wall time of ``autograder.grade`` against nbclient alone (the floor).

Builds ``--students`` synthetic submissions of every chapter (the released notebook with the
solutions typed in; every other student with one known-wrong answer from tests/known_wrong),
grades them with ``--jobs`` workers, then executes the same notebooks with nbclient alone in
``--jobs`` processes (no nbgrader, no sandbox, no feedback). Prints the ratio of the two wall
times (goal: at most 1.5 at --jobs 2) and submissions per minute.

    python benchmarks/bench_grading.py [--students 40] [--jobs 2] [--chapters 01_lower_bound ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import nbformat  # noqa: E402
from _common import check, finish, goal_line  # noqa: E402

from autograder import REPO, cells  # noqa: E402
from autograder.release import assignments, release, solved  # noqa: E402


def _wrong(assignment: str) -> list[dict]:
    path = REPO / "tests" / "known_wrong" / f"{assignment}.py"
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location(f"wrong_{assignment}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WRONG


def build_class(root: Path, chapters: list[str], students: int) -> Path:
    course = root / "course"
    for chapter in chapters:
        shutil.copytree(REPO / "solutions" / chapter, course / "solutions" / chapter)
    release(chapters, root=course)
    folder = root / "class"
    for chapter in chapters:
        (path,) = (course / "course" / chapter).glob("*.ipynb")
        solution = nbformat.read(course / "solutions" / chapter / path.name, as_version=4)
        wrong = _wrong(chapter)
        for i in range(students):
            nb = solved(nbformat.read(path, as_version=4), solution)
            if i % 2 and wrong:
                item = wrong[(i // 2) % len(wrong)]
                cells.find(nb, item["answer"]).source = item["source"]
            dest = folder / f"student{i:03d}" / chapter
            dest.mkdir(parents=True)
            nbformat.write(nb, dest / path.name)
    return folder


def _execute(path: str) -> tuple[float, str | None]:
    """Run one notebook with nbclient at the grader's per-cell limit (60 s).

    Returns the wall time and, if the run stopped early, why: nbclient stops a notebook at
    its first cell over the limit (the grader would go on with the next cells), so a timed-out
    notebook costs the floor its 60 s and no more.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    start = time.perf_counter()
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=60, allow_errors=True, resources={"metadata": {"path": str(Path(path).parent)}}
    )
    try:
        client.execute()
    except (CellTimeoutError, DeadKernelError) as error:
        return time.perf_counter() - start, type(error).__name__
    return time.perf_counter() - start, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--chapters", nargs="*", default=None)
    args = parser.parse_args()
    chapters = args.chapters or assignments()

    from autograder.grade import grade

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = build_class(root, chapters, args.students)
        notebooks = sorted(str(p) for p in folder.rglob("*.ipynb"))
        n = len(notebooks)

        start = time.perf_counter()
        results = grade(folder, root / "out", course=root / "course", jobs=args.jobs)
        graded = time.perf_counter() - start
        print(f"graded {n} submissions in {graded:.1f} s; now the floor", flush=True)

        # The floor: the same notebooks run by nbclient alone, from the solution folders (for
        # their data files), with as many processes.
        copies = []
        for i, path in enumerate(notebooks):
            chapter = Path(path).parent.name
            dest = root / "floor" / f"{i:04d}"
            shutil.copytree(root / "course" / "course" / chapter, dest)
            shutil.copy(path, dest / Path(path).name)
            copies.append(str(dest / Path(path).name))
        start = time.perf_counter()
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(_execute, copies))
        floor = time.perf_counter() - start
        stopped = [Path(copies[i]).name for i, (_, why) in enumerate(runs) if why]

    check(len(results) == n, f"every submission graded ({len(results)} of {n})")
    check(all("grading_error" not in r.flags for r in results), "no grading errors in the class")
    ratio = graded / floor
    print(
        f"{n} submissions ({args.students} students x {len(chapters)} chapters), jobs={args.jobs}"
    )
    print(f"grading: {graded:.1f} s; nbclient alone: {floor:.1f} s")
    if stopped:
        print(f"nbclient stopped {len(stopped)} notebook(s) at a cell over 60 s: {stopped}")
    print(f"submissions per minute: {60 * n / graded:.1f}")
    goal_line("grading / nbclient", f"{ratio:.2f}", "<= 1.5", ratio <= 1.5)
    finish()


if __name__ == "__main__":
    main()

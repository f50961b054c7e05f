"""Command line: ``python -m autograder {release,grade,report} ...``.

* ``release [ASSIGNMENT ...]``: generate course/ from solutions/.
* ``grade SUBMISSIONS --out DIR``: autograde a class (``<student>/<assignment>/<nb>.ipynb``
  or a folder of zip files); ``--student NAME --force`` regrades one student.
* ``report DIR``: rewrite grades.csv, lms_grades.csv, the gradebook, the report and the
  students' feedback zips (DIR/handback/) from DIR's saved results.
* ``--hand-grades FILE`` (grade or report): merge the hand grades of written answers in FILE,
  a CSV file with the columns student,assignment,cell,points,comment (autograder/hand.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autograder.hand import HandGradeError

HAND_HELP = "CSV of hand grades (student,assignment,cell,points,comment) to merge"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    rel = commands.add_parser("release", help="generate course/ from solutions/")
    rel.add_argument("assignments", nargs="*", help="assignment folders (default: all)")

    gr = commands.add_parser("grade", help="autograde a folder of submissions")
    gr.add_argument("submissions", type=Path, help="<student>/<assignment>/<nb>.ipynb or zips")
    gr.add_argument("--out", type=Path, required=True, help="output folder")
    gr.add_argument("--jobs", type=int, default=2, help="students graded in parallel")
    gr.add_argument("--timeout", type=int, help="seconds per cell (default: nbgrader_config)")
    gr.add_argument(
        "--notebook-timeout", type=int, help="seconds per notebook, cells and tests (default 600)"
    )
    gr.add_argument("--memory", type=int, help="MiB of address space per kernel")
    gr.add_argument("--student", action="append", help="grade only this student (repeatable)")
    gr.add_argument("--assignment", action="append", help="grade only this assignment")
    gr.add_argument("--force", action="store_true", help="regrade even if already graded")
    gr.add_argument("--course", type=Path, help="course root holding solutions/ (default: repo)")
    gr.add_argument("--quiet", action="store_true", help="no progress bar")
    gr.add_argument("--hand-grades", type=Path, metavar="FILE", help=HAND_HELP)

    rep = commands.add_parser("report", help="rewrite grades.csv and the report of a folder")
    rep.add_argument("out", type=Path)
    rep.add_argument("--course", type=Path, help="course root holding solutions/")
    rep.add_argument("--hand-grades", type=Path, metavar="FILE", help=HAND_HELP)
    args = parser.parse_args(argv)
    try:
        return _command(args)
    except HandGradeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _command(args) -> int:

    if args.command == "release":
        from autograder.release import release

        for name in release(args.assignments):
            print(f"released {name} -> course/{name}")
    elif args.command == "grade":
        from autograder import REPO
        from autograder.grade import Interrupted, grade

        try:
            results = grade(
                args.submissions,
                args.out,
                course=args.course or REPO,
                jobs=args.jobs,
                timeout=args.timeout,
                notebook_timeout=args.notebook_timeout,
                memory_limit=args.memory * 1024**2 if args.memory else None,
                students=args.student,
                assignments=args.assignment,
                force=args.force,
                progress=not args.quiet,
                hand_grades=args.hand_grades,
            )
        except Interrupted as stop:
            print(
                f"interrupted: the grades finished so far are kept in {args.out / '.state'}; "
                "run the same command again to grade the rest",
                file=sys.stderr,
            )
            return 128 + stop.signum
        flagged = sum(1 for r in results if r.flags)
        print(f"{len(results)} graded ({flagged} flagged): {args.out / 'grades.csv'}")
    elif args.command == "report":
        from autograder import REPO
        from autograder.grade import finish

        results = finish(args.out, args.course or REPO, args.hand_grades)
        pending = sum(r.pending for r in results)
        print(f"{len(results)} results; points pending hand grading: {pending:g}")
        print(args.out / "report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())

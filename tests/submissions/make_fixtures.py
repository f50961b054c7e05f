"""Regenerate the grading fixtures: a toy assignment and one submission per bad-submission case.

Run ``python tests/submissions/make_fixtures.py`` after changing it; the files it writes are
committed. ``course/solutions/toy/`` is a tiny nbgrader source assignment (two autograded
exercises with hidden tests, a written answer, a data file); ``class/<student>/toy/toy.ipynb``
are the submissions graded by tests/test_autograder.py, one student per case.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from autograder import cells  # noqa: E402

SOURCE = HERE / "course" / "solutions" / "toy"
CLASS = HERE / "class"

SQUARE = '''def square(x):
    """x squared."""
    ### BEGIN SOLUTION
    return x * x
    ### END SOLUTION'''

CUBE = '''def cube(x):
    """x cubed."""
    ### BEGIN SOLUTION
    return x * x * x
    ### END SOLUTION'''


def toy_solution():
    return cells.notebook(
        [
            cells.markdown("# Toy assignment\n\nTwo small exercises for the autograder's tests."),
            cells.code("OFFSET = float(open('data.txt').read())\nOFFSET"),
            cells.markdown("## Exercise 1 (3 points)", grade_id="ex1_heading"),
            cells.answer(SQUARE, "square"),
            cells.test(
                '''"""square works on small integers."""
assert square(3) == 9, "square(3) should be 9"
### BEGIN HIDDEN TESTS
assert square(-7) == 49, "hidden_check_square_negative_seven"
### END HIDDEN TESTS''',
                "test_square",
                2,
            ),
            cells.test(
                '''"""square works on floats."""
assert square(0.5) == 0.25
### BEGIN HIDDEN TESTS
assert abs(square(2.5) - 6.25) < 1e-12, "hidden_check_square_two_and_a_half"
### END HIDDEN TESTS''',
                "test_square_float",
                1,
            ),
            cells.markdown("## Exercise 2 (2 points)"),
            cells.answer(CUBE, "cube"),
            cells.test(
                '''"""cube works."""
assert cube(2) == 8
### BEGIN HIDDEN TESTS
assert cube(-3) == -27, "hidden_check_cube_minus_three"
### END HIDDEN TESTS''',
                "test_cube",
                2,
            ),
            cells.markdown("## Exercise 3 (1 point)\n\nWhy is a square never negative?"),
            cells.written(
                "### BEGIN SOLUTION\nA product of two numbers of the same sign.\n### END SOLUTION",
                "why_square",
                1,
            ),
        ]
    )


def answer_only(nb, square=None, cube=None, extra_cells=()):
    """The solution notebook with answer cells replaced (submission as a student writes it)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cells.grade_id(cell) == "square" and square is not None:
            cell.source = square
        if cells.grade_id(cell) == "cube" and cube is not None:
            cell.source = cube
    for where, cell in extra_cells:
        nb.cells.insert(where, cell)
    return nb


def strip_markers(source):
    lines = [ln for ln in source.splitlines() if "### " not in ln]
    return "\n".join(lines)


def hidden_free(nb):
    """What a student sees: solutions in place, hidden tests removed (as released)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cells.is_test(cell):
            src = cell.source
            if "### BEGIN HIDDEN TESTS" in src:
                head, _, rest = src.partition("### BEGIN HIDDEN TESTS")
                _, _, tail = rest.partition("### END HIDDEN TESTS")
                cell.source = (head + tail).strip("\n")
        elif cells.is_answer(cell) or cell.cell_type == "markdown":
            cell.source = strip_markers(cell.source)
    return nb


ATTACK = r"""
# Every attempt prints ATTACK-OK when it succeeds, ATTACK-FAILED when it does not.
import glob, os, socket, sys
repo = os.path.dirname(sys.prefix)  # the virtual environment lives in the repository


def attempt(what, action):
    try:
        action()
        print("ATTACK-OK", what)
    except Exception as error:
        print("ATTACK-FAILED", what, type(error).__name__)


def read_any(patterns):
    found = [p for pat in patterns for p in glob.glob(pat, recursive=True)]
    if not found:
        raise FileNotFoundError(patterns)
    for path in found:
        open(path).read()


def write(path):
    with open(path, "a") as f:
        f.write("pwned")


attempt("read-solutions", lambda: read_any([repo + "/solutions/*/*.ipynb"]))
attempt("read-hidden-tests", lambda: read_any(
    ["../../../source/*/*.ipynb", "/tmp/**/source/*/*.ipynb"]))
attempt("read-gradebook", lambda: read_any(
    ["../../../*.db", repo + "/autograder/*.db", "/tmp/**/gradebook.db"]))
attempt("write-solutions", lambda: write(repo + "/solutions/pwned.txt"))
attempt("write-gradebook", lambda: write("../../../gradebook.db"))
others = "/tmp/**/correct/toy/toy.ipynb"
attempt("write-other-student", lambda: [write(p) for p in glob.glob(others, recursive=True)]
        or write("../../correct/toy/toy.ipynb"))
attempt("network", lambda: socket.create_connection(("1.1.1.1", 53), timeout=3))
"""

SELF_CHECK = """import emlib.moth
print(emlib.moth.fit([85, 196, 341]).params)  # works in JupyterLab, not while grading"""

DISK_BOMB = """import os
chunk = b"\\0" * 32 * 1024**2
try:
    for i in range(64):  # 2 GiB in files of 32 MiB
        with open(f"big{i}.bin", "wb") as f:
            f.write(chunk)
finally:
    sizes = [os.path.getsize(p) for p in os.listdir() if p.startswith("big")]
    print("wrote", sum(sizes) // 2**20, "MiB")"""

HTML_OUTPUT = """from IPython.display import HTML, Javascript, display
display(HTML('<script>document.title = "PWNED-SCRIPT"</script><b id="pwned-html">bold</b>'))
display(Javascript('document.title = "PWNED-JS"'))"""

HTML_MARKDOWN = 'My notes <img src="x" onerror="document.title=1"> PWNED-MARKDOWN'

IPC_LEAVE = """import os, subprocess
open("/run/lock/emcourse-leak", "w").write("secret")
open("/dev/shm/emcourse-leak", "w").write("secret")
print(subprocess.run(["ipcmk", "-M", "4096"], capture_output=True, text=True).stdout)"""

IPC_READ = """import os, subprocess
found = [p for p in ("/run/lock/emcourse-leak", "/dev/shm/emcourse-leak") if os.path.exists(p)]
segments = subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout
shared = [line for line in segments.splitlines() if "4096" in line]
print("LEAK-FOUND" if found or shared else "LEAK-NONE", found, shared)"""

# A wrong answer, an error raised inside numpy and some mathematics, for the feedback's
# tracebacks (the student's cells only) and its MathJax (offline).
NUMPY_ERROR = """import numpy as np
np.linalg.inv(np.zeros((2, 2)))"""
MATH_NOTE = r"My note: the responsibilities $\psi_{ik}$ sum to one, $$\sum_k \psi_{ik} = 1.$$"

SQ = "def square(x):\n    return x * x"
CU = "def cube(x):\n    return x ** 3"


def submissions(solution):
    correct = hidden_free(solution)
    subs = {}
    subs["correct"] = correct
    subs["wrong_cube"] = answer_only(correct, cube="def cube(x):\n    return 3 * x")
    subs["loop_top"] = answer_only(correct, cube=CU + "\nwhile True:\n    pass")
    subs["loop_function"] = answer_only(
        correct, cube="def cube(x):\n    while True:\n        pass"
    )
    subs["loop_sigint"] = answer_only(
        correct,
        cube=(
            "import signal, time\n"
            "def cube(x):\n"
            "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "    while True:\n"
            "        time.sleep(0.01)"
        ),
    )
    subs["exit_kernel"] = answer_only(correct, cube="import os\nos._exit(1)")
    subs["crash_kernel"] = answer_only(correct, cube="import ctypes\nctypes.string_at(0)\n" + CU)
    subs["memory_bomb"] = answer_only(
        correct,
        cube=CU + "\nimport numpy as np\nhog = []\nwhile True:\n    hog.append(np.empty(10**8))",
    )
    tampered = copy.deepcopy(correct)
    for cell in tampered.cells:
        if cells.grade_id(cell) == "test_cube":
            cell.source = "# trust me\npass"
        if cells.grade_id(cell) == "test_square_float":
            cell.metadata.nbgrader["points"] = 100
    subs["tampered"] = answer_only(tampered, cube="def cube(x):\n    return 0")
    deleted = copy.deepcopy(correct)
    deleted.cells = [c for c in deleted.cells if cells.grade_id(c) not in ("test_cube",)]
    subs["deleted_tests"] = deleted
    subs["uses_emlib"] = answer_only(
        correct,
        cube="import emlib.convergence as conv\n\n"
        "def cube(x):\n    conv.relative_change(1.0, 2.0)\n    return x ** 3",
    )
    # An honest self-check that calls emlib outside any answer costs nothing.
    subs["emlib_selfcheck"] = answer_only(
        correct,
        extra_cells=[(len(correct.cells), cells.code(SELF_CHECK))],
    )
    # Cells that together outlast the notebook's time limit, after the answers.
    subs["slow_cells"] = answer_only(
        correct,
        extra_cells=[
            (len(correct.cells), cells.code(f"import time\ntime.sleep(2.5)  # {i}"))
            for i in range(30)
        ],
    )
    subs["disk_bomb"] = answer_only(
        correct, extra_cells=[(len(correct.cells), cells.code(DISK_BOMB))]
    )
    subs["html_feedback"] = answer_only(
        correct,
        extra_cells=[
            (len(correct.cells), cells.code(HTML_OUTPUT)),
            (len(correct.cells), cells.markdown(HTML_MARKDOWN)),
        ],
    )
    subs["jo@uni"] = correct
    subs["jo_uni"] = correct
    subs["[x]"] = correct
    subs["ipc_a_leaves"] = answer_only(correct, extra_cells=[(1, cells.code(IPC_LEAVE))])
    subs["ipc_b_reads"] = answer_only(correct, extra_cells=[(1, cells.code(IPC_READ))])
    subs["huge_output"] = answer_only(
        correct, square=SQ + "\nfor _ in range(100):\n    print('x' * 1_000_000)"
    )
    subs["attacker"] = answer_only(correct, extra_cells=[(1, cells.code(ATTACK))])
    subs["numpy_traceback"] = answer_only(
        correct,
        square="def square(x):\n    return 2 * x",
        extra_cells=[
            (len(correct.cells), cells.code(NUMPY_ERROR)),
            (len(correct.cells), cells.markdown(MATH_NOTE)),
        ],
    )
    subs["unfilled"] = None  # the release as it is (written by the test from course/)
    return subs


def main():
    if SOURCE.parent.exists():
        shutil.rmtree(SOURCE.parent)
    SOURCE.mkdir(parents=True)
    solution = toy_solution()
    nbformat.write(solution, SOURCE / "toy.ipynb")
    (SOURCE / "data.txt").write_text("2.5\n")
    if CLASS.exists():
        shutil.rmtree(CLASS)
    for student, nb in submissions(solution).items():
        folder = CLASS / student / "toy"
        folder.mkdir(parents=True)
        if nb is not None:
            nbformat.write(nb, folder / "toy.ipynb")
    bad = CLASS / "invalid_json" / "toy"
    bad.mkdir(parents=True)
    (bad / "toy.ipynb").write_text('{"cells": [ this is not json')
    renamed = CLASS / "renamed" / "toy"
    renamed.mkdir(parents=True)
    nbformat.write(hidden_free(solution), renamed / "toy (1).ipynb")
    (CLASS / "empty_folder" / "toy").mkdir(parents=True)
    json.dumps({})


if __name__ == "__main__":
    main()

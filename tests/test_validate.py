"""The students' Validate (autograder/validate.py): it warns when grading would zero a test
because an answer calls emlib, and its kernels print no TCP-without-encryption warning.

The oracle for "would zero" is the grader itself: the same variant of chapter 4 is judged
as a graded submission (tests/grading_harness.py), and the visible tests Validate reports
as failed must be exactly the tests grading scores 0. Both routes a student has are run
for real: ``nbgrader validate`` on the command line, and the Jupyter server's validate
handler that JupyterLab's Validate button calls (over HTTP, as the button does; the browser
test in tests/test_lab.py presses the button itself).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from autograder import COURSE, REPO, SOLUTIONS, cells
from autograder.validate_kernel import Watch
from tests import browser
from tests.grading_harness import grade_many

pytestmark = pytest.mark.slow

CHAPTER, NOTEBOOK = "04_moths", "moths.ipynb"
#: An e_step that hands the work to emlib: right numbers, zero points.
CHEAT = '''
def e_step(counts, p):
    """The reference library's E-step."""
    return emlib.moth.e_step(counts, dict(zip(("p_C", "p_I", "p_T"), p)))
'''
#: Honest self-checks a student may add after her em: they call emlib outside the answers.
SELF_CHECK = """
_reference = emlib.moth.fit(np.array([85, 196, 341]))
print("emlib:", _reference.params, "mine:", em(np.array([85, 196, 341]))[0])


def _compare_with_emlib(p):
    return emlib.moth.e_step([85, 196, 341], dict(zip(("p_C", "p_I", "p_T"), p)))


print(_compare_with_emlib([0.2, 0.3, 0.5]) - e_step([85, 196, 341], [0.2, 0.3, 0.5]))
"""
TCP_WARNING = "Kernel is running over TCP without encryption"
RULE = "=" * 90


def _solved(chapter: str, name: str) -> nbformat.NotebookNode:
    """The released notebook with the solution typed into every answer cell."""
    solution = nbformat.read(SOLUTIONS / chapter / name, as_version=4)
    nb = nbformat.read(COURSE / chapter / name, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):  # code and written answers
            source = cells.find(solution, cells.grade_id(cell)).source
            cell.source = "\n".join(
                line
                for line in source.splitlines()
                if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
            )
    return nb


def _with_self_check(nb):
    after = next(i for i, c in enumerate(nb.cells) if cells.grade_id(c) == "em")
    nb.cells.insert(after + 1, cells.code(SELF_CHECK))
    return nb


def _cheating(nb):
    cells.find(nb, "e_step").source = CHEAT.strip()
    return nb


def _test_ids(nb) -> dict[str, str]:
    """Each test cell's first line (its docstring; as nbgrader cuts it) -> its grade_id."""
    return {_first(c.source): cells.grade_id(c) for c in nb.cells if cells.is_test(c)}


def _first(source: str) -> str:
    return source.strip().splitlines()[0][:80]


def _failed(report: str) -> dict[str, str]:
    """nbgrader's validate report of one notebook -> {first source line: error text}."""
    failed = {}
    for block in report.split(RULE)[1:]:
        source, _, error = block.partition("The error was:")
        source = source.partition("The following cell failed:")[2]
        failed[_first(source)] = "\n".join(line.strip() for line in error.strip().splitlines())
    return failed


def _env(tmp: Path) -> dict:
    return {
        **os.environ,
        # The user's own Jupyter settings stay out of the test (the student's come from ./start).
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("validate")
    paths = {
        "honest": _with_self_check(_solved(CHAPTER, NOTEBOOK)),
        "cheat": _with_self_check(_cheating(_solved(CHAPTER, NOTEBOOK))),
        # Chapter 1's tests call emlib themselves (the bound at the posterior emlib computes).
        "tests_use_emlib": _solved("01_lower_bound", "lower_bound.ipynb"),
    }
    for label, nb in paths.items():
        nbformat.write(nb, tmp / f"{label}.ipynb")
    return tmp, paths


@pytest.fixture(scope="module")
def runs(notebooks):
    """``nbgrader validate`` as a student runs it, and, while it runs, the grader's own scores
    of the cheating variant and of the solution: (report of each notebook, stderr, scores)."""
    tmp, paths = notebooks
    validate = subprocess.Popen(
        [str(REPO / "start"), "nbgrader", "validate", *(f"{label}.ipynb" for label in paths)],
        cwd=tmp,
        env=_env(tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # In a worker process, as tests/test_known_wrong.py does: the grading kernel's sockets
        # and event loop stay out of this process (whose unclosed-resource warnings are errors).
        graded = grade_many({CHAPTER: {"cheat": {"e_step": CHEAT.strip()}}}, workers=1)[CHAPTER]
        stdout, stderr = validate.communicate(timeout=300)
    finally:
        if validate.poll() is None:
            validate.kill()
            validate.communicate()
    assert validate.returncode == 0, stderr
    # One report per notebook, in the order given, each opening with its verdict.
    verdict = re.compile(r"^(Success! Your notebook|VALIDATION FAILED)", re.M)
    starts = [m.start() for m in verdict.finditer(stdout)]
    assert len(starts) == len(paths), stdout
    reports = [stdout[a:b] for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return dict(zip(paths, reports, strict=True)), stderr, graded


@pytest.fixture(scope="module")
def command_line(runs):
    return runs[:2]


@pytest.fixture(scope="module")
def graded(runs):
    return runs[2]


def test_honest_work_passes_validate(command_line, graded):
    reports, _ = command_line
    assert all(score == top for score, top in graded["correct"].values()), graded["correct"]
    # Self-check cells that call emlib (after em, and a helper of the student's own) and tests
    # that call emlib themselves are no reason for a warning.
    assert reports["honest"].startswith("Success! Your notebook passes all the tests."), reports[
        "honest"
    ]
    assert reports["tests_use_emlib"].startswith("Success!"), reports["tests_use_emlib"]


def test_validate_names_what_grading_would_zero(command_line, graded, notebooks):
    reports, _ = command_line
    ids = _test_ids(notebooks[1]["cheat"])
    failed = {ids[first]: error for first, error in _failed(reports["cheat"]).items()}
    zeroed = {
        gid for gid, (score, _) in graded["cheat"].items() if gid in ids.values() and score == 0
    }
    # e_step's tests, and em's, whose loop calls e_step: grading and Validate agree.
    assert "test_e_step_typica" in zeroed and "test_em_givens_hoeting" in zeroed, zeroed
    assert "test_m_step_hand_case" not in zeroed, zeroed
    assert set(failed) == zeroed
    for gid, error in failed.items():
        assert error.startswith("EmlibInAnswer: this test would score 0 when your notebook"), error
        if gid.startswith("test_e_step"):
            assert "Exercise 1: the E-step" in error, error
            assert "- e_step called emlib.moth.e_step, from emlib" in error, error
        else:
            assert "Exercise 4" in error, error
            assert "- em (through e_step) called emlib.moth.e_step" in error, error
        assert "costs nothing" in error
        # nbgrader cuts lines longer than 87 characters with "...": none is cut.
        assert not any(line.endswith("...") for line in error.splitlines()), error


def test_command_line_validate_is_quiet(command_line):
    _, stderr = command_line
    assert TCP_WARNING not in stderr, stderr
    assert "No nbgrader_config.py file found" not in stderr, stderr


def test_validate_button_route(notebooks, graded, tmp_path):
    """The Jupyter server's validate handler (what the Validate button posts to) loads the
    students' configuration through ./start: same warning, no TCP warning in its log."""
    tmp, paths = notebooks
    port, token = browser.free_port(), secrets.token_hex(16)
    log = tmp_path / "server.log"
    command = [
        str(REPO / "start"),
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={tmp}",
    ]
    if os.getuid() == 0:
        command.append("--allow-root")
    base = f"http://127.0.0.1:{port}/"
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    with log.open("w") as out:
        server = subprocess.Popen(
            command, cwd=tmp, env=_env(tmp_path), stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, log.read_text()
                try:
                    request = urllib.request.Request(f"{base}api/status", headers=headers)
                    urllib.request.urlopen(request, timeout=2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the server did not answer in 60 s"
                    time.sleep(0.25)
            request = urllib.request.Request(
                f"{base}assignments/validate",
                data=json.dumps({"path": "cheat.ipynb"}).encode(),
                headers=headers,
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=240) as answer:
                reply = json.load(answer)
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert reply["success"], reply
    ids = _test_ids(paths["cheat"])
    failed = {ids[_first(f["source"])]: f["raw_error"] for f in reply["value"]["failed"]}
    zeroed = {
        gid for gid, (score, _) in graded["cheat"].items() if gid in ids.values() and score == 0
    }
    assert set(failed) == zeroed
    assert all("EmlibInAnswer" in error for error in failed.values())
    assert TCP_WARNING not in log.read_text()


# --- The watch itself, in this process: which emlib calls count ------------------------------

ANSWERS = """
import emlib.moth
import emlib.stopping


def e_step(counts, p):
    return emlib.moth.e_step(counts, dict(zip(("p_C", "p_I", "p_T"), p)))


def honest(counts, p):
    return [c * 1.0 for c in counts]


def em(counts, p):
    return e_step(counts, p)


def uses_helper(counts, p):
    return helper(counts, p)


def stops(history):
    return emlib.stopping.converged(history, 1e-8)


def calls_back(f, counts, p):
    return f(counts, p)
"""
HELPER = """
def helper(counts, p):  # a cell of the student's own, not an answer cell
    return emlib.moth.loglik(counts, dict(zip(("p_C", "p_I", "p_T"), p)))
"""
NAMES = ("e_step", "honest", "em", "uses_helper", "stops", "calls_back")


def _watch(test: str) -> dict:
    """Run ``test`` as a test cell under the watch; return what it found."""
    ns = {"__name__": "__main__"}
    exec(compile(ANSWERS, "<answer cells>", "exec"), ns)
    exec(compile(HELPER, "<a cell of her own>", "exec"), ns)
    watch = Watch({ns[name].__code__: name for name in NAMES}, test_file="<test cell>")
    previous = sys.gettrace()
    sys.settrace(watch.trace)
    try:
        exec(compile(test, "<test cell>", "exec"), ns)
    finally:
        sys.settrace(previous)
    return watch.found


P = "[85, 196, 341], [0.2, 0.3, 0.5]"


@pytest.mark.parametrize(
    ("test", "found"),
    [
        (f"e_step({P})", {("e_step", "e_step"): {"emlib.moth.e_step"}}),
        (f"em({P})", {("em", "e_step"): {"emlib.moth.e_step"}}),
        (f"uses_helper({P})", {("uses_helper", "uses_helper"): {"emlib.moth.loglik"}}),
        (f"honest({P})", {}),
        ("stops([[0.5], [0.25], [0.125]])", {}),
        # The test's own use of emlib, directly or in a function it hands to an answer, runs
        # in the judge when graded; so does an emlib function passed as an argument.
        ("emlib.moth.loglik([85, 196, 341], dict(p_C=0.2, p_I=0.3, p_T=0.5))", {}),
        (
            f"calls_back(lambda c, p: emlib.moth.e_step(c, dict(p_C=0.2, p_I=0.3, p_T=0.5)), {P})",
            {},
        ),
        ("calls_back(emlib.moth.e_step, [85, 196, 341], dict(p_C=0.2, p_I=0.3, p_T=0.5))", {}),
        # ... but an answer handed an answer that calls emlib still counts.
        (f"calls_back(e_step, {P})", {("calls_back", "e_step"): {"emlib.moth.e_step"}}),
    ],
)
def test_which_emlib_calls_count(test, found):
    assert _watch(test) == found

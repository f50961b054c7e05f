"""The judge (autograder/judge.py): grades that student code cannot fool.

Chapter 4 (peppered moths) is graded with the submissions of an adversarial student: each
tries one way to get points it has not earned, or to read a hidden test, and must come out
with the score it deserves. The wire format and the authoring rule the judge relies on
(test cells use only the chapter's imports, the answers and builtins) are checked too.
"""

from __future__ import annotations

import ast
import base64
import builtins
import copy
import csv
import html
import re
import shutil
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import REPO, cells, judge, wire
from autograder.feedback import hidden_lines
from autograder.grade import grade
from autograder.release import assignments, release, solved

CHAPTER = "04_moths"
LIMITS = {"timeout": 20, "notebook_timeout": 120, "progress": False}


# --- The wire format -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3,
        2**70,
        -1.5,
        float("inf"),
        "text",
        [1, [2.0, "a"]],
        (1, (2, 3)),
        {"a": 1, 2: "b", (1, 2): None},
        np.arange(6.0).reshape(2, 3),
        np.array([1, 2], dtype=np.int32),
        np.array([True, False]),
        np.array([1 + 2j]),
    ],
)
def test_plain_data_survives_the_wire(value):
    back = wire.loads(wire.dumps(value))
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and back.shape == value.shape
        np.testing.assert_array_equal(back, value)
    else:
        assert back == value and type(back) is type(value)


def test_numpy_scalars_arrive_as_python_numbers():
    assert wire.loads(wire.dumps([np.float64(0.5), np.int64(3), np.bool_(True)])) == [
        0.5,
        3,
        True,
    ]
    assert np.isnan(wire.loads(wire.dumps(np.nan)))


@pytest.mark.parametrize(
    "value", [object(), np.array([object()]), {1, 2}, np.random.default_rng(0), len]
)
def test_anything_but_data_is_refused_with_a_message(value):
    with pytest.raises(wire.WireError, match="cannot be sent"):
        wire.dumps(value)


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        '{"__class__": "os.system"}',
        '{"$array": "AAAA", "dtype": "|O", "shape": [1]}',
        '{"$array": "AAAA", "dtype": "<f8", "shape": [1000]}',
        '{"$array": "!!!!", "dtype": "<f8", "shape": [0]}',
        '{"$handle": 3}',
        '{"$dict": [[[1], 2]]}',
        "[" * 100 + "]" * 100,
    ],
)
def test_a_hostile_message_is_a_clear_error(message):
    with pytest.raises(wire.WireError):
        wire.loads(message)


def test_callables_cross_as_handles_only_where_allowed():
    seen = []
    text = wire.dumps({"f": len}, handle=lambda f: seen.append(f) or 0)
    assert seen == [len]
    assert wire.loads(text, callback=lambda h: ("handle", h)) == {"f": ("handle", 0)}


# --- Calling into a kernel --------------------------------------------------------------------

KERNEL_CODE = """import time
def echo(x):
    return x
def stubborn(x):
    while True:
        time.sleep(0.01)
def ask():
    return input("your name?")
def twice(f, x):
    return f(f(x))
def bad():
    return object()"""


def _calls_in_a_kernel(root: str) -> dict:
    """Make calls of every kind into a real sandboxed kernel; errors as (type, message)."""
    import os
    import secrets

    import zmq

    from autograder import grade as grading
    from autograder.execute import GradingSession
    from autograder.records import Settings

    os.environ["AUTOGRADER_SCRATCH"] = root
    settings = Settings(notebook_timeout=60, seed_key=secrets.token_hex(16), hide=(root,))
    sc = grading._scratch(str(REPO / "tests" / "submissions" / "course"), "toy", settings)
    nb = nbformat.v4.new_notebook(cells=[cells.code(KERNEL_CODE)])

    def then(session):
        caller = judge.Caller(session, call_timeout=2.0)

        def attempt(name, *args):
            try:
                return caller.call(name, args, {})
            except Exception as error:
                return (type(error).__name__, str(error))

        got = {"echo": attempt("echo", np.arange(3.0))}
        got["stubborn"] = attempt("stubborn", 1)
        got["after"] = attempt("echo", {"a": (1, 2)})
        got["ask"] = attempt("ask")
        got["twice"] = attempt("twice", lambda v: v * 3, 2)
        got["bad"] = attempt("bad")
        got["missing"] = attempt("nothing_here")
        caller.stop()
        reply = session.wait_for_reply(session.kc.execute("1 + 1"))
        got["execute"] = reply["content"]["status"]
        got["broken"] = session.broken
        kc = session.kc
        got["sockets"] = [
            channel.socket.getsockopt(zmq.MAXMSGSIZE)
            for channel in (kc.shell_channel, kc.iopub_channel, kc.stdin_channel)
        ]
        return got

    session = GradingSession(config=sc["config"])
    return session.run(nb, {"metadata": {"path": root}}, then, is_test=cells.is_test)


@pytest.fixture(scope="module")
def kernel_calls(tmp_path_factory):
    """What a Caller got back from a real sandboxed kernel, call after call."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    root = str(tmp_path_factory.mktemp("calls"))
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_calls_in_a_kernel, root).result()


def test_calls_return_plain_data(kernel_calls):
    np.testing.assert_array_equal(kernel_calls["echo"], np.arange(3.0))
    assert kernel_calls["after"] == {"a": (1, 2)}


def test_a_call_past_its_time_limit_times_out_and_the_next_call_still_works(kernel_calls):
    assert kernel_calls["stubborn"][0] == "CallTimeout"
    assert kernel_calls["after"] == {"a": (1, 2)}
    assert kernel_calls["broken"] is None


def test_callbacks_reach_the_judge_and_a_students_own_input_gets_an_error(kernel_calls):
    assert kernel_calls["twice"] == 18
    assert isinstance(kernel_calls["ask"], str) and "could not read" in kernel_calls["ask"]


def test_what_cannot_be_sent_or_called_is_the_students_error(kernel_calls):
    assert kernel_calls["bad"][0] == "StudentError"
    assert "cannot be sent" in kernel_calls["bad"][1]
    assert kernel_calls["missing"][0] == "StudentError"
    assert "NameError" in kernel_calls["missing"][1]


def test_after_the_calls_the_kernel_runs_code_again(kernel_calls):
    assert kernel_calls["execute"] == "ok"


def test_the_grader_refuses_giant_kernel_messages_before_reading_them(kernel_calls):
    from autograder.sandbox import MAX_MESSAGE_BYTES

    assert kernel_calls["sockets"] == [MAX_MESSAGE_BYTES] * 3


# --- The rule every chapter's test cells follow -------------------------------------------


def _free_names(source: str) -> set[str]:
    tree = ast.parse(source)
    bound, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store | ast.Del) else used).add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            if not isinstance(node, ast.Lambda):
                bound.add(node.name)
            args = node.args
            bound |= {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
            bound |= {a.arg for a in (args.vararg, args.kwarg) if a}
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return used - bound - set(dir(builtins))


@pytest.mark.parametrize("assignment", assignments())
def test_test_cells_use_only_imports_answers_and_builtins(assignment):
    """The judge runs test cells with the chapter's imports and the answers, nothing else."""
    (path,) = (REPO / "solutions" / assignment).glob("*.ipynb")
    nb = nbformat.read(path, as_version=4)
    available = set(judge.namespace(nb))
    for names in judge.answer_functions(nb).values():
        available |= set(names)
    for cell in nb.cells:
        if cells.is_test(cell) and cell.cell_type == "code":
            missing = _free_names(judge.test_source(cell)) - available
            assert not missing, (
                f"{assignment}: test cell {cells.grade_id(cell)} uses {sorted(missing)}, "
                "which the judge does not have: import it in a code cell, or compute it "
                "inside the test"
            )


# --- An adversarial student on chapter 4 -------------------------------------------------


DUMMIES = {
    "e_step": "def e_step(counts, p):\n    return np.zeros(6)",
    "m_step": "def m_step(genotypes):\n    return np.zeros(3)",
    "phenotype_loglik": "def phenotype_loglik(counts, p):\n    return 0.0",
    "em": "def em(counts, p0=(1/3, 1/3, 1/3), tol=1e-8, max_iter=1000):\n"
    "    return np.zeros(3), np.zeros(2)",
}

DISPLAYHOOK = """import sys
for _name in ("e_step", "m_step", "phenotype_loglik", "em"):
    _f = globals()[_name]
    def _wrapped(*a, _f=_f, **k):
        sys.displayhook("ok")
        return _f(*a, **k)
    globals()[_name] = _wrapped"""

AST_TRANSFORMER = """import ast
class _Swallow(ast.NodeTransformer):
    def visit_Module(self, node):
        body = [ast.Try(body=[stmt], handlers=[ast.ExceptHandler(type=None, name=None,
                body=[ast.Pass()])], orelse=[], finalbody=[]) for stmt in node.body]
        node.body = body
        return ast.fix_missing_locations(node)
get_ipython().ast_transformers.append(_Swallow())"""

PATCH_ASSERTS = """import numpy as np
np.testing.assert_allclose = lambda *args, **kwargs: None
np.testing.assert_array_equal = lambda *args, **kwargs: None
import builtins
builtins.AssertionError = type("Nothing", (Exception,), {})"""

PATCH_REFERENCE = """import emlib.moth, emlib.testing, numpy as np
emlib.moth.m_step = lambda counts, genotypes: dict(zip(("p_C", "p_I", "p_T"), m_step(genotypes)))
emlib.testing.assert_independent = lambda f: None
np.testing.assert_allclose = lambda *args, **kwargs: None"""

WRONG_M_STEP = """def m_step(genotypes):
    y_CC, y_CI, y_CT, y_II, y_IT, y_TT = np.asarray(genotypes, dtype=float)
    n = 2 * (y_CC + y_CI + y_CT + y_II + y_IT + y_TT)
    p_C = (2 * y_CC + y_CI + y_CT) / n
    p_I = (2 * y_II + y_CI + y_IT) / n
    return np.array([p_C, p_I, 1 - p_I + p_C])"""

DISGUISED = """def e_step(counts, p):
    _lib = __import__("".join(["em", "lib"]) + ".moth", fromlist=["x"])
    _p = dict(zip(("p_C", "p_I", "p_T"), p))
    return _lib.e_step(counts, _p)"""

LEAK = """import base64, json
_seen = json.dumps({"In": list(globals().get("In", [])), "_ih": list(globals().get("_ih", []))})
print("B64:" + base64.b64encode(_seen.encode()).decode())
_real_e_step = e_step
def e_step(counts, p):
    print("B64:" + base64.b64encode(json.dumps(list(In)).encode()).decode())
    return _real_e_step(counts, p)"""

WARNS = """import warnings
_quiet_e_step = e_step
def e_step(counts, p):
    warnings.warn("a harmless warning from a correct answer", RuntimeWarning)
    np.log(np.zeros(1))  # and numpy's own divide-by-zero warning
    return _quiet_e_step(counts, p)"""


def _hostile(solution, release_nb) -> dict:
    """``{student: notebook}``: the adversarial submissions."""
    typed = solved(release_nb, solution)
    dummies = solved(release_nb, solution, DUMMIES)
    narrative = copy.deepcopy(typed)
    for cell in narrative.cells:
        if cell.cell_type == "markdown" and not cells.grade_id(cell):
            cell.source += "\n\nMy note: emlib.moth.fit gives the same numbers as mine."
            break
    answer = cells.find(narrative, "e_step")
    answer.source = answer.source.replace('"""', '"""Checked against emlib.moth.e_step. ', 1)
    claims = copy.deepcopy(typed)
    cells.find(claims, "m_step").metadata["nbgrader"].update(grade=True, points=100)
    return {
        "correct": typed,
        "displayhook": solved(release_nb, solution, DUMMIES, [(-1, cells.code(DISPLAYHOOK))]),
        "ast_transformer": solved(
            solution, release_nb, DUMMIES, [(-1, cells.code(AST_TRANSFORMER))]
        ),
        "patched_asserts": solved(
            solution, release_nb, DUMMIES, [(-1, cells.code(PATCH_ASSERTS))]
        ),
        "patched_reference": solved(
            solution, release_nb, {"m_step": WRONG_M_STEP}, [(-1, cells.code(PATCH_REFERENCE))]
        ),
        "disguised_emlib": solved(release_nb, solution, {"e_step": DISGUISED}),
        "leaks_history": solved(release_nb, solution, extra=[(-1, cells.code(LEAK))]),
        "warns": solved(release_nb, solution, extra=[(-1, cells.code(WARNS))]),
        "mentions_emlib": narrative,
        "claims_points": claims,
        "dummies": dummies,
    }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    course = tmp / "course"
    shutil.copytree(REPO / "solutions" / CHAPTER, course / "solutions" / CHAPTER)
    release([CHAPTER], root=course)
    (path,) = (course / "course" / CHAPTER).glob("*.ipynb")
    release_nb = nbformat.read(path, as_version=4)
    solution = nbformat.read(course / "solutions" / CHAPTER / path.name, as_version=4)
    folder = tmp / "class"
    for student, nb in _hostile(solution, release_nb).items():
        (folder / student / CHAPTER).mkdir(parents=True)
        nbformat.write(nb, folder / student / CHAPTER / path.name)
    out = tmp / "out"
    results = grade(folder, out, course=course, jobs=2, **LIMITS)
    return {
        "solution": solution,
        "release": release_nb,
        "out": out,
        "results": {r.student: r for r in results},
        "full": next(r.max_score for r in results),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "student", ["dummies", "displayhook", "ast_transformer", "patched_asserts"]
)
def test_dummy_answers_earn_nothing_whatever_they_do_to_the_kernel(hostile, student):
    assert hostile["results"][student].score == 0, hostile["results"][student]


@pytest.mark.slow
def test_a_wrong_answer_that_patches_the_reference_loses_its_points(hostile):
    result = hostile["results"]["patched_reference"]
    grades = result.grades["moths"]
    assert result.score <= hostile["full"] - 6, result
    for gid in ("test_m_step_sums_to_one", "test_m_step_hidden"):
        assert grades[gid]["score"] == 0, gid


@pytest.mark.slow
def test_an_answer_that_calls_emlib_in_disguise_is_caught(hostile):
    result = hostile["results"]["disguised_emlib"]
    assert "uses_emlib" in result.flags
    assert result.score <= hostile["full"] - 4
    assert all(g["score"] == 0 for k, g in result.grades["moths"].items() if "e_step" in k)


@pytest.mark.slow
@pytest.mark.parametrize("student", ["correct", "warns", "mentions_emlib", "leaks_history"])
def test_correct_work_earns_full_marks(hostile, student):
    result = hostile["results"][student]
    assert result.score == hostile["full"], result
    assert "uses_emlib" not in result.flags


@pytest.mark.slow
def test_metadata_claiming_points_is_ignored_and_flagged(hostile):
    result = hostile["results"]["claims_points"]
    assert result.score == hostile["full"] and "tampered" in result.flags, result


@pytest.mark.slow
def test_no_feedback_carries_a_hidden_test_not_even_in_base64(hostile):
    visible = "\n".join(c.source for c in hostile["release"].cells)
    secret = {line for line in hidden_lines(hostile["solution"]) if line not in visible}
    assert secret
    for page in (hostile["out"] / "feedback").rglob("*.html"):
        student = page.relative_to(hostile["out"] / "feedback").parts[0]
        (submitted,) = (hostile["out"].parent / "class" / student).rglob("*.ipynb")
        own = submitted.read_text()  # a student's own code may hold the same words
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
        decoded = [
            base64.b64decode(chunk + "=" * (-len(chunk) % 4)).decode(errors="replace")
            for chunk in re.findall(r"B64:([A-Za-z0-9+/=]+)", text)
        ]
        for blob in (text, *decoded):
            leaked = [line for line in secret if line in blob and line not in own]
            assert not leaked, f"{page} shows hidden tests: {leaked[:3]}"


@pytest.mark.slow
def test_regrading_draws_the_same_hidden_data_and_gives_the_same_grades(hostile, tmp_path):
    out = hostile["out"]
    before = (out / "grades.csv").read_text()
    seeds = {
        gid: g.get("seed") for gid, g in hostile["results"]["correct"].grades["moths"].items()
    }
    results = grade(
        out.parent / "class",
        out,
        course=out.parent / "course",
        students=["correct"],
        force=True,
        **LIMITS,
    )
    result = next(r for r in results if r.student == "correct")
    assert {g: v.get("seed") for g, v in result.grades["moths"].items()} == seeds
    assert (out / "grades.csv").read_text() == before


# --- Collection feeds the grader -----------------------------------------------------------


@pytest.mark.slow
def test_one_bad_archive_never_stops_the_class(hostile, tmp_path):
    correct = next((hostile["out"].parent / "class" / "correct").rglob("*.ipynb"))
    zips = tmp_path / "zips"
    zips.mkdir()
    member = f"course/{CHAPTER}/{correct.name}"
    for student in ("amy", "ben"):
        with zipfile.ZipFile(zips / f"{student}.zip", "w") as zf:
            zf.write(correct, member)
    with zipfile.ZipFile(zips / "mallory.zip", "w") as zf:
        zf.writestr(f"{CHAPTER}/ ..", "x")
        zf.writestr(f" ../{CHAPTER}/{correct.name}", correct.read_text())
    with zipfile.ZipFile(zips / "zoe.zip", "w") as zf:
        zf.write(correct, f"carl/{CHAPTER}/{correct.name}")
    out = tmp_path / "out"
    grade(zips, out, course=hostile["out"].parent / "course", jobs=2, **LIMITS)
    with open(out / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    full = f"{hostile['full']:g}"
    assert {s: rows[s]["score"] for s in ("amy", "ben", "zoe")} == dict.fromkeys(
        ("amy", "ben", "zoe"), full
    )
    assert rows["mallory"]["flags"] == "unreadable" and rows["mallory"]["score"] == "0"
    assert "course" not in rows and "carl" not in rows
    assert not (tmp_path / CHAPTER).exists() and not (out / CHAPTER).exists()
    assert Path(out / "collected.json").is_file()

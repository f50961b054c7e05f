"""Every autograded exercise loses its points to the known-wrong answers in tests/known_wrong/.

Each wrong answer is graded by the grader's own judge (tests/grading_harness.py): the
solution typed into the released notebook runs in a sandboxed grading kernel, that answer is
replaced by the wrong one, and the tests are judged as in a graded submission, up to the
last of those it must lose (the later ones, which a wrong answer upstream can send to their
time limit, prove nothing about it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from autograder import cells
from autograder.release import assignments
from tests.grading_harness import UNFILLED, grade_many, solution_notebook

KNOWN_WRONG = Path(__file__).parent / "known_wrong"


def _wrong_answers(assignment: str) -> list[dict]:
    path = KNOWN_WRONG / f"{assignment}.py"
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location(f"known_wrong_{assignment}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WRONG


@pytest.fixture(scope="session")
def all_graded():
    """Every chapter's solution, unfilled release and wrong answers, graded once."""
    jobs, until = {}, {}
    for a in assignments():
        wrong = _wrong_answers(a)
        order = [cells.grade_id(c) for c in solution_notebook(a)[1].cells if cells.is_test(c)]
        jobs[a] = {f"wrong{i}": {w["answer"]: w["source"]} for i, w in enumerate(wrong)}
        until[a] = {f"wrong{i}": max(w["loses"], key=order.index) for i, w in enumerate(wrong)}
    return grade_many(jobs, until=until)


@pytest.fixture(params=assignments())
def graded(request, all_graded):
    assignment = request.param
    _, nb = solution_notebook(assignment)
    scores = dict(all_graded[assignment])
    scores["unfilled"] = scores.pop(UNFILLED)
    return assignment, nb, _wrong_answers(assignment), scores


def test_correct_answers_earn_full_marks(graded):
    _, nb, _, scores = graded
    autograded = {cells.grade_id(c) for c in nb.cells if cells.is_test(c)}
    for grade_id in autograded:
        score, max_score = scores["correct"][grade_id]
        assert score == max_score, f"{grade_id}: the solution scored {score}/{max_score}"


def test_unfilled_release_scores_zero(graded):
    _, _, _, scores = graded
    earned = {gid: s for gid, (s, _) in scores["unfilled"].items() if s}
    assert not earned, f"the unfilled student notebook earned points: {earned}"


def test_every_exercise_has_a_known_wrong_answer(graded):
    assignment, nb, wrong, _ = graded
    answers = {cells.grade_id(c) for c in nb.cells if cells.is_answer(c)}
    covered = {item["answer"] for item in wrong}
    assert answers <= covered, (
        f"{assignment}: no known-wrong answer for {sorted(answers - covered)} in "
        f"tests/known_wrong/{assignment}.py"
    )


def test_known_wrong_answers_lose_their_points(graded):
    assignment, nb, wrong, scores = graded
    failures = []
    for i, item in enumerate(wrong):
        got = scores[f"wrong{i}"]
        total = sum(s for s, _ in got.values())
        full = sum(m for _, m in got.values())
        for grade_id in item["loses"]:
            cells.find(nb, grade_id)  # a typo in "loses" must not pass silently
            if got[grade_id][0] != 0:
                failures.append(f"{item['why']}: {grade_id} scored {got[grade_id][0]}")
        if total >= full:
            failures.append(f"{item['why']}: still full marks")
    assert not failures, f"{assignment}:\n" + "\n".join(failures)

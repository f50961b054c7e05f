"""Grade the solution and every known-wrong answer on many fresh draws of the hidden tests.

A hidden test draws its data at grading time, so a known-wrong answer can keep its points
on an unlucky draw, and a correct one lose them. ``tests/test_known_wrong.py`` grades
each variant once per run; this sweep grades each ``--repeats`` times, each repeat under
its own label and so with its own cell seeds (:func:`autograder.judge.cell_seed`), through
the same harness and judge. It lists every draw on which a known-wrong answer kept a point
of a test it must lose, or the solution lost one of an autograded test. Only wrong answers
whose points hang on a hidden test are repeated (visible tests draw no fresh data).

Not part of ``make test`` (R = 12 takes about 15 minutes on two cores): run it after
writing or changing a hidden test, ``make sweep`` or
``.venv/bin/python -m tests.sweep_hidden_tests --repeats 12 [assignment ...]``.
Two hidden tests were made robust this way (chapter 10's Viterbi test kept the points of
posterior decoding on 1 draw in 300, chapter 8's em test those of a rule on the change of
ℓ on 2 in 100).
"""

from __future__ import annotations

import argparse
import sys
import time

from autograder.release import assignments
from tests.grading_harness import grade_many
from tests.test_known_wrong import _wrong_answers


def _jobs(chosen, repeats):
    jobs = {}
    for assignment in chosen:
        variants = {}
        for i, wrong in enumerate(_wrong_answers(assignment)):
            if any("hidden" in gid for gid in wrong["loses"]):
                for r in range(repeats):
                    variants[f"wrong{i}_r{r}"] = {wrong["answer"]: wrong["source"]}
        for r in range(repeats):
            variants[f"correct_r{r}"] = {}  # nothing replaced: the solution, a fresh draw
        jobs[assignment] = variants
    return jobs


def _failures(assignment, scores):
    wrong = _wrong_answers(assignment)
    for label, got in scores.items():
        if label.startswith("correct"):
            # Hand-graded answers ("written_...") score 0 until graded by hand.
            lost = {g: s for g, s in got.items() if s[0] != s[1] and not g.startswith("written")}
            if lost:
                yield f"{assignment} {label}: the solution lost {lost}"
        elif label.startswith("wrong"):
            item = wrong[int(label[len("wrong") :].split("_")[0])]
            for gid in item["loses"]:
                if got[gid][0] != 0:
                    yield f"{assignment} {label}: {item['why']!r} kept {got[gid][0]} of {gid}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*", help="default: every assignment")
    parser.add_argument("--repeats", type=int, default=12, help="fresh draws per variant")
    args = parser.parse_args(argv)
    chosen = args.assignments or assignments()
    unknown = sorted(set(chosen) - set(assignments()))
    if unknown:
        parser.error(f"no such assignment: {', '.join(unknown)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    start = time.monotonic()
    results = grade_many(_jobs(chosen, args.repeats))
    failures = [f for a in chosen for f in _failures(a, results[a])]
    for line in failures:
        print(line)
    n = sum(len(v) for v in results.values())
    print(
        f"{len(failures)} failing draws among {n} graded variants ({args.repeats} draws each)"
        f" in {time.monotonic() - start:.0f} s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

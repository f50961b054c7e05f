"""The records the grading flow passes around: a task, the settings, a submission's result.

Frozen dataclasses at module level, so that a worker process can pickle a :class:`Result`
back to the parent. A :class:`Result` is what ``OUT/.state/<student>__<assignment>.json``
holds: :meth:`Result.to_dict` gives that file's keys in the order they have always been
written, :meth:`Result.from_dict` reads one back. The cells' grades inside a result are
dicts of the shape :class:`CellGrade` names: nbgrader's per-cell data, written to the state
files as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

#: The settings a grade depends on, hashed by :func:`autograder.grade.fingerprint`.
_GRADED_WITH = ("timeout", "notebook_timeout", "memory_limit", "sandbox", "seed_key")


def feedback_folder(out: Path, student: str, assignment: str) -> Path:
    """Where the feedback pages of ``student``'s ``assignment`` are written in ``out``."""
    return Path(out) / "feedback" / student / assignment


@dataclass(frozen=True)
class Settings:
    """What every submission of a grading run is graded with."""

    timeout: int | None = None  # seconds per cell (None: nbgrader_config's)
    notebook_timeout: int | None = None  # seconds per notebook (None: GradingSession's)
    memory_limit: int | None = None  # bytes of address space per kernel (None: no limit)
    sandbox: bool = True
    seed_key: str = ""  # hex secret behind every hidden test's seed (kept in OUT/.state)
    #: Folders no kernel may see: this run's scratch, submissions and output (no grade
    #: depends on them, so they are not in :meth:`canonical_json`).
    hide: tuple[str, ...] = ()
    #: Whether the run found kernel isolation available when it started: then every kernel
    #: is isolated (a kernel that cannot be fails to start; none runs unisolated).
    isolated: bool = False

    def canonical_json(self) -> str:
        """The settings a grade depends on as sorted JSON, as the fingerprint hashes them
        (the same text as when the settings were a dict: keep it so, or every saved result
        is regraded)."""
        return json.dumps({k: getattr(self, k) for k in _GRADED_WITH}, sort_keys=True)


@dataclass(frozen=True)
class GradingTask:
    """One student's assignment to grade."""

    student: str
    assignment: str
    folder: Path  # the submitted <student>/<assignment> folder (it may not exist)
    notebooks: tuple[str, ...]  # the assignment's notebooks (their stems)
    course: Path  # the course root holding solutions/
    problems: tuple[str, ...] = ()  # why the student's archive could not be used
    out: Path | None = None  # the run's output folder
    fingerprint: str = ""  # what the grade depends on (autograder.grade.fingerprint)

    @property
    def feedback_dir(self) -> Path:
        """Where this task's feedback pages go."""
        return feedback_folder(self.out, self.student, self.assignment)


class CellGrade(TypedDict, total=False):
    """One graded cell of a :class:`Result` (one entry of ``grades[notebook]``).

    Every cell has ``score``, ``max_score`` and ``needs_manual``; an autograded test also
    ``seed`` (its hidden data's), and ``message`` when it failed; a cell a person graded
    (:func:`autograder.hand.apply`) ``hand`` and ``comment``.
    """

    score: float
    max_score: float
    needs_manual: bool  # a written answer awaiting a person
    seed: int
    message: str  # why the test failed (the class report's most common failure)
    hand: bool
    comment: str


@dataclass(frozen=True)
class Result:
    """A submission's grade: its totals, flags, cells' grades and notes.

    ``grades`` is ``{notebook: {grade_id: cell's grade}}``; ``notes`` ``{notebook: why it
    earned nothing}`` (``None`` in a grading error's result, which has no ``notes`` key);
    ``log`` what went wrong in a grading error. ``pending``, the points awaiting a person, is
    set by :func:`autograder.hand.apply` and never stored. ``sandbox`` says how the kernels
    that graded it were sandboxed: the decision of the run that graded it (empty in results
    recorded before it was kept).
    """

    student: str
    assignment: str
    score: float
    max_score: float
    flags: tuple[str, ...]
    grades: dict[str, dict[str, CellGrade]]
    notes: dict[str, str] | None = None
    log: str = ""
    fingerprint: str | None = None
    pending: float = 0.0
    sandbox: str = ""

    def feedback_dir(self, out: Path) -> Path:
        """Where this submission's feedback pages are in ``out``."""
        return feedback_folder(out, self.student, self.assignment)

    def to_dict(self) -> dict:
        """The JSON object of the result's state file (keys in their written order)."""
        d = {
            "student": self.student,
            "assignment": self.assignment,
            "score": self.score,
            "max_score": self.max_score,
            "flags": list(self.flags),
            "grades": self.grades,
        }
        if self.notes is not None:
            d["notes"] = self.notes
        d["log"] = self.log
        if self.fingerprint is not None:
            d["fingerprint"] = self.fingerprint
        if self.sandbox:
            d["sandbox"] = self.sandbox
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        """The result a state file holds (see :meth:`to_dict`)."""
        return cls(
            student=d["student"],
            assignment=d["assignment"],
            score=d["score"],
            max_score=d["max_score"],
            flags=tuple(d["flags"]),
            grades=d["grades"],
            notes=d.get("notes"),
            log=d.get("log", ""),
            fingerprint=d.get("fingerprint"),
            sandbox=d.get("sandbox", ""),
        )

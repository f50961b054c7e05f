"""Validate's watch on emlib inside answers: the kernel's side.

Loaded (with :func:`runpy.run_path`, so nothing is added to the student's namespace or
``sys.path``) only into the kernels that nbgrader's Validate starts with the students'
configuration (``autograder/student_lab/nbgrader_config.py``, :mod:`autograder.validate`).
Standard library only: the kernel may be any Python that has numpy and emlib.

When graded, a test's calls of the student's functions run in a kernel whose emlib is a
stand-in in which only ``emlib.stopping`` works, and the judge zeroes every test during
whose calls an answer touched emlib (:mod:`autograder.judge`). In the student's own
JupyterLab emlib is the real library, so such an answer passes its visible tests. Here the
same rule is applied while a visible test cell runs, and the cell gets an error saying which
exercise would be zeroed and why:

* an emlib call counts when an answer function (one defined by an answer cell) is on the
  call stack between the test's code and emlib, as when the judge calls that function;
* it does not count when the test's own code calls emlib, also from a function the test
  defined and handed to the answer (in grading such a callback runs in the judge), nor when
  the answer calls a function the test passed to it, nor inside ``emlib.stopping``;
* cells other than test cells are not watched: a self-check cell may call emlib freely.

The server marks each test cell by appending one comment line, :data:`MARKER` and a JSON
object (its exercise, its grade_id, the notebook's answer function names); see
:func:`plan_of`.
"""

import inspect
import json
import sys
import textwrap
import types

#: Start of the comment line that marks a test cell to watch.
MARKER = "# emlib-validate: "
#: What answers may use (as in the grading kernel's stand-in emlib).
ALLOWED = ("emlib.stopping",)
#: Width of the message lines (nbgrader's Validate cuts lines longer than 87 characters).
WIDTH = 80


class EmlibInAnswer(Exception):
    """A visible test passed, but its answer called emlib: grading would give it 0."""


def plan_of(source):
    """The watch plan of a cell's source (a dict), or None for a cell not to watch."""
    last = source.rstrip("\n").rpartition("\n")[2]
    if not last.startswith(MARKER):
        return None
    try:
        plan = json.loads(last[len(MARKER) :])
    except ValueError:
        return None
    return plan if isinstance(plan, dict) else None


def _module(frame):
    return (frame.f_globals.get("__name__") or "") if frame is not None else ""


def _is_emlib(module):
    return module == "emlib" or module.startswith("emlib.")


def _is_allowed(module):
    return any(module == a or module.startswith(a + ".") for a in ALLOWED)


def codes_of(obj):
    """The code objects that run when ``obj`` (a function or a class) is called."""
    if isinstance(obj, type):
        found = []
        for value in vars(obj).values():
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            found.extend(codes_of(value) if callable(value) else ())
        return found
    try:
        obj = inspect.unwrap(obj)
    except ValueError:  # a cycle of __wrapped__
        return []
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    code = getattr(obj, "__code__", None)
    return [code] if isinstance(code, types.CodeType) else []


class Watch:
    """Trace function (:func:`sys.settrace`) that records emlib calls made by answers.

    Parameters
    ----------
    answers : dict
        ``{code object: name}`` of the answer functions.
    test_file : str or None
        The file name the test cell's code was compiled under; None to take it from the
        first top-level (``<module>``) frame run in ``namespace``.
    namespace : dict, optional
        The notebook's namespace (the kernel's ``user_ns``).
    """

    def __init__(self, answers, test_file=None, namespace=None):
        self.answers = answers
        self.test_file = test_file
        self.namespace = namespace
        self.depth = 0  # answer frames now running
        self.supplied = set()  # code objects of functions the test handed to an answer
        self.found = {}  # (answer the test called, answer that called emlib) -> emlib names

    def trace(self, frame, event, arg):
        if event != "call":
            return None
        code = frame.f_code
        if self.test_file is None:
            if code.co_name == "<module>" and frame.f_globals is self.namespace:
                self.test_file = code.co_filename
            return None
        if code in self.answers:
            if frame.f_back is not None and frame.f_back.f_code.co_filename == self.test_file:
                self._note_supplied(frame)
            self.depth += 1
            frame.f_trace_lines = False  # only the frame's return is wanted
            return self._local
        if self.depth and code.co_name != "<module>":  # importing a module is no call
            module = _module(frame)
            if _is_emlib(module) and not _is_emlib(_module(frame.f_back)):
                if not _is_allowed(module) and code not in self.supplied:
                    self._attribute(frame, f"{module}.{code.co_qualname}")
        return None

    def _local(self, frame, event, arg):
        if event == "return":
            self.depth -= 1
            return None
        return self._local

    def _note_supplied(self, frame):
        """Functions among the arguments a test passes to an answer: in grading they are
        the judge's own, so an emlib function passed as an argument is no use of emlib."""
        values = list(frame.f_locals.values())
        for value in list(values):
            if isinstance(value, list | tuple):
                values.extend(value)
            elif isinstance(value, dict):
                values.extend(value.values())
        for value in values:
            if callable(value):
                self.supplied.update(codes_of(value))

    def _attribute(self, frame, emlib_name):
        """Which answer (outermost, as the test called it, and innermost) reached emlib."""
        inner = outer = None
        f = frame.f_back
        while f is not None:
            if f.f_code.co_filename == self.test_file:
                break  # the test's own code, or a function the test defined
            name = self.answers.get(f.f_code)
            if name is not None:
                inner = inner or name
                outer = name
            f = f.f_back
        if outer is not None:
            self.found.setdefault((outer, inner), set()).add(emlib_name)


def message(plan, found):
    """The error's lines for a watched test cell: the exercise, who called what, the rule."""
    exercise = plan.get("exercise") or "this exercise"
    lines = ["this test would score 0 when your notebook is graded.", f"{exercise}:"]
    for (outer, inner), names in sorted(found.items()):
        who = outer if outer == inner else f"{outer} (through {inner})"
        text = f"- {who} called {', '.join(sorted(names)[:5])}, from emlib, the course's "
        lines.extend(textwrap.wrap(text + "reference library.", WIDTH, subsequent_indent="  "))
    lines.extend(
        textwrap.wrap(
            "Answers must be your own code: numpy, scipy and emlib.stopping are fine. "
            "Calling emlib in a cell of your own, to check your work, costs nothing.",
            WIDTH,
        )
    )
    return lines


def install(shell):
    """Watch every marked cell that ``shell`` (the kernel's InteractiveShell) runs."""
    state = {}

    def pre_run_cell(info):
        plan = plan_of(getattr(info, "raw_cell", "") or "")
        if plan is None:
            return
        answers = {}
        for name in plan.get("answers", []):
            for code in codes_of(shell.user_ns.get(name)):
                answers[code] = name
        watch = Watch(answers, namespace=shell.user_ns)
        state.update(plan=plan, watch=watch, previous=sys.gettrace())
        sys.settrace(watch.trace)

    def post_run_cell(result):
        watch = state.pop("watch", None)
        if watch is None:
            return
        sys.settrace(state.pop("previous", None))
        plan = state.pop("plan")
        if watch.found:
            lines = message(plan, watch.found)
            error = EmlibInAnswer(" ".join(lines))
            # An error output in the test cell: nbgrader's Validate reports the cell as
            # failed and shows these lines, in the terminal and in JupyterLab's dialog.
            shell._showtraceback(EmlibInAnswer, error, [f"EmlibInAnswer: {lines[0]}", *lines[1:]])

    shell.events.register("pre_run_cell", pre_run_cell)
    shell.events.register("post_run_cell", post_run_cell)

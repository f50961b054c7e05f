"""The students' Validate: warn before submission about what grading would zero, quietly.

nbgrader's Validate (the JupyterLab button, and ``nbgrader validate`` on the command line)
runs the notebook with nbgrader's ``Execute`` preprocessor. :func:`configure`, called by
``autograder/student_lab/nbgrader_config.py``, adds to it through its configurable
options only (no patched nbgrader):

* **emlib in answers.** When graded, a test whose calls of the student's functions reach
  emlib (other than ``emlib.stopping``) scores 0 (:mod:`autograder.judge`), but in the
  student's lab emlib is the real library and the visible tests pass. The kernels Validate
  starts load :mod:`autograder.validate_kernel`, which watches each visible test cell while
  it runs; the hooks below tell it which cells are tests, which exercise each belongs to and
  which functions are answers. A test whose answer called emlib gets an error output, so
  Validate lists it as failed with the exercise and the reason. Self-check cells are not
  watched.
* **No TCP warning.** ipykernel warns "Kernel is running over TCP without encryption" unless
  the kernel manager provisions CurveZMQ keys, which jupyter_client does with
  ``KernelManager.transport_encryption = "auto"`` for kernels whose kernelspec declares
  ``supported_encryption: ["curve"]`` (ipykernel's does).

The hooks keep their state in this module: nbgrader validates one notebook at a time in a
process (the command line, or the Jupyter server's validate handler, which runs
synchronously).
"""

from __future__ import annotations

import json
from pathlib import Path

from autograder import cells, judge

KERNEL_FILE = Path(__file__).with_name("validate_kernel.py")
#: Must equal validate_kernel.MARKER (the kernel's copy is read from the file at start-up).
MARKER = "# emlib-validate: "

_plans: dict[int, str] = {}  # id(test cell) -> the comment line that marks it
_sources: dict[int, str] = {}  # id(test cell) -> its own source, while it is being sent


def plans(nb) -> dict[int, str]:
    """``{id(cell): marker line}`` for each code test cell of ``nb``."""
    answers = sorted({name for names in judge.answer_functions(nb).values() for name in names})
    out = {}
    for cell, heading, answer in cells.with_exercise(nb):
        if cells.is_test(cell):
            plan = {
                "exercise": heading or answer or "",
                "test": cells.grade_id(cell),
                "answers": answers,
            }
            out[id(cell)] = MARKER + json.dumps(plan)
    return out


def on_notebook_start(notebook, **_):
    _plans.clear()
    _sources.clear()
    _plans.update(plans(notebook))


def on_cell_execute(cell, **_):
    """Just before a test cell is sent to the kernel: append its marker line (a comment,
    after the cell's last line, so the test's line numbers do not move)."""
    marker = _plans.get(id(cell))
    if marker is not None:
        _sources[id(cell)] = cell.source
        cell.source = cell.source.rstrip("\n") + "\n" + marker


def on_cell_complete(cell, **_):
    """Right after it was sent: the cell gets its own source back (Validate compares the
    test cells' checksums after running them)."""
    source = _sources.pop(id(cell), None)
    if source is not None:
        cell.source = source


def kernel_arguments() -> list[str]:
    """Kernel command-line options that load the watch into an IPython kernel."""
    line = f"__import__('runpy').run_path({str(KERNEL_FILE)!r})['install'](get_ipython())"
    return [f"--IPKernelApp.exec_lines={line}"]


def configure(c) -> None:
    """Set up Validate on the traitlets config ``c`` (an nbgrader_config.py's ``c``)."""
    import zmq
    from jupyter_client import KernelManager

    c.Execute.on_notebook_start = on_notebook_start
    c.Execute.on_cell_execute = on_cell_execute
    c.Execute.on_cell_complete = on_cell_complete
    c.Execute.extra_arguments = kernel_arguments()
    # pyzmq's wheels and conda-forge's have CurveZMQ; jupyter_client before the option (an
    # unpinned conda install) or a pyzmq without it leaves the warning, and Validate works.
    if zmq.has("curve") and hasattr(KernelManager, "transport_encryption"):
        c.KernelManager.transport_encryption = "auto"

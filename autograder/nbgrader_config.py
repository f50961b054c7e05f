"""nbgrader configuration for the course: the one place it is set.

Layout (nbgrader's documented course layout, with the project's folder names):

* ``solutions/<assignment>/`` is nbgrader's source directory (instructor notebooks,
  solutions and hidden tests);
* ``course/<assignment>/`` is its release directory (what students open);
* submissions, autograded notebooks and feedback go wherever the grading tool is told.

The grader (``python -m autograder``) loads it itself, through ``autograder.config()``. To use
it with nbgrader's own commands, put this folder on Jupyter's config path, from the
repository's root::

    export JUPYTER_CONFIG_PATH=$PWD/autograder
    nbgrader validate solutions/01_lower_bound/lower_bound.ipynb

nbgrader 0.9.6 reads ``nbgrader_config.py`` from the current directory and from every folder
of Jupyter's config path (the "config" list of ``jupyter --paths``: the folders of
``JUPYTER_CONFIG_PATH`` first, then the environment's, ``JUPYTER_CONFIG_DIR`` or
``~/.jupyter``, and the system's). It has no ``--config`` option: it says "Unrecognized
alias: 'config', it will have no effect" and then "No nbgrader_config.py file found".
Prefer ``JUPYTER_CONFIG_PATH`` to ``JUPYTER_CONFIG_DIR``, which also moves the user's own
Jupyter settings (and makes Jupyter write a ``migrated`` file into this folder).

``nbgrader validate`` still prints ipykernel's "Kernel is running over TCP without
encryption" warning: its kernels are nbgrader's, on the loopback interface of the machine the
student or author works on. The grader's kernels talk over ``ipc`` sockets in their own
folders (``autograder/sandbox.py``) and never print it.
"""

import os

c = get_config()  # noqa: F821 (injected by traitlets when the file is loaded)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

c.CourseDirectory.root = _REPO
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "course"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_REPO, "autograder", "gradebook.db")

# Stub left in the student version of every answer cell.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Released notebooks carry no outputs; the solutions keep theirs (nbval compares them).
c.ClearOutput.enabled = True

# A student's cell may run at most this long while grading.
c.Execute.timeout = 60
# Code that ignores SIGINT must not stop grading of the rest of the notebook.
c.Execute.raise_on_iopub_timeout = False
c.Exchange.root = os.path.join(_REPO, "autograder", ".exchange")

# --- Grading (autograder/grade.py; also used by `nbgrader autograde` with this file) ---------
# The project's additions live in the `autograder` package next to this file.
import sys  # noqa: E402

if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties,
    CheckCellMetadata,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)

from autograder.execute import GradingExecute  # noqa: E402
from autograder.feedback import HideHiddenTests  # noqa: E402

# nbgrader's autograde pipeline with Execute replaced by GradingExecute: sandboxed kernels
# (autograder/sandbox.py), output capped in characters, grading survives a dead kernel.
c.Autograde.autograde_preprocessors = [
    GradingExecute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
c.GradingExecute.max_output_chars = 100_000
# Per-kernel limits; the kernel's user, namespaces and hidden folders: autograder/sandbox.py.
c.SandboxKernelManager.memory_limit = 2 * 1024**3
c.SandboxKernelManager.cpu_limit = 900
c.SandboxKernelManager.process_limit = 512  # tasks (threads count) of the sandbox user
c.SandboxKernelManager.file_size_limit = 64 * 1024**2

# Feedback shows the student's code, visible tests and points; never hidden tests, not even in
# a traceback (nbgrader's default feedback shows both).
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]

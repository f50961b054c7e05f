"""nbgrader configuration for the course: the one place it is set.

Layout (nbgrader's documented course layout, with the project's folder names):

* ``solutions/<assignment>/`` is nbgrader's source directory (instructor notebooks,
  solutions and hidden tests);
* ``course/<assignment>/`` is its release directory (what students open);
* submissions, autograded notebooks and feedback go wherever the grading tool is told.

Use it with ``nbgrader ... --config autograder/nbgrader_config.py`` or through
``autograder.config()``, which loads this file.
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

"""nbgrader configuration for students: what Validate does in the students' lab.

``./start`` (and so ``make lab``, Binder and conda users) puts this folder on
``JUPYTER_CONFIG_PATH``; nbgrader reads ``nbgrader_config.py`` from every folder of that path,
both for the Validate button (its server extension, in the Jupyter server) and for
``nbgrader validate`` on the command line. See ``autograder/validate.py``: Validate warns
when a visible test's answer calls emlib, and its kernels run without ipykernel's
TCP-without-encryption warning.
"""

import os
import sys

c = get_config()  # noqa: F821 (injected by traitlets when the file is loaded)

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from autograder import validate  # noqa: E402

validate.configure(c)

"""The course's grading layer: a thin, sturdy wrapper around nbgrader."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG_FILE = REPO / "autograder" / "nbgrader_config.py"
SOLUTIONS = REPO / "solutions"
COURSE = REPO / "course"

# nbgrader runs `alembic` from PATH when it creates a gradebook; a process started as
# `.venv/bin/python -m ...` does not have the venv's bin/ on PATH, so add it.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")


def config(**overrides):
    """The course's nbgrader configuration (``nbgrader_config.py``), with overrides.

    ``overrides`` maps "Section.name" to a value, e.g. ``{"CourseDirectory.root": "/tmp/x"}``.
    """
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()
    extra = Config()
    for key, value in overrides.items():
        section, name = key.split(".")
        extra[section][name] = value
    cfg.merge(extra)
    return cfg

"""Writing the grader's output files: a crash leaves the old file or the new one, never half.

State files, grade CSVs, the report and the students' archives are all read back by a
later run (to skip what is graded, to merge hand grades), so each is written to a
temporary file in the same folder, flushed to disk and renamed over the target
(:func:`os.replace` is atomic on one file system).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (creating its folder) in one atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(f.name, path)

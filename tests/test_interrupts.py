"""A grading run stopped by SIGTERM or SIGINT (``python -m autograder grade``).

It must end its sandbox kernels, remove the scratch folder (``$TMPDIR/autograder-*``) and the
kernel folders (``/run/autograder-kernels/kernel-*`` or ``$TMPDIR/kernel-*``) it created, keep
the grades finished so far, and a rerun must finish the class without regrading them.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder import REPO
from autograder.grade import STATE, grade
from tests.processes import alive, cmdline, descendants, sandboxes

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "submissions"
TOY = FIXTURES / "course"
KERNEL_DIR = "/run/autograder-kernels/kernel-"


def _kernel_folders(pids: set[int], tmpdir: Path) -> set[str]:
    """Kernel folders named on the command lines of ``pids`` (isolated kernels: the box of
    isolate.sh) and those under ``tmpdir`` (kernels with resource limits only)."""
    boxes = {
        arg.rsplit("/", 1)[0]
        for pid in pids
        for arg in cmdline(pid)
        if arg.startswith(KERNEL_DIR) and arg.endswith("/isolate.sh")
    }
    return boxes | {str(p) for p in tmpdir.glob("kernel-*")}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_run_leaves_nothing_behind_and_a_rerun_finishes(tmp_path, signum):
    import shutil

    folder = tmp_path / "class"
    for student in ("correct", "slow_cells"):  # graded in this order by one worker
        shutil.copytree(FIXTURES / "class" / student, folder / student)
    out = tmp_path / "out"
    tmpdir = tmp_path / "tmp"  # the run's own TMPDIR: what it leaves there is its own
    tmpdir.mkdir()
    cmd = [sys.executable, "-m", "autograder", "grade", str(folder), "--out", str(out)]
    cmd += ["--course", str(TOY), "--jobs", "1", "--quiet", "--timeout", "5"]
    cmd += ["--notebook-timeout", "12"]  # as the rerun below: the same settings
    proc = subprocess.Popen(
        cmd, cwd=REPO, env={**os.environ, "TMPDIR": str(tmpdir)}, stderr=subprocess.PIPE
    )
    first = out / STATE / "correct__toy.json"
    deadline = time.monotonic() + 120
    kernels: set[int] = set()
    boxes: set[str] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        if first.is_file():  # the second student's slow cells are running now
            tree = descendants(proc.pid)
            kernels = {p for p in tree if "ipykernel_launcher" in " ".join(cmdline(p))}
            boxes = _kernel_folders(tree, tmpdir)
            if kernels and boxes:
                break
        time.sleep(0.2)
    assert kernels and boxes, "no kernel of the second student started"
    time.sleep(1)  # well inside its slow cells
    tree = descendants(proc.pid)
    proc.send_signal(signum)  # to the grader alone, as `kill` or a service manager does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err.decode()[-2000:]
    assert b"run the same command again" in err
    # The grader's own runs are quiet: nbgrader finds its configuration (autograder.config())
    # and the kernels talk over ipc sockets, so neither of nbgrader's warnings appears.
    assert b"No nbgrader_config.py" not in err and b"without encryption" not in err, err
    deadline = time.monotonic() + 10
    while alive(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(tree), "a worker or kernel outlived the grader"
    # The grader's own sandboxes only: the other test worker may be grading at the same time.
    assert not alive(sandboxes(tree)), "a sandbox (unshare) outlived the grader"
    assert not [b for b in boxes if os.path.exists(b)], "kernel folders left behind"
    assert not list(tmpdir.iterdir()), f"left in TMPDIR: {list(tmpdir.iterdir())}"
    done = {p.name: p.stat().st_mtime_ns for p in (out / STATE).glob("*.json")}
    assert list(done) == ["correct__toy.json"]  # finished before the signal, and kept

    grade(folder, out, course=TOY, jobs=1, timeout=5, notebook_timeout=12, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in (out / STATE).glob("*.json")}
    assert after["correct__toy.json"] == done["correct__toy.json"]  # not graded again
    with open(out / "grades.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert (rows["correct"]["score"], rows["slow_cells"]["score"]) == ("5", "5"), rows

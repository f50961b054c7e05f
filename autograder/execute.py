"""nbgrader's Execute preprocessor, with what grading a class needs on top.

* Kernels start through :class:`autograder.sandbox.SandboxKernelManager`.
* Output is capped in characters per cell while it arrives (nbgrader's ``LimitOutput`` counts
  lines, and only after the whole output sits in memory).
* A dead kernel does not abort the notebook: the cell that killed it gets a
  ``DeadKernelError`` output and every later code cell a "not run" error, so their tests
  score nothing (a test cell without an error output would be scored as passed).
* A cell that hit the time limit and then ignored the interrupt (code catching or ignoring
  SIGINT) leaves the kernel busy for good: the kernel is stopped and later cells are marked as
  not run, instead of each waiting for the full time limit in turn.
"""

from __future__ import annotations

import asyncio

from jupyter_core.utils import run_sync
from nbclient.exceptions import DeadKernelError
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer

TIMEOUT = "CellTimeoutError"
DEAD = "DeadKernelError"
NOT_RUN = "CellNotRunError"
STUCK = "KernelStuckError"


def _error(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class GradingExecute(Execute):
    """Execute, sandboxed, with capped output and a notebook that survives its kernel."""

    sandbox = Bool(True, help="start kernels with SandboxKernelManager").tag(config=True)
    max_output_chars = Integer(
        100_000, help="characters of output kept per cell (0: unlimited)"
    ).tag(config=True)
    probe_timeout = Integer(
        5, help="seconds a kernel may take to answer after an interrupted time-out"
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)  # nbgrader's Execute sets AsyncKernelManager
        if self.sandbox:
            from autograder.sandbox import SandboxKernelManager

            self.kernel_manager_class = SandboxKernelManager

    def preprocess(self, nb, resources=None, km=None):
        self._broken = None  # why the kernel can no longer run cells, once it cannot
        self._chars = {}
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._broken:
            cell.outputs = [_error(NOT_RUN, f"not run: {self._broken}")]
            return cell, resources
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._broken = "the kernel died in an earlier cell"
            self.fatal_cell = index
            cell.outputs = list(cell.get("outputs", []))
            cell.outputs.append(_error(DEAD, "the kernel died while running this cell"))
            return cell, resources
        if any(o.get("ename") == TIMEOUT for o in cell.outputs) and not self._responds():
            self._broken = "an earlier cell kept running after its time limit"
            cell.outputs.append(_error(STUCK, "the cell ignored the interrupt; kernel stopped"))
            run_sync(self.km.shutdown_kernel)(now=True)
        return cell, resources

    def _responds(self) -> bool:
        """Whether the kernel answers a trivial request after an interrupt."""

        async def probe():
            msg_id = self.kc.execute("pass", silent=True, store_history=False)
            deadline = asyncio.get_running_loop().time() + self.probe_timeout
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    reply = await self.kc.shell_channel.get_msg(timeout=left)
                except Exception:
                    return False
                if reply["parent_header"].get("msg_id") == msg_id:
                    return True
            return False

        return run_sync(probe)()

    def output(self, outs, msg, display_id, cell_index):
        cap = self.max_output_chars
        if not cap:
            return super().output(outs, msg, display_id, cell_index)
        used = self._chars.get(cell_index, 0)
        content = msg.get("content", {})
        size = _size(content)
        if used >= cap:
            return None
        if used + size > cap:
            _truncate(content, cap - used)
            self._chars[cell_index] = cap
            out = super().output(outs, msg, display_id, cell_index)
            outs.append(
                new_output(
                    "stream",
                    name="stderr",
                    text=f"\n[output truncated: more than {cap} characters]\n",
                )
            )
            return out
        self._chars[cell_index] = used + size
        return super().output(outs, msg, display_id, cell_index)


def _size(content) -> int:
    size = len(content.get("text", "") or "")
    for value in (content.get("data") or {}).values():
        size += len(value) if isinstance(value, str) else 0
    for line in content.get("traceback") or []:
        size += len(line)
    return size


def _truncate(content, room: int) -> None:
    if isinstance(content.get("text"), str):
        content["text"] = content["text"][:room]
    data = content.get("data") or {}
    for key, value in list(data.items()):
        if isinstance(value, str):
            data[key] = value[:room]
    if content.get("traceback"):
        content["traceback"] = [line[:room] for line in content["traceback"][:50]]


class GradingSession(GradingExecute):
    """Run a student's notebook without its test cells, then keep the kernel for the judge.

    :meth:`run` executes every code cell but the test cells (the kernel never sees a test)
    within ``notebook_timeout`` seconds, and then calls ``then(self)`` while the kernel is
    still alive: the judge calls the student's functions (:class:`autograder.judge.Caller`),
    within another ``notebook_timeout`` seconds for all its calls together.
    """

    notebook_timeout = Integer(
        600, help="seconds for all the notebook's cells; the judge's calls get as long again"
    ).tag(config=True)

    def run(self, nb, resources, then, *, is_test, skip=()):
        """Execute ``nb`` in place (test cells and cells numbered in ``skip`` left out), then
        return ``then(self)``."""
        from nbclient import NotebookClient

        self._broken = None
        self._chars = {}
        self.timed_out = False
        self.kernel_died = False
        self.fatal_cell = None  # index of the cell the kernel died in, if it did
        NotebookClient.__init__(self, nb, None)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        loop_time = asyncio.new_event_loop().time  # a monotonic clock
        self._deadline = loop_time() + self.notebook_timeout
        self._clock = loop_time
        cell_timeout = self.timeout
        with self.setup_kernel():
            self.wait_for_reply(self.kc.kernel_info())
            for index, cell in enumerate(self.nb.cells):
                if cell.cell_type != "code" or is_test(cell):
                    continue
                if index in skip:
                    cell.outputs = [_error(NOT_RUN, "not run: the kernel died in this cell")]
                    continue
                left = self.time_left()
                if left <= 0:
                    self.timed_out = True
                    cell.outputs = [_error(NOT_RUN, "not run: the notebook's time limit is up")]
                    continue
                self.timeout = max(1, int(min(cell_timeout or left, left) + 0.999))
                self.preprocess_cell(cell, resources, index)
            self.timeout = cell_timeout
            # The tests get a budget of their own: a slow self-check cannot starve them.
            self._deadline = self._clock() + self.notebook_timeout
            return then(self)

    def time_left(self) -> float:
        return self._deadline - self._clock()

    @property
    def broken(self) -> str | None:
        """Why the kernel can no longer run anything, once it cannot."""
        return self._broken

    def mark_broken(self, reason: str, *, dead: bool = False) -> None:
        """Record that the kernel can run nothing more (``dead``: it died by itself)."""
        self._broken = self._broken or reason
        self.kernel_died = self.kernel_died or dead

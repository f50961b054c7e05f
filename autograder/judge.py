"""The judge: decides every test of a notebook in a process that never runs student code.

nbgrader runs test cells, hidden ones included, in the student's own kernel, after the
student's code has had every chance to rewrite that kernel (display hooks, AST
transformers, numpy, the reference library, the history). No scan of the source can close
that. Here the roles are split:

* The **kernel** only produces. It runs the student's notebook without its test cells
  (:class:`autograder.execute.GradingSession`), in the sandbox, with a stand-in for emlib in
  which only ``emlib.stopping`` is real. Then, for every call a test makes, it calls the
  student's function on arguments the judge chose and hands back plain data
  (:mod:`autograder.wire`; never pickle).
* The **judge** (this module, in the grading worker) runs each test cell of the
  *instructor's* notebook, visible and hidden parts, in a namespace of its own: the
  chapter's import statements, with every answer function replaced by a
  :class:`RemoteFunction` that asks the kernel. The real emlib computes the expected values
  here, the test's assertions decide pass or fail here, and each test cell draws its
  random data from a seed the grader derives from the submission (:func:`cell_seed`).

What the kernel prints or displays never reaches a grade or the feedback of a test: the
feedback of a test is the judge's own message (:class:`Outcome`).
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import hmac
import json
import time
import warnings
from dataclasses import dataclass, field

from jupyter_core.utils import run_sync

from autograder import cells, wire

#: What the kernel runs to serve the judge's calls (autograder/kernel_lib/_emgrader.py).
SERVE = "__import__('_emgrader').serve(globals())"
#: Characters of a test's failure message kept for the feedback.
MESSAGE_CHARS = 1500
#: Seconds the kernel may take to answer after an interrupted call.
INTERRUPT_GRACE = 5.0


class KernelGone(RuntimeError):
    """The kernel cannot answer any more (it died, or it was stopped)."""


class CallTimeout(TimeoutError):
    """A call of the student's function did not return in time."""


class StudentError(RuntimeError):
    """The student's function raised an error (in the kernel)."""

    def __init__(self, function: str, ename: str, evalue: str):
        super().__init__(f"{function} raised {ename}: {evalue}" if evalue else ename)
        self.ename = ename


@dataclass
class Outcome:
    """The judge's verdict on one test cell."""

    grade_id: str
    passed: bool
    message: str = ""
    emlib: list[str] = field(default_factory=list)
    seed: int | None = None


# --- The judge's namespace -------------------------------------------------------------------


def answer_functions(solution) -> dict[str, list[str]]:
    """``{answer grade_id: [names of the functions its cell defines]}``."""
    out = {}
    for cell in solution.cells:
        if cells.is_answer(cell) and cell.cell_type == "code":
            tree = _parse(cell.source)
            out[cells.grade_id(cell)] = [
                node.name
                for node in (tree.body if tree else [])
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            ]
    return out


def namespace(solution) -> dict:
    """The namespace test cells run in: every import statement of the notebook's code cells.

    Test cells may use the chapter's imports, the answer functions and builtins, nothing
    else (``tests/test_notebooks.py`` checks every chapter for this).
    """
    ns = {"__name__": "__judge__", "__builtins__": builtins}
    for cell in solution.cells:
        if cell.cell_type != "code" or cells.is_test(cell):
            continue
        tree = _parse(cell.source)
        imports = [
            n for n in (tree.body if tree else []) if isinstance(n, ast.Import | ast.ImportFrom)
        ]
        if imports:
            exec(compile(ast.Module(imports, []), "<imports>", "exec"), ns)  # instructor code
    return ns


def _parse(source: str):
    try:
        return ast.parse(source)
    except SyntaxError:  # a cell with IPython magics: it has nothing the judge needs
        return None


def test_source(cell) -> str:
    """A test cell's code, hidden part included, markers removed."""
    return "\n".join(
        line
        for line in cell.source.splitlines()
        if "### BEGIN HIDDEN" not in line and "### END HIDDEN" not in line
    )


def cell_seed(key: bytes, *parts: str) -> int:
    """A test cell's seed: a keyed hash of the submission, secret until it is graded."""
    digest = hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "little")


# --- Calling the student's functions ---------------------------------------------------------


class RemoteFunction:
    """Stands, in the judge's namespace, for a function defined in the student's kernel."""

    def __init__(self, caller: Caller, name: str):
        self._caller = caller
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        return self._caller.call(self.__name__, args, kwargs)

    def __assert_independent__(self):
        """emlib.testing.assert_independent: did any call of the current test touch emlib?"""
        if self._caller.touched:
            raise AssertionError(
                f"{self.__name__} must be your own implementation, but it called "
                f"{', '.join(sorted(self._caller.touched))}, from emlib, the course's "
                "reference library (only emlib.stopping may be used in answers)"
            )

    def __repr__(self):
        return f"<your function {self.__name__}>"


class Caller:
    """Calls functions in a running :class:`~autograder.execute.GradingSession`'s kernel.

    The first call starts ``_emgrader.serve(globals())`` in the kernel, which then serves
    every call over the kernel's input channel until :meth:`stop`: the judge answers the
    kernel's input requests with requests, and the kernel's prompts carry the results. The
    student's code calling back one of the judge's functions that were passed as arguments
    (an EM map, say) is a prompt too, answered with that function's result.
    """

    def __init__(self, session, call_timeout: float):
        self.session = session
        self.call_timeout = call_timeout
        self.touched: set[str] = set()  # emlib names touched in the current test cell
        self.calls = 0
        self.timed_out = False
        self._serving: str | None = None  # msg_id of the kernel's serve loop, while it runs

    def call(self, name: str, args, kwargs):
        reason = self.session.broken
        if reason:
            raise KernelGone(f"{name} could not be called: {reason}")
        left = self.session.time_left()
        if left <= 0:
            self.timed_out = True
            raise CallTimeout("the notebook used up its time limit before this call")
        handles: dict[int, object] = {}

        def register(function):
            handles[len(handles)] = function
            return len(handles) - 1

        try:
            request = json.dumps(
                {
                    "name": name,
                    "args": wire.dumps(list(args), handle=register),
                    "kwargs": wire.dumps(dict(kwargs), handle=register),
                }
            )
        except wire.WireError as error:  # the instructor's test sent something odd
            raise RuntimeError(f"the grader cannot send these arguments: {error}") from None
        self.calls += 1
        envelope = run_sync(self._exchange)(request, handles, min(self.call_timeout, left), name)
        touched = envelope.get("emlib") or []
        if isinstance(touched, list):
            self.touched.update(str(t)[:100] for t in touched[:20])
        if "error" in envelope:
            ename, evalue = _pair(envelope["error"])
            raise StudentError(name, ename, evalue)
        if "ok" not in envelope:
            raise StudentError(name, "NoResult", "the kernel sent no result")
        try:
            return wire.loads(envelope["ok"])
        except wire.WireError as error:
            raise StudentError(name, "UnreadableResult", str(error)) from None

    def stop(self) -> None:
        """End the kernel's serve loop, so that the kernel takes execute requests again."""
        if self._serving is not None and not self.session.broken:
            run_sync(self._stop)()
        self._serving = None

    def _serve(self) -> str:
        self._serving = self.session.kc.execute(
            SERVE, silent=True, store_history=False, allow_stdin=True, stop_on_error=False
        )
        return self._serving

    def _channels(self):
        import zmq
        import zmq.asyncio

        kc = self.session.kc
        channels = {
            kc.iopub_channel.socket: kc.iopub_channel,
            kc.shell_channel.socket: kc.shell_channel,
            kc.stdin_channel.socket: kc.stdin_channel,
        }
        poller = zmq.asyncio.Poller()
        for socket in channels:
            poller.register(socket, zmq.POLLIN)
        return channels, poller

    async def _exchange(self, request: str, handles, timeout, name):
        kc = self.session.kc
        channels, poller = self._channels()
        pending: str | None = None  # sent when the serve loop says it is ready
        if self._serving is None:
            self._serve()
            pending = request
        else:
            kc.input(request)
        restarted = interrupted = False
        error = None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if interrupted:
                    self.session.mark_broken("a call ignored the interrupt after its time limit")
                    await self.session.km.shutdown_kernel(now=True)
                    self.timed_out = True
                    raise CallTimeout(f"{name} did not return within its time limit")
                await self.session.km.interrupt_kernel()
                interrupted = True
                deadline = time.monotonic() + INTERRUPT_GRACE
                continue
            received = await self._receive(channels, poller, min(left, 1.0))
            if received is None:
                if not await self.session.km.is_alive():
                    self.session.mark_broken("the kernel died during a call", dead=True)
                    raise KernelGone(f"the kernel died while {name} was running")
                continue
            for socket, kind, content in received:
                if kind == "input_request":
                    prompt = _prompt(content.get("prompt", ""))
                    if "envelope" in prompt:
                        if interrupted:
                            self.timed_out = True
                            raise CallTimeout(f"{name} did not return within its time limit")
                        envelope = prompt["envelope"]
                        return envelope if isinstance(envelope, dict) else {}
                    if "ready" in prompt and pending is not None:
                        kc.input(pending)
                        pending = None
                    else:  # a callback, or the student's own input(): the judge answers
                        kc.input(self._answer(prompt, handles))
                elif kind == "error":
                    error = [content.get("ename", "Error"), content.get("evalue", "")]
                elif socket is kc.shell_channel.socket and kind == "execute_reply":
                    # The serve loop ended before answering (an interrupt that landed while it
                    # waited, or student code that broke it): start it again, once.
                    self._serving = None
                    if interrupted:
                        self.timed_out = True
                        raise CallTimeout(f"{name} did not return within its time limit")
                    if restarted or pending is not None:
                        return {"error": error or ["NoResult", "the kernel stopped answering"]}
                    restarted = True
                    self._serve()
                    pending = request
                    break  # the rest of this batch belongs to the loop that ended

    async def _stop(self):
        kc = self.session.kc
        channels, poller = self._channels()
        kc.input(json.dumps({"stop": True}))
        deadline = time.monotonic() + INTERRUPT_GRACE
        while time.monotonic() < deadline:
            for socket, kind, _ in await self._receive(channels, poller, 0.2) or ():
                if kind == "input_request":
                    kc.input(json.dumps({"stop": True}))
                elif socket is kc.shell_channel.socket and kind == "execute_reply":
                    return
        self.session.mark_broken("the kernel did not leave the grader's call loop")

    async def _receive(self, channels, poller, wait: float):
        """The serve loop's messages that arrive within ``wait`` seconds, as
        ``(socket, msg_type, content)``; None when nothing at all arrived."""
        events = dict(await poller.poll(timeout=wait * 1000))
        if not events:
            return None
        out = []
        for socket in events:
            msg = await channels[socket].get_msg(timeout=0)
            if msg.get("parent_header", {}).get("msg_id") == self._serving:
                out.append((socket, msg.get("msg_type"), msg.get("content", {})))
        return out

    @staticmethod
    def _answer(request: dict, handles) -> str:
        """Run one of the judge's own functions for the kernel; return its reply."""
        try:
            function = handles[int(request["handle"])]
            args = wire.loads(request["args"])
            kwargs = wire.loads(request["kwargs"])
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise wire.WireError("malformed call")
            if not all(isinstance(k, str) for k in kwargs):
                raise wire.WireError("keyword names must be strings")
        except (ValueError, KeyError, TypeError, IndexError) as error:
            return json.dumps({"error": f"the grader could not read this call: {error}"})
        try:
            return json.dumps({"ok": wire.dumps(function(*args, **kwargs))})
        except Exception as error:  # the test's function rejected the student's argument
            return json.dumps({"error": f"{type(error).__name__}: {error}"[:MESSAGE_CHARS]})


def _prompt(text) -> dict:
    """A prompt of the kernel's serve loop, parsed; ``{}`` when it is not one."""
    try:
        parsed = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _pair(value) -> tuple[str, str]:
    if isinstance(value, list) and len(value) == 2:
        return str(value[0])[:100], str(value[1])[:MESSAGE_CHARS]
    return "Error", ""


# --- Running the tests -----------------------------------------------------------------------


def judge(solution, caller: Caller, *, base: dict, seed_of, hidden: set[str]) -> list[Outcome]:
    """Run every test cell of ``solution`` against the kernel behind ``caller``.

    Parameters
    ----------
    solution : NotebookNode
        The instructor's notebook (the source of every test, hidden parts included).
    caller : Caller
        The student's kernel.
    base : dict
        :func:`namespace` of ``solution`` (reused across students; copied here).
    seed_of : callable
        ``seed_of(grade_id) -> int``: the seed of that test cell's random data.
    hidden : set of str
        Lines of the hidden tests (:func:`autograder.feedback.hidden_lines`); a message
        quoting one is replaced by a neutral one.
    """
    import emlib.testing

    ns = dict(base)
    for names in answer_functions(solution).values():
        for name in names:
            ns[name] = RemoteFunction(caller, name)
    outcomes = []
    try:
        for cell in solution.cells:
            if not cells.is_test(cell) or cell.cell_type != "code":
                continue
            grade_id = cells.grade_id(cell)
            seed = seed_of(grade_id)
            caller.touched = set()
            code = compile(test_source(cell), f"<test {grade_id}>", "exec")
            try:
                with emlib.testing.seeded(seed), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a warning is never a failure
                    exec(code, ns)  # the instructor's test, with the student's functions remote
            except Exception as error:
                outcome = Outcome(grade_id, False, _message(error, hidden), seed=seed)
            else:
                outcome = Outcome(grade_id, True, seed=seed)
            outcome.emlib = sorted(caller.touched)
            if outcome.emlib and outcome.passed:
                outcome.passed = False
                outcome.message = (
                    f"your answer called {', '.join(outcome.emlib)}, from emlib, the course's "
                    "reference library; answers must be your own code (emlib.stopping is allowed)"
                )
            outcomes.append(outcome)
    finally:
        caller.stop()  # the kernel takes execute requests again
    return outcomes


def _message(error: BaseException, hidden: set[str]) -> str:
    from autograder.feedback import NEUTRAL, leaks

    if isinstance(error, StudentError | KernelGone | CallTimeout):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}".rstrip(": ")
    text = text.strip()[:MESSAGE_CHARS]
    return NEUTRAL if leaks(text, hidden) else text

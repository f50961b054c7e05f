"""The grading kernel's side of the judge: call the student's functions, hand back plain data.

The judge runs ``_emgrader.serve(globals())`` once, and the kernel then serves call after
call over its input channel (``builtins.input``) without another execute request: each
prompt the kernel sends carries the result of the previous call, and each reply the judge
sends is the next request, ``{"name": ..., "args": ..., "kwargs": ...}``, or ``{"stop": true}``.
An execute request per call would cost IPython's whole cell machinery (parsing the request
as code, history, hooks) every time; a test makes thousands of calls.

Arguments and results go through :mod:`_emgrader_wire` (a copy of ``autograder/wire.py``).
Callables among the arguments are the judge's own functions: calling one sends a prompt
``{"handle": ...}`` and waits for its answer. Every result says which names of emlib the
call touched (the stand-in records them).

Nothing here decides a grade: a kernel can say anything, and the judge checks what it says.
"""

import builtins
import json

import _emgrader_wire as wire

#: Characters of an error message that are sent back.
MESSAGE_CHARS = 2000


class JudgeError(RuntimeError):
    """A function of the judge, called back by the student's code, raised an error."""


def _callback(handle):
    def judge_function(*args, **kwargs):
        request = json.dumps(
            {"handle": handle, "args": wire.dumps(list(args)), "kwargs": wire.dumps(kwargs)}
        )
        reply = json.loads(builtins.input(request))
        if "error" in reply:
            raise JudgeError(reply["error"])
        return wire.loads(reply["ok"])

    judge_function.__name__ = f"grader_function_{handle}"
    return judge_function


def _touched():
    import emlib  # the stand-in

    return getattr(emlib, "TOUCHED", [])


def call(namespace, request):
    """Run one request; return its envelope: ``{"ok": ...}`` or ``{"error": [name, text]}``."""
    touched = _touched()
    del touched[:]
    name = request.get("name")
    try:
        function = namespace[name]
    except (KeyError, TypeError):
        envelope = {"error": ["NameError", f"name {name!r} is not defined"]}
    else:
        try:
            args = wire.loads(request["args"], callback=_callback)
            kwargs = wire.loads(request["kwargs"], callback=_callback)
            value = function(*args, **kwargs)
            envelope = {"ok": wire.dumps(value)}
        except BaseException as error:  # every failure goes back to the judge, ^C included
            envelope = {"error": [type(error).__name__, str(error)[:MESSAGE_CHARS]]}
    envelope["emlib"] = sorted(set(map(str, touched)))[:20]
    return envelope


def serve(namespace):
    """Answer the judge's requests until it says stop."""
    prompt = {"ready": True}
    while True:
        request = json.loads(builtins.input(json.dumps(prompt)))
        if not isinstance(request, dict) or request.get("stop"):
            return
        prompt = {"envelope": call(namespace, request)}

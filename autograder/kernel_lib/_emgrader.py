"""The grading kernel's side of the judge: call one function, hand back plain data.

The judge sends ``_emgrader.call(globals(), NAME, ARGS)`` as code to run. ``call`` decodes
the arguments (:mod:`_emgrader_wire`, a copy of ``autograder/wire.py``), calls the
function, and publishes one display message of type :data:`MIME` holding the result or
the error, and which names of emlib the call touched. Callables among the arguments are
the judge's own functions: calling one asks the judge over the kernel's input channel and
waits for its answer.

Nothing here decides a grade: a kernel can say anything, and the judge checks what it says.
"""

import builtins
import json

import _emgrader_wire as wire

MIME = "application/x-emcourse-result+json"
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


def call(namespace, name, request):
    from IPython.display import publish_display_data

    touched = _touched()
    del touched[:]
    try:
        function = namespace[name]
    except KeyError:
        envelope = {"error": ["NameError", f"name {name!r} is not defined"]}
    else:
        try:
            message = json.loads(request)
            args = wire.loads(message["args"], callback=_callback)
            kwargs = wire.loads(message["kwargs"], callback=_callback)
            value = function(*args, **kwargs)
            envelope = {"ok": wire.dumps(value)}
        except BaseException as error:  # every failure goes back to the judge
            envelope = {"error": [type(error).__name__, str(error)[:MESSAGE_CHARS]]}
    envelope["emlib"] = sorted(set(map(str, touched)))[:20]
    publish_display_data({MIME: json.dumps(envelope)})

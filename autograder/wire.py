"""Plain data between a grading kernel and the judge: JSON with tagged arrays, never pickle.

The judge sends a student's function its arguments and reads back what it returned; both
directions go through :func:`dumps` and :func:`loads`. Only data crosses: ``None``, bools,
ints, floats (``nan`` and ``inf`` included), strings, lists, tuples, dicts (any of these
as keys), numpy arrays of numeric or boolean dtype, and numpy scalars (sent as Python
numbers). A callable can be sent as a *handle*, a number that the other side turns into
something it can call back; what a handle means is up to the caller of :func:`loads`.

Anything else (an object of the student's own class, a generator, a module...) raises
:class:`WireError` with a message a student can act on. :func:`loads` checks sizes, depth
and dtypes, so a hostile kernel can send nothing but data the judge has room for.

This module needs only the standard library and numpy: the grader copies it into every
grading kernel.
"""

from __future__ import annotations

import base64
import binascii
import json
import math

import numpy as np

#: Largest message accepted, in characters of JSON.
MAX_CHARS = 64 * 1024**2
#: Deepest nesting of lists, tuples and dicts.
MAX_DEPTH = 32
#: dtypes an array may have (kind letters: bool, signed and unsigned ints, floats, complex).
ARRAY_KINDS = "biufc"


class WireError(ValueError):
    """A value that cannot be sent, or a message that is not valid plain data."""


def dumps(value, *, handle=None) -> str:
    """Encode ``value`` as a JSON string.

    Parameters
    ----------
    value
        The data to send (see the module docstring for what is allowed).
    handle : callable, optional
        ``handle(f) -> int`` registers a callable and returns its handle; without it a
        callable raises :class:`WireError`.
    """
    text = json.dumps(_encode(value, handle, 0), allow_nan=False, separators=(",", ":"))
    if len(text) > MAX_CHARS:
        raise WireError(f"the value is too large to send ({len(text):,} characters of JSON)")
    return text


def loads(text: str, *, callback=None):
    """Decode a string made by :func:`dumps`.

    Parameters
    ----------
    text : str
        The message.
    callback : callable, optional
        ``callback(handle) -> callable``: what a handle turns into; without it a handle
        raises :class:`WireError`.
    """
    if not isinstance(text, str):
        raise WireError(f"expected a JSON string, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise WireError(f"the message is too large ({len(text):,} characters)")
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise WireError(f"the message is not valid JSON ({error})") from None
    return _decode(raw, callback, 0)


def describe(value) -> str:
    """A short description of ``value``'s type, for messages."""
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _encode(value, handle, depth):
    if depth > MAX_DEPTH:
        raise WireError(f"the value is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else {"$int": str(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, np.generic):
        if value.dtype.kind not in ARRAY_KINDS:
            raise WireError(f"a numpy scalar of dtype {value.dtype} cannot be sent")
        if value.dtype.kind == "c":
            return _encode(np.asarray(value), handle, depth)
        return _encode(value.item(), handle, depth)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in ARRAY_KINDS:
            raise WireError(
                f"an array of dtype {value.dtype} cannot be sent; return numbers "
                "(e.g. np.asarray(..., dtype=float))"
            )
        data = np.ascontiguousarray(value)
        return {
            "$array": base64.b64encode(data.tobytes()).decode("ascii"),
            "dtype": data.dtype.str,
            "shape": list(data.shape),
        }
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, handle, depth + 1) for v in value]}
    if isinstance(value, list):
        return [_encode(v, handle, depth + 1) for v in value]
    if isinstance(value, dict):  # dict subclasses too (e.g. scipy's OptimizeResult)
        return {
            "$dict": [
                [_encode(k, handle, depth + 1), _encode(v, handle, depth + 1)]
                for k, v in value.items()
            ]
        }
    if callable(value) and handle is not None:
        return {"$handle": int(handle(value))}
    raise WireError(
        f"a value of type {describe(value)} cannot be sent to the grader; use numbers, "
        "strings, numpy arrays, and lists, tuples or dicts of them"
    )


_TAGS = {"$int", "$float", "$array", "$tuple", "$dict", "$handle"}


def _decode(raw, callback, depth):
    if depth > MAX_DEPTH:
        raise WireError(f"the message is nested more than {MAX_DEPTH} levels deep")
    if raw is None or isinstance(raw, bool | int | float | str):
        return raw
    if isinstance(raw, list):
        return [_decode(v, callback, depth + 1) for v in raw]
    if not isinstance(raw, dict) or len(raw) == 0 or not (set(raw) & _TAGS):
        raise WireError("the message holds an object that is not plain data")
    if "$int" in raw:
        return int(_text(raw["$int"], 5000))
    if "$float" in raw:
        text = _text(raw["$float"], 10)
        if text not in ("nan", "inf", "-inf"):
            raise WireError(f"unknown special float {text!r}")
        return float(text)
    if "$tuple" in raw:
        return tuple(_decode(v, callback, depth + 1) for v in _list(raw["$tuple"]))
    if "$dict" in raw:
        out = {}
        for pair in _list(raw["$dict"]):
            if not isinstance(pair, list) or len(pair) != 2:
                raise WireError("a dict entry is not a key-value pair")
            key = _decode(pair[0], callback, depth + 1)
            try:
                hash(key)
            except TypeError:
                raise WireError("a dict key is not hashable") from None
            out[key] = _decode(pair[1], callback, depth + 1)
        return out
    if "$array" in raw:
        return _array(raw)
    if "$handle" in raw:
        if callback is None or not isinstance(raw["$handle"], int):
            raise WireError("the message holds a callable where only data is accepted")
        return callback(raw["$handle"])
    raise WireError("the message holds an object that is not plain data")


def _text(value, limit):
    if not isinstance(value, str) or len(value) > limit:
        raise WireError("a tagged value is malformed")
    return value


def _list(value):
    if not isinstance(value, list):
        raise WireError("a tagged value is malformed")
    return value


def _array(raw) -> np.ndarray:
    try:
        dtype = np.dtype(_text(raw.get("dtype"), 8))
    except TypeError:
        raise WireError(f"unknown dtype {raw.get('dtype')!r}") from None
    if dtype.kind not in ARRAY_KINDS or dtype.hasobject:
        raise WireError(f"arrays of dtype {dtype} are not accepted")
    shape = raw.get("shape")
    if not isinstance(shape, list) or len(shape) > 32:
        raise WireError("an array's shape is malformed")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise WireError("an array's shape is malformed")
    try:
        data = base64.b64decode(_text(raw["$array"], MAX_CHARS), validate=True)
    except binascii.Error:
        raise WireError("an array's data is not base64") from None
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise WireError("an array's data does not match its shape and dtype")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()

"""The stand-in for emlib inside a grading kernel: only ``emlib.stopping`` is real.

While a notebook is graded the real library is not there (the grader computes every
reference value in its own process), so an answer cannot lean on it, however it imports
it. Any other name of emlib can still be imported, so that a chapter's narrative cells
load, but calling it raises :class:`EmlibUnavailable`; each such call is recorded in
:data:`TOUCHED` for the grader's report.
"""

import importlib.abc
import importlib.machinery
import sys
import types

#: Names of emlib called since the grader last cleared this list.
TOUCHED = []
#: What answers may use; these modules are the real ones, copied beside this file.
ALLOWED = ("emlib.stopping",)


class EmlibUnavailable(RuntimeError):
    """emlib was called while the notebook was being graded."""


class _Missing:
    """Any name of emlib but the allowed ones: importable, attribute-able, not callable."""

    def __init__(self, path):
        self._path = path

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Missing(f"{self._path}.{name}")

    def __call__(self, *args, **kwargs):
        TOUCHED.append(self._path)
        raise EmlibUnavailable(
            f"{self._path} is not available while your notebook is graded: the grader "
            "computes every reference value itself, and answers must be your own code "
            "(numpy, scipy and emlib.stopping are fine). Calls to emlib in your own "
            "self-check cells work in JupyterLab and cost nothing."
        )

    def __repr__(self):
        return f"<{self._path}: not available while grading>"


class _Module(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Missing(f"{self.__name__}.{name}")


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return _Module(spec.name)

    def exec_module(self, module):
        module.__path__ = []


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("emlib.") and fullname not in ALLOWED:
            return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=True)
        return None


sys.meta_path.insert(0, _Finder())


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    if f"emlib.{name}" in ALLOWED:
        return importlib.import_module(f"emlib.{name}")
    return _Missing(f"emlib.{name}")

"""Feedback without hidden tests: not in the code, not in tracebacks, not in printed output.

nbgrader's ``generate_feedback`` renders the autograded notebook, whose test cells hold the
hidden tests (restored from the gradebook); ``ClearHiddenTests`` removes them from the code
only, while a failing hidden test's traceback quotes its lines. :class:`HideHiddenTests`
removes them from both.
"""

from __future__ import annotations

import re

from nbformat.v4 import new_output
from nbgrader.preprocessors import ClearHiddenTests

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NEUTRAL = "A hidden test failed."


def hidden_lines(
    nb, begin="### BEGIN HIDDEN TESTS", end="### END HIDDEN TESTS", shortest=8
) -> set[str]:
    """Lines (stripped) found only between hidden-test markers, of ``shortest`` characters
    or more: a ``)`` or an import also written in a visible cell gives nothing away."""
    hidden: set[str] = set()
    visible: set[str] = set()
    for cell in nb.cells:
        inside = False
        for line in cell.source.splitlines():
            if begin in line:
                inside = True
            elif end in line:
                inside = False
            else:
                (hidden if inside else visible).add(line.strip())
    return {line for line in hidden - visible if len(line) >= shortest}


def leaks(text: str, lines: set[str]) -> bool:
    text = ANSI.sub("", text)
    return any(line in text for line in lines)


class HideHiddenTests(ClearHiddenTests):
    """ClearHiddenTests, plus outputs scrubbed of hidden-test text.

    In a test cell that held hidden tests, an error shows only its name and message, or
    "A hidden test failed." when the message quotes a hidden test; elsewhere any output
    quoting a hidden test is replaced the same way.
    """

    def preprocess(self, nb, resources):
        lines = hidden_lines(nb, self.begin_test_delimeter, self.end_test_delimeter)
        had_hidden = [self.begin_test_delimeter in cell.source for cell in nb.cells]
        nb, resources = super().preprocess(nb, resources)
        for cell, hidden in zip(nb.cells, had_hidden, strict=True):
            if cell.cell_type == "code":
                cell.outputs = [self._scrub(o, hidden, lines) for o in cell.outputs]
        return nb, resources

    @staticmethod
    def _scrub(output, hidden_cell: bool, lines: set[str]):
        if output.output_type == "error":
            ename, evalue = output.get("ename", ""), output.get("evalue", "")
            tb = "\n".join(output.get("traceback", []))
            if not (hidden_cell or leaks(tb, lines)):
                return output
            if leaks(f"{ename}: {evalue}", lines) or (hidden_cell and leaks(tb, lines)):
                return new_output("error", ename=ename, evalue="", traceback=[NEUTRAL])
            return new_output(
                "error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]
            )
        if output.output_type == "stream":
            if leaks(output.text, lines):
                output.text = "[output hidden: it quotes a hidden test]\n"
            return output
        data = output.get("data", {})
        if any(isinstance(v, str) and leaks(v, lines) for v in data.values()):
            output.data = {"text/plain": "[output hidden: it quotes a hidden test]"}
        return output


#: Output types a feedback page shows; HTML, JavaScript, SVG and the like are dropped, since
#: a student's notebook can put anything there and an instructor opens the page.
SAFE_DATA = ("text/plain", "image/png", "image/jpeg")


def sanitize(nb, release):
    """A copy of a judged notebook that is safe to render: no student HTML or script.

    Outputs keep only plain text and raster images; markdown the student wrote (anything
    not exactly as released) is shown with ``<`` and ``&`` escaped, so raw HTML in it is text.
    """
    import copy
    import html

    nb = copy.deepcopy(nb)
    released = {c.source for c in release.cells if c.cell_type == "markdown"}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            if cell.source not in released:
                cell.source = html.escape(cell.source, quote=False)
            cell.pop("attachments", None)
        elif cell.cell_type == "code":
            kept = []
            for output in cell.get("outputs", []):
                if "data" in output:
                    output.data = {k: v for k, v in output.data.items() if k in SAFE_DATA}
                    output.metadata = {}
                    if not output.data:
                        continue
                kept.append(output)
            cell.outputs = kept
        else:  # raw cells are rendered as they are by nbconvert: show them as text
            cell.cell_type = "markdown"
            cell.source = html.escape(cell.source, quote=False)
            cell.pop("attachments", None)
    return nb

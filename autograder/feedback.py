"""Feedback without hidden tests: not in the code, not in tracebacks, not in printed output.

nbgrader's ``generate_feedback`` renders the autograded notebook, whose test cells hold the
hidden tests (restored from the gradebook); ``ClearHiddenTests`` removes them from the code
only, while a failing hidden test's traceback quotes its lines. :class:`HideHiddenTests`
removes them from both.
"""

from __future__ import annotations

import re
from pathlib import Path

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


# --- Pages a student can read offline ------------------------------------------------------
#
# nbgrader's feedback template loads MathJax from a CDN and shows each test as "Test cell";
# kernel tracebacks quote the library's frames and the grader's folders. The functions below
# make a page that reads the same with no network: MathJax 2 from the ``jupyter-server-mathjax``
# package (as the reading site ships it, course_site/build.py), copied once next to the
# students' folders; tracebacks cut to the student's cells and the error; each test named by
# its exercise.

#: The folder, in ``OUT/feedback/``, that holds MathJax for every page (no student name
#: starts with a dot: autograder.grade.tasks skips such folders).
MATHJAX_DIR = ".mathjax"
#: What the pages do not need: SVG output, other languages, the accessibility explorer.
MATHJAX_SKIP = ("jax/output/SVG", "localization", "extensions/a11y")
#: Combined TeX + MathML input, HTML-CSS output; ``Safe`` disables \href, \style and the like
#: in student text.
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
_MATHJAX_OPTIONS = """{
  tex2jax: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]],
            displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
            processEscapes: true, processEnvironments: true},
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
  "fast-preview": {disabled: true},
  showMathMenu: false,
  messageStyle: "none",
  AuthorInit: function () {
    MathJax.Hub.Register.StartupHook("End", function () {
      document.documentElement.setAttribute("data-math", "done");
    });
  }
}"""


def mathjax_source() -> Path:
    import jupyter_server_mathjax

    return Path(jupyter_server_mathjax.__file__).parent / "static"


def copy_mathjax(feedback: Path) -> Path:
    """``feedback/.mathjax``: MathJax for the pages under ``feedback`` (copied once)."""
    import shutil

    source = mathjax_source()
    target = Path(feedback) / MATHJAX_DIR
    if (target / "MathJax.js").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(
        source,
        partial,
        ignore=lambda folder, names: [
            n for n in names if (Path(folder) / n).relative_to(source).as_posix() in MATHJAX_SKIP
        ],
    )
    try:
        partial.rename(target)  # atomic: two workers may race; the loser's copy is dropped
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return target


_CDN_SCRIPT = re.compile(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.I)
_MATHJAX_CONFIG = re.compile(
    r"(?:<!-- MathJax configuration -->\s*)?<script type=\"text/x-mathjax-config\">.*?</script>",
    re.S,
)


def csp(nonce: str | None = None) -> str:
    """The page's Content-Security-Policy: no script but MathJax (``nonce``), none at all
    without one; styles inline, images and fonts embedded or MathJax's own."""
    scripts = f"script-src 'nonce-{nonce}' 'strict-dynamic'; " if nonce else ""
    fonts = "font-src data: 'self' file:" if nonce else "font-src data:"
    return (
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        f"{scripts}img-src data:; style-src 'unsafe-inline'; {fonts}\">"
    )


def offline(page: str, nonce: str, root: str = "../../") -> str:
    """nbgrader's feedback ``page`` with MathJax from ``root + .mathjax`` (no URL left).

    ``root`` is the way from the page to ``OUT/feedback/``; only the scripts carrying
    ``nonce`` (MathJax's configuration and loader, and what the loader loads) may run.
    """
    page = _CDN_SCRIPT.sub("", page)
    page = _MATHJAX_CONFIG.sub("", page)
    loader = (
        f'<script nonce="{nonce}">window.MathJax = {_MATHJAX_OPTIONS};</script>\n'
        f'<script nonce="{nonce}" src="{root}{MATHJAX_DIR}/MathJax.js?config={MATHJAX_CONFIG}">'
        "</script>\n"
    )
    head = re.search(r"</head>", page, flags=re.I)
    if head is None:
        return loader + page
    return page[: head.start()] + loader + page[head.start() :]


# --- Tracebacks: the student's code and the error ----------------------------------------------

#: Where the grader's kernels live (autograder/sandbox.py) and installed packages.
_KERNEL_PATH = re.compile(r"(?:/[^\s'\"/]+)*/kernel-[\w-]+/")
_SITE_PACKAGES = re.compile(r"/[^\s'\"]*?/(?:site|dist)-packages/")
_PYTHON_LIB = re.compile(r"/[^\s'\"]*?/lib/python3\.\d+/")
_STUDENT_FRAME = re.compile(r"^\s*(Cell In\s*\[|Input In\s*\[|(File )?<ipython-input-)")
_LIBRARY_FRAME = re.compile(r"^\s*File\s")


def scrub_paths(text: str) -> str:
    """``text`` with the grader's folders and the Python installation's paths cut short."""
    text = _KERNEL_PATH.sub("", text)
    text = _SITE_PACKAGES.sub("", text)
    return _PYTHON_LIB.sub("", text)


def trim_traceback(traceback: list[str]) -> list[str]:
    """An IPython traceback with only the student's cells' frames and the error.

    Frames in library code (numpy's, the grader's stand-ins) are replaced by one line saying
    how many were left out; paths are cut short (:func:`scrub_paths`).
    """
    if not traceback:
        return traceback
    kept, dropped = [], 0
    for i, part in enumerate(traceback):
        plain = ANSI.sub("", part)
        last = i == len(traceback) - 1
        if not last and i > 0 and _LIBRARY_FRAME.match(plain) and not _STUDENT_FRAME.match(plain):
            dropped += 1
            continue
        if dropped and (last or _STUDENT_FRAME.match(plain)):
            kept.append(_left_out(dropped))
            dropped = 0
        kept.append(scrub_paths(part))
    return kept


def _left_out(n: int) -> str:
    frames = "frame" if n == 1 else "frames"
    return f"[{n} {frames} in library code left out]"


def readable_outputs(nb) -> None:
    """Trim every error's traceback in ``nb`` and cut paths from errors and streams."""
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.output_type == "error":
                output.traceback = trim_traceback(list(output.get("traceback", [])))
                output.evalue = scrub_paths(output.get("evalue", ""))
            elif output.output_type == "stream":
                output.text = scrub_paths(output.text)
            elif "text/plain" in output.get("data", {}):
                output.data["text/plain"] = scrub_paths(output.data["text/plain"])


# --- The summary: each test by its exercise ------------------------------------------------------


def cell_titles(release) -> dict[str, str]:
    """``{grade_id: title}`` of every graded cell: "Exercise 1 (3 points), square: test
    test_square" (the heading before the answer, the answer's grade_id, the test's)."""
    from autograder import cells

    titles: dict[str, str] = {}
    for cell, heading, answer in cells.with_exercise(release):
        gid = cells.grade_id(cell)
        if cells.is_answer(cell):
            if cell.metadata.get("nbgrader", {}).get("grade"):  # a code answer graded by hand
                titles[gid] = f"{heading or 'answer'}: answer {gid}"
        elif cells.is_test(cell) and gid:
            where = ", ".join(p for p in (heading, answer) if p)
            titles[gid] = f"{where}: test {gid}" if where else f"test {gid}"
        elif gid and (cell.metadata.get("nbgrader", {}).get("grade")):
            where = heading or "written answer"
            titles[gid] = f"{where}: written answer {gid}"
    return titles


def name_summary(page: str, titles: dict[str, str]) -> str:
    """nbgrader's summary (the list of "Test cell" / "Written response" links) with each
    cell named by ``titles``."""
    import html

    for gid, title in titles.items():
        link = re.compile(rf'(<a href="#{re.escape(gid)}">)[^<]*(</a>)')
        text = html.escape(title, quote=False)
        page = link.sub(lambda m, t=text: m.group(1) + t + m.group(2), page, count=1)
    return page

"""Build the reading site from the solution notebooks (nbconvert with a local template).

Nothing is fetched: the page template, the stylesheet and MathJax (from the
``jupyter-server-mathjax`` package, SVG output, so no web fonts) are copied into the site.

Besides the chapters, the site has one page made from ``course/references.ipynb``, the
bibliography. Links between notebooks are written as relative ``.ipynb`` paths, as JupyterLab
follows them (``../05_convergence/convergence.ipynb#3.-The-rate-of-convergence``); the builder
rewrites them to the site's pages and refuses a link to a notebook that has no page.
"""

from __future__ import annotations

import copy
import html
import os
import re
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

import jinja2
import nbformat
from markupsafe import Markup
from nbconvert import HTMLExporter
from pygments.formatters import HtmlFormatter
from traitlets.config import Config

from autograder import COURSE, SOLUTIONS, cells

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = ROOT / "_site"
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
SITE_TITLE = "The EM algorithm: an open course"
#: The bibliography: a notebook in course/ (the one file there that is not released from
#: solutions/), so that JupyterLab readers open it rendered and its anchors resolve there too.
REFERENCES = COURSE / "references.ipynb"
REFERENCES_PAGE = "references.html"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
#: Text that must never reach the site.
FORBIDDEN = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS", BEGIN_SOLUTION, END_SOLUTION)

# MathJax 2 as jupyter-server-mathjax ships it: the combined TeX + HTML-CSS configuration
# and the STIX-Web web fonts. The rest (SVG glyph tables, other languages) is left out.
MATHJAX_SKIP = ("jax/output/SVG", "localization")


@dataclass
class Chapter:
    """One chapter of the course: a solution notebook and the page made from it."""

    folder: str  # "02_normal_mixture"
    notebook: Path
    number: int = 0
    title: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)  # (anchor id, text)
    exercises: int = 0
    body: str = ""
    root: Path | None = None  # the course root the notebook's relative links start from
    links: set[str] = field(default_factory=set)  # pages its .ipynb links point to

    @property
    def page(self) -> str:
        return f"{self.folder}.html"


# --------------------------------------------------------------------------------------------
# Links between notebooks: relative .ipynb paths (as JupyterLab follows them) become pages


_NOTEBOOK_HREF = re.compile(r'(<a\s[^>]*?href=")([^"#:?]+\.ipynb)((?:#[^"]*)?")')


def page_of(target: str) -> str:
    """The site page of a notebook path relative to the course root.

    ``NN_name/name.ipynb`` (a chapter, in course/ or solutions/) is ``NN_name.html``;
    ``references.ipynb`` is the bibliography page.
    """
    parts = PurePosixPath(target).parts
    if parts == (REFERENCES.name,):
        return REFERENCES_PAGE
    if len(parts) == 2 and parts[0][:2].isdigit():
        return f"{parts[0]}.html"
    raise ValueError(f"{target!r} is neither a chapter notebook nor {REFERENCES.name}")


def rewrite_notebook_links(body: str, notebook: Path, root: Path) -> tuple[str, set[str]]:
    """Point links to ``.ipynb`` files (relative to *notebook*, inside *root*) at site pages.

    Returns the new HTML and the pages linked, so that the builder can check they exist.
    Fragments are kept: nbconvert gives headings the same ids as JupyterLab does (the
    heading's text with spaces turned into hyphens).
    """
    linked: set[str] = set()

    def replace(match: re.Match) -> str:
        href = html.unescape(match.group(2))
        where = os.path.normpath(notebook.parent.relative_to(root) / href)
        if where.startswith(".."):
            raise ValueError(f"{notebook}: the link {href!r} leaves the course")
        page = page_of(Path(where).as_posix())
        linked.add(page)
        return match.group(1) + page + match.group(3)

    return _NOTEBOOK_HREF.sub(replace, body), linked


# --------------------------------------------------------------------------------------------
# Notebook preparation: fold solutions, drop hidden tests


def _split_regions(source: str, begin: str, end: str, where: str) -> list[tuple[bool, str]]:
    """Split *source* into (inside, text) parts at marker lines (markers dropped)."""
    parts: list[tuple[bool, list[str]]] = [(False, [])]
    inside = False
    for line in source.splitlines():
        marker = line.strip()
        if marker == begin:
            if inside:
                raise ValueError(f"{where}: nested {begin!r}")
            inside = True
            parts.append((True, []))
        elif marker == end:
            if not inside:
                raise ValueError(f"{where}: {end!r} without {begin!r}")
            inside = False
            parts.append((False, []))
        else:
            parts[-1][1].append(line)
    if inside:
        raise ValueError(f"{where}: {begin!r} is never closed by {end!r}")
    return [(flag, "\n".join(lines)) for flag, lines in parts if flag or "".join(lines).strip()]


_MATH_SPAN = re.compile(r"(?<!\\)\$\$.+?(?<!\\)\$\$|(?<!\\)\$[^$]+?(?<!\\)\$", re.S)
_BLOCK_START = re.compile(r"\n[ \t]*(?=[-+*>#]|\d+[.)])")


def keep_math_inline(source: str) -> str:
    """Join lines inside a formula that would start with Markdown block syntax.

    JupyterLab takes formulas out before parsing Markdown; nbconvert's parser does not, so a
    formula continued on a line starting with ``+`` (or ``-``, ``*``, ``>``, ``#``, ``1.``)
    would turn into a list item. In TeX a line break is a space, so joining changes nothing.
    """
    return _MATH_SPAN.sub(lambda m: _BLOCK_START.sub(" ", m.group(0)), source)


def _is_written(cell) -> bool:
    return cell.cell_type == "markdown" and bool(cell.metadata.get("nbgrader", {}).get("solution"))


def _points(cell) -> str:
    points = cell.metadata["nbgrader"].get("points", 0)
    points = int(points) if float(points).is_integer() else points
    return f"{points} point" + ("" if points == 1 else "s")


def prepare(nb, where: str = "notebook"):
    """A copy of *nb* ready for the site.

    * Test cells lose their hidden-test regions (and, if they had one, their outputs, which
      could quote hidden lines); they are tagged ``test`` and labelled with their points.
    * Answer cells keep the code around the solution in view; the solution regions go into
      ``metadata.course_site.parts`` and the template folds them behind "Show solution".
    * Written answers (markdown solution cells) are tagged ``written`` and folded whole.
    """
    nb = copy.deepcopy(nb)
    for index, cell in enumerate(nb.cells):
        here = f"{where}, cell {index} ({cells.grade_id(cell) or cell.cell_type})"
        meta = cell.metadata.get("nbgrader", {})
        tags = list(cell.metadata.get("tags", []))
        site = {}
        if cells.is_test(cell):
            parts = _split_regions(cell.source, BEGIN_HIDDEN, END_HIDDEN, here)
            hidden = any(flag for flag, _ in parts)
            cell.source = "\n".join(text for flag, text in parts if not flag).rstrip()
            if hidden:
                cell.outputs = []
            tags.append("test")
            label = f"Tests · {_points(cell)}"
            if hidden:
                label += " · more tests, hidden, run when the notebook is graded"
            site["label"] = label
        elif cells.is_answer(cell):
            parts = _split_regions(cell.source, BEGIN_SOLUTION, END_SOLUTION, here)
            if not any(flag for flag, _ in parts):  # no markers: the whole cell is the answer
                parts = [(True, cell.source)]
            site["parts"] = [["solution" if flag else "code", text] for flag, text in parts]
            tags.append("answer")
            site["label"] = f"Exercise · {cells.grade_id(cell)}"
        elif _is_written(cell):
            parts = _split_regions(cell.source, BEGIN_SOLUTION, END_SOLUTION, here)
            cell.source = "\n".join(text for _, text in parts)
            tags.append("written")
            site["label"] = f"Written answer · {_points(cell)}" if meta.get("grade") else ""
        if cell.cell_type == "markdown":
            cell.source = keep_math_inline(cell.source)
        if tags:
            cell.metadata["tags"] = tags
        if site:
            cell.metadata["course_site"] = site
    return nb


# --------------------------------------------------------------------------------------------
# Reading the rendered HTML back: headings for the table of contents, text for checks


class _Headings(HTMLParser):
    """Collect (level, id, text) of h1/h2 elements, without the anchor-link pilcrow."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str, str]] = []
        self._current: tuple[int, str] | None = None
        self._text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h1", "h2") and self._current is None:
            self._current = (int(tag[1]), attrs.get("id") or "")
            self._text = []
        elif (
            self._current is not None
            and tag == "a"
            and "anchor-link" in (attrs.get("class") or "")
        ):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag == "a" and self._skip:
            self._skip -= 1
        elif self._current is not None and tag == f"h{self._current[0]}":
            text = " ".join("".join(self._text).split())
            self.found.append((*self._current, text))
            self._current = None

    def handle_data(self, data):
        if self._current is not None and not self._skip:
            self._text.append(data)


def headings(body: str) -> list[tuple[int, str, str]]:
    parser = _Headings()
    parser.feed(body)
    return parser.found


def _inline_math_to_text(text: str) -> str:
    """Chapter titles are plain text in navigation: drop $...$ delimiters if any."""
    return re.sub(r"\$([^$]*)\$", r"\1", text)


# --------------------------------------------------------------------------------------------
# Building


def chapters(source: Path = SOLUTIONS) -> list[Chapter]:
    found = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and p.name[:2].isdigit()):
        notebooks = sorted(
            p for p in folder.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
        )
        if len(notebooks) != 1:
            raise ValueError(f"{folder}: expected one notebook, found {len(notebooks)}")
        found.append(
            Chapter(folder=folder.name, notebook=notebooks[0], number=int(folder.name[:2]))
        )
    if not found:
        raise ValueError(f"no chapters (NN_name/ folders with one notebook) in {source}")
    return found


def _exporter() -> HTMLExporter:
    config = Config()
    config.HTMLExporter.extra_template_basedirs = [str(TEMPLATES)]
    config.HTMLExporter.template_name = "cells"
    config.HTMLExporter.exclude_input_prompt = True
    config.HTMLExporter.exclude_output_prompt = True
    config.ExtractOutputPreprocessor.enabled = True
    return HTMLExporter(config=config)


def render_chapter(chapter: Chapter, out: Path, exporter: HTMLExporter | None = None) -> None:
    """Fill in chapter.body, title and sections; write the chapter's figures under *out*."""
    exporter = exporter or _exporter()
    nb = nbformat.read(chapter.notebook, as_version=4)
    site_nb = prepare(nb, where=str(chapter.notebook.relative_to(chapter.notebook.parents[1])))
    resources = {
        "output_files_dir": f"figures/{chapter.folder}",
        "unique_key": "figure",
    }
    body, resources = exporter.from_notebook_node(site_nb, resources=resources)
    for name, data in resources.get("outputs", {}).items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for marker in FORBIDDEN:
        if marker in body:
            raise AssertionError(f"{chapter.notebook}: {marker!r} would reach the site")
    root = chapter.root or chapter.notebook.parents[1]
    body, chapter.links = rewrite_notebook_links(body, chapter.notebook, root)
    found = headings(body)
    titles = [text for level, _, text in found if level == 1]
    chapter.title = _inline_math_to_text(titles[0] if titles else chapter.folder)
    chapter.sections = [(anchor, text) for level, anchor, text in found if level == 2 and anchor]
    chapter.exercises = sum(1 for c in nb.cells if cells.is_answer(c) or _is_written(c))
    chapter.body = body


def _copy_static(out: Path) -> None:
    import jupyter_server_mathjax

    mathjax = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = out / "static"
    shutil.copytree(STATIC, target, dirs_exist_ok=True)
    shutil.copytree(
        mathjax,
        target / "mathjax",
        ignore=lambda folder, names: [
            name
            for name in names
            if (Path(folder) / name).relative_to(mathjax).as_posix() in MATHJAX_SKIP
        ],
    )
    style = HtmlFormatter(style="default").get_style_defs(".highlight")
    (target / "pygments.css").write_text(style + "\n", encoding="utf-8")


def build(out: Path = DEFAULT_OUT, source: Path = SOLUTIONS) -> list[Path]:
    """Build the site into *out* (emptied first); return the HTML pages written."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    _copy_static(out)

    book = chapters(source)
    exporter = _exporter()
    for chapter in book:
        render_chapter(chapter, out, exporter)
    references = Chapter(folder="references", notebook=REFERENCES, root=REFERENCES.parent)
    render_chapter(references, out, exporter)
    pages = {c.page for c in book} | {references.page}
    for page in (*book, references):
        missing = sorted(page.links - pages)
        if missing:
            raise ValueError(f"{page.notebook}: links to notebooks with no page: {missing}")

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    written = []
    common = {"site_title": SITE_TITLE, "chapters": book, "references": references}
    home = env.get_template("home.html.j2").render(**common, current=None, prev=None, next=None)
    (out / "index.html").write_text(home, encoding="utf-8")
    written.append(out / "index.html")
    page = env.get_template("page.html.j2")
    for i, chapter in enumerate(book):
        text = page.render(
            **common,
            current=chapter,
            prev=book[i - 1] if i > 0 else None,
            next=book[i + 1] if i + 1 < len(book) else references,
            body=Markup(chapter.body),
        )
        (out / chapter.page).write_text(text, encoding="utf-8")
        written.append(out / chapter.page)
    text = env.get_template("references.html.j2").render(
        **common, current=references, prev=book[-1], next=None, body=Markup(references.body)
    )
    (out / references.page).write_text(text, encoding="utf-8")
    written.append(out / references.page)
    return written


def text_of(html_text: str) -> str:
    """Visible-ish text of an HTML fragment (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))

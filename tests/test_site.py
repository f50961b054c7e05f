"""The reading site (``make site``): built from solutions/, offline, checked in Chromium.

The first tests read the built HTML. The browser tests serve the site on 127.0.0.1, open
every page in headless Chromium and check what a reader sees: mathematics typeset (no raw
TeX left), every figure loaded, every internal link resolving, nothing fetched from
elsewhere, and the "Show solution" toggle working. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import nbformat
import pytest

from autograder import COURSE, SOLUTIONS, cells
from course_site.__main__ import main as site_main
from course_site.build import (
    BEGIN_HIDDEN,
    BEGIN_SOLUTION,
    END_HIDDEN,
    END_SOLUTION,
    REFERENCES,
    REFERENCES_PAGE,
    chapters,
)
from tests import browser

CHAPTERS = chapters(SOLUTIONS)
MATH_TIMEOUT = 30


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "_site"
    site_main(["--out", str(out)])
    return out


def _regions(source: str, begin: str, end: str) -> list[str]:
    found, current = [], None
    for line in source.splitlines():
        if line.strip() == begin:
            current = []
        elif line.strip() == end:
            found.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return found


class _Text(HTMLParser):
    """Text of a page, split into inside and outside ``<details class="solution">``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.inside: list[str] = []
        self.outside: list[str] = []
        self.depth = 0
        self.details = 0
        self.resources: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "details":
            self.depth += 1
            self.details += "solution" in (attrs.get("class") or "")
        if tag in ("script", "img", "iframe", "audio", "video", "source") and attrs.get("src"):
            self.resources.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.resources.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "details":
            self.depth -= 1

    def handle_data(self, data):
        (self.inside if self.depth else self.outside).append(data)


def _read(page: Path) -> _Text:
    parser = _Text()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _squash(text: str) -> str:
    return " ".join(text.split())


def test_one_page_per_chapter_and_a_home_page(site):
    pages = sorted(p.name for p in site.glob("*.html"))
    assert pages == sorted(["index.html", REFERENCES_PAGE, *(c.page for c in CHAPTERS)])
    home = (site / "index.html").read_text(encoding="utf-8")
    for chapter in CHAPTERS:
        assert f'href="{chapter.page}"' in home, f"the home page does not link {chapter.page}"
    assert f'href="{REFERENCES_PAGE}"' in home, "the home page does not link the references"


# --------------------------------------------------------------------------------------------
# Links between pages and between notebooks


class _Links(HTMLParser):
    """The hrefs and the ids of an HTML page (or of a notebook's rendered markdown)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.headings: list[str] = []  # text of h1-h6, without nbconvert's anchor pilcrow
        self._heading: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href") is not None:
            self.hrefs.append(attrs["href"])
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = []
        elif tag == "a" and "anchor-link" in (attrs.get("class") or ""):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag == "a" and self._skip:
            self._skip -= 1
        elif re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        if self._heading is not None and not self._skip:
            self._heading.append(data)


def _links(html_text: str) -> _Links:
    parser = _Links()
    parser.feed(html_text)
    return parser


def _internal(href: str) -> bool:
    return not urlparse(href).scheme and not href.startswith("//")


def test_every_internal_link_of_the_built_site_resolves(site):
    """Every relative link points to a file of the site, and its #fragment to an id there."""
    pages = {p.name: _links(p.read_text(encoding="utf-8")) for p in site.glob("*.html")}
    checked = 0
    for name, page in pages.items():
        for href in page.hrefs:
            if not _internal(href):
                continue
            target, fragment = urldefrag(href)
            target = unquote(target) or name
            assert (site / target).is_file(), f"{name} links to {href}: no such file"
            assert not target.endswith(".ipynb"), f"{name} links to a notebook: {href}"
            if fragment:
                ids = pages[target].ids if target in pages else set()
                assert fragment in ids or unquote(fragment) in ids, (
                    f"{name} links to {href}: {target} has no id {fragment!r}"
                )
            checked += 1
    assert checked > 50, f"only {checked} internal links found"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.folder)
def test_chapter_apparatus(site, chapter):
    """A chapter states its prerequisites, cites the references page, and numbers its displays
    with \\tag{1}, \\tag{2}, ... in order (MathJax 2 on the site, MathJax 3 in JupyterLab)."""
    nb = nbformat.read(chapter.notebook, as_version=4)
    assert "**Prerequisites.**" in nb.cells[0].source, f"{chapter.folder}: no Prerequisites line"
    hrefs = _links((site / chapter.page).read_text(encoding="utf-8")).hrefs
    assert any(h.startswith(REFERENCES_PAGE + "#") for h in hrefs), (
        f"{chapter.page} cites nothing from the references page"
    )
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    tags = re.findall(r"\\tag\{([^}]*)\}", markdown)
    assert tags, f"{chapter.folder}: no numbered display (\\tag{{1}})"
    assert tags == [str(n) for n in range(1, len(tags) + 1)], (
        f"{chapter.folder}: equation tags {tags} are not 1, 2, ... in order"
    )
    for display in re.findall(r"\$\$(.+?)\$\$", markdown, flags=re.S):
        assert display.count("\\tag{") <= 1, f"{chapter.folder}: two tags in one display"


def test_the_references_page_has_every_entry(site):
    references = _links((site / REFERENCES_PAGE).read_text(encoding="utf-8"))
    for key in ("dempster1977", "givens2012", "varadhan2008", "hasselblad1969", "svensson2020"):
        assert key in references.ids, f"the references page has no entry #{key}"
    for chapter in CHAPTERS:
        assert chapter.page in references.hrefs, (
            f"the references page does not link {chapter.page}"
        )


def _jupyterlab_targets(notebook: Path) -> tuple[list[str], set[str]]:
    """(links, fragment ids) of a notebook's markdown cells as JupyterLab renders them.

    JupyterLab gives a heading the id ``textContent.replace(/ /g, '-')`` (its
    ``createHeaderId``) and finds a fragment among those ids and among the ``id``
    attributes written in the markdown (its sanitizer keeps them as ``data-jupyter-id``).
    """
    from nbconvert.filters import markdown2html_mistune

    nb = nbformat.read(notebook, as_version=4)
    links, ids = [], set()
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        raw = _links(markdown2html_mistune(cell.source))
        links += raw.hrefs
        ids |= {text.replace(" ", "-") for text in raw.headings}
        ids |= set(re.findall(r"""<[a-z][^>]*\bid=["']([^"']+)["']""", cell.source))
    return links, ids


NOTEBOOKS = [*sorted(COURSE.glob("*/*.ipynb")), REFERENCES]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.relative_to(COURSE).as_posix())
def test_notebook_links_resolve_in_jupyterlab(notebook):
    """Relative links of course/ notebooks point inside course/ at files that exist, and a
    #fragment to a heading (or an id) of the target notebook, as `make lab` and Binder show it."""
    links, _ = _jupyterlab_targets(notebook)
    for href in links:
        if not _internal(href):
            continue
        target, fragment = urldefrag(href)
        path = (notebook.parent / unquote(target)).resolve() if target else notebook
        assert path.is_relative_to(COURSE.resolve()), (
            f"{notebook.name}: {href} leaves course/, the JupyterLab root"
        )
        assert path.is_file(), f"{notebook.name}: {href} points to a missing file"
        if fragment:
            assert path.suffix == ".ipynb", f"{notebook.name}: {href}: fragment on a non-notebook"
            _, ids = _jupyterlab_targets(path)
            assert unquote(fragment) in ids, (
                f"{notebook.name}: {href}: {path.name} has no heading or id {fragment!r}"
            )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.folder)
def test_hidden_tests_never_reach_the_site(site, chapter):
    nb = nbformat.read(chapter.notebook, as_version=4)
    html_text = (site / chapter.page).read_text(encoding="utf-8")
    for marker in ("BEGIN HIDDEN", "END HIDDEN", BEGIN_SOLUTION, END_SOLUTION):
        assert marker not in html_text, f"{chapter.page} contains {marker!r}"
    hidden = [
        region
        for cell in nb.cells
        if cells.is_test(cell)
        for region in _regions(cell.source, BEGIN_HIDDEN, END_HIDDEN)
    ]
    assert hidden, f"{chapter.folder} has no hidden tests: is the check still meaningful?"
    # Lines that occur only in hidden regions must not appear anywhere on the page.
    visible_sources = "\n".join(
        re.sub(
            rf"{re.escape(BEGIN_HIDDEN)}.*?{re.escape(END_HIDDEN)}", "", cell.source, flags=re.S
        )
        for cell in nb.cells
    )
    page_text = _squash(
        "".join(_read(site / chapter.page).outside + _read(site / chapter.page).inside)
    )
    secret = {
        _squash(line)
        for region in hidden
        for line in region.splitlines()
        if len(line.strip()) >= 20 and line.strip() not in visible_sources
    }
    assert secret, f"{chapter.folder}: no distinctive hidden-test line to look for"
    leaked = sorted(line for line in secret if line in page_text)
    assert not leaked, f"{chapter.page} shows hidden-test lines: {leaked[:3]}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.folder)
def test_every_solution_is_folded(site, chapter):
    nb = nbformat.read(chapter.notebook, as_version=4)
    text = _read(site / chapter.page)
    inside = _squash("".join(text.inside))
    solutions = [
        region
        for cell in nb.cells
        if cells.is_answer(cell)
        for region in _regions(cell.source, BEGIN_SOLUTION, END_SOLUTION)
    ]
    written = [
        c
        for c in nb.cells
        if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution")
    ]
    assert solutions, f"{chapter.folder} has no solution regions"
    assert text.details == len(solutions) + len(written), (
        f"{chapter.page}: {text.details} folded solutions, expected {len(solutions)} code "
        f"solutions + {len(written)} written answers"
    )
    for region in solutions:
        assert _squash(region) in inside, (
            f"{chapter.page}: a solution is not inside <details>: {region.strip()[:80]!r}"
        )


def test_the_site_fetches_nothing_from_elsewhere(site):
    for page in site.glob("*.html"):
        for url in _read(page).resources:
            assert not urlparse(url).scheme or url.startswith("data:"), (
                f"{page.name} loads {url}: the site must work offline"
            )
    mathjax = site / "static" / "mathjax"
    assert (mathjax / "MathJax.js").is_file() and (mathjax / "fonts").is_dir()


# --------------------------------------------------------------------------------------------
# In the browser

_PAGE_STATE = """
const main = document.querySelector('main');
const clone = main.cloneNode(true);
clone.querySelectorAll(
  'script, pre, code, .MathJax, .MathJax_Display, .MathJax_Preview, .MJX_Assistive_MathML'
).forEach(e => e.remove());
return {
  mathErrors: window.siteMath ? window.siteMath.errors : ['no siteMath'],
  texScripts: document.querySelectorAll('script[type^="math/tex"]').length,
  typeset: document.querySelectorAll('span.MathJax[id$="-Frame"]').length,
  errorBoxes: document.querySelectorAll('.MathJax_Error, merror').length,
  prose: clone.textContent,
  images: Array.from(document.images)
    .map(i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0]),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  resources: performance.getEntriesByType('resource').map(r => r.name),
};
"""

RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\$[^$\s][^$]*\$|\\[A-Za-z]{2,}")


def _wait_for_math(driver):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, MATH_TIMEOUT).until(
        lambda d: d.execute_script("return document.documentElement.dataset.math") == "done",
        message=f"MathJax did not finish within {MATH_TIMEOUT} s",
    )


@pytest.fixture(scope="module")
def served(site):
    browser.skip_without_browser()
    with browser.serve(site) as (base, requested), browser.chromium() as driver:
        yield base, requested, driver


@pytest.fixture(scope="module")
def crawl(served, site):
    """Open every page reachable from the home page; return {url: state} and timings."""
    base, _, driver = served
    states, queue, seconds = {}, [base + "index.html"], {}
    while queue:
        url = queue.pop(0)
        if url in states:
            continue
        start = time.perf_counter()
        driver.get(url)
        _wait_for_math(driver)
        state = driver.execute_script(_PAGE_STATE)
        seconds[url] = time.perf_counter() - start
        name = Path(urlparse(url).path).stem
        browser.screenshot(driver, f"site-{name}", full_page=name == "index")
        states[url] = state
        for link in state["links"]:
            page, _ = urldefrag(link)
            if page.startswith(base) and page.endswith(".html") and page not in states:
                queue.append(page)
    return states, seconds


def test_every_page_is_reached_from_the_home_page(crawl, served, site):
    base = served[0]
    reached = {urlparse(url).path.lstrip("/") for url in crawl[0]}
    assert reached == {p.name for p in site.glob("*.html")}
    # 10 s on a quiet machine; twice that, as `make test` runs another test file beside this.
    slow = {url: round(s, 1) for url, s in crawl[1].items() if s > 20}
    assert not slow, f"pages slow to render: {slow}"
    assert base


def test_mathematics_is_typeset_everywhere(crawl):
    for url, state in crawl[0].items():
        assert not state["mathErrors"], f"{url}: MathJax errors {state['mathErrors'][:3]}"
        assert state["errorBoxes"] == 0, f"{url}: {state['errorBoxes']} formulas failed"
        assert state["typeset"] == state["texScripts"], (
            f"{url}: {state['typeset']} of {state['texScripts']} formulas typeset"
        )
        raw = sorted(set(RAW_TEX.findall(state["prose"])))
        assert not raw, f"{url}: raw TeX left in the text: {raw[:5]}"
    chapter_pages = [u for u in crawl[0] if u.endswith(tuple("/" + c.page for c in CHAPTERS))]
    assert all(crawl[0][u]["texScripts"] > 0 for u in chapter_pages), "a chapter without math?"


def test_every_figure_loads(crawl):
    for url, state in crawl[0].items():
        broken = [src for src, ok in state["images"] if not ok]
        assert not broken, f"{url}: images that did not load: {broken}"
    for chapter in CHAPTERS:
        nb = nbformat.read(chapter.notebook, as_version=4)
        expected = sum(
            "image/png" in out.get("data", {})
            for cell in nb.cells
            if cell.cell_type == "code"
            for out in cell.get("outputs", [])
        )
        (state,) = [s for u, s in crawl[0].items() if u.endswith("/" + chapter.page)]
        assert len(state["images"]) == expected, f"{chapter.page}: figures missing"


def test_every_internal_link_resolves(crawl, served):
    base = served[0]
    ids = {url: set(state["ids"]) for url, state in crawl[0].items()}
    checked = 0
    for url, state in crawl[0].items():
        for link in state["links"]:
            if not link.startswith(base):
                continue
            page, fragment = urldefrag(link)
            assert page in ids, f"{url} links to {link}, which is not a page of the site"
            if fragment:  # as a browser does: the fragment as written, then percent-decoded
                assert fragment in ids[page] or unquote(fragment) in ids[page], (
                    f"{url} links to a missing anchor {link}"
                )
            checked += 1
    assert checked > 50, f"only {checked} internal links found"


def test_nothing_is_fetched_from_elsewhere_and_nothing_fails(crawl, served):
    base, requested, _ = served
    for url, state in crawl[0].items():
        foreign = [r for r in state["resources"] if not r.startswith((base, "data:", "about:"))]
        assert not foreign, f"{url} fetched {foreign}"
    failed = sorted({path for path, status in requested if status not in (200, 304)})
    assert not failed, f"requests that failed: {failed}"


def test_show_solution_toggle(served, crawl):
    from selenium.webdriver.common.by import By

    base, _, driver = served
    chapter = CHAPTERS[0]
    nb = nbformat.read(chapter.notebook, as_version=4)
    first_answer = next(c for c in nb.cells if cells.is_answer(c))
    solution = _regions(first_answer.source, BEGIN_SOLUTION, END_SOLUTION)[0]
    first_line = next(line.strip() for line in solution.splitlines() if line.strip())

    driver.get(base + chapter.page)
    _wait_for_math(driver)
    details = driver.find_element(By.CSS_SELECTOR, ".celltag_answer details.solution")
    summary = details.find_element(By.TAG_NAME, "summary")
    code = details.find_element(By.CSS_SELECTOR, ".highlight")
    assert summary.text == "Show solution"
    assert details.get_attribute("open") is None and not code.is_displayed(), (
        "the solution is visible before the reader asks for it"
    )
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", details)
    summary.click()
    assert details.get_attribute("open") is not None and code.is_displayed()
    assert first_line in code.text
    browser.screenshot(driver, "site-solution-open")
    summary.click()
    assert not code.is_displayed()

    written = driver.find_elements(By.CSS_SELECTOR, ".written_answer details.solution")
    if written:  # a written answer: its model answer folds too, and its math is typeset
        summary = written[0].find_element(By.TAG_NAME, "summary")
        assert summary.text == "Show model answer"
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", written[0])
        summary.click()
        sizes = driver.execute_script(
            "return Array.from(arguments[0].querySelectorAll('span.MathJax'))"
            ".map(e => e.getBoundingClientRect().width)",
            written[0],
        )
        assert sizes and min(sizes) > 0, "math in the opened model answer has no width"
        browser.screenshot(driver, "site-model-answer-open")


def test_the_site_also_reads_from_disk(served, site):
    """Opened as a file (no server), a chapter still typesets all its mathematics."""
    _, _, driver = served
    chapter = CHAPTERS[0]
    driver.get((site / chapter.page).as_uri())
    _wait_for_math(driver)
    state = driver.execute_script(_PAGE_STATE)
    assert not state["mathErrors"]
    assert state["typeset"] == state["texScripts"] > 0
    assert all(ok for _, ok in state["images"])

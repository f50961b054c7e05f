"""The course as a static reading site: ``python -m course_site`` (or ``make site``).

Every solution notebook in ``solutions/`` becomes one HTML page with its stored outputs,
rendered mathematics (MathJax, served from the site itself) and figures; each exercise's
solution is folded behind "Show solution", and hidden tests are removed. The site needs no
network, neither to build nor to read: open ``_site/index.html``.
"""

from course_site.build import Chapter, build, prepare

__all__ = ["Chapter", "build", "prepare"]

"""Helpers for the browser tests: headless Chromium through Selenium, a static file server.

The browser is Debian's ``chromium`` with its ``chromedriver`` (``make test`` installs both
when it can, see the Makefile's ``browser`` target). When either is missing the tests are
skipped with the reason, never failed. Selenium is pointed at both binaries explicitly, so
it never tries to download a browser or a driver.
"""

from __future__ import annotations

import base64
import functools
import http.server
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Screenshots and page dumps of the browser tests (gitignored).
ARTIFACTS = ROOT / "tests" / "artifacts"

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")

# Needed on a closed network (no background requests to Google's services) and as root.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def _which(path: str, name: str) -> str | None:
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    return shutil.which(name)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in requirements.txt: rm .venv/.installed; make)"
    if not _which(CHROMIUM, "chromium"):
        return (
            f"Chromium not found at {CHROMIUM}: install Debian's chromium and chromium-driver "
            "(make test does so when run as root with apt-get), or set CHROMIUM=/path"
        )
    if not _which(CHROMEDRIVER, "chromedriver"):
        return (
            f"chromedriver not found at {CHROMEDRIVER}: install Debian's chromium-driver, "
            "or set CHROMEDRIVER=/path"
        )
    return None


def skip_without_browser():
    reason = browser_missing()
    if reason:
        pytest.skip(f"browser test skipped: {reason}")


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium WebDriver with a fresh profile; quits and cleans up after."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = _which(CHROMIUM, "chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=_which(CHROMEDRIVER, "chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requested: list[tuple[str, int]]

    def log_message(self, format, *args):
        pass

    def log_request(self, code="-", size="-"):
        self.server.requested.append((self.path, int(code) if str(code).isdigit() else 0))


@contextmanager
def serve(folder: Path) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """Serve *folder* on 127.0.0.1 (a free port) in a thread.

    Yields the base URL and the list of (path, status) of every request served.
    """
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requested = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", server.requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def screenshot(driver, name: str, *, full_page: bool = False) -> Path:
    """Save a PNG of the current page under tests/artifacts/ and return its path.

    ``full_page`` captures the whole page height (Chromium's DevTools protocol), capped at
    12,000 CSS pixels so a long chapter stays a viewable file.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if full_page:
        width, height = driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 12000), "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
    else:
        driver.save_screenshot(str(path))
    return path
